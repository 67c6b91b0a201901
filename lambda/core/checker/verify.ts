import { createHash } from 'node:crypto';
import { type Readable, Transform } from 'node:stream';
import type { ObjectStore } from '../../store/types.js';
import { Crc64NvmeHasher, crc64nvmeToBase64 } from '../archiver/crc64nvme.js';
import type { Clock, Logger } from '../deps.js';
import { errorMessage, ManifestError } from '../errors.js';
import {
  type ArchiveRecord,
  archiveKeysOf,
  archiveRecordOf,
  archivesReferenced,
  type BackupMetadata,
  backupOfArchiveKey,
  type CatalogEntry,
  expectedArchiveKeys,
  isShardedEntry,
  listCommittedBackups,
  parsePartKey,
  readManifest,
  readMetadata,
} from '../repository/catalog.js';
import { keysFor, VERIFY_STATUS_KEY } from '../repository/layout.js';
import type { BackupType, FileEntry, Manifest } from '../repository/manifest.js';
import { openManifestStream } from '../repository/manifest-stream.js';
import { readTarGz } from '../restorer/archive-reader.js';
import { resolveRestorePoint } from '../restorer/resolve.js';
import { type RestoreOptions, runRestore } from '../restorer/restore.js';

export interface VerifyOptions {
  /** `latest` (default), a backup id or archive name; ignored with `all`. */
  readonly backup?: string;
  /** Every committed backup. */
  readonly all?: boolean;
  /** Also download, decompress and re-hash every file against the manifest (a restore drill). */
  readonly deep?: boolean;
  /** Deep only: the dry-run restore's progress, per backup (the CLI's progress bar). */
  readonly onProgress?: RestoreOptions['onProgress'];
  /**
   * Record the outcome in `status/last-verify.json` (best effort: a read-only store only logs a
   * warning). Checks that merely look (health) pass `false`. @default true
   */
  readonly record?: boolean;
  /**
   * Rotating deep verify (the scheduled drill; with `deep`, not `all`): the restore drill of the
   * latest backup (which reads its chain's archives), then archive checks (one download each: the
   * archive's sha256 and every file it holds against its backup's manifest) of the archives no run
   * deep-verified yet, oldest first, then of those deep-verified longest ago, up to `deepSlice`.
   * Each run thus covers everything written since the last one, and older archives in turn.
   * @default false
   */
  readonly rotate?: boolean;
  /** Rotating only: archives checked beyond the latest backup's drill. @default 8 */
  readonly deepSlice?: number;
  /**
   * Archive checks run at once: the parts of a sharded backup (quick: heads and hashes; deep: one
   * download each) and a rotating verify's slice. Each deep check streams one archive, so memory does
   * not grow with it; the store's throughput bounds what helps. @default 1
   */
  readonly parallel?: number;
}

/** Rotating verify's default slice: a week of daily backups plus one older archive re-checked. */
export const DEFAULT_DEEP_SLICE = 8;

export interface BackupVerification {
  readonly backupId: string;
  readonly type: 'full' | 'incremental';
  readonly ok: boolean;
  /** One sentence per problem, naming the object. Empty when ok. */
  readonly problems: readonly string[];
  readonly archivesChecked: number;
  /** Files re-hashed against the manifest (deep only). */
  readonly filesVerified: number | null;
  /**
   * The check itself failed (the store could not be read: a timeout, a reset, access denied), so
   * nothing is known about the backup's content; `problems` says why. False when it was checked.
   */
  readonly inconclusive: boolean;
  /**
   * Archives deep-verified by this check: downloaded whole with the recorded sha256, and every file
   * read from them matched a manifest. Empty for a quick check.
   */
  readonly archivesDeepVerified: readonly string[];
  /**
   * How the archive was checked: `checksum` (S3's stored CRC64NVME, no download), `sha256` (downloaded
   * and hashed), `drill` (deep: restore drill), `archive` (deep: archive checks, one download each,
   * of a rotating verify's slice or of every archive a sharded backup needs).
   */
  readonly method?: 'checksum' | 'sha256' | 'drill' | 'archive';
}

/** Body of `status/last-verify.json` ({@link VERIFY_STATUS_KEY}). */
export interface VerifyRecord {
  readonly status: 'SUCCEEDED' | 'FAILED';
  /** When the latest verify run finished. */
  readonly checkedAt: string;
  /** Whether the latest run was deep. */
  readonly deep: boolean;
  /**
   * One entry per backup ever checked that still exists: the latest run's entries, plus earlier
   * entries for backups it did not check (so a damaged chain stays known until checked again).
   */
  readonly backups: readonly VerifyRecordEntry[];
  /** The same entries as `{ backupId, ok, error? }`. */
  readonly results: readonly { readonly backupId: string; readonly ok: boolean; readonly error?: string }[];
  /**
   * Archive key -> when a verify last deep-verified it (whole download, sha256 and files checked),
   * merged over runs, for archives that still exist. An archive missing here was never deep-verified.
   */
  readonly deepVerified?: Readonly<Record<string, string>>;
  /** What the latest run covered. */
  readonly covered?: {
    readonly backups: readonly string[];
    readonly archivesDeepVerified: readonly string[];
    readonly rotating: boolean;
  };
}

