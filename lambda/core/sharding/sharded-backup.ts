/**
 * Sharded backups (issue 14): plan / shard / commit, the same steps whether a local runner calls them
 * (CLI `backup --shards N --parallel P`) or a Step Functions Distributed Map runs one Lambda per shard.
 *
 * - **Plan** (one process): scan + diff against the base manifest as a merge-join of two sorted
 *   streams, spilled to a local temp file as rows; then cut into contiguous shards (shard-plan.ts)
 *   and write, per shard, its rows (`staging/<id>/shard-NNNN.todo.jsonl.gz`), the item list the
 *   Distributed Map reads (`shards.jsonl`) and, last, `plan.json`.
 * - **Shard** (one invocation each, idempotent): archives its rows into `<type>/<id>.part-NNNN.tar.gz`,
 *   a plain tar.gz. Its manifest rows are written before the store completes the part (archive.ts's
 *   `beforeEnd`), so a part that exists always has rows a retry can find; `result.json` marks it done.
 *   A retry never writes a part twice: a done shard returns its result, a completed part whose
 *   result is missing is adopted by matching its sha256 with the rows an earlier attempt recorded.
 * - **Commit** (one process): every part present with its recorded size (and CRC64NVME where the store
 *   keeps one), then the metadata listing the parts and, last, the manifest: a header gzip member
 *   followed by every shard's rows member, byte for byte. Nothing is visible before the manifest.
 * - **Abort**: FAILED recorded naming the shard, multipart uploads of the run aborted, the lock
 *   released; the folder store also deletes the parts and work objects (S3's lifecycle expires them:
 *   the backup role cannot delete).
 */
import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { ObjectStore } from '../../store/types.js';
import { LockHeldError, ObjectExistsError } from '../../store/types.js';
import { type ArchivedFile, writeArchive } from '../archiver/archive.js';
import {
  assertSourceAndStoreApart,
  type BackupDeps,
  type BackupOptions,
  type BackupSucceeded,
  type BackupWarning,
  DEFAULT_LOCK_TTL_MS,
  DEFAULT_MAX_SHRINK_PERCENT,
  nextBackupId,
  removeStoreLeftovers,
  shrinkWarnings,
  writeStatus,
} from '../archiver/backup.js';
import { chooseBackupType, withNewMode } from '../archiver/plan.js';
import { resolveSourceRoot, type ScannedEntry, type SkippedPath } from '../archiver/scan.js';
import { scanTreeStream } from '../archiver/scan-stream.js';
import { DEFAULT_BYTES_PER_SECOND, perFileMsFromScan, type TimeModelRates } from '../archiver/time-model.js';
import { DEFAULT_LEVEL } from '../defaults.js';
import type { Logger } from '../deps.js';
import { ArchiveVerificationError, errorMessage, MediaBackupError, UsageError } from '../errors.js';
import { defaultIoConcurrency, parseIoConcurrency } from '../io-concurrency.js';
import {
  type BackupMetadata,
  type CatalogEntry,
  chainProblemsOfArchives,
  listCommittedBackups,
  type PartRecord,
  readMetadata,
  readVerifiedDamage,
} from '../repository/catalog.js';
import { BACKUP_LOCK, keysFor } from '../repository/layout.js';
import {
  type BackupType,
  comparePaths,
  type FileEntry,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type ManifestEntry,
  type ManifestHeader,
} from '../repository/manifest.js';
import { openManifestStream } from '../repository/manifest-stream.js';
import { TOOL_VERSION } from '../version.js';
import { gzipLines, JsonLinesWriter, pipeToFile, readJsonLines, readJsonLinesFile } from './jsonl.js';
import { MAX_SHARDS, ShardCutter, type ShardRange, shardCostMs } from './shard-plan.js';

export const PLAN_FORMAT = 'media-backup/shard-plan';
/** Parallel shards a local run may use at most. */
export const MAX_PARALLEL = 64;

/** A sharded run failed: nothing was committed. */
export class ShardedBackupError extends MediaBackupError {
  override readonly name = 'ShardedBackupError';
}

/** The work objects of a run are inconsistent (a part without rows, a result missing at commit). */
export class ShardStateError extends MediaBackupError {
  override readonly name = 'ShardStateError';
}

/** One line of `staging/<id>/shards.jsonl`: what the Distributed Map hands one shard invocation. */
export interface ShardItem {
  readonly planKey: string;
  readonly backupId: string;
  /** 1-based. */
  readonly shard: number;
  readonly todoKey: string;
  readonly firstPath: string;
  readonly lastPath: string;
  /** Rows (manifest entries) in the shard. */
  readonly rows: number;
  /** Files and bytes to read from the source. */
  readonly files: number;
  readonly bytes: number;
}

/** `staging/<id>/plan.json`. */
export interface ShardPlanDocument {
  readonly format: typeof PLAN_FORMAT;
  readonly version: 1;
  readonly backupId: string;
  readonly type: BackupType;
  readonly reason: string;
  readonly baseBackupId: string | null;
  /** When the run started (the backup's createdAt). */
  readonly createdAt: string;
  readonly source: { readonly path: string; readonly host: string };
  readonly root?: { readonly mode: number; readonly mtimeMs: number };
  readonly shards: number;
  readonly itemsKey: string;
  readonly planned: { rows: number; files: number; bytes: number; readFiles: number; readBytes: number };
  readonly deleted: number;
  /** Paths the scan skipped (unreadable and the like). */
  readonly skipped: readonly SkippedPath[];
  readonly rates: { readonly perFileMs: number; readonly bytesPerSecond: number };
  readonly gzipLevel: number;
  readonly maxShrinkPercent: number;
  /** Set when the lock was handed over to the state machine: commit and cleanup release it. */
  readonly lock?: { readonly name: string; readonly token: string };
}

/** What a shard produced (`result.json`); the same object an attempt records before its part completes. */
export interface ShardOutcome {
  readonly backupId: string;
  readonly shard: number;
  readonly firstPath: string;
  readonly lastPath: string;
  /** Absent when the shard had nothing to archive (only unchanged files). */
  readonly part?: {
    readonly key: string;
    readonly bytes: number;
    readonly sha256: string;
    readonly crc64nvme?: string;
    /** Files whose bytes are in the part, and their bytes. */
    readonly files: number;
    readonly fileBytes: number;
    readonly tarBytes: number;
    readonly storedMembers: number;
  };
  /** The shard's manifest rows: one gzip member, spliced into the manifest as is. */
  readonly rowsKey: string;
  readonly rowsBytes: number;
  readonly rowsSha256: string;
  readonly rows: number;
  /** Every file row in the range (archived now or carried over), for the manifest totals. */
  readonly files: number;
  readonly fileBytes: number;
  readonly skipped: readonly SkippedPath[];
  /** True when an earlier attempt's result was returned (a retry). Not stored. */
  readonly reused?: boolean;
}

