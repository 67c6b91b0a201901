/**
 * Synthetic fulls (issue 15): a weekly full built from the bytes already in the store.
 *
 * Every gzip member of our archives starts at a tar entry, and the manifest records each file's byte
 * range (offset, length, CRC64NVME of those members). A run of unchanged files is therefore a run of
 * independent gzip members that can be copied into a new archive as is (S3 UploadPartCopy; a folder
 * store copies the range), without reading the media tree or compressing again. The new full is still
 * one plain tar.gz: `tar -xzf` of it gives the tree.
 *
 * Steps, all under the backup lock:
 * 1. Decide (`syntheticPlanFor`): the run is a full, synthetic fulls are allowed, not every Nth full
 *    (that one re-reads and re-hashes everything), the latest backup's chain is sound and every file it
 *    lists has a byte range (written by this version), the store can copy ranges.
 * 2. Stage: folders, links and new or changed files are archived as today into one work object,
 *    `staging/<id>/fresh.tar.gz`, whose member ranges are known per entry (and which ends with the
 *    end-of-archive member).
 * 3. Plan (part-plan.ts): the new archive's byte sequence, in path order, as segments of existing
 *    objects; cut into copy parts and upload parts within the store's limits.
 * 4. Assemble (assemble.ts): copies pinned to the source's version/ETag; complete with the expected
 *    size and full-object CRC64NVME (combined from the recorded range checksums), create-only.
 * 5. Check: stored size and checksum, and a few random ranges read back, gunzipped and parsed as the
 *    tar entries they must be. Then metadata and manifest (the commit), as for every backup.
 * Anything that fails before the commit throws {@link SyntheticFallbackError} (or another error): the
 * caller logs why and takes a normal full in the same run.
 */
import { randomInt } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip as gunzipCb } from 'node:zlib';
import tarStream from 'tar-stream';
import type { ObjectStore, SourcePin } from '../../store/types.js';
import { type ArchiveProgress, type ArchiveResult, writeArchive } from '../archiver/archive.js';
import type { ParallelGzipOptions } from '../archiver/parallel-gzip.js';
import { locateFolderOrLink } from '../archiver/plan.js';
import type { ScannedEntry, ScannedFile } from '../archiver/scan.js';
import type { Logger } from '../deps.js';
import { errorMessage } from '../errors.js';
import { hasEscapedBytes } from '../fs-names.js';
import {
  type CatalogEntry,
  chainProblems,
  readManifest,
  readMetadata,
  readVerifiedDamage,
} from '../repository/catalog.js';
import type {
  ByteRange,
  DirEntry,
  FileEntry,
  Manifest,
  ManifestEntry,
  SymlinkEntry,
} from '../repository/manifest.js';
import { stagingPrefix } from '../sharding/sharded-backup.js';
import { assembleSynthetic } from './assemble.js';
import { SyntheticFallbackError } from './errors.js';
import { planSyntheticParts, S3_PART_LIMITS, type SyntheticSegment } from './part-plan.js';

const gunzip = promisify(gunzipCb);

/** Every Nth full is a normal one (re-reads and re-hashes the whole tree). @default 4 */
export const DEFAULT_NORMAL_FULL_EVERY = 4;
/** Random ranges of the new archive read back and parsed before the commit. */
export const SAMPLED_RANGES = 3;

/** How a backup run may use synthetic fulls. */
export interface SyntheticSettings {
  /**
   * `true`: build the full synthetically when possible (`backup full --synthetic`); `false`: never;
   * `'auto'` (default): only for fulls that `auto` chose (the weekly full day).
   */
  readonly synthetic?: boolean | 'auto';
  /** Every Nth full is normal; 1 = never synthetic. @default DEFAULT_NORMAL_FULL_EVERY */
  readonly normalFullEvery?: number;
}