export interface VerifyRecordEntry {
  readonly backupId: string;
  readonly ok: boolean;
  readonly problems: readonly string[];
  /** The problems in one line, when not ok. */
  readonly error?: string;
  /** Not ok because the store could not be read, not because the content is damaged. */
  readonly inconclusive?: boolean;
  readonly deep: boolean;
  readonly checkedAt: string;
}

export interface VerifyResult {
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly store: string;
  readonly deep: boolean;
  readonly backups: readonly BackupVerification[];
  /** Whether `status/last-verify.json` was written. */
  readonly recorded: boolean;
}

/**
 * Checks that backups can be restored. Quick: the manifest parses, the metadata is there, every
 * archive of the backup (each part of a sharded one) exists with the recorded size and checksum
 * (S3's CRC64NVME, else a whole download hashed with sha256), and every archive the manifest
 * references exists. Deep: a dry-run restore; for a backup whose chain holds parts (sharded), an
 * archive check per archive it needs, `parallel` at once (the units a verify state machine fans out:
 * {@link planArchiveChecks}, {@link checkArchiveItem}, {@link recordArchiveChecks}).
 */
export async function runVerify(
  deps: { store: ObjectStore; clock: Clock; logger: Logger },
  options: VerifyOptions,
): Promise<VerifyResult> {
  const targets = options.all
    ? await listCommittedBackups(deps.store)
    : [await resolveRestorePoint(deps.store, { backup: options.backup })];
  const deep = options.deep ?? false;
  const rotating = deep && !options.all && (options.rotate ?? false);
  const parallel = parallelOf(options.parallel);
  const reads = new CatalogReads(deps.store);
  const backups: BackupVerification[] = [];
  // One backup's failure (even a network error) never stops the others from being checked.
  for (const entry of targets) {
    try {
      backups.push(await verifyOne(deps, entry, deep, parallel, reads, options.onProgress));
    } catch (error) {
      backups.push(uncheckable(entry, error));
    }
  }
  if (rotating) {
    const covered = new Set(backups.flatMap((b) => b.archivesDeepVerified));
    const earlier = parseVerifyRecord(await deps.store.get(VERIFY_STATUS_KEY).catch(() => undefined));
    // The checked backups' own archives were all read just now (a failed part too): not again.
    const checked = new Set(targets.map((t) => t.backupId));
    const slice = rotationSlice(
      archiveCandidates(await listCommittedBackups(deps.store)).filter((a) => !checked.has(a.backupId)),
      earlier?.deepVerified,
      covered,
      options.deepSlice ?? DEFAULT_DEEP_SLICE,
    );
    const results = await mapLimit(slice.map(itemOf), parallel, (item) =>
      checkArchiveItem(deps.store, item, { reads }),
    );
    backups.push(...verificationsOf(results));
  }
  const ok = backups.every((b) => b.ok);
  const recorded =
    options.record === false
      ? false
      : await recordOutcome(deps.store, deps.clock.now(), deps.logger, backups, deep, rotating);
  const result: VerifyResult = {
    status: ok ? 'SUCCEEDED' : 'FAILED',
    store: deps.store.url,
    deep,
    backups,
    recorded,
  };
  if (ok) deps.logger.info('verify passed', { backups: backups.length, deep: result.deep });
  else deps.logger.error('verify found problems', { problems: backups.flatMap((b) => b.problems) });
  return result;
}

function uncheckable(entry: { backupId: string; type: BackupType }, error: unknown): BackupVerification {
  return {
    backupId: entry.backupId,
    type: entry.type,
    ok: false,
    problems: [`backup ${entry.backupId}: could not be checked: ${errorMessage(error)}`],
    archivesChecked: 0,
    filesVerified: null,
    inconclusive: isStoreFailure(error),
    archivesDeepVerified: [],
  };
}

/**
 * Writes `status/last-verify.json`, merged with the earlier record's entries for backups this run
 * did not check and that still exist. Best effort: false (and a warning) when the store refuses.
 */
