import { realpath } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { LockHandle, ObjectStore } from '../../store/types.js';
import { LockHeldError } from '../../store/types.js';
import type { Clock, Logger } from '../deps.js';
import { ArchiveVerificationError, BackupStateError, errorMessage, UsageError } from '../errors.js';
import { defaultIoConcurrency, parseIoConcurrency } from '../io-concurrency.js';
import {
  type ArchiveRecord,
  type BackupMetadata,
  type CatalogEntry,
  chainProblems,
  listCommittedBackups,
  readManifest,
  readMetadata,
  readVerifiedDamage,
} from '../repository/catalog.js';
import { BACKUP_LOCK, backupIdFor, keysFor, STATUS_KEY } from '../repository/layout.js';
import {
  type BackupType,
  type ByteRange,
  comparePaths,
  type DirEntry,
  encodeManifest,
  type FileEntry,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type Manifest,
  type ManifestEntry,
  type SymlinkEntry,
  totalsOf,
} from '../repository/manifest.js';
import type { PlanInputs, ShardedPlan } from '../sharding/sharded-backup.js';
import { stagingPrefix } from '../sharding/sharded-backup.js';
import { SyntheticFallbackError } from '../synthetic/errors.js';
import {
  buildSyntheticFull,
  estimateSyntheticWork,
  FETCH_BYTES_PER_SECOND,
  type SyntheticBuilt,
  type SyntheticReport,
  type SyntheticSettings,
  syntheticBaseFor,
} from '../synthetic/synthetic-full.js';
import { TOOL_VERSION } from '../version.js';
import { type ArchiveProgress, writeArchive } from './archive.js';
import { DEFAULT_LEVEL, type ParallelGzipOptions, type ParallelGzipStats } from './parallel-gzip.js';
import {
  chooseBackupType,
  diffManifests,
  entriesToPack,
  locateFolderOrLink,
  type RequestedType,
  type TypeDecision,
} from './plan.js';
import { resolveSourceRoot, type ScannedEntry, type ScanResult, type SkippedPath, scanTree } from './scan.js';
import { scanTreeStream } from './scan-stream.js';
import { assertFitsInTime, estimateBackup, type TimeModelRates } from './time-model.js';

export interface BackupDeps {
  readonly store: ObjectStore;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Identifies this run in the lock (host:pid, or the Lambda request id). */
  readonly owner?: string;
}

export interface BackupOptions {
  readonly source: string;
  /**
   * The advice of the error for a missing or unreadable source (what to check, how to load media).
   *
   * @default - names the CLI's --source / MEDIA_DIR
   */
  readonly sourceHint?: string;
  /** @default 'auto' */
  readonly type?: RequestedType;
  readonly exclude?: readonly string[];
  /** @default 7 */
  readonly fullIntervalDays?: number;
  /** Re-read and re-hash every file, even those whose size and mtime are unchanged. @default false */
  readonly rehashAll?: boolean;
  /** gzip stage settings (level, worker threads, member size). @default see ParallelGzipOptions */
  readonly gzip?: ParallelGzipOptions;
  /** Stops the run; nothing is committed. Lambda passes one that fires before its deadline. */
  readonly signal?: AbortSignal;
  /**
   * Scan with concurrent async calls: for network file systems such as EFS.
   * @default true when ioConcurrency > 1
   */
  readonly concurrentIo?: boolean;
  /**
   * Files opened and read ahead at once (issue 13); 1 reads one at a time, synchronously.
   * @default NETWORK_IO_CONCURRENCY (32) when the source is on a network file system (NFS/EFS, SMB,
   * FUSE, ...), else 1
   */
  readonly ioConcurrency?: number;
  /** How long a lock survives a crashed run. @default 10 minutes */
  readonly lockTtlMs?: number;
  /**
   * Warn (the backup still commits: it is the truth) when the tree's file count or bytes dropped by
   * more than this percent against the previous committed backup: a wiped or unmounted media folder
   * looks like this. @default 50
   */
  readonly maxShrinkPercent?: number;
  /**
   * Time left for this run, ms (Lambda: context.getRemainingTimeInMillis). When given, a run whose
   * estimate (time-model.ts) does not fit fails with InsufficientTimeError before the archive starts.
   * @default no limit
   */
  readonly remainingMs?: () => number;
  /** Rates for the estimate. @default per-file cost from the scan, time-model.ts defaults */
  readonly timeModel?: TimeModelRates;
  readonly onProgress?: (progress: BackupProgress) => void;
  /**
   * When the estimate does not fit `remainingMs`: instead of failing, plan a sharded run and hand it
   * (and the lock) to whatever runs the shards, e.g. the backup state machine. Without it such a run
   * fails with InsufficientTimeError.
   */
  readonly handOff?: ShardHandOff;
  /**
   * Synthetic fulls (issue 15): a full built from the unchanged bytes already in the store plus the
   * changed files, still one plain tar.gz. `'auto'` (default) for the fulls `auto` takes; `true` for
   * a requested full too (`backup full --synthetic`); `false` never.
   */
  readonly synthetic?: SyntheticSettings['synthetic'];
  /** Every Nth full is a normal full that re-reads everything. @default DEFAULT_NORMAL_FULL_EVERY (4) */
  readonly normalFullEvery?: number;
}