export interface ShardedPlan {
  readonly backupId: string;
  readonly type: BackupType;
  readonly reason: string;
  readonly planKey: string;
  readonly itemsKey: string;
  readonly shards: number;
  readonly items: readonly ShardItem[];
  readonly planned: ShardPlanDocument['planned'];
}

export interface ShardedBackupOptions extends BackupOptions {
  /** Exactly this many shards (fewer if there are fewer rows). @default by the time budget */
  readonly shards?: number;
  /** Shards run at once by the local runner. @default 1 */
  readonly parallel?: number;
  /** Time budget of one shard, ms (shard-plan.ts). */
  readonly shardBudgetMs?: number;
  /** Called before each shard runs locally; a throw fails that shard (tests of failures). */
  readonly failShard?: (shard: number) => void;
  /** Why the run is sharded, added to the decision's reason. */
  readonly shardReason?: string;
}

type TodoRow =
  | { readonly op: 'pack'; readonly e: ScannedEntry; readonly prev?: FileEntry }
  | { readonly op: 'keep'; readonly e: FileEntry };

export function stagingPrefix(backupId: string): string {
  return `staging/${backupId}/`;
}

const pad4 = (n: number) => String(n).padStart(4, '0');
const shardName = (n: number) => `shard-${pad4(n)}`;

export function partKeyFor(type: BackupType, backupId: string, index: number): string {
  if (!Number.isInteger(index) || index < 1 || index > MAX_SHARDS)
    throw new RangeError(`part index ${index} out of range`);
  return `${type}/${backupId}.part-${pad4(index)}.tar.gz`;
}

// ---------------------------------------------------------------------------------------------
// Plan

export interface PlanInputs {
  readonly backupId: string;
  readonly type: BackupType;
  readonly reason: string;
  readonly baseBackupId: string | null;
  readonly createdAt: Date;
  readonly root: string;
  readonly rootMeta?: { mode: number; mtimeMs: number };
  /** Scanned entries in path order. */
  readonly entries: AsyncIterable<ScannedEntry> | Iterable<ScannedEntry>;
  /** The base manifest's entries in path order (incrementals). */
  readonly baseEntries?: AsyncIterable<ManifestEntry> | Iterable<ManifestEntry>;
  /** The scan's skipped paths; read after `entries` is exhausted (a streaming scan fills it as it goes). */
  readonly skipped: () => readonly SkippedPath[];
  /** How long the scan took, when it is already done (else the first pass, which includes it, is timed). */
  readonly scanElapsedMs?: number;
  /** performance.now() when the scan started, when it started before this plan (a partly read stream). */
  readonly scanStartedMs?: number;
  readonly rehashAll?: boolean;
  readonly shards?: number;
  readonly shardBudgetMs?: number;
  readonly timeModel?: TimeModelRates;
  readonly gzipLevel: number;
  readonly maxShrinkPercent: number;
  readonly lock?: { readonly name: string; readonly token: string };
}

/**
 * Writes a run's plan into the store: per-shard rows, the item list and plan.json. Memory stays flat:
 * rows go through a local temp file (gzipped, ~30 bytes a row) between the join and the cut.
 */