async function recordOutcome(
  store: ObjectStore,
  now: Date,
  logger: Pick<Logger, 'warn'> | undefined,
  backups: readonly BackupVerification[],
  deep: boolean,
  rotating: boolean,
): Promise<boolean> {
  try {
    const checkedAt = now.toISOString();
    const checked = new Set(backups.map((b) => b.backupId));
    const committed = await listCommittedBackups(store);
    const existing = new Set(committed.map((e) => e.backupId));
    const existingArchives = new Set(committed.flatMap((e) => archiveKeysOf(e)));
    const earlierRecord = parseVerifyRecord(await store.get(VERIFY_STATUS_KEY));
    const earlier = earlierRecord?.backups ?? [];
    const deepVerified: Record<string, string> = {};
    for (const [key, at] of Object.entries(earlierRecord?.deepVerified ?? {})) {
      if (existingArchives.has(key)) deepVerified[key] = at;
    }
    const archivesDeepVerified = [...new Set(backups.flatMap((b) => b.archivesDeepVerified))].sort();
    for (const key of archivesDeepVerified) deepVerified[key] = checkedAt;
    const entries: VerifyRecordEntry[] = [
      ...earlier.filter((e) => !checked.has(e.backupId) && existing.has(e.backupId)),
      ...backups.map((b) => ({
        backupId: b.backupId,
        ok: b.ok,
        problems: b.problems,
        ...(b.ok ? {} : { error: b.problems.join('; ') }),
        ...(b.inconclusive ? { inconclusive: true } : {}),
        deep,
        checkedAt,
      })),
    ].sort((a, b) => (a.backupId < b.backupId ? -1 : a.backupId > b.backupId ? 1 : 0));
    const record: VerifyRecord = {
      status: entries.every((e) => e.ok) ? 'SUCCEEDED' : 'FAILED',
      checkedAt,
      deep,
      backups: entries,
      results: entries.map((e) => ({
        backupId: e.backupId,
        ok: e.ok,
        ...(e.error ? { error: e.error } : {}),
      })),
      deepVerified: Object.fromEntries(Object.entries(deepVerified).sort(([a], [b]) => (a < b ? -1 : 1))),
      covered: { backups: [...checked].sort(), archivesDeepVerified, rotating },
    };
    await store.put(VERIFY_STATUS_KEY, JSON.stringify(record, null, 2), {
      contentType: 'application/json',
    });
    return true;
  } catch (error) {
    logger?.warn('could not record the verify outcome in the store', {
      key: VERIFY_STATUS_KEY,
      error: errorMessage(error),
    });
    return false;
  }
}

/** The recorded verify outcome, or undefined when there is none or it does not parse. */
export function parseVerifyRecord(raw: Buffer | undefined): VerifyRecord | undefined {
  if (!raw) return undefined;
  try {
    const value = JSON.parse(raw.toString('utf8')) as Partial<VerifyRecord>;
    if (!Array.isArray(value.backups)) return undefined;
    return value as VerifyRecord;
  } catch {
    return undefined;
  }
}

/** Whether a backup's deep check goes archive by archive: it, or an archive it needs, is sharded. */
function needsArchiveChecks(
  entry: CatalogEntry,
  metadata: BackupMetadata | undefined,
  referenced: readonly string[],
) {
  return (
    (metadata?.parts?.length ?? 0) > 0 ||
    isShardedEntry(entry) ||
    referenced.some((key) => parsePartKey(key) !== undefined)
  );
}