/** How a run too long for this invocation continues elsewhere (the Lambda's Step Functions). */
export interface ShardHandOff {
  /** The lock's new TTL: how long the sharded run may take (the state machine's timeout). */
  readonly lockTtlMs: number;
  /** Writes the plan (sharding/sharded-backup.ts writeShardPlan). */
  plan(inputs: PlanInputs): Promise<ShardedPlan>;
  /** Starts the shards; resolves once they are started (not finished). */
  start(plan: ShardedPlan): Promise<{ readonly executionArn?: string }>;
  /** Undoes a plan that could not be started (abortShardedBackup). */
  abort(planKey: string, failure: { message: string }): Promise<void>;
  /** Entries the scan may hold before the run is planned as shards. @default DEFAULT_MAX_IN_MEMORY_ENTRIES */
  readonly maxInMemoryEntries?: number;
  /**
   * Plans from a streaming scan, deciding full or incremental itself with streams (sharding/
   * sharded-backup.ts planShardedRun): for trees too large to hold.
   */
  planFromScan(input: {
    scan: {
      readonly root: string;
      readonly rootMeta?: { readonly mode: number; readonly mtimeMs: number };
      readonly entries: AsyncIterable<ScannedEntry>;
      readonly skipped: () => readonly SkippedPath[];
      readonly scanStartedMs: number;
    };
    startedAt: Date;
    lock: { readonly name: string; readonly token: string };
    reason: string;
    /** The run's options (type, full interval, exclusions, gzip, time model, ...). */
    options: BackupOptions;
  }): Promise<ShardedPlan>;
}

/** A run handed off to a sharded execution: committed (or failed) later by its commit step. */
export interface BackupStarted {
  readonly status: 'STARTED';
  readonly backupId: string;
  readonly type: BackupType;
  readonly reason: string;
  readonly shards: number;
  readonly planKey: string;
  readonly executionArn?: string;
  /** The single-invocation estimate that did not fit, ms. */
  readonly estimatedMs: number;
  readonly remainingMs: number;
}

export interface BackupProgress extends ArchiveProgress {
  readonly totalFiles: number;
  readonly totalBytes: number;
}

/** Something an operator should look at in a backup that committed. */
export interface BackupWarning {
  /** Stable, for scripts and metrics: `SOURCE_SHRANK`, `STATUS_NOT_RECORDED`. */
  readonly code: string;
  readonly message: string;
}

export interface BackupSucceeded {
  readonly status: 'SUCCEEDED';
  readonly backupId: string;
  readonly type: BackupType;
  readonly reason: string;
  readonly baseBackupId: string | null;
  readonly archiveKey: string;
  readonly manifestKey: string;
  readonly archiveBytes: number;
  /** Absent for a synthetic full assembled inside S3 (see its metadata's CRC64NVME). */
  readonly archiveSha256?: string;
  /** Files and bytes in the backup (the whole tree, as restored). */
  readonly files: number;
  readonly bytes: number;
  /** New or changed files whose bytes are in this archive. */
  readonly changedFiles: number;
  readonly changedBytes: number;
  readonly deletedFiles: number;
  readonly skipped: readonly SkippedPath[];
  /** Empty normally; also recorded in the status object. */
  readonly warnings: readonly BackupWarning[];
  readonly durationMs: number;
  /** Set when the full was synthetic: what was read, copied and fetched. */
  readonly synthetic?: SyntheticReport;
  /** Why a full was not synthetic (or why a synthetic attempt fell back to a normal full). */
  readonly syntheticSkipped?: string;
}

export const DEFAULT_LOCK_TTL_MS = 10 * 60 * 1000;
export const DEFAULT_MAX_SHRINK_PERCENT = 50;

/**
 * One backup run: lock, decide full/incremental, scan, diff, stream the archive, then commit by
 * writing metadata and, last, the manifest. Until the manifest exists the backup does not exist.
 * Throws on failure after recording it in status/last-run.json.
 */