export async function writeShardPlan(
  deps: { store: ObjectStore; logger: Logger },
  inputs: PlanInputs,
): Promise<ShardedPlan> {
  const { store, logger } = deps;
  const dir = stagingPrefix(inputs.backupId);
  const spill = path.join(
    tmpdir(),
    `media-backup-plan-${inputs.backupId}-${randomBytes(4).toString('hex')}.jsonl.gz`,
  );
  try {
    // Pass 1: merge-join scan and base, rows to the spill file, totals counted.
    const planned = { rows: 0, files: 0, bytes: 0, readFiles: 0, readBytes: 0 };
    const counts = { deleted: 0 };
    const started = performance.now();
    const writer = new JsonLinesWriter();
    const writing = pipeToFile(writer, spill);
    try {
      for await (const row of joinRows(
        inputs.entries,
        inputs.baseEntries,
        inputs.rehashAll ?? false,
        counts,
      )) {
        planned.rows += 1;
        if (row.e.type === 'file') {
          planned.files += 1;
          planned.bytes += row.e.size;
          if (row.op === 'pack') {
            planned.readFiles += 1;
            planned.readBytes += row.e.size;
          }
        }
        await writer.write(row);
      }
    } catch (error) {
      writer.destroy(error as Error);
      await writing.catch(() => undefined);
      throw error;
    }
    writer.end();
    await writing;
    const elapsedMs = inputs.scanElapsedMs ?? performance.now() - (inputs.scanStartedMs ?? started);
    const rates = {
      perFileMs: inputs.timeModel?.perFileMs ?? perFileMsFromScan({ entries: planned.rows, elapsedMs }),
      bytesPerSecond: inputs.timeModel?.bytesPerSecond ?? DEFAULT_BYTES_PER_SECOND,
    };
    // Pass 2: cut, one todo object per shard, written as its rows arrive.
    const cutter = new ShardCutter({
      ...rates,
      budgetMs: inputs.shardBudgetMs,
      shards: inputs.shards,
      totalMs:
        inputs.shards !== undefined ? shardCostMs(rates, planned.readFiles, planned.readBytes) : undefined,
    });
    const items: ShardItem[] = [];
    const planKey = `${dir}plan.json`;
    let open: { writer: JsonLinesWriter; uploading: Promise<unknown>; index: number } | undefined;
    const startShard = (index: number) => {
      const shardWriter = new JsonLinesWriter();
      const uploading = store.upload(`${dir}${shardName(index)}.todo.jsonl.gz`, shardWriter.stream, {
        contentType: 'application/gzip',
      });
      uploading.catch(() => undefined);
      return { writer: shardWriter, uploading, index };
    };
    const closeShard = async (range: ShardRange) => {
      if (!open) return;
      open.writer.end();
      await open.uploading;
      items.push({
        planKey,
        backupId: inputs.backupId,
        shard: range.index,
        todoKey: `${dir}${shardName(range.index)}.todo.jsonl.gz`,
        firstPath: range.firstPath,
        lastPath: range.lastPath,
        rows: range.rows,
        files: range.files,
        bytes: range.bytes,
      });
      open = undefined;
    };
    try {
      for await (const row of readJsonLinesFile<TodoRow>(spill)) {
        const reads = row.op === 'pack' && row.e.type === 'file';
        const closed = cutter.add({
          path: row.e.path,
          readFiles: reads ? 1 : 0,
          readBytes: reads ? (row.e as { size: number }).size : 0,
        });
        if (closed) await closeShard(closed);
        open ??= startShard(cutter.closed + 1);
        await open.writer.write(row);
      }
      const last = cutter.finish();
      if (last) await closeShard(last);
    } catch (error) {
      open?.writer.destroy(error as Error);
      await open?.uploading.catch(() => undefined);
      throw error;
    }
    const itemsKey = `${dir}shards.jsonl`;
    await store.put(itemsKey, items.map((i) => JSON.stringify(i)).join('\n') + (items.length ? '\n' : ''), {
      contentType: 'application/jsonl',
    });
    const plan: ShardPlanDocument = {
      format: PLAN_FORMAT,
      version: 1,
      backupId: inputs.backupId,
      type: inputs.type,
      reason: inputs.reason,
      baseBackupId: inputs.baseBackupId,
      createdAt: inputs.createdAt.toISOString(),
      source: { path: inputs.root, host: hostname() },
      ...(inputs.rootMeta ? { root: inputs.rootMeta } : {}),
      shards: items.length,
      itemsKey,
      planned,
      deleted: counts.deleted,
      skipped: [...inputs.skipped()].sort((a, b) => comparePaths(a.path, b.path)),
      rates,
      gzipLevel: inputs.gzipLevel,
      maxShrinkPercent: inputs.maxShrinkPercent,
      ...(inputs.lock ? { lock: inputs.lock } : {}),
    };
    await store.put(planKey, `${JSON.stringify(plan, null, 2)}\n`, { contentType: 'application/json' });
    logger.info('sharded backup planned', {
      backupId: inputs.backupId,
      type: inputs.type,
      shards: items.length,
      rows: planned.rows,
      readFiles: planned.readFiles,
      readBytes: planned.readBytes,
      perFileMs: Number(rates.perFileMs.toFixed(3)),
      deleted: counts.deleted,
    });
    return {
      backupId: inputs.backupId,
      type: inputs.type,
      reason: inputs.reason,
      planKey,
      itemsKey,
      shards: items.length,
      items,
      planned,
    };
  } finally {
    await rm(spill, { force: true });
  }
}

/**
 * Merge-join of the scan and the base manifest, both in path order: a file is kept (its bytes stay
 * in the earlier archive) when size and mtime match, as diffManifests decides; everything else is
 * packed. Base files the scan no longer has are counted as deleted.
 */
async function* joinRows(
  scanned: AsyncIterable<ScannedEntry> | Iterable<ScannedEntry>,
  base: AsyncIterable<ManifestEntry> | Iterable<ManifestEntry> | undefined,
  rehashAll: boolean,
  counts: { deleted: number },
): AsyncGenerator<TodoRow> {
  const baseIterator = base
    ? Symbol.asyncIterator in base
      ? base[Symbol.asyncIterator]()
      : (base as Iterable<ManifestEntry>)[Symbol.iterator]()
    : undefined;
  const nextFile = async (): Promise<FileEntry | undefined> => {
    if (!baseIterator) return undefined;
    for (;;) {
      const next = await baseIterator.next();
      if (next.done) return undefined;
      if (next.value.type === 'file') return next.value;
    }
  };
  let b = await nextFile();
  for await (const e of scanned) {
    if (e.type !== 'file') {
      yield { op: 'pack', e };
      continue;
    }
    while (b && b.path < e.path) {
      counts.deleted += 1;
      b = await nextFile();
    }
    let prev: FileEntry | undefined;
    if (b && b.path === e.path) {
      prev = b;
      b = await nextFile();
    }
    if (!rehashAll && prev && prev.size === e.size && prev.mtimeMs === e.mtimeMs) {
      yield { op: 'keep', e: prev.mode === e.mode ? prev : withNewMode(prev, e.mode) };
    } else {
      yield prev ? { op: 'pack', e, prev } : { op: 'pack', e };
    }
  }
  while (b) {
    counts.deleted += 1;
    b = await nextFile();
  }
}

// ---------------------------------------------------------------------------------------------
// Shard

export interface ShardRunOptions {
  readonly source: string;
  readonly sourceHint?: string;
  readonly gzip?: BackupOptions['gzip'];
  readonly ioConcurrency?: number;
  readonly signal?: AbortSignal;
  /** Files and bytes of this shard archived so far. */
  readonly onProgress?: (progress: { files: number; bytes: number }) => void;
}

async function readJson<T>(store: ObjectStore, key: string): Promise<T | undefined> {
  const data = await store.get(key);
  if (!data) return undefined;
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch {
    throw new ShardStateError(`${key} in ${store.url} is not valid JSON`);
  }
}

export async function readShardPlan(store: ObjectStore, planKey: string): Promise<ShardPlanDocument> {
  const plan = await readJson<ShardPlanDocument>(store, planKey);
  if (!plan) throw new ShardStateError(`plan ${planKey} is missing from ${store.url}`);
  if (plan.format !== PLAN_FORMAT || plan.version !== 1) {
    throw new ShardStateError(
      `${planKey} is not a media-backup shard plan (format ${JSON.stringify(plan.format)})`,
    );
  }
  return plan;
}