/** What a synthetic full did, in `--json`, the result and the metadata (`synthetic`). */
export interface SyntheticReport {
  /** File bytes read from the media tree (new and changed files only). */
  readonly bytesReadFromSource: number;
  /** Compressed bytes of the fresh entries, written once to the staging object. */
  readonly bytesStaged: number;
  /** Bytes copied inside the store (S3 UploadPartCopy; a folder store's range copies). */
  readonly bytesCopied: number;
  /** Bytes read back with ranged reads and uploaded as parts (short runs, staging bytes). */
  readonly bytesFetched: number;
  readonly copyParts: number;
  readonly uploadParts: number;
  /** Files whose bytes were carried over from earlier archives. */
  readonly filesCopied: number;
  /** Archives the carried-over bytes came from. */
  readonly sources: readonly string[];
  /** The backup whose manifest the unchanged files were taken from. */
  readonly baseBackupId: string;
}

/** The decision to try a synthetic full, with what it needs. */
export interface SyntheticBase {
  readonly base: CatalogEntry;
  readonly baseManifest: Manifest;
}

/** Why a full is not synthetic (logged, and recorded in the metadata as `syntheticSkipped`). */
export interface SyntheticNotUsed {
  readonly reason: string;
}

/**
 * Whether this full can be synthetic, and on which backup. Reads the metadata of recent fulls (every
 * Nth full is normal) and the latest backup's manifest; checks that chain as an incremental would.
 */
export async function syntheticBaseFor(input: {
  store: ObjectStore;
  committed: readonly CatalogEntry[];
  requestedType: string;
  settings: SyntheticSettings;
  rehashAll?: boolean;
}): Promise<SyntheticBase | SyntheticNotUsed> {
  const { store, committed, settings } = input;
  const mode = settings.synthetic ?? 'auto';
  if (mode === false) return { reason: 'synthetic fulls are turned off' };
  const base = committed.at(-1);
  if (!base) return { reason: 'no committed backup to build on' };
  if (mode === 'auto' && input.requestedType !== 'auto') {
    return { reason: 'a full was requested (add --synthetic to build it from the store)' };
  }
  if (input.rehashAll) return { reason: 'every file is re-read and re-hashed (--rehash)' };
  if (!store.assemble || !store.getRange || !store.pinSource) {
    return { reason: `store ${store.url} cannot copy byte ranges` };
  }
  if (!store.checksAssembledCrc) {
    return {
      reason: `store ${store.url} does not check an assembled object's CRC64NVME (S3 checksums are off): a byte damaged in a copied range would go unnoticed`,
    };
  }
  const every = settings.normalFullEvery ?? DEFAULT_NORMAL_FULL_EVERY;
  if (!Number.isInteger(every) || every < 1) {
    throw new RangeError(`normalFullEvery must be a whole number >= 1 (got ${every})`);
  }
  if (every === 1) return { reason: 'every full is normal (normalFullEvery = 1)' };
  // Every Nth full re-reads everything: count the synthetic fulls since the latest normal one.
  let syntheticInARow = 0;
  for (const entry of [...committed].reverse()) {
    if (entry.type !== 'full') continue;
    const metadata = await readMetadata(store, entry).catch(() => undefined);
    if (!metadata?.synthetic) break;
    syntheticInARow += 1;
    if (syntheticInARow >= every - 1) {
      return {
        reason: `every ${ordinal(every)} full is a normal full that re-reads the whole tree; the last ${syntheticInARow} were synthetic`,
      };
    }
  }
  let baseManifest: Manifest;
  try {
    baseManifest = await readManifest(store, base);
  } catch (error) {
    return { reason: `the manifest of ${base.backupId} cannot be read (${errorMessage(error)})` };
  }
  const problems = await chainProblems(
    base,
    baseManifest,
    committed,
    {
      size: async (key) => (await store.head(key))?.size,
      metadata: (entry) => readMetadata(store, entry),
    },
    await readVerifiedDamage(store),
  );
  if (problems.length > 0) {
    return { reason: `the chain of ${base.backupId} is not sound (${problems.join('; ')})` };
  }
  // Files without a range (a mode change since they were archived) are read again; a chain written
  // before ranges were recorded would be read almost whole: a normal full is then the simpler way.
  let files = 0;
  let withoutRange = 0;
  for (const e of baseManifest.entries) {
    if (e.type !== 'file') continue;
    files += 1;
    if (!e.range) withoutRange += 1;
  }
  if (withoutRange > files / 2) {
    return {
      reason: `${withoutRange} of the ${files} files of backup ${base.backupId} have no recorded byte range (archived before synthetic fulls existed): this full is normal, the next one can be synthetic`,
    };
  }
  return { base, baseManifest };
}