export async function runBackup(
  deps: BackupDeps,
  options: BackupOptions & { handOff: ShardHandOff | undefined },
): Promise<BackupSucceeded | BackupStarted>;
export async function runBackup(deps: BackupDeps, options: BackupOptions): Promise<BackupSucceeded>;
export async function runBackup(
  deps: BackupDeps,
  options: BackupOptions,
): Promise<BackupSucceeded | BackupStarted> {
  const { store, clock, logger } = deps;
  const startedAt = clock.now();
  const maxShrink = options.maxShrinkPercent;
  if (maxShrink !== undefined && !(Number.isFinite(maxShrink) && maxShrink >= 0 && maxShrink <= 100)) {
    throw new UsageError(`maxShrinkPercent must be a number from 0 to 100 (got ${maxShrink})`);
  }
  // Refused before anything is written: a store that overlaps the source would be archived into
  // itself, and its objects restored into the media tree.
  await assertSourceAndStoreApart(options.source, store);
  let lock: LockHandle | undefined;
  const held = { handedOver: false };
  try {
    lock = await store.acquireLock(BACKUP_LOCK, {
      owner: deps.owner ?? `${hostname()}:${process.pid}`,
      ttlMs: options.lockTtlMs ?? DEFAULT_LOCK_TTL_MS,
    });
    await removeStoreLeftovers(store, options.lockTtlMs ?? DEFAULT_LOCK_TTL_MS, logger);
    // After the lock, so that a missing or unmounted source (the classic silent backup failure) is
    // recorded as FAILED in the status object below, not left behind a green previous run.
    await resolveSourceRoot(options.source, options.sourceHint);
    const result = await backupLocked(deps, options, startedAt, lock, held);
    if (result.status === 'STARTED') return result;
    // Warnings stay whole (the shrink message is what an operator reads); skipped paths are counted.
    return await writeStatus(store, {
      ...result,
      startedAt: startedAt.toISOString(),
      finishedAt: clock.now().toISOString(),
      skipped: result.skipped.length,
    }).then(
      () => result,
      // The manifest is written: the backup exists and is good. Calling it FAILED would send the
      // operator after a problem that is not there; say instead that the status object is stale.
      (statusError): BackupSucceeded => {
        const message = `backup ${result.backupId} is committed, but ${STATUS_KEY} could not be written (${errorMessage(statusError)}): status shows the previous run until the next one`;
        logger.warn(message, { code: 'STATUS_NOT_RECORDED' });
        return { ...result, warnings: [...result.warnings, { code: 'STATUS_NOT_RECORDED', message }] };
      },
    );
  } catch (error) {
    logger.error('backup failed', { error: errorMessage(error), name: (error as Error)?.name });
    // A lock conflict is not this run's outcome to record: the running backup will write its own.
    if (!(error instanceof LockHeldError)) {
      await writeStatus(store, {
        status: 'FAILED',
        startedAt: startedAt.toISOString(),
        finishedAt: clock.now().toISOString(),
        error: { name: (error as Error)?.name ?? 'Error', message: errorMessage(error) },
      }).catch((statusError) =>
        logger.warn('could not record the failure in the status object', {
          error: errorMessage(statusError),
        }),
      );
    }
    throw error;
  } finally {
    // A run handed off keeps the lock: its commit or cleanup step releases it.
    if (!held.handedOver) {
      await lock
        ?.release()
        .catch((error) => logger.warn('could not release the lock', { error: errorMessage(error) }));
    }
  }
}