/** Archives one shard; idempotent (see the module comment). */
export async function runShard(
  deps: { store: ObjectStore; logger: Logger },
  item: ShardItem,
  options: ShardRunOptions,
): Promise<ShardOutcome> {
  const { store, logger } = deps;
  const dir = stagingPrefix(item.backupId);
  const name = shardName(item.shard);
  const resultKey = `${dir}${name}.result.json`;
  const done = await readJson<ShardOutcome>(store, resultKey);
  if (done) {
    logger.info('shard already done: returning its result', { backupId: item.backupId, shard: item.shard });
    return { ...done, reused: true };
  }
  const plan = await readShardPlan(store, item.planKey);
  if (plan.backupId !== item.backupId) {
    throw new ShardStateError(
      `shard item names backup ${item.backupId} but its plan ${item.planKey} is for ${plan.backupId}`,
    );
  }
  const partKey = partKeyFor(plan.type, plan.backupId, item.shard);
  if (await store.head(partKey)) return adoptPart(store, logger, item, partKey, resultKey);

  const root = await resolveSourceRoot(options.source, options.sourceHint);
  const rows: TodoRow[] = [];
  for await (const row of readJsonLines<TodoRow>(await store.getStream(item.todoKey), item.todoKey))
    rows.push(row);
  if (
    rows.length !== item.rows ||
    rows[0]?.e.path !== item.firstPath ||
    rows.at(-1)?.e.path !== item.lastPath
  ) {
    throw new ShardStateError(
      `${item.todoKey} holds ${rows.length} rows (${rows[0]?.e.path}..${rows.at(-1)?.e.path}); the item says ${item.rows} (${item.firstPath}..${item.lastPath})`,
    );
  }
  const toPack = rows.flatMap((r) => (r.op === 'pack' ? [r.e] : []));
  const nonce = randomBytes(6).toString('hex');
  const rowsKey = `${dir}${name}.rows-${nonce}.jsonl.gz`;
  const attemptKey = `${dir}${name}.attempt-${nonce}.json`;
  let outcome: ShardOutcome | undefined;
  const record = async (archive: ArchiveSummary | undefined) => {
    const built = buildRows(item, rows, archive, partKey);
    outcome = {
      ...built.outcome,
      rowsKey,
      rowsBytes: built.rowsBuffer.length,
      rowsSha256: sha256Of(built.rowsBuffer),
    };
    await store.put(rowsKey, built.rowsBuffer, { contentType: 'application/gzip' });
    await store.put(attemptKey, `${JSON.stringify(outcome)}\n`, { contentType: 'application/json' });
  };
  if (toPack.length === 0) {
    await record(undefined);
  } else {
    const ioConcurrency =
      options.ioConcurrency === undefined
        ? defaultIoConcurrency(root)
        : parseIoConcurrency(options.ioConcurrency, 'ioConcurrency');
    const packBytes = toPack.reduce((sum, e) => sum + (e.type === 'file' ? e.size : 0), 0);
    const maxBytes = Math.ceil((packBytes + toPack.length * 3 * 512 + 1024 * 1024) * 1.01);
    let uploaded: { crc64nvme?: string } | undefined;
    let archive: Awaited<ReturnType<typeof writeArchive>>;
    try {
      archive = await writeArchive({
        root,
        entries: toPack,
        gzip: options.gzip,
        signal: options.signal,
        readAheadFiles: ioConcurrency,
        sink: async (body) =>
          (uploaded = await store.upload(partKey, body, {
            tier: 'archive',
            maxBytes,
            signal: options.signal,
          })),
        beforeEnd: (a) => record({ ...a, tarBytes: a.gzip.inputBytes, storedMembers: a.gzip.storedMembers }),
      });
    } catch (error) {
      // Another attempt completed the part while this one ran: take its result, write nothing.
      if (error instanceof ObjectExistsError) return adoptPart(store, logger, item, partKey, resultKey);
      throw error;
    }
    const stored = await store.head(partKey);
    if (!stored || stored.size !== archive.bytes) {
      throw new ArchiveVerificationError(
        `part ${partKey} in ${store.url} is ${stored ? `${stored.size} bytes` : 'missing'} after upload; ${archive.bytes} bytes were written (shard ${item.shard}). Nothing was committed; run the backup again.`,
      );
    }
    // The store's CRC64NVME is known once the part is complete: the only field the attempt record lacks.
    if (uploaded?.crc64nvme && outcome?.part) {
      outcome = { ...outcome, part: { ...outcome.part, crc64nvme: uploaded.crc64nvme } };
    }
  }
  const result = outcome as ShardOutcome;
  try {
    await store.put(resultKey, `${JSON.stringify(result)}\n`, { contentType: 'application/json' });
  } catch (error) {
    if (!(error instanceof ObjectExistsError)) throw error;
    const other = await readJson<ShardOutcome>(store, resultKey);
    if (other?.part?.sha256 !== result.part?.sha256) throw error;
  }
  logger.info('shard archived', {
    backupId: item.backupId,
    shard: item.shard,
    partKey: result.part?.key,
    partBytes: result.part?.bytes,
    files: result.part?.files ?? 0,
    skipped: result.skipped.length,
  });
  return result;
}

interface ArchiveSummary {
  /** With each file's `range` in the part, which its manifest row keeps. */
  readonly files: readonly ArchivedFile[];
  readonly skipped: readonly SkippedPath[];
  readonly bytes: number;
  readonly sha256: string;
  readonly tarBytes: number;
  readonly storedMembers: number;
}

/** The shard's manifest rows (one gzip member) and its outcome, from its todo rows and what was archived. */
function buildRows(
  item: ShardItem,
  rows: readonly TodoRow[],
  archive: ArchiveSummary | undefined,
  partKey: string,
): { rowsBuffer: Buffer; outcome: Omit<ShardOutcome, 'rowsKey' | 'rowsBytes' | 'rowsSha256'> } {
  const archived = new Map(archive?.files.map((f) => [f.path, f]));
  const skippedNow = new Map(archive?.skipped.map((s) => [s.path, s.reason]));
  const lines: string[] = [];
  const skipped: SkippedPath[] = [];
  let files = 0;
  let fileBytes = 0;
  let partFiles = 0;
  let partFileBytes = 0;
  const push = (entry: ManifestEntry) => {
    lines.push(JSON.stringify(entry));
    if (entry.type === 'file') {
      files += 1;
      fileBytes += entry.size;
    }
  };
  for (const row of rows) {
    const e = row.e;
    if (row.op === 'keep') push(row.e);
    else if (e.type === 'dir') push({ path: e.path, type: 'dir', mode: e.mode, mtimeMs: e.mtimeMs });
    else if (e.type === 'symlink')
      push({ path: e.path, type: 'symlink', target: e.target, mtimeMs: e.mtimeMs });
    else {
      const f = archived.get(e.path);
      if (f) {
        push({ ...f, type: 'file', archive: partKey });
        partFiles += 1;
        partFileBytes += f.size;
        continue;
      }
      // Keep the last good version of a file that changed under us, so the restore point still has it.
      const reason = skippedNow.get(e.path) ?? 'not archived';
      if (row.prev) push(row.prev);
      skipped.push({ path: e.path, reason: row.prev ? `${reason}; previous version kept` : reason });
    }
  }
  return {
    rowsBuffer: gzipLines(lines),
    outcome: {
      backupId: item.backupId,
      shard: item.shard,
      firstPath: item.firstPath,
      lastPath: item.lastPath,
      ...(archive
        ? {
            part: {
              key: partKey,
              bytes: archive.bytes,
              sha256: archive.sha256,
              files: partFiles,
              fileBytes: partFileBytes,
              tarBytes: archive.tarBytes,
              storedMembers: archive.storedMembers,
            },
          }
        : {}),
      rows: lines.length,
      files,
      fileBytes,
      skipped,
    },
  };
}