async function verifyOne(
  deps: { store: ObjectStore; clock: Clock; logger: Logger },
  entry: CatalogEntry,
  deep: boolean,
  parallel: number,
  reads: CatalogReads,
  onProgress?: RestoreOptions['onProgress'],
): Promise<BackupVerification> {
  const { store } = deps;
  const problems: string[] = [];
  const label = `backup ${entry.backupId}`;
  let archivesChecked = 0;
  let filesVerified: number | null = null;
  const archivesDeepVerified: string[] = [];
  let method: BackupVerification['method'];
  const done = (inconclusive = false): BackupVerification => ({
    backupId: entry.backupId,
    type: entry.type,
    ok: problems.length === 0,
    problems,
    archivesChecked,
    filesVerified,
    inconclusive,
    // Per archive for archive checks (each was downloaded whole and matched on its own); the drill
    // says nothing per archive when it failed.
    archivesDeepVerified: problems.length === 0 || method === 'archive' ? archivesDeepVerified.sort() : [],
    ...(method ? { method } : {}),
  });

  let manifest: Manifest;
  let referenced: string[] = [];
  try {
    manifest = await reads.manifest(entry);
    referenced = archivesReferenced(manifest);
  } catch (error) {
    if (isStoreFailure(error)) throw error;
    problems.push(`${label}: ${errorMessage(error)}`);
    return done();
  }
  const metadata = await reads.metadata(entry);
  if (!metadata) problems.push(`${label}: metadata ${entry.metadataKey} is missing or unreadable`);
  const byArchive = needsArchiveChecks(entry, metadata, referenced);
  const own = expectedArchiveKeys(entry, metadata);

  // Quick: S3's stored full-object CRC64NVME against the metadata's (one HeadObject, no download)
  // when both exist; else download and hash. Deep: the drill (or the archive checks) reads each
  // archive once and hashes it on the way, so it is not downloaded twice.
  const hashLater: string[] = [];
  const damagedOwn = new Set<string>();
  const quick = await mapLimit(own, parallel, async (key) => {
    const found: string[] = [];
    const record = metadata ? archiveRecordOf(metadata, key) : undefined;
    const checksum =
      !deep && record?.crc64nvme && store.headChecksum ? await store.headChecksum(key) : undefined;
    const stored = checksum ?? (await store.head(key));
    let how: BackupVerification['method'];
    let checked = 0;
    if (!stored) {
      // An incremental with no changes still has an archive; only a missing object is a problem.
      found.push(`${label}: archive ${key} is missing`);
    } else if (metadata && !record) {
      found.push(`${label}: metadata ${entry.metadataKey} records no archive ${key}`);
    } else if (record) {
      if (stored.size !== record.bytes) {
        found.push(`${label}: archive ${key} is ${stored.size} bytes; the metadata recorded ${record.bytes}`);
      } else if (checksum?.crc64nvme) {
        checked = 1;
        how = 'checksum';
        if (checksum.crc64nvme !== record.crc64nvme) {
          found.push(
            `${label}: archive ${key} has CRC64NVME ${checksum.crc64nvme} in the store; the metadata recorded ${record.crc64nvme} (the object changed or is corrupt)`,
          );
        }
      } else if (deep) {
        hashLater.push(key);
      } else {
        // No stored checksum (a folder store, an S3-compatible server, an older backup, or an object
        // replaced without one): download and hash.
        how = 'sha256';
        checked = 1;
        digestProblem(found, label, key, await digestObject(store, key, record), record);
      }
    }
    return { key, found, how, checked };
  });
  for (const q of quick) {
    problems.push(...q.found);
    archivesChecked += q.checked;
    if (q.how) method = q.how;
    if (q.found.length > 0) damagedOwn.add(q.key);
  }
  const ownSet = new Set(own);
  for (const key of referenced) {
    if (!ownSet.has(key) && !(await store.head(key))) {
      problems.push(`${label}: archive ${key}, which holds files of this backup, is missing (chain broken)`);
      damagedOwn.add(key);
    }
  }
  if (deep && byArchive) {
    // Archive by archive, `parallel` at once: every archive the backup needs in one download each,
    // against this backup's manifest; an archive already found missing or mis-sized is not read again.
    method = 'archive';
    const keys = [...new Set([...own, ...referenced])].filter((key) => !damagedOwn.has(key)).sort();
    // The progress bar counts the files re-hashed against the backup's totals, as the drill does.
    const progress = {
      bytes: 0,
      files: 0,
      totalBytes: manifest.header.totals.bytes,
      totalFiles: manifest.header.totals.files,
    };
    const onFile = onProgress
      ? (bytes: number) => {
          progress.bytes += bytes;
          progress.files += 1;
          onProgress({ ...progress });
        }
      : undefined;
    const results = await mapLimit(keys, parallel, (archiveKey) =>
      checkArchiveItem(store, { backupId: entry.backupId, type: entry.type, archiveKey }, { reads, onFile }),
    );
    filesVerified = 0;
    // Inconclusive only when every problem is a store read failure: damage found outweighs it.
    const inconclusive =
      problems.length === 0 &&
      results.some((r) => r.inconclusive) &&
      results.every((r) => r.ok || r.inconclusive);
    for (const r of results) {
      problems.push(...r.problems);
      if (r.sha256 !== null) archivesChecked += 1;
      filesVerified += r.files;
      if (r.ok) archivesDeepVerified.push(r.archiveKey);
    }
    return done(inconclusive);
  }
  if (deep && problems.length === 0) {
    method = 'drill';
    // An archive recorded without a sha256 (a synthetic full assembled in S3) is checked by CRC64NVME.
    const hashing = hashingReads(store, async (key) => {
      const owner = await reads.metadataOfArchive(key);
      return digestKindOf(owner ? archiveRecordOf(owner, key) : undefined);
    });
    try {
      const drill = await runRestore(
        { ...deps, store: hashing.store },
        { backup: entry.backupId, dryRun: true, onProgress },
      );
      filesVerified = drill.files;
    } catch (error) {
      if (isStoreFailure(error)) throw error;
      problems.push(`${label}: deep check failed: ${errorMessage(error)}`);
    }
    for (const key of hashLater) {
      const record = metadata ? archiveRecordOf(metadata, key) : undefined;
      if (!record) continue;
      // The drill's download of this archive, hashed on the way; hashed apart only when the drill
      // stopped before its end (or never opened it: a backup whose files are all elsewhere).
      const read = hashing.reads.get(key);
      archivesChecked += 1;
      digestProblem(
        problems,
        label,
        key,
        read?.complete ? read.digest : await digestObject(store, key, record),
        record,
      );
    }
    if (problems.length === 0) {
      // Every archive the drill read whole and whose sha256 matches its metadata is deep-verified.
      for (const [key, read] of hashing.reads) {
        if (!read.complete) continue;
        const ownerMetadata = await reads.metadataOfArchive(key);
        const record = ownerMetadata ? archiveRecordOf(ownerMetadata, key) : undefined;
        if (!record) continue;
        const matches =
          record.sha256 !== undefined
            ? record.sha256 === read.digest.sha256
            : record.crc64nvme !== undefined && record.crc64nvme === read.digest.crc64nvme;
        if (matches) archivesDeepVerified.push(key);
      }
    }
  }
  return done();
}

/** What an archive download is compared with: its sha256, or its CRC64NVME when the record has no sha256. */
interface ArchiveDigest {
  readonly sha256?: string;
  readonly crc64nvme?: string;
}

/**
 * Compares a downloaded archive's digest with its record: the sha256, or for an archive recorded
 * without one (a synthetic full assembled inside S3, whose bytes never passed through the writer)
 * the full-object CRC64NVME.
 */
function digestProblem(
  problems: string[],
  label: string,
  key: string,
  got: ArchiveDigest,
  record: ArchiveRecord,
): void {
  if (record.sha256 !== undefined) {
    if (got.sha256 !== record.sha256) {
      problems.push(
        `${label}: archive ${key} has sha256 ${got.sha256}; the metadata recorded ${record.sha256} (the object changed or is corrupt)`,
      );
    }
  } else if (record.crc64nvme === undefined) {
    problems.push(`${label}: the metadata of archive ${key} records neither a sha256 nor a CRC64NVME`);
  } else if (got.crc64nvme !== record.crc64nvme) {
    problems.push(
      `${label}: archive ${key} has CRC64NVME ${got.crc64nvme}; the metadata recorded ${record.crc64nvme} (the object changed or is corrupt)`,
    );
  }
}