async function backupLocked(
  deps: BackupDeps,
  options: BackupOptions,
  startedAt: Date,
  lock: LockHandle,
  held: { handedOver: boolean },
): Promise<BackupSucceeded | BackupStarted> {
  const { store, clock, logger } = deps;
  // Real time, not the injected clock: the scan's speed is what the time model measures.
  const ioConcurrency =
    options.ioConcurrency === undefined
      ? defaultIoConcurrency(options.source)
      : parseIoConcurrency(options.ioConcurrency, 'ioConcurrency');
  const scanStarted = performance.now();
  const scanOptions = {
    exclude: options.exclude,
    excludeAbsolute: store.localPath ? [store.localPath] : [],
    concurrentIo: options.concurrentIo ?? ioConcurrency > 1,
    signal: options.signal,
  };
  let scan: ScanResult;
  if (options.handOff) {
    // Where a hand-off exists (Lambda), the tree is held only up to a cap: a larger one is planned
    // as shards from the rest of the same streaming scan, without holding it or the base manifest.
    const stream = await scanTreeStream(options.source, scanOptions);
    const cap = options.handOff.maxInMemoryEntries ?? DEFAULT_MAX_IN_MEMORY_ENTRIES;
    const walk = stream.entries();
    const entries: ScannedEntry[] = [];
    for (let next = await walk.next(); !next.done; next = await walk.next()) {
      entries.push(next.value);
      if (entries.length > cap) {
        return handOffLargeTree(deps, options, options.handOff, lock, held, startedAt, cap, {
          root: stream.root,
          rootMeta: stream.rootMeta,
          entries: concatEntries(entries, walk),
          skipped: () => stream.skipped,
          scanStartedMs: scanStarted,
        });
      }
    }
    scan = {
      root: stream.root,
      rootMeta: stream.rootMeta,
      entries,
      skipped: stream.skipped,
      excluded: stream.excluded(),
    };
  } else {
    scan = await scanTree(options.source, scanOptions);
  }
  const scanElapsedMs = performance.now() - scanStarted;
  // A scan of a large network tree can eat the time budget: stop here rather than start the upload.
  options.signal?.throwIfAborted();
  const committed = await listCommittedBackups(store);
  const decision = await resolveChain(store, logger, options, committed, startedAt);
  const plan = diffManifests(scan.entries, decision.baseManifest, { rehashAll: options.rehashAll });
  let backupId = await nextBackupId(store, clock, committed);
  let keys = keysFor(decision.type, backupId);
  let syntheticSkipped: string | undefined;
  if (decision.type === 'full') {
    const attempt = await trySyntheticFull(deps, options, {
      scan,
      committed,
      backupId,
      archiveKey: keys.archive,
      ioConcurrency,
      scanElapsedMs,
    });
    if ('built' in attempt) {
      const { built } = attempt;
      return commitSingleArchive(deps, options, {
        backupId,
        decision: { ...decision, reason: `${decision.reason}; synthetic on ${built.report.baseBackupId}` },
        baseBackupId: null,
        startedAt,
        committed,
        scan,
        entries: built.entries,
        skipped: scan.skipped.concat(built.skipped),
        archive: built.archive,
        changed: built.changed,
        deleted: attempt.deleted,
        gzip: built.gzip,
        synthetic: built.report,
      });
    }
    syntheticSkipped = attempt.reason;
    // A failed attempt may have left objects under this id (its staging object, or an archive that
    // failed the checks): the normal full takes a fresh id.
    if (attempt.leftObjects) {
      backupId = await nextBackupId(store, clock, committed);
      keys = keysFor(decision.type, backupId);
    }
  }
  logger.info('backup started', {
    backupId,
    type: decision.type,
    reason: decision.reason,
    files: plan.toArchive.length + plan.unchanged.size,
    changedFiles: plan.toArchive.length,
    source: scan.root,
    store: store.url,
  });

  const toPack = entriesToPack(scan.entries, plan.toArchive);
  const changedBytesPlanned = plan.toArchive.reduce((sum, f) => sum + f.size, 0);
  // Upper bound of the archive size: content + a header and padding per entry (+ PAX) + gzip framing.
  const maxBytes = Math.ceil((changedBytesPlanned + toPack.length * 3 * 512 + 1024 * 1024) * 1.01);
  const estimate = estimateBackup(
    { files: plan.toArchive.length, bytes: changedBytesPlanned },
    { entries: scan.entries.length, elapsedMs: scanElapsedMs },
    options.timeModel,
  );
  const remainingMs = options.remainingMs?.();
  logger.info('backup estimate', {
    backupId,
    estimatedMs: Math.round(estimate.totalMs),
    perFileMs: Number(estimate.perFileMs.toFixed(3)),
    scanMs: Math.round(scanElapsedMs),
    ioConcurrency,
    // libuv's pool bounds the async calls in flight (default 4): UV_THREADPOOL_SIZE, set at start.
    threadPool: Number(process.env.UV_THREADPOOL_SIZE) || 4,
    remainingMs,
  });
  if (remainingMs !== undefined && estimate.totalMs > remainingMs && options.handOff) {
    return handOffToShards(
      deps,
      options.handOff,
      lock,
      held,
      {
        backupId,
        type: decision.type,
        reason: `${decision.reason}; sharded: ${Math.round(estimate.totalMs / 1000)} s estimated, ${Math.round(remainingMs / 1000)} s left in this invocation`,
        baseBackupId: decision.base?.backupId ?? null,
        createdAt: startedAt,
        root: scan.root,
        rootMeta: scan.rootMeta,
        entries: scan.entries,
        baseEntries: decision.baseManifest?.entries,
        skipped: () => scan.skipped,
        scanElapsedMs,
        rehashAll: options.rehashAll,
        timeModel: options.timeModel,
        gzipLevel: options.gzip?.level ?? DEFAULT_LEVEL,
        maxShrinkPercent: options.maxShrinkPercent ?? DEFAULT_MAX_SHRINK_PERCENT,
      },
      estimate.totalMs,
      remainingMs,
    );
  }
  if (remainingMs !== undefined) assertFitsInTime(estimate, remainingMs, scan.root);

  // The store's full-object CRC64NVME of the archive (S3), recorded so verify needs no download.
  let uploaded: { crc64nvme?: string } | undefined;
  const archive = await writeArchive({
    root: scan.root,
    entries: toPack,
    gzip: options.gzip,
    signal: options.signal,
    readAheadFiles: ioConcurrency,
    sink: async (body) =>
      (uploaded = await store.upload(keys.archive, body, {
        tier: 'archive',
        maxBytes,
        signal: options.signal,
      })),
    onProgress: options.onProgress
      ? (p) =>
          options.onProgress?.({ ...p, totalFiles: plan.toArchive.length, totalBytes: changedBytesPlanned })
      : undefined,
  });
  // Trust the store, not our counter: the object must be exactly the bytes we produced.
  const stored = await store.head(keys.archive);
  if (!stored || stored.size !== archive.bytes) {
    throw new ArchiveVerificationError(
      `archive ${keys.archive} in ${store.url} is ${stored ? `${stored.size} bytes` : 'missing'} after upload; ${archive.bytes} bytes were written. The backup was not committed; run it again.`,
    );
  }

  const skipped: SkippedPath[] = [...scan.skipped];
  const fileEntries = new Map<string, FileEntry>(plan.unchanged);
  const baseFiles = new Map<string, FileEntry>();
  for (const e of decision.baseManifest?.entries ?? []) if (e.type === 'file') baseFiles.set(e.path, e);
  for (const s of archive.skipped) {
    // Keep the last good version of a file that changed under us, so the restore point still has it.
    const previous = baseFiles.get(s.path);
    if (previous) fileEntries.set(s.path, previous);
    skipped.push({ path: s.path, reason: previous ? `${s.reason}; previous version kept` : s.reason });
  }
  for (const f of archive.files) fileEntries.set(f.path, { ...f, type: 'file', archive: keys.archive });
  // Folders and links: where an identical tar entry sits (the base's when unchanged, else ours).
  const baseOthers = new Map<string, ManifestEntry>();
  for (const e of decision.baseManifest?.entries ?? []) if (e.type !== 'file') baseOthers.set(e.path, e);
  const ownRanges = new Map<string, ByteRange | undefined>();
  toPack.forEach((e, i) => {
    if (e.type !== 'file') ownRanges.set(e.path, archive.entryRanges[i]);
  });
  const own = (p: string) => ({ archive: keys.archive, range: ownRanges.get(p) });
  const entries: ManifestEntry[] = [];
  for (const e of scan.entries) {
    if (e.type === 'dir') {
      const dir: DirEntry = { path: e.path, type: 'dir', mode: e.mode, mtimeMs: e.mtimeMs };
      entries.push(locateFolderOrLink(dir, baseOthers.get(e.path), own(e.path)));
    } else if (e.type === 'symlink') {
      const link: SymlinkEntry = { path: e.path, type: 'symlink', target: e.target, mtimeMs: e.mtimeMs };
      entries.push(locateFolderOrLink(link, baseOthers.get(e.path), own(e.path)));
    } else {
      const f = fileEntries.get(e.path);
      if (f) entries.push(f);
    }
  }
  return commitSingleArchive(deps, options, {
    backupId,
    decision,
    baseBackupId: decision.base?.backupId ?? null,
    startedAt,
    committed,
    scan,
    entries,
    skipped,
    archive: {
      key: keys.archive,
      bytes: archive.bytes,
      sha256: archive.sha256,
      ...(uploaded?.crc64nvme ? { crc64nvme: uploaded.crc64nvme } : {}),
    },
    changed: { files: archive.files.length, bytes: archive.files.reduce((sum, f) => sum + f.size, 0) },
    deleted: plan.deleted.length,
    gzip: archive.gzip,
    syntheticSkipped,
  });
}