/** A backup's metadata by key (the commit knows its keys, not a catalog entry); undefined if absent. */
function metadataAt(store: ObjectStore, metadataKey: string): Promise<BackupMetadata | undefined> {
  return readMetadata(store, { metadataKey } as CatalogEntry);
}

function sha256Of(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A part exists but its shard has no result: an earlier attempt completed the part and died before
 * writing the result (or another attempt is finishing it). The attempt that wrote the part recorded
 * its rows with the part's sha256 before the store completed it: find that record by reading the
 * part back and hashing it. Nothing is re-archived, the part is never written twice.
 */
async function adoptPart(
  store: ObjectStore,
  logger: Logger,
  item: ShardItem,
  partKey: string,
  resultKey: string,
): Promise<ShardOutcome> {
  const dir = stagingPrefix(item.backupId);
  const candidates = (await store.list(`${dir}${shardName(item.shard)}.attempt-`)).map((o) => o.key);
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of await store.getStream(partKey)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  const sha256 = hash.digest('hex');
  for (const key of candidates) {
    const attempt = await readJson<ShardOutcome>(store, key);
    if (attempt?.part?.sha256 !== sha256 || attempt.part.bytes !== bytes) continue;
    const checksum = await store.headChecksum?.(partKey);
    const result: ShardOutcome = {
      ...attempt,
      part: { ...attempt.part, ...(checksum?.crc64nvme ? { crc64nvme: checksum.crc64nvme } : {}) },
    };
    try {
      await store.put(resultKey, `${JSON.stringify(result)}\n`, { contentType: 'application/json' });
    } catch (error) {
      if (!(error instanceof ObjectExistsError)) throw error;
    }
    logger.info('shard part adopted from an earlier attempt', {
      backupId: item.backupId,
      shard: item.shard,
      partKey,
    });
    return (await readJson<ShardOutcome>(store, resultKey)) ?? result;
  }
  throw new ShardStateError(
    `part ${partKey} exists but none of the ${candidates.length} recorded attempts of shard ${item.shard} wrote it (sha256 ${sha256.slice(0, 12)}…, ${bytes} bytes): it was not written by this run. Nothing was committed; inspect the object.`,
  );
}

// ---------------------------------------------------------------------------------------------
// Commit

export interface ShardedBackupSucceeded extends BackupSucceeded {
  readonly parts: readonly { readonly key: string; readonly bytes: number }[];
  readonly shards: number;
}

/** Checks every shard's work and commits the backup: metadata, then the manifest. Idempotent. */
export async function commitShardedBackup(
  deps: BackupDeps,
  planKey: string,
): Promise<ShardedBackupSucceeded> {
  const { store, clock, logger } = deps;
  const plan = await readShardPlan(store, planKey).catch(async (error) => {
    // Committed by an earlier attempt whose answer was lost, and the folder store removed the plan.
    const done = await committedResult(store, planKey);
    if (done) return done;
    throw error;
  });
  if ('status' in plan) return plan;
  const keys = keysFor(plan.type, plan.backupId);
  const dir = stagingPrefix(plan.backupId);
  const outcomes: ShardOutcome[] = [];
  for (let shard = 1; shard <= plan.shards; shard++) {
    const outcome = await readJson<ShardOutcome>(store, `${dir}${shardName(shard)}.result.json`);
    if (!outcome) {
      if (await store.head(keys.manifest)) break; // committed by an earlier attempt, staging removed
      throw new ShardStateError(
        `shard ${shard} of ${plan.shards} of backup ${plan.backupId} has no result: it did not finish. Nothing was committed.`,
      );
    }
    outcomes.push(outcome);
  }
  const existing = await store.head(keys.manifest);
  if (existing) {
    const metadata = await metadataAt(store, keys.metadata);
    if (!metadata?.parts && !(metadata && plan.shards === 0)) {
      throw new ShardStateError(`backup ${plan.backupId} already has a manifest that this run did not write`);
    }
    logger.info('sharded backup already committed', { backupId: plan.backupId });
    return resultOf(plan, metadata, []);
  }
  // Every part present with its recorded size and checksum; every rows object whole.
  for (const o of outcomes) {
    if (o.part) {
      const stored = (await store.headChecksum?.(o.part.key)) ?? (await store.head(o.part.key));
      if (!stored || stored.size !== o.part.bytes) {
        throw new ArchiveVerificationError(
          `part ${o.part.key} of shard ${o.shard} is ${stored ? `${stored.size} bytes` : 'missing'}; the shard recorded ${o.part.bytes}. Nothing was committed.`,
        );
      }
      const crc = (stored as { crc64nvme?: string }).crc64nvme;
      if (crc && o.part.crc64nvme && crc !== o.part.crc64nvme) {
        throw new ArchiveVerificationError(
          `part ${o.part.key} of shard ${o.shard} has CRC64NVME ${crc} in the store; the upload recorded ${o.part.crc64nvme}. Nothing was committed.`,
        );
      }
    }
    const rowsObject = await store.head(o.rowsKey);
    if (!rowsObject || rowsObject.size !== o.rowsBytes) {
      throw new ShardStateError(
        `rows ${o.rowsKey} of shard ${o.shard} are ${rowsObject ? `${rowsObject.size} bytes` : 'missing'}; ${o.rowsBytes} were recorded. Nothing was committed.`,
      );
    }
  }
  const totals = { files: 0, bytes: 0 };
  for (const o of outcomes) {
    totals.files += o.files;
    totals.bytes += o.fileBytes;
  }
  const header: ManifestHeader = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    backupId: plan.backupId,
    type: plan.type,
    createdAt: plan.createdAt,
    baseBackupId: plan.baseBackupId,
    source: plan.source,
    ...(plan.root ? { root: plan.root } : {}),
    totals,
  };
  const headerMember = gzipLines([JSON.stringify(header)]);
  const parts: PartRecord[] = [];
  let offset = headerMember.length;
  for (const o of outcomes) {
    if (o.part) {
      parts.push({
        index: o.shard,
        key: o.part.key,
        bytes: o.part.bytes,
        sha256: o.part.sha256,
        ...(o.part.crc64nvme ? { crc64nvme: o.part.crc64nvme } : {}),
        firstPath: o.firstPath,
        lastPath: o.lastPath,
        files: o.part.files,
        manifestRange: { offset, length: o.rowsBytes },
      });
    }
    offset += o.rowsBytes;
  }
  const skipped = [...plan.skipped, ...outcomes.flatMap((o) => o.skipped)].sort((a, b) =>
    comparePaths(a.path, b.path),
  );
  const committed = await listCommittedBackups(store);
  const warnings: BackupWarning[] = await shrinkWarnings(
    store,
    committed.filter((c) => c.backupId < plan.backupId).at(-1),
    totals,
    plan.maxShrinkPercent,
  );
  for (const w of warnings) logger.warn(w.message, { code: w.code });
  const changed = { files: 0, bytes: 0 };
  let tarBytes = 0;
  let archiveBytes = 0;
  let storedMembers = 0;
  for (const o of outcomes) {
    changed.files += o.part?.files ?? 0;
    changed.bytes += o.part?.fileBytes ?? 0;
    tarBytes += o.part?.tarBytes ?? 0;
    archiveBytes += o.part?.bytes ?? 0;
    storedMembers += o.part?.storedMembers ?? 0;
  }
  let metadata = await metadataAt(store, keys.metadata);
  if (!metadata) {
    const finishedAt = clock.now();
    metadata = {
      backupId: plan.backupId,
      type: plan.type,
      baseBackupId: plan.baseBackupId,
      createdAt: plan.createdAt,
      finishedAt: finishedAt.toISOString(),
      parts,
      sharding: { shards: plan.shards, planKey },
      totals,
      changed,
      deleted: plan.deleted,
      skipped,
      compression: {
        ratio: tarBytes > 0 ? Number((archiveBytes / tarBytes).toFixed(4)) : 1,
        level: plan.gzipLevel,
        storedMembers,
      },
      durationMs: finishedAt.getTime() - Date.parse(plan.createdAt),
      source: plan.source,
      toolVersion: TOOL_VERSION,
    } satisfies BackupMetadata;
    await store.put(keys.metadata, `${JSON.stringify(metadata, null, 2)}\n`, {
      contentType: 'application/json',
    });
  }
  // The commit: header member + every shard's rows member, byte for byte, checked as they stream.
  await store.upload(keys.manifest, Readable.from(manifestBytes(store, headerMember, outcomes)), {
    contentType: 'application/gzip',
  });
  const result = resultOf(plan, metadata, warnings);
  logger.info('sharded backup committed', {
    backupId: plan.backupId,
    shards: plan.shards,
    parts: parts.length,
    archiveBytes,
    files: totals.files,
    changedFiles: changed.files,
    skipped: skipped.length,
  });
  const recorded = await writeStatus(store, {
    ...result,
    startedAt: plan.createdAt,
    finishedAt: clock.now().toISOString(),
    skipped: result.skipped.length,
  }).then(
    () => result,
    (statusError): ShardedBackupSucceeded => {
      const message = `backup ${plan.backupId} is committed, but status/last-run.json could not be written (${errorMessage(statusError)}): status shows the previous run until the next one`;
      logger.warn(message, { code: 'STATUS_NOT_RECORDED' });
      return { ...result, warnings: [...result.warnings, { code: 'STATUS_NOT_RECORDED', message }] };
    },
  );
  await finishRun(store, logger, plan);
  return recorded;
}