/**
 * The store with every `getStream` hashed as it is read, so a restore drill verifies each archive's
 * sha256 in the same download. `complete` only when the reader consumed the stream to its end.
 */
function hashingReads(
  store: ObjectStore,
  kindOf: (key: string) => Promise<keyof ArchiveDigest>,
): {
  store: ObjectStore;
  reads: Map<string, { digest: ArchiveDigest; complete: boolean }>;
} {
  const reads = new Map<string, { digest: ArchiveDigest; complete: boolean }>();
  const wrapped: ObjectStore = Object.create(store);
  wrapped.getStream = async (key: string): Promise<Readable> => {
    const source = await store.getStream(key);
    const digest = archiveDigester(await kindOf(key));
    reads.set(key, { digest: {}, complete: false });
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        digest.update(chunk);
        callback(null, chunk);
      },
      flush(callback) {
        reads.set(key, { digest: digest.digest(), complete: true });
        callback();
      },
    });
    source.on('error', (error) => tap.destroy(error));
    // A reader that stops early must not leave the download open.
    tap.on('close', () => source.destroy());
    return source.pipe(tap);
  };
  return { store: wrapped, reads };
}

/** One archive of a committed backup: the unit of rotation and of archive checks. */
export interface ArchiveOfBackup {
  readonly backupId: string;
  readonly type: BackupType;
  readonly archiveKey: string;
}

/** Every archive of the committed backups (each part of a sharded one), in backup order. */
export function archiveCandidates(committed: readonly CatalogEntry[]): ArchiveOfBackup[] {
  return committed.flatMap((c) =>
    archiveKeysOf(c).map((archiveKey) => ({ backupId: c.backupId, type: c.type, archiveKey })),
  );
}

function itemOf(a: ArchiveOfBackup): ArchiveCheckItem {
  return { backupId: a.backupId, type: a.type, archiveKey: a.archiveKey };
}

/**
 * Rotating verify's archive checks: archives the latest drill did not cover, never deep-verified
 * first (oldest first: the nearest to expiry), then those deep-verified longest ago; `limit` of them.
 * Without a record of earlier runs (`deepVerified` undefined: none yet, or the verify role cannot
 * write one) nothing says what was checked before, so the newest come first: what was written since
 * the last run, rather than the same oldest archives every time. Candidates are archives (each part
 * of a sharded backup on its own: {@link archiveCandidates}) or backups by their `archiveKey`.
 */
export function rotationSlice<T extends { readonly archiveKey: string }>(
  candidatesIn: readonly T[],
  deepVerified: Readonly<Record<string, string>> | undefined,
  coveredNow: ReadonlySet<string>,
  limit: number,
): T[] {
  const candidates = candidatesIn.filter((c) => !coveredNow.has(c.archiveKey));
  if (deepVerified === undefined) return [...candidates].reverse().slice(0, Math.max(0, limit));
  const never = candidates.filter((c) => deepVerified[c.archiveKey] === undefined);
  const before = candidates
    .filter((c) => deepVerified[c.archiveKey] !== undefined)
    .sort((a, b) => Date.parse(deepVerified[a.archiveKey]) - Date.parse(deepVerified[b.archiveKey]));
  return [...never, ...before].slice(0, Math.max(0, limit));
}

/**
 * The oldest archive of a committed backup (each part of a sharded one counts) that no verify has
 * deep-verified (per the verify record), with its backup; undefined when every archive was. Health
 * reports it.
 */
export function oldestNeverDeepVerified(
  committed: readonly CatalogEntry[],
  record: VerifyRecord | undefined,
): ArchiveOfBackup | undefined {
  const deepVerified = record?.deepVerified ?? {};
  return archiveCandidates(committed).find((a) => deepVerified[a.archiveKey] === undefined);
}

// ---------------------------------------------------------------------------------------------
// Archive checks: the per-archive unit of a deep verify (a verify state machine's Map items).

/** One archive to deep-check against one backup's manifest (a Map item of the verify state machine). */
export interface ArchiveCheckItem {
  /** The backup whose manifest rows naming `archiveKey` are checked (and under which the outcome is recorded). */
  readonly backupId: string;
  readonly type: BackupType;
  /** The archive (or part) to download: the checked backup's own or one of its chain. */
  readonly archiveKey: string;
  /**
   * Set by the planner when the backup could not be planned (its manifest unreadable): the check
   * reports these without reading anything, so the outcome still names the backup.
   */
  readonly planProblems?: readonly string[];
  /** Set by the planner when the store could not be read while planning (nothing known about content). */
  readonly planInconclusive?: boolean;
}

/** What one archive check found. */
export interface ArchiveCheckResult {
  readonly backupId: string;
  readonly type: BackupType;
  readonly archiveKey: string;
  readonly ok: boolean;
  /** One sentence per problem, naming the archive. */
  readonly problems: readonly string[];
  /** Bytes downloaded (the archive's size when read to its end). */
  readonly bytes: number;
  /**
   * sha256 of the bytes read (`crc64nvme:<base64>` for an archive recorded without a sha256: a
   * synthetic full assembled in S3); null when the archive could not be read to its end.
   */
  readonly sha256: string | null;
  /** Files read from the archive and matched against the manifest. */
  readonly files: number;
  /** The store could not be read (timeout, access denied): nothing is known about the content. */
  readonly inconclusive: boolean;
}