/** What {@link commitSingleArchive} writes: a backup of one archive (normal or synthetic). */
interface SingleArchiveCommit {
  readonly backupId: string;
  readonly decision: TypeDecision;
  readonly baseBackupId: string | null;
  readonly startedAt: Date;
  readonly committed: readonly CatalogEntry[];
  readonly scan: Pick<ScanResult, 'root' | 'rootMeta'>;
  /** Manifest entries in path order. */
  readonly entries: ManifestEntry[];
  readonly skipped: SkippedPath[];
  readonly archive: ArchiveRecord;
  readonly changed: { readonly files: number; readonly bytes: number };
  readonly deleted: number;
  readonly gzip: ParallelGzipStats;
  readonly synthetic?: SyntheticReport;
  readonly syntheticSkipped?: string;
}

/**
 * The commit of a one-archive backup: metadata, then the manifest (from here on the backup exists).
 * The archive is already stored and checked.
 */
async function commitSingleArchive(
  deps: BackupDeps,
  options: BackupOptions,
  c: SingleArchiveCommit,
): Promise<BackupSucceeded> {
  const { store, clock, logger } = deps;
  const { backupId, decision, entries, archive } = c;
  const keys = keysFor(decision.type, backupId);
  const skipped = [...c.skipped].sort((a, b) => comparePaths(a.path, b.path));
  const totals = totalsOf(entries);
  const warnings = await shrinkWarnings(
    store,
    c.committed.at(-1),
    totals,
    options.maxShrinkPercent ?? DEFAULT_MAX_SHRINK_PERCENT,
  );
  for (const w of warnings) logger.warn(w.message, { code: w.code });
  const createdAt = c.startedAt.toISOString();
  const manifest: Manifest = {
    header: {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      backupId,
      type: decision.type,
      createdAt,
      baseBackupId: c.baseBackupId,
      source: { path: c.scan.root, host: hostname() },
      root: c.scan.rootMeta,
      totals,
    },
    entries,
  };
  const finishedAt = clock.now();
  const durationMs = finishedAt.getTime() - c.startedAt.getTime();
  const tarBytes = c.gzip.inputBytes;
  const gzipLevel = options.gzip?.level ?? DEFAULT_LEVEL;
  const metadata: BackupMetadata = {
    backupId,
    type: decision.type,
    baseBackupId: c.baseBackupId,
    createdAt,
    finishedAt: finishedAt.toISOString(),
    archive,
    totals,
    changed: c.changed,
    deleted: c.deleted,
    skipped,
    compression: {
      ratio: tarBytes > 0 ? Number((c.gzip.outputBytes / tarBytes).toFixed(4)) : 1,
      level: gzipLevel,
      storedMembers: c.gzip.storedMembers,
    },
    durationMs,
    source: { path: c.scan.root, host: hostname() },
    toolVersion: TOOL_VERSION,
    ...(c.synthetic ? { synthetic: c.synthetic } : {}),
    ...(c.syntheticSkipped ? { syntheticSkipped: c.syntheticSkipped } : {}),
  };
  options.signal?.throwIfAborted();
  await store.put(keys.metadata, `${JSON.stringify(metadata, null, 2)}\n`, {
    contentType: 'application/json',
  });
  // The commit: from here on the backup exists.
  await store.put(keys.manifest, await encodeManifest(manifest), { contentType: 'application/gzip' });
  logger.info('backup committed', {
    backupId,
    archiveKey: archive.key,
    archiveBytes: archive.bytes,
    files: totals.files,
    changedFiles: c.changed.files,
    skipped: skipped.length,
    durationMs,
    // On Lambda the worker count follows the memory setting's vCPUs: visible here per run.
    gzipWorkers: c.gzip.workers,
    gzipLevel,
    storedMembers: c.gzip.storedMembers,
    members: c.gzip.members,
    ...(c.synthetic ? { synthetic: c.synthetic } : {}),
    ...(c.syntheticSkipped ? { syntheticSkipped: c.syntheticSkipped } : {}),
  });
  return {
    status: 'SUCCEEDED',
    backupId,
    type: decision.type,
    reason: decision.reason,
    baseBackupId: c.baseBackupId,
    archiveKey: archive.key,
    manifestKey: keys.manifest,
    archiveBytes: archive.bytes,
    archiveSha256: archive.sha256,
    files: totals.files,
    bytes: totals.bytes,
    changedFiles: c.changed.files,
    changedBytes: c.changed.bytes,
    deletedFiles: c.deleted,
    skipped,
    warnings,
    durationMs,
    ...(c.synthetic ? { synthetic: c.synthetic } : {}),
    ...(c.syntheticSkipped ? { syntheticSkipped: c.syntheticSkipped } : {}),
  };
}