/** The result of a sharded backup already committed, from its metadata; undefined if there is none. */
async function committedResult(
  store: ObjectStore,
  planKey: string,
): Promise<ShardedBackupSucceeded | undefined> {
  const backupId = /^staging\/(backup_\d{8}_\d{6})\/plan\.json$/.exec(planKey)?.[1];
  if (!backupId) return undefined;
  for (const type of ['full', 'incremental'] as const) {
    const keys = keysFor(type, backupId);
    if (!(await store.head(keys.manifest))) continue;
    const metadata = await metadataAt(store, keys.metadata);
    if (!metadata?.parts || !metadata.sharding) return undefined;
    return resultOf(
      {
        backupId,
        type,
        reason: 'committed by an earlier attempt',
        baseBackupId: metadata.baseBackupId,
        shards: metadata.sharding.shards,
      } as ShardPlanDocument,
      metadata,
      [],
    );
  }
  return undefined;
}

async function* manifestBytes(store: ObjectStore, headerMember: Buffer, outcomes: readonly ShardOutcome[]) {
  yield headerMember;
  for (const o of outcomes) {
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of await store.getStream(o.rowsKey)) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
    if (bytes !== o.rowsBytes || hash.digest('hex') !== o.rowsSha256) {
      throw new ShardStateError(
        `rows ${o.rowsKey} of shard ${o.shard} changed since the shard wrote them (${bytes} bytes read). Nothing was committed.`,
      );
    }
  }
}

function resultOf(
  plan: ShardPlanDocument,
  metadata: BackupMetadata,
  warnings: readonly BackupWarning[],
): ShardedBackupSucceeded {
  const keys = keysFor(plan.type, plan.backupId);
  const parts = metadata.parts ?? [];
  return {
    status: 'SUCCEEDED',
    backupId: plan.backupId,
    type: plan.type,
    reason: plan.reason,
    baseBackupId: plan.baseBackupId,
    // For a sharded backup: its first part; every part is in `parts`.
    archiveKey: parts[0]?.key ?? '',
    manifestKey: keys.manifest,
    archiveBytes: parts.reduce((sum, p) => sum + p.bytes, 0),
    archiveSha256: parts[0]?.sha256 ?? '',
    files: metadata.totals.files,
    bytes: metadata.totals.bytes,
    changedFiles: metadata.changed.files,
    changedBytes: metadata.changed.bytes,
    deletedFiles: metadata.deleted,
    skipped: metadata.skipped,
    warnings,
    durationMs: metadata.durationMs,
    parts: parts.map((p) => ({ key: p.key, bytes: p.bytes })),
    shards: plan.shards,
  };
}