export interface ArchiveCheckPlanOptions {
  /** `latest` (default), a backup id or archive name; ignored with `all`. */
  readonly backup?: string;
  /** Every committed backup. */
  readonly all?: boolean;
  /** Add a rotation slice of archives not checked for longest (see {@link VerifyOptions.rotate}). */
  readonly rotate?: boolean;
  /** @default 8 */
  readonly deepSlice?: number;
}

export interface ArchiveCheckPlan {
  /** One item per (backup, archive it needs), then the rotation slice (each archive against its own backup). */
  readonly items: ArchiveCheckItem[];
  readonly rotating: boolean;
}

/**
 * Plans a deep verify as independent archive checks (the verify state machine's Map items; the CLI
 * runs the same units with a concurrency limit). Each target backup yields one item per archive it
 * needs (its own archives or parts, and every archive its manifest references); with `rotate` the
 * archives not among them that were deep-verified longest ago (or never) follow, each against its
 * own backup. Reads manifests and metadata only.
 */
export async function planArchiveChecks(
  store: ObjectStore,
  options: ArchiveCheckPlanOptions = {},
): Promise<ArchiveCheckPlan> {
  const committed = await listCommittedBackups(store);
  const targets = options.all ? committed : [await resolveRestorePoint(store, { backup: options.backup })];
  const rotating = !options.all && (options.rotate ?? false);
  const items: ArchiveCheckItem[] = [];
  const reads = new CatalogReads(store);
  for (const entry of targets) {
    try {
      const manifest = await reads.manifest(entry);
      const metadata = await reads.metadata(entry);
      const keys = new Set([...expectedArchiveKeys(entry, metadata), ...archivesReferenced(manifest)]);
      for (const archiveKey of [...keys].sort()) {
        items.push({ backupId: entry.backupId, type: entry.type, archiveKey });
      }
    } catch (error) {
      items.push({
        backupId: entry.backupId,
        type: entry.type,
        archiveKey: entry.manifestKey,
        planProblems: [`backup ${entry.backupId}: ${errorMessage(error)}`],
        ...(isStoreFailure(error) ? { planInconclusive: true } : {}),
      });
    }
  }
  if (rotating) {
    const covered = new Set(items.map((i) => i.archiveKey));
    const earlier = parseVerifyRecord(await store.get(VERIFY_STATUS_KEY).catch(() => undefined));
    const slice = rotationSlice(
      archiveCandidates(committed),
      earlier?.deepVerified,
      covered,
      options.deepSlice ?? DEFAULT_DEEP_SLICE,
    );
    items.push(...slice.map(itemOf));
  }
  return { items, rotating };
}

/**
 * One archive, deep, in one download: its size and sha256 against the metadata of the backup that
 * holds it, and every file the item's backup's manifest says it holds read from it with the recorded
 * size and sha256. Never throws for content or store problems: the result says what was found
 * (`inconclusive` when the store could not be read).
 */