/**
 * Tries to build this full synthetically (synthetic/synthetic-full.ts). Never throws for a reason to
 * fall back: returns it, and whether objects were left under the id (a normal full then takes a new
 * id). An abort (deadline, Ctrl-C) is rethrown: nothing else should start then.
 */
async function trySyntheticFull(
  deps: BackupDeps,
  options: BackupOptions,
  run: {
    scan: ScanResult;
    committed: readonly CatalogEntry[];
    backupId: string;
    archiveKey: string;
    ioConcurrency: number;
    scanElapsedMs: number;
  },
): Promise<{ built: SyntheticBuilt; deleted: number } | { reason: string; leftObjects: boolean }> {
  const { store, logger } = deps;
  const base = await syntheticBaseFor({
    store,
    committed: run.committed,
    requestedType: options.type ?? 'auto',
    settings: { synthetic: options.synthetic, normalFullEvery: options.normalFullEvery },
    rehashAll: options.rehashAll,
  });
  if ('reason' in base) {
    logger.info('normal full', { reason: base.reason });
    return { reason: base.reason, leftObjects: false };
  }
  const present = new Set<string>();
  for (const e of run.scan.entries) if (e.type === 'file') present.add(e.path);
  let deleted = 0;
  for (const e of base.baseManifest.entries) if (e.type === 'file' && !present.has(e.path)) deleted += 1;
  const remainingMs = options.remainingMs?.();
  if (remainingMs !== undefined) {
    // The files read and compressed as today, plus the short runs fetched through this function;
    // long runs are copied inside S3 (not counted).
    let work: ReturnType<typeof estimateSyntheticWork>;
    try {
      work = estimateSyntheticWork(run.scan.entries, base.baseManifest);
    } catch (error) {
      const reason = error instanceof SyntheticFallbackError ? error.reason : errorMessage(error);
      logger.info('normal full', { reason });
      return { reason, leftObjects: false };
    }
    const estimate = estimateBackup(
      { files: work.files.length, bytes: work.bytesToRead },
      { entries: run.scan.entries.length, elapsedMs: run.scanElapsedMs },
      options.timeModel,
    );
    const fetchMs = (work.bytesToFetch / FETCH_BYTES_PER_SECOND) * 1000;
    if (estimate.totalMs + fetchMs > remainingMs) {
      const reason = `a synthetic full would need ~${Math.round((estimate.totalMs + fetchMs) / 1000)} s (${work.files.length} files to read; ${work.bytesToFetch} bytes to fetch and upload itself: runs too short for S3 to copy, and the fresh entries), ${Math.round(remainingMs / 1000)} s are left`;
      logger.info('normal full', { reason });
      return { reason, leftObjects: false };
    }
  }
  try {
    const built = await buildSyntheticFull({
      store,
      logger,
      backupId: run.backupId,
      archiveKey: run.archiveKey,
      root: run.scan.root,
      entries: run.scan.entries,
      base,
      gzip: options.gzip,
      readAheadFiles: run.ioConcurrency,
      signal: options.signal,
      onProgress: options.onProgress
        ? (p) => options.onProgress?.({ ...p, totalFiles: p.files, totalBytes: p.bytes })
        : undefined,
    });
    await store.removePrefix?.(stagingPrefix(run.backupId)).catch(() => undefined);
    return { built, deleted };
  } catch (error) {
    options.signal?.throwIfAborted();
    const why = error instanceof SyntheticFallbackError ? error.reason : errorMessage(error);
    const reason = `synthetic full on ${base.base.backupId} failed, took a normal full instead: ${why}`;
    logger.warn(reason, { code: 'SYNTHETIC_FALLBACK' });
    await store.removePrefix?.(stagingPrefix(run.backupId)).catch(() => undefined);
    return { reason, leftObjects: true };
  }
}