/** Releases a handed-over lock and removes the work objects where the store can delete. */
async function finishRun(store: ObjectStore, logger: Logger, plan: ShardPlanDocument): Promise<void> {
  if (plan.lock) {
    await store
      .releaseLock?.(plan.lock.name, plan.lock.token)
      .catch((error) => logger.warn('could not release the lock', { error: errorMessage(error) }));
  }
  await store
    .removePrefix?.(stagingPrefix(plan.backupId))
    .catch((error) => logger.warn('could not remove the work objects', { error: errorMessage(error) }));
}

// ---------------------------------------------------------------------------------------------
// Abort

/**
 * After any failure: records FAILED (naming the shard), aborts the run's multipart uploads, releases
 * a handed-over lock, and where the store can delete (folder store) removes parts and work objects.
 * Never touches a committed backup. Best effort after the status write.
 */
export async function abortShardedBackup(
  deps: BackupDeps,
  planKey: string,
  failure: { readonly message: string; readonly shard?: number },
): Promise<'aborted' | 'already-committed'> {
  const { store, clock, logger } = deps;
  const plan = await readShardPlan(store, planKey).catch(() => undefined);
  // Committed, and its plan already removed (folder store): nothing to undo.
  if (!plan && (await committedResult(store, planKey))) return 'already-committed';
  const backupId = plan?.backupId ?? /staging\/(backup_\d{8}_\d{6})\//.exec(planKey)?.[1];
  const what =
    failure.shard !== undefined ? `shard ${failure.shard}${plan ? ` of ${plan.shards}` : ''} failed: ` : '';
  const message = `sharded backup ${backupId ?? planKey} failed, nothing was committed: ${what}${failure.message}`;
  if (plan && (await store.head(keysFor(plan.type, plan.backupId).manifest))) {
    logger.warn('cleanup called for a backup that is committed: nothing to undo', {
      backupId: plan.backupId,
    });
    return 'already-committed';
  }
  logger.error('sharded backup failed', { backupId, shard: failure.shard, error: failure.message });
  await writeStatus(store, {
    status: 'FAILED',
    backupId,
    startedAt: plan?.createdAt,
    finishedAt: clock.now().toISOString(),
    ...(failure.shard !== undefined ? { failedShard: failure.shard } : {}),
    error: { name: 'ShardedBackupError', message },
  }).catch((error) =>
    logger.warn('could not record the failure in the status object', { error: errorMessage(error) }),
  );
  if (!backupId) return 'aborted';
  for (const prefix of [plan ? `${plan.type}/${backupId}.part-` : undefined, stagingPrefix(backupId)]) {
    if (!prefix) continue;
    await store
      .removeLeftovers?.({ olderThanMs: -1, keyPrefix: prefix })
      .catch((error) =>
        logger.warn("could not abort the run's uploads", { prefix, error: errorMessage(error) }),
      );
    await store
      .removePrefix?.(prefix)
      .catch((error) =>
        logger.warn("could not remove the run's objects", { prefix, error: errorMessage(error) }),
      );
  }
  if (plan?.lock) {
    await store
      .releaseLock?.(plan.lock.name, plan.lock.token)
      .catch((error) => logger.warn('could not release the lock', { error: errorMessage(error) }));
  }
  return 'aborted';
}

// ---------------------------------------------------------------------------------------------
// Local runner

function wholeNumber(value: number | undefined, name: string, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new UsageError(`${name} must be a whole number from 1 to ${max} (got ${value})`);
  }
  return value;
}

/**
 * The whole sharded run in this process (CLI `backup --shards N --parallel P`, tests, big servers):
 * lock, plan (streaming scan, base manifest), up to `parallel` shards at once, commit; any failure
 * aborts the other shards and the run (nothing committed) and is thrown naming the shard.
 */
export async function runShardedBackup(
  deps: BackupDeps,
  options: ShardedBackupOptions,
): Promise<ShardedBackupSucceeded> {
  const { store, clock, logger } = deps;
  wholeNumber(options.shards, 'shards', MAX_SHARDS);
  const parallel = wholeNumber(options.parallel ?? 1, 'parallel', MAX_PARALLEL) ?? 1;
  const startedAt = clock.now();
  await assertSourceAndStoreApart(options.source, store);
  const lockTtlMs = options.lockTtlMs ?? DEFAULT_LOCK_TTL_MS;
  let lock: Awaited<ReturnType<ObjectStore['acquireLock']>> | undefined;
  let plan: ShardedPlan | undefined;
  try {
    lock = await store.acquireLock(BACKUP_LOCK, {
      owner: deps.owner ?? `${hostname()}:${process.pid}`,
      ttlMs: lockTtlMs,
    });
    await removeStoreLeftovers(store, lockTtlMs, logger);
    await resolveSourceRoot(options.source, options.sourceHint);
    const scan = await scanTreeStream(options.source, {
      exclude: options.exclude,
      excludeAbsolute: store.localPath ? [store.localPath] : [],
      concurrentIo:
        options.concurrentIo ?? (options.ioConcurrency ?? defaultIoConcurrency(options.source)) > 1,
      signal: options.signal,
    });
    plan = await planShardedRun(deps, options, startedAt, {
      root: scan.root,
      rootMeta: scan.rootMeta,
      entries: scan.entries(),
      skipped: () => scan.skipped,
    });
    const failure = await runShardsLocally(deps, plan, options, parallel);
    if (failure) {
      await abortShardedBackup(deps, plan.planKey, failure);
      throw new ShardedBackupError(
        `sharded backup ${plan.backupId} failed, nothing was committed: shard ${failure.shard} of ${plan.shards} failed: ${failure.message}`,
        { cause: failure.error },
      );
    }
    return await commitShardedBackup(deps, plan.planKey);
  } catch (error) {
    logger.error('backup failed', { error: errorMessage(error), name: (error as Error)?.name });
    if (!(error instanceof LockHeldError) && !(error instanceof ShardedBackupError)) {
      if (plan) {
        await abortShardedBackup(deps, plan.planKey, { message: errorMessage(error) }).catch(() => undefined);
      } else {
        await writeStatus(store, {
          status: 'FAILED',
          startedAt: startedAt.toISOString(),
          finishedAt: clock.now().toISOString(),
          error: { name: (error as Error)?.name ?? 'Error', message: errorMessage(error) },
        }).catch(() => undefined);
      }
    }
    throw error;
  } finally {
    await lock
      ?.release()
      .catch((error) => logger.warn('could not release the lock', { error: errorMessage(error) }));
  }
}