export async function checkArchiveItem(
  store: ObjectStore,
  item: ArchiveCheckItem,
  options: {
    /** Shared reads of one run (several items of one backup read its manifest once). */
    readonly reads?: CatalogReads;
    /** Called with each file's size once it was re-hashed against the manifest. */
    readonly onFile?: (bytes: number) => void;
  } = {},
): Promise<ArchiveCheckResult> {
  const reads = options.reads ?? new CatalogReads(store, { streamRows: true });
  const label = `backup ${item.backupId}`;
  const problems: string[] = [...(item.planProblems ?? [])];
  let bytes = 0;
  let files = 0;
  let sha256: string | null = null;
  const result = (inconclusive = false): ArchiveCheckResult => ({
    backupId: item.backupId,
    type: item.type,
    archiveKey: item.archiveKey,
    ok: problems.length === 0,
    problems,
    bytes,
    sha256,
    files,
    inconclusive,
  });
  if (item.planProblems) return result(item.planInconclusive ?? false);
  try {
    const entry = entryFor(item.backupId, item.type);
    const holder = backupOfArchiveKey(item.archiveKey);
    if (!holder) {
      problems.push(`${label}: ${JSON.stringify(item.archiveKey)} is not an archive key`);
      return result();
    }
    const expected = new Map<string, { size: number; sha256: string }>();
    for (const f of await reads.rowsIn(entry, item.archiveKey)) {
      expected.set(f.path, { size: f.size, sha256: f.sha256 });
    }
    const holderMetadata = await reads.metadata(entryFor(holder.backupId, holder.type));
    const record = holderMetadata ? archiveRecordOf(holderMetadata, item.archiveKey) : undefined;
    if (!holderMetadata) {
      problems.push(
        `${label}: metadata ${keysFor(holder.type, holder.backupId).metadata} is missing or unreadable, so archive ${item.archiveKey} cannot be checked against its recorded sha256`,
      );
    } else if (!record) {
      problems.push(
        `${label}: the metadata of backup ${holder.backupId} records no archive ${item.archiveKey}`,
      );
    }
    const archiveHash = archiveDigester(digestKindOf(record));
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        archiveHash.update(chunk);
        bytes += chunk.length;
        callback(null, chunk);
      },
    });
    let source: Readable;
    try {
      source = await store.getStream(item.archiveKey);
    } catch (error) {
      if (error instanceof Error && error.name === 'ObjectNotFoundError') {
        problems.push(`${label}: archive ${item.archiveKey} is missing`);
        return result();
      }
      throw error;
    }
    source.on('error', (error) => tap.destroy(error));
    try {
      await readTarGz(source.pipe(tap), `${label}, archive ${item.archiveKey}`, async (member) => {
        if (member.type !== 'file') {
          member.body.resume();
          return;
        }
        const hash = createHash('sha256');
        let size = 0;
        for await (const chunk of member.body) {
          hash.update(chunk as Buffer);
          size += (chunk as Buffer).length;
        }
        const want = expected.get(member.path);
        if (!want) return; // skipped as changed while archived, or not part of this backup: not in its manifest
        expected.delete(member.path);
        files += 1;
        options.onFile?.(size);
        const got = hash.digest('hex');
        if (size !== want.size || got !== want.sha256) {
          problems.push(
            `${label}: file ${JSON.stringify(member.path)} in archive ${item.archiveKey} is ${size} bytes with sha256 ${got.slice(0, 12)}…; the manifest recorded ${want.size} bytes, ${want.sha256.slice(0, 12)}…`,
          );
        }
      });
    } catch (error) {
      if (isStoreFailure(error)) throw error;
      problems.push(`${label}: deep check of archive ${item.archiveKey} failed: ${errorMessage(error)}`);
      return result();
    } finally {
      source.destroy();
    }
    const digest = archiveHash.digest();
    sha256 = digest.sha256 ?? `crc64nvme:${digest.crc64nvme}`;
    if (record && bytes !== record.bytes) {
      problems.push(
        `${label}: archive ${item.archiveKey} is ${bytes} bytes; the metadata recorded ${record.bytes}`,
      );
    } else if (record) {
      digestProblem(problems, label, item.archiveKey, digest, record);
    }
    for (const path of expected.keys()) {
      problems.push(`${label}: file ${JSON.stringify(path)} is missing from archive ${item.archiveKey}`);
    }
    return result();
  } catch (error) {
    if (!isStoreFailure(error)) {
      problems.push(`${label}: archive ${item.archiveKey} could not be checked: ${errorMessage(error)}`);
      return result();
    }
    problems.push(`${label}: archive ${item.archiveKey} could not be checked: ${errorMessage(error)}`);
    return result(true);
  }
}

/**
 * Turns archive check results into a verify outcome (one entry per backup, in the order the results
 * first name it) and records it in `status/last-verify.json` exactly as {@link runVerify} does, so
 * chain checks (`auto`), health and the next rotation see it. Each archive that passed is recorded
 * as deep-verified, also when another archive of the same backup failed.
 */
export async function recordArchiveChecks(
  store: ObjectStore,
  results: readonly ArchiveCheckResult[],
  now: Date,
  options: { rotating?: boolean; record?: boolean; logger?: Pick<Logger, 'warn'> } = {},
): Promise<VerifyResult> {
  const backups = verificationsOf(results);
  const recorded =
    options.record === false
      ? false
      : await recordOutcome(store, now, options.logger, backups, true, options.rotating ?? false);
  return {
    status: backups.every((b) => b.ok) ? 'SUCCEEDED' : 'FAILED',
    store: store.url,
    deep: true,
    backups,
    recorded,
  };
}

function verificationsOf(results: readonly ArchiveCheckResult[]): BackupVerification[] {
  const byBackup = new Map<string, ArchiveCheckResult[]>();
  for (const r of results) byBackup.set(r.backupId, [...(byBackup.get(r.backupId) ?? []), r]);
  return [...byBackup.values()].map((rs) => {
    const problems = rs.flatMap((r) => r.problems);
    const inconclusive = rs.some((r) => r.inconclusive);
    return {
      backupId: rs[0].backupId,
      type: rs[0].type,
      ok: problems.length === 0,
      problems,
      archivesChecked: rs.filter((r) => r.sha256 !== null || !r.ok).length,
      filesVerified: rs.reduce((sum, r) => sum + r.files, 0),
      // Inconclusive only when nothing conclusive was found wrong: damage outweighs a read error.
      inconclusive: inconclusive && rs.every((r) => r.ok || r.inconclusive),
      archivesDeepVerified: rs
        .filter((r) => r.ok && r.sha256 !== null)
        .map((r) => r.archiveKey)
        .sort(),
      method: 'archive' as const,
    };
  });
}

function entryFor(backupId: string, type: BackupType): CatalogEntry {
  const keys = keysFor(type, backupId);
  return {
    backupId,
    type,
    archiveKey: keys.archive,
    metadataKey: keys.metadata,
    manifestKey: keys.manifest,
    committedAt: new Date(0),
  };
}