/** Scanned entries held at most before a run with a hand-off is planned as shards (~400 B each). */
export const DEFAULT_MAX_IN_MEMORY_ENTRIES = 1_000_000;

/** The entries read so far, released as they are taken, then the rest of the walk. */
async function* concatEntries(
  head: ScannedEntry[],
  rest: AsyncIterator<ScannedEntry>,
): AsyncGenerator<ScannedEntry> {
  for (let i = 0; i < head.length; i++) {
    yield head[i];
    (head as (ScannedEntry | undefined)[])[i] = undefined;
  }
  head.length = 0;
  for (let next = await rest.next(); !next.done; next = await rest.next()) yield next.value;
}

/**
 * A tree with more entries than the hand-off's cap: planned as shards straight from the streaming
 * scan (the chain checked and the base manifest joined as streams), lock handed over, shards started.
 */
async function handOffLargeTree(
  deps: BackupDeps,
  options: BackupOptions,
  handOff: ShardHandOff,
  lock: LockHandle,
  held: { handedOver: boolean },
  startedAt: Date,
  cap: number,
  scan: Parameters<ShardHandOff['planFromScan']>[0]['scan'],
): Promise<BackupStarted> {
  if (!lock.handOver) throw new BackupStateError(`the lock of ${deps.store.url} cannot be handed over`);
  const token = await lock.handOver(handOff.lockTtlMs);
  const plan = await handOff.planFromScan({
    scan,
    startedAt,
    lock: { name: BACKUP_LOCK, token },
    reason: `sharded: the tree has more than ${cap} entries`,
    options,
  });
  return startHandedOff(deps, handOff, held, plan, 0, 0);
}

/**
 * Plans the sharded run, passes the lock on (long TTL, released by the commit or cleanup step) and
 * starts the shards. If they cannot be started, the plan is undone and the lock released here.
 */
async function handOffToShards(
  deps: BackupDeps,
  handOff: ShardHandOff,
  lock: LockHandle,
  held: { handedOver: boolean },
  inputs: Omit<PlanInputs, 'lock'>,
  estimatedMs: number,
  remainingMs: number,
): Promise<BackupStarted> {
  if (!lock.handOver) throw new BackupStateError(`the lock of ${deps.store.url} cannot be handed over`);
  const token = await lock.handOver(handOff.lockTtlMs);
  const plan = await handOff.plan({ ...inputs, lock: { name: BACKUP_LOCK, token } });
  return startHandedOff(deps, handOff, held, plan, estimatedMs, remainingMs);
}

/** Starts a planned run elsewhere; if it cannot be started, undoes the plan (FAILED, lock released). */
async function startHandedOff(
  deps: BackupDeps,
  handOff: ShardHandOff,
  held: { handedOver: boolean },
  plan: ShardedPlan,
  estimatedMs: number,
  remainingMs: number,
): Promise<BackupStarted> {
  let started: { executionArn?: string };
  try {
    started = await handOff.start(plan);
  } catch (error) {
    const message = `the sharded run of ${plan.backupId} (${plan.shards} shards) could not be started: ${errorMessage(error)}`;
    await handOff.abort(plan.planKey, { message }).catch(() => undefined);
    throw new BackupStateError(message, { cause: error });
  }
  held.handedOver = true;
  deps.logger.info('backup handed off to shards', {
    backupId: plan.backupId,
    shards: plan.shards,
    planKey: plan.planKey,
    executionArn: started.executionArn,
    estimatedMs: Math.round(estimatedMs),
    remainingMs: Math.round(remainingMs),
  });
  return {
    status: 'STARTED',
    backupId: plan.backupId,
    type: plan.type,
    reason: plan.reason,
    shards: plan.shards,
    planKey: plan.planKey,
    ...(started.executionArn ? { executionArn: started.executionArn } : {}),
    estimatedMs,
    remainingMs,
  };
}

/**
 * A warning when the tree shrank by more than `maxPercent` (files or bytes) against the previous
 * committed backup, per its metadata. The backup still commits; the previous one keeps the files.
 */
export async function shrinkWarnings(
  store: ObjectStore,
  previous: CatalogEntry | undefined,
  now: { files: number; bytes: number },
  maxPercent: number,
): Promise<BackupWarning[]> {
  if (!previous) return [];
  const before = (await readMetadata(store, previous).catch(() => undefined))?.totals;
  if (!before) return [];
  const drop = (was: number, is: number) => (was > 0 ? ((was - is) / was) * 100 : 0);
  const percent = Math.max(drop(before.files, now.files), drop(before.bytes, now.bytes));
  if (!(percent > maxPercent)) return [];
  return [
    {
      code: 'SOURCE_SHRANK',
      message: `the source shrank by ${percent.toFixed(1)}% since ${previous.backupId} (${now.files} files, ${now.bytes} bytes now; ${before.files} files, ${before.bytes} bytes then), more than the ${maxPercent}% allowed (--max-shrink-percent). A wiped or unmounted media folder looks like this: check the folder; ${previous.backupId} still holds the files.`,
    },
  ];
}

/**
 * Picks full or incremental and loads the base manifest. An incremental whose chain cannot be read
 * (manifest unreadable) or is damaged (an archive it needs missing or not the size its metadata
 * recorded, or a backup of it found damaged by verify) becomes a full: a backup must not depend on
 * bytes that are gone or wrong.
 */