/** A scan in progress, handed to the planner (its entries may be partly read already). */
export interface ScanSource {
  readonly root: string;
  readonly rootMeta?: { readonly mode: number; readonly mtimeMs: number };
  readonly entries: AsyncIterable<ScannedEntry> | Iterable<ScannedEntry>;
  readonly skipped: () => readonly SkippedPath[];
  /** performance.now() when the scan started: the per-file cost is measured from it. */
  readonly scanStartedMs?: number;
}

/**
 * Plans a sharded run without holding the tree: lists the committed backups, picks full or
 * incremental with a streaming chain check, allocates the id and writes the plan from the scan.
 * The caller holds the backup lock (and passes its hand-over token when the run continues elsewhere).
 */
export async function planShardedRun(
  deps: BackupDeps,
  options: ShardedBackupOptions,
  startedAt: Date,
  scan: ScanSource,
  lock?: { readonly name: string; readonly token: string },
): Promise<ShardedPlan> {
  const { store, clock, logger } = deps;
  const committed = await listCommittedBackups(store);
  const decision = await resolveChainStreaming(store, logger, options, committed, startedAt);
  const backupId = await nextBackupId(store, clock, committed);
  return writeShardPlan(deps, {
    backupId,
    type: decision.type,
    reason: options.shardReason ? `${decision.reason}; ${options.shardReason}` : decision.reason,
    baseBackupId: decision.base?.backupId ?? null,
    createdAt: startedAt,
    root: scan.root,
    rootMeta: scan.rootMeta,
    entries: scan.entries,
    baseEntries: decision.baseEntries?.(),
    skipped: scan.skipped,
    scanStartedMs: scan.scanStartedMs,
    rehashAll: options.rehashAll,
    shards: options.shards,
    shardBudgetMs: options.shardBudgetMs,
    timeModel: options.timeModel,
    gzipLevel: options.gzip?.level ?? DEFAULT_LEVEL,
    maxShrinkPercent: options.maxShrinkPercent ?? DEFAULT_MAX_SHRINK_PERCENT,
    ...(lock ? { lock } : {}),
  });
}

/**
 * backup.ts's resolveChain without holding the base manifest: one streaming pass collects the
 * archives it references for the chain check (missing, wrong size, found damaged -> a full, with the
 * reason), and the join streams it again. Memory: the set of archive keys, not the entries.
 */
async function resolveChainStreaming(
  store: ObjectStore,
  logger: Logger,
  options: BackupOptions,
  committed: readonly CatalogEntry[],
  now: Date,
): Promise<{
  type: BackupType;
  reason: string;
  base?: CatalogEntry;
  baseEntries?: () => AsyncIterable<ManifestEntry>;
}> {
  const decision = chooseBackupType(options.type ?? 'auto', committed, now, options.fullIntervalDays ?? 7);
  const base = decision.base;
  if (decision.type === 'full' || !base) return decision;
  const label = `${base.manifestKey} (backup ${base.backupId})`;
  const open = async () => {
    const stream = await openManifestStream(await store.getStream(base.manifestKey), label);
    if (stream.header.backupId !== base.backupId) {
      throw new ShardStateError(
        `manifest ${base.manifestKey} names backup ${stream.header.backupId}, not ${base.backupId}`,
      );
    }
    return stream.entries;
  };
  let problems: string[];
  try {
    const referenced = new Set<string>();
    for await (const entry of await open()) if (entry.type === 'file') referenced.add(entry.archive);
    problems = await chainProblemsOfArchives(
      base,
      referenced,
      committed,
      { size: async (key) => (await store.head(key))?.size, metadata: (entry) => readMetadata(store, entry) },
      await readVerifiedDamage(store),
    );
  } catch (error) {
    const reason = `chain of ${base.backupId} cannot be read (${errorMessage(error)}); taking a full backup`;
    logger.warn(reason);
    return { type: 'full', reason };
  }
  if (problems.length > 0) {
    const state = problems.some((p) => p.endsWith(' is missing')) ? 'cannot be read' : 'is damaged';
    const reason = `chain of ${base.backupId} ${state} (${problems.join('; ')}); taking a full backup`;
    logger.warn(reason);
    return { type: 'full', reason };
  }
  return {
    ...decision,
    baseEntries: () => ({
      async *[Symbol.asyncIterator]() {
        yield* await open();
      },
    }),
  };
}

/** Runs the shards with at most `parallel` at once; the first failure stops the rest. */
async function runShardsLocally(
  deps: BackupDeps,
  plan: ShardedPlan,
  options: ShardedBackupOptions,
  parallel: number,
): Promise<{ shard: number; message: string; error: unknown } | undefined> {
  const items = plan.items;
  // Progress over every shard: each reports its own running counts.
  const perShard = new Map<number, { files: number; bytes: number }>();
  const report = (shard: number, p: { files: number; bytes: number }) => {
    perShard.set(shard, { files: p.files, bytes: p.bytes });
    let files = 0;
    let bytes = 0;
    for (const v of perShard.values()) {
      files += v.files;
      bytes += v.bytes;
    }
    options.onProgress?.({
      files,
      bytes,
      totalFiles: plan.planned.readFiles,
      totalBytes: plan.planned.readBytes,
    });
  };
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  let next = 0;
  let failure: { shard: number; message: string; error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++];
      try {
        options.failShard?.(item.shard);
        await runShard(deps, item, {
          source: options.source,
          sourceHint: options.sourceHint,
          gzip: options.gzip,
          ioConcurrency: options.ioConcurrency,
          signal,
          onProgress: options.onProgress ? (p) => report(item.shard, p) : undefined,
        });
      } catch (error) {
        if (!failure) {
          failure = { shard: item.shard, message: errorMessage(error), error };
          stop.abort(error);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
  return failure;
}