/**
 * Manifests, metadata and manifest rows per archive, each read at most once. A run checking many
 * archives (the CLI) shares one and decodes each manifest once; a Lambda checking one item builds
 * one with `streamRows`, which streams the manifest and keeps only the rows of the archive checked,
 * so memory follows the part, not the tree.
 */
export class CatalogReads {
  private readonly manifests = new Map<string, Promise<Manifest>>();
  private readonly metadataByKey = new Map<string, Promise<BackupMetadata | undefined>>();
  private readonly rows = new Map<string, Promise<Map<string, FileEntry[]>>>();

  constructor(
    private readonly store: ObjectStore,
    private readonly options: { readonly streamRows?: boolean } = {},
  ) {}

  manifest(entry: CatalogEntry): Promise<Manifest> {
    let p = this.manifests.get(entry.manifestKey);
    if (!p) {
      p = readManifest(this.store, entry);
      this.manifests.set(entry.manifestKey, p);
      p.catch(() => this.manifests.delete(entry.manifestKey));
    }
    return p;
  }

  metadata(entry: CatalogEntry): Promise<BackupMetadata | undefined> {
    let p = this.metadataByKey.get(entry.metadataKey);
    if (!p) {
      p = readMetadata(this.store, entry);
      this.metadataByKey.set(entry.metadataKey, p);
    }
    return p;
  }

  /** Metadata of the backup an archive key belongs to. */
  async metadataOfArchive(key: string): Promise<BackupMetadata | undefined> {
    const owner = backupOfArchiveKey(key);
    return owner ? this.metadata(entryFor(owner.backupId, owner.type)) : undefined;
  }

  /** File rows of `entry`'s manifest whose bytes are in `archiveKey`. */
  async rowsIn(entry: CatalogEntry, archiveKey: string): Promise<FileEntry[]> {
    if (this.options.streamRows) return streamRowsIn(this.store, entry, archiveKey);
    let p = this.rows.get(entry.manifestKey);
    if (!p) {
      p = this.manifest(entry).then((manifest) => {
        const byArchive = new Map<string, FileEntry[]>();
        for (const e of manifest.entries) {
          if (e.type !== 'file') continue;
          const list = byArchive.get(e.archive) ?? [];
          list.push(e);
          byArchive.set(e.archive, list);
        }
        return byArchive;
      });
      this.rows.set(entry.manifestKey, p);
      p.catch(() => this.rows.delete(entry.manifestKey));
    }
    return (await p).get(archiveKey) ?? [];
  }
}

/**
 * The rows of one archive, read through the whole manifest as a stream with every check
 * decodeManifest makes (read to the end: the totals check comes last), keeping only those rows.
 */
async function streamRowsIn(
  store: ObjectStore,
  entry: CatalogEntry,
  archiveKey: string,
): Promise<FileEntry[]> {
  let source: Readable;
  try {
    source = await store.getStream(entry.manifestKey);
  } catch (error) {
    if (error instanceof Error && error.name === 'ObjectNotFoundError') {
      throw new ManifestError(`manifest ${entry.manifestKey} is missing from ${store.url}`);
    }
    throw error;
  }
  const stream = await openManifestStream(source, `${entry.manifestKey} (backup ${entry.backupId})`);
  if (stream.header.backupId !== entry.backupId) {
    await stream.entries.return();
    throw new ManifestError(
      `manifest ${entry.manifestKey} names backup ${stream.header.backupId}, not ${entry.backupId}`,
    );
  }
  const rows: FileEntry[] = [];
  for await (const e of stream.entries) if (e.type === 'file' && e.archive === archiveKey) rows.push(e);
  return rows;
}

function parallelOf(value: number | undefined): number {
  const n = value ?? 1;
  if (!Number.isInteger(n) || n < 1)
    throw new RangeError(`\`parallel\` must be a whole number >= 1 (got ${n})`);
  return n;
}

/** `fn` over `items`, at most `limit` at once; results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The store could not be read (a `StoreRequestError` anywhere in the cause chain): says nothing about content. */
function isStoreFailure(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    if (e.name === 'StoreRequestError') return true;
  }
  return false;
}

/** Downloads an archive and computes the digest its record is checked by ({@link digestProblem}). */
async function digestObject(store: ObjectStore, key: string, record: ArchiveRecord): Promise<ArchiveDigest> {
  const digest = archiveDigester(digestKindOf(record));
  for await (const chunk of await store.getStream(key)) digest.update(chunk as Buffer);
  return digest.digest();
}

/** The digest an archive is checked by: its sha256, or CRC64NVME when its record has none. */
function digestKindOf(record: ArchiveRecord | undefined): keyof ArchiveDigest {
  return record && record.sha256 === undefined ? 'crc64nvme' : 'sha256';
}

/** Computes one digest of the bytes (sha256, or CRC64NVME: {@link digestKindOf}). */
function archiveDigester(kind: keyof ArchiveDigest): {
  update(chunk: Buffer): void;
  digest(): ArchiveDigest;
} {
  if (kind === 'crc64nvme') {
    const crc = new Crc64NvmeHasher();
    return { update: (c) => crc.update(c), digest: () => ({ crc64nvme: crc64nvmeToBase64(crc.digest()) }) };
  }
  const hash = createHash('sha256');
  return { update: (c) => hash.update(c), digest: () => ({ sha256: hash.digest('hex') }) };
}