export async function resolveChain(
  store: ObjectStore,
  logger: Logger,
  options: BackupOptions,
  committed: readonly CatalogEntry[],
  now: Date,
): Promise<TypeDecision & { baseManifest?: Manifest }> {
  const decision = chooseBackupType(options.type ?? 'auto', committed, now, options.fullIntervalDays ?? 7);
  if (decision.type === 'full' || !decision.base) return decision;
  let baseManifest: Manifest;
  let problems: string[];
  try {
    baseManifest = await readManifest(store, decision.base);
    problems = await chainProblems(
      decision.base,
      baseManifest,
      committed,
      {
        size: async (key) => (await store.head(key))?.size,
        metadata: (entry) => readMetadata(store, entry),
      },
      await readVerifiedDamage(store),
    );
  } catch (error) {
    const reason = `chain of ${decision.base.backupId} cannot be read (${errorMessage(error)}); taking a full backup`;
    logger.warn(reason);
    return { type: 'full', reason };
  }
  if (problems.length > 0) {
    const state = problems.some((p) => p.endsWith(' is missing')) ? 'cannot be read' : 'is damaged';
    const reason = `chain of ${decision.base.backupId} ${state} (${problems.join('; ')}); taking a full backup`;
    logger.warn(reason);
    return { type: 'full', reason };
  }
  return { ...decision, baseManifest };
}

/**
 * Throws {@link UsageError} when the source and a folder store are the same folder or one lies
 * inside the other (compared by real path). A missing source is left to the source check.
 */
export async function assertSourceAndStoreApart(source: string, store: ObjectStore): Promise<void> {
  if (!store.localPath) return;
  let sourceReal: string;
  try {
    sourceReal = await realpath(source);
  } catch {
    return;
  }
  const storeReal = await realpathOfNearest(store.localPath);
  const inside = (inner: string, outer: string) =>
    inner.startsWith(outer.endsWith(path.sep) ? outer : `${outer}${path.sep}`);
  const how =
    sourceReal === storeReal
      ? 'are the same folder'
      : inside(storeReal, sourceReal)
        ? 'overlap: the store lies inside the source'
        : inside(sourceReal, storeReal)
          ? 'overlap: the source lies inside the store'
          : undefined;
  if (how) {
    throw new UsageError(
      `source ${source} (${sourceReal}) and store ${store.url} (${storeReal}) ${how}. Each archive would contain the store, and a restore would write the store's full/, status/ and locks/ into the media tree. Put the store outside the source folder.`,
    );
  }
}

/** The real path of `p`, or of its nearest existing ancestor joined with the rest (a new store). */
async function realpathOfNearest(p: string): Promise<string> {
  const absolute = path.resolve(p);
  let existing = absolute;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(await realpath(existing), ...rest.reverse());
    } catch (error) {
      const parent = path.dirname(existing);
      if (parent === existing || (error as NodeJS.ErrnoException).code !== 'ENOENT') return absolute;
      rest.push(path.basename(existing));
      existing = parent;
    }
  }
}

/**
 * Removes what killed runs left in the store (partial files, multipart uploads) once older than the
 * lock TTL: we hold the lock, so no live run is writing them. Ages compare with the store's own
 * timestamps, hence real time, not the injected clock. Best effort: never fails the backup.
 */
export async function removeStoreLeftovers(
  store: ObjectStore,
  olderThanMs: number,
  logger: Logger,
): Promise<void> {
  try {
    const removed = (await store.removeLeftovers?.({ olderThanMs })) ?? [];
    if (removed.length > 0) {
      logger.info('removed leftovers of killed runs', {
        count: removed.length,
        bytes: removed.reduce((sum, l) => sum + l.bytes, 0),
        keys: removed.map((l) => l.key),
      });
    }
  } catch (error) {
    logger.warn('could not remove leftovers of killed runs', { error: errorMessage(error) });
  }
}

/** Ids have one-second resolution and must grow: wait for the clock rather than reuse an id. */
export async function nextBackupId(
  store: ObjectStore,
  clock: Clock,
  committed: readonly CatalogEntry[],
): Promise<string> {
  const latest = committed.at(-1)?.backupId ?? '';
  for (let attempt = 0; attempt < 40; attempt++) {
    const id = backupIdFor(clock.now());
    // Any object of that id: an archive, or the parts, metadata and work objects of a sharded run.
    const taken =
      id <= latest ||
      (await store.head(keysFor('full', id).archive)) ||
      (await store.head(keysFor('incremental', id).archive)) ||
      (await store.list(`full/${id}.`)).length > 0 ||
      (await store.list(`incremental/${id}.`)).length > 0 ||
      (await store.list(`staging/${id}/`)).length > 0;
    if (!taken) return id;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new BackupStateError(
    `cannot allocate a new backup id after ${latest || 'the existing objects'}: is the clock behind the latest backup?`,
  );
}

export async function writeStatus(store: ObjectStore, status: Record<string, unknown>): Promise<void> {
  await store.put(STATUS_KEY, `${JSON.stringify(status, null, 2)}\n`, { contentType: 'application/json' });
}