function ordinal(n: number): string {
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${n % 10 > 3 ? 'th' : suffix}`;
}

/** The key of a synthetic full's staging object (fresh entries), removed with the staging prefix. */
export function freshStagingKey(backupId: string): string {
  return `${stagingPrefix(backupId)}fresh.tar.gz`;
}

export interface BuildSyntheticInput {
  readonly store: ObjectStore;
  readonly logger: Logger;
  readonly backupId: string;
  /** `full/<id>.tar.gz`. */
  readonly archiveKey: string;
  readonly root: string;
  /** The scan, sorted by path. */
  readonly entries: readonly ScannedEntry[];
  readonly base: SyntheticBase;
  readonly gzip?: ParallelGzipOptions;
  readonly readAheadFiles?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: ArchiveProgress) => void;
  /** Parts assembled at once. @default 4 */
  readonly concurrency?: number;
}

export interface SyntheticBuilt {
  /** No sha256 (see the assembly below): the checked CRC64NVME identifies it. */
  readonly archive: { key: string; bytes: number; crc64nvme: string };
  /** Manifest entries in path order, every file pointing at the new archive with its new range. */
  readonly entries: ManifestEntry[];
  /** Files that could not be read consistently (not in the backup). */
  readonly skipped: ArchiveResult['skipped'];
  /** Files read from the tree and stored fresh. */
  readonly changed: { files: number; bytes: number };
  readonly gzip: ArchiveResult['gzip'];
  readonly report: SyntheticReport;
}

/**
 * Builds `archiveKey` as a synthetic full (steps 2-5 above). Throws before anything is committed;
 * the archive object may exist after a failed check (its id is then never reused: nextBackupId skips
 * ids with objects), nothing else is visible.
 */
export async function buildSyntheticFull(input: BuildSyntheticInput): Promise<SyntheticBuilt> {
  const { store, base, entries } = input;
  if (!store.assemble || !store.getRange || !store.pinSource) {
    throw new SyntheticFallbackError(`store ${store.url} cannot copy byte ranges`);
  }
  const carried = carriedEntries(entries, base.baseManifest);
  const fresh = entries.filter((e) => !carried.has(e.path));

  // Pin every source first: a missing or replaced archive falls back before any work is done.
  const pins = new Map<string, SourcePin>();
  for (const f of carried.values()) {
    if (pins.has(f.archive)) continue;
    const pin = await store.pinSource(f.archive);
    if (!pin) throw new SyntheticFallbackError(`source archive ${f.archive} is missing from ${store.url}`);
    pins.set(f.archive, pin);
  }

  // Stage the fresh entries: folders, links, new and changed files, and the end-of-archive member.
  const stagingKey = freshStagingKey(input.backupId);
  const freshBytesPlanned = fresh.reduce((sum, e) => sum + (e.type === 'file' ? e.size : 0), 0);
  const staged = await writeArchive({
    root: input.root,
    entries: fresh,
    gzip: input.gzip,
    signal: input.signal,
    readAheadFiles: input.readAheadFiles,
    onProgress: input.onProgress,
    sink: (body) =>
      store.upload(stagingKey, body, {
        tier: 'standard',
        maxBytes: Math.ceil((freshBytesPlanned + fresh.length * 3 * 512 + 1024 * 1024) * 1.01),
        signal: input.signal,
      }),
  });
  const stagingPin = await store.pinSource(stagingKey);
  if (!stagingPin || stagingPin.size !== staged.bytes) {
    throw new SyntheticFallbackError(
      `staging object ${stagingKey} is ${stagingPin ? `${stagingPin.size} bytes` : 'missing'} after upload; ${staged.bytes} bytes were written`,
    );
  }
  pins.set(stagingKey, stagingPin);

  // The new archive, in path order: staged entries and carried-over ranges, end-of-archive last.
  const skippedPaths = new Set(staged.skipped.map((s) => s.path));
  const stagedFiles = new Map(staged.files.map((f) => [f.path, f]));
  const segments: SyntheticSegment[] = [];
  const segmentOf = new Map<string, number>();
  let freshIndex = 0;
  for (const e of entries) {
    const old = carried.get(e.path);
    if (old) {
      segmentOf.set(e.path, segments.length);
      segments.push(segmentFrom(old.archive, old.range, pins));
      continue;
    }
    const range = staged.entryRanges[freshIndex];
    freshIndex += 1;
    // A file that changed while read has a torn entry in the staging object: leave it out.
    if (e.type === 'file' && skippedPaths.has(e.path)) continue;
    if (!range) throw new Error(`internal: staged entry ${JSON.stringify(e.path)} has no byte range`);
    segmentOf.set(e.path, segments.length);
    segments.push(segmentFrom(stagingKey, range, pins));
  }
  segments.push(segmentFrom(stagingKey, staged.endOfArchive, pins));

  // No sha256 even where the store could compute it (the folder store reads every byte): hashing
  // twice made the assembly the synthetic full's largest cost; the CRC64NVME, checked before the
  // commit, identifies the archive as it does on S3, and verify compares it.
  const assembly = await store.assemble(input.archiveKey, {
    tier: 'archive',
    signal: input.signal,
    sha256: false,
  });
  let plan: ReturnType<typeof planSyntheticParts>;
  try {
    plan = planSyntheticParts(segments, assembly);
  } catch (error) {
    await assembly.abort().catch(() => undefined);
    throw error;
  }
  input.logger.info('synthetic full planned', {
    backupId: input.backupId,
    bytes: plan.bytes,
    copyParts: plan.copyParts,
    uploadParts: plan.uploadParts,
    bytesCopied: plan.bytesCopied,
    bytesFetched: plan.bytesFetched,
    sources: pins.size,
  });
  const assembled = await assembleSynthetic({
    store,
    assembly,
    key: input.archiveKey,
    plan,
    pins,
    signal: input.signal,
    concurrency: input.concurrency,
  });

  // New offsets: each segment keeps its bytes and checksum, only its position changes.
  const newRanges: ByteRange[] = [];
  let at = 0;
  for (const s of segments) {
    newRanges.push({ offset: at, length: s.length, crc64nvme: s.crc64nvme });
    at += s.length;
  }
  await checkAssembled(store, input.archiveKey, plan.bytes, plan.crc64nvme, entries, segmentOf, newRanges);

  const out: ManifestEntry[] = [];
  const sources = new Set<string>();
  let filesCopied = 0;
  for (const e of entries) {
    const index = segmentOf.get(e.path);
    if (index === undefined) continue; // skipped
    const located = { archive: input.archiveKey, range: newRanges[index] };
    const old = carried.get(e.path);
    if (old) sources.add(old.archive);
    if (e.type === 'dir')
      out.push({ path: e.path, type: 'dir', mode: e.mode, mtimeMs: e.mtimeMs, ...located });
    else if (e.type === 'symlink')
      out.push({ path: e.path, type: 'symlink', target: e.target, mtimeMs: e.mtimeMs, ...located });
    else {
      if (old?.file) {
        filesCopied += 1;
        out.push({ ...old.file, ...located });
      } else {
        const f = stagedFiles.get(e.path);
        if (!f) throw new Error(`internal: staged file ${JSON.stringify(e.path)} has no record`);
        out.push({
          path: f.path,
          type: 'file',
          size: f.size,
          mtimeMs: f.mtimeMs,
          mode: f.mode,
          sha256: f.sha256,
          ...located,
        });
      }
    }
  }
  const changedFiles = staged.files.length;
  const changedBytes = staged.files.reduce((sum, f) => sum + f.size, 0);
  return {
    archive: {
      key: input.archiveKey,
      bytes: plan.bytes,
      crc64nvme: plan.crc64nvme,
    },
    entries: out,
    skipped: staged.skipped,
    changed: { files: changedFiles, bytes: changedBytes },
    gzip: staged.gzip,
    report: {
      bytesReadFromSource: changedBytes,
      bytesStaged: staged.bytes,
      bytesCopied: assembled.bytesCopied,
      bytesFetched: assembled.bytesFetched,
      copyParts: assembled.copyParts,
      uploadParts: assembled.uploadParts,
      filesCopied,
      sources: [...sources].sort(),
      baseBackupId: base.base.backupId,
    },
  };
}

/** Where an entry's identical tar bytes already sit (an archive of the base's chain and a range). */
interface CarriedEntry {
  readonly archive: string;
  readonly range: ByteRange;
  /** The base's row, for a file (its sha256 and the rest carry over). */
  readonly file?: FileEntry;
}

/**
 * The entries whose tar bytes can be copied: files with the same size, mtime and mode (the tar header
 * holds the mode) as in the base and a recorded range; folders and links whose base entry records an
 * identical one (plan.ts locateFolderOrLink).
 */
export function carriedEntries(
  entries: readonly ScannedEntry[],
  baseManifest: Manifest,
): Map<string, CarriedEntry> {
  const baseEntries = new Map<string, ManifestEntry>();
  for (const e of baseManifest.entries) baseEntries.set(e.path, e);
  const carried = new Map<string, CarriedEntry>();
  for (const e of entries) {
    const old = baseEntries.get(e.path);
    if (!old) continue;
    if (e.type === 'file') {
      if (
        old.type === 'file' &&
        old.range &&
        old.size === e.size &&
        old.mtimeMs === e.mtimeMs &&
        old.mode === e.mode
      ) {
        carried.set(e.path, { archive: old.archive, range: old.range, file: old });
      }
      continue;
    }
    const entry: DirEntry | SymlinkEntry =
      e.type === 'dir'
        ? { path: e.path, type: 'dir', mode: e.mode, mtimeMs: e.mtimeMs }
        : { path: e.path, type: 'symlink', target: e.target, mtimeMs: e.mtimeMs };
    const located = locateFolderOrLink(entry, old, { archive: '', range: undefined });
    if (located.archive && located.range)
      carried.set(e.path, { archive: located.archive, range: located.range });
  }
  return carried;
}

/** Bytes a function moves per second when it fetches ranges and uploads them (assumed, not measured on AWS). */
export const FETCH_BYTES_PER_SECOND = 100e6;

/** A CRC that only fills the field: the estimate's plan never checks bytes. */
const NO_CRC = 'AAAAAAAAAAA=';
/** Per-entry tar overhead of a fresh file in the estimate (header + padding + PAX, upper bound). */
const ESTIMATED_ENTRY_OVERHEAD = 3 * 512;

/**
 * What a synthetic full would do, before it starts: the files to read, and, from a part plan with
 * S3's limits over the carried ranges and the fresh entries' estimated sizes (stored, not compressed:
 * an upper bound), the bytes S3 would copy and those the function would fetch and upload itself
 * (short runs, the staged fresh bytes, and whatever the 10,000-part limit pushes out of the copies).
 * Used for the time check, which only exists where the store is S3 (Lambda).
 */
export function estimateSyntheticWork(
  entries: readonly ScannedEntry[],
  baseManifest: Manifest,
): { files: ScannedFile[]; bytesToRead: number; bytesToCopy: number; bytesToFetch: number; parts: number } {
  const carried = carriedEntries(entries, baseManifest);
  const files: ScannedFile[] = [];
  const staging = 'staging/estimate';
  const layout: { source: string; offset: number; length: number }[] = [];
  let staged = 0;
  let bytesToRead = 0;
  for (const e of entries) {
    const c = carried.get(e.path);
    if (c) {
      layout.push({ source: c.archive, offset: c.range.offset, length: c.range.length });
      continue;
    }
    const length = (e.type === 'file' ? e.size : 0) + ESTIMATED_ENTRY_OVERHEAD;
    if (e.type === 'file') {
      files.push(e);
      bytesToRead += e.size;
    }
    layout.push({ source: staging, offset: staged, length });
    staged += length;
  }
  layout.push({ source: staging, offset: staged, length: 1024 });
  // Source sizes are not known before pinning: the end of the last range read from each is a lower bound.
  const ends = new Map<string, number>();
  for (const l of layout) ends.set(l.source, Math.max(ends.get(l.source) ?? 0, l.offset + l.length));
  const plan = planSyntheticParts(
    layout.map((l) => ({ ...l, crc64nvme: NO_CRC, sourceBytes: ends.get(l.source) as number })),
    S3_PART_LIMITS,
  );
  return {
    files,
    bytesToRead,
    bytesToCopy: plan.bytesCopied,
    bytesToFetch: plan.bytesFetched,
    parts: plan.copyParts + plan.uploadParts,
  };
}

function segmentFrom(
  source: string,
  range: ByteRange,
  pins: ReadonlyMap<string, SourcePin>,
): SyntheticSegment {
  const pin = pins.get(source);
  if (!pin) throw new Error(`internal: source ${source} is not pinned`);
  return {
    source,
    offset: range.offset,
    length: range.length,
    crc64nvme: range.crc64nvme,
    sourceBytes: pin.size,
  };
}

/**
 * The checks before the commit: the stored object's size and checksum (where the store keeps one),
 * and SAMPLED_RANGES random file ranges read back, each of which must gunzip on its own to the tar
 * entry of that path and size; the last range must be the end-of-archive blocks.
 */
async function checkAssembled(
  store: ObjectStore,
  key: string,
  bytes: number,
  crc64nvme: string,
  entries: readonly ScannedEntry[],
  segmentOf: ReadonlyMap<string, number>,
  ranges: readonly ByteRange[],
): Promise<void> {
  const checksum = store.headChecksum ? await store.headChecksum(key) : undefined;
  const size = checksum?.size ?? (await store.head(key))?.size;
  if (size !== bytes) {
    throw new SyntheticFallbackError(
      `the assembled archive ${key} is ${size === undefined ? 'missing' : `${size} bytes`}; ${bytes} were planned`,
    );
  }
  if (checksum?.crc64nvme !== undefined && checksum.crc64nvme !== crc64nvme) {
    throw new SyntheticFallbackError(
      `the assembled archive ${key} has CRC64NVME ${checksum.crc64nvme}; the recorded ranges combine to ${crc64nvme}`,
    );
  }
  const getRange = store.getRange?.bind(store);
  if (!getRange) return;
  // Names that are not valid UTF-8 come back from tar-stream re-decoded: sample the others.
  const files = entries.filter(
    (e): e is ScannedFile => e.type === 'file' && segmentOf.has(e.path) && !hasEscapedBytes(e.path),
  );
  const picked = new Set<number>();
  while (picked.size < Math.min(SAMPLED_RANGES, files.length)) picked.add(randomInt(files.length));
  for (const i of picked) {
    const file = files[i];
    const range = ranges[segmentOf.get(file.path) as number];
    const header = await readEntryHeader(await getRange(key, range.offset, range.length), key, range);
    if (header.name !== file.path || header.size !== file.size) {
      throw new SyntheticFallbackError(
        `bytes ${range.offset}-${range.offset + range.length - 1} of ${key} hold ${JSON.stringify(header.name)} (${header.size} bytes); the manifest says ${JSON.stringify(file.path)} (${file.size} bytes)`,
      );
    }
  }
  const last = ranges.at(-1) as ByteRange;
  const tail = await gunzip(await getRange(key, last.offset, last.length)).catch(() => undefined);
  if (!tail || tail.length < 1024 || tail.some((b) => b !== 0)) {
    throw new SyntheticFallbackError(`the last member of ${key} is not the tar end-of-archive blocks`);
  }
}

/** Gunzips one entry's members and parses its tar header (GNU long names and PAX records applied). */
async function readEntryHeader(
  data: Buffer,
  key: string,
  range: ByteRange,
): Promise<{ name: string; size: number }> {
  const where = `bytes ${range.offset}-${range.offset + range.length - 1} of ${key}`;
  let tar: Buffer;
  try {
    tar = await gunzip(data);
  } catch (error) {
    throw new SyntheticFallbackError(`${where} do not gunzip on their own (${errorMessage(error)})`);
  }
  return new Promise((resolve, reject) => {
    const extract = tarStream.extract();
    let found: { name: string; size: number } | undefined;
    extract.on('entry', (header, stream, next) => {
      found ??= { name: header.name.replace(/\/$/, ''), size: header.size ?? 0 };
      stream.resume();
      stream.on('end', next);
    });
    extract.on('finish', () =>
      found ? resolve(found) : reject(new SyntheticFallbackError(`${where} hold no tar entry`)),
    );
    extract.on('error', (error) =>
      reject(new SyntheticFallbackError(`${where} are not a tar entry (${errorMessage(error)})`)),
    );
    // The entry alone, then an end-of-archive so the parser finishes.
    extract.end(Buffer.concat([tar, Buffer.alloc(1024)]));
  });
}
