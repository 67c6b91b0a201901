/**
 * Child processes of the shard bench (bench/shards.ts), each run on its own so its peak RSS
 * (`process.resourceUsage().maxRSS`) is its own. bench/shards.ts bundles this file with esbuild and
 * runs it with the CLI's node flags (no tsx loader in the measured process).
 *
 *   node planner-child.mjs backup <source> <store dir> <shards, 0 = single archive> <parallel>
 *   node planner-child.mjs base <manifest file> <files>             # writes the synthetic base manifest
 *   node planner-child.mjs plan-full <store dir> <files>
 *   node planner-child.mjs plan-incremental <store dir> <files> <base manifest file>
 *   node planner-child.mjs memory-full <files>                      # in-memory peer: arrays + diffManifests
 *   node planner-child.mjs memory-incremental <files> <base manifest file>
 *   node planner-child.mjs scan-stream <store dir> <tree>           # scanTreeStream + writeShardPlan
 *   node planner-child.mjs scan-memory <tree>                       # scanTree + diffManifests + entriesToPack
 *   node planner-child.mjs idle                                     # node + imports only: the baseline
 *
 * Prints one JSON document on the last line of stdout.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DEFAULT_MAX_SHRINK_PERCENT, runBackup } from '../lambda/core/archiver/backup.js';
import { diffManifests, entriesToPack } from '../lambda/core/archiver/plan.js';
import { type ScannedEntry, scanTree } from '../lambda/core/archiver/scan.js';
import { scanTreeStream } from '../lambda/core/archiver/scan-stream.js';
import { MIN_PER_FILE_MS } from '../lambda/core/archiver/time-model.js';
import { DEFAULT_LEVEL } from '../lambda/core/defaults.js';
import { type Logger, silentLogger, systemClock } from '../lambda/core/deps.js';
import {
  decodeManifest,
  type FileEntry,
  type ManifestEntry,
  type ManifestHeader,
} from '../lambda/core/repository/manifest.js';
import {
  encodeHeaderMember,
  ManifestMemberWriter,
  openManifestStream,
} from '../lambda/core/repository/manifest-stream.js';
import { runShardedBackup, writeShardPlan } from '../lambda/core/sharding/sharded-backup.js';
import { FsObjectStore } from '../lambda/store/fs.js';
import type { ObjectStore } from '../lambda/store/types.js';

const MB = 1e6;
const WEEKS_PER_COURSE = 100;
const FILES_PER_WEEK = 100;
/** Every 100th file (1%) has a new mtime in the incremental's listing. */
const CHANGED_EVERY = 100;
const BASE_ID = 'backup_20261201_020000';
const BASE_ARCHIVE = `full/${BASE_ID}.part-0001.tar.gz`;
const MTIME0 = Date.UTC(2026, 0, 5);

// ---------------------------------------------------------------------------------------------
// Memory sampling: maxRSS is the kernel's peak; heapUsed is sampled on a timer and every 10,000 rows
// (a tight async loop over resolved promises can starve the timer).

let peakHeap = 0;
function sampleHeap(): void {
  const used = process.memoryUsage().heapUsed;
  if (used > peakHeap) peakHeap = used;
}
const sampler = setInterval(sampleHeap, 50);
sampler.unref();

function memoryFigures() {
  sampleHeap();
  return {
    peakRssMb: (process.resourceUsage().maxRSS * 1024) / MB,
    peakHeapUsedMb: peakHeap / MB,
  };
}

// ---------------------------------------------------------------------------------------------
// The synthetic tree: course-NNN/week-NN/file-NNNNNN.jpg, 100 files a week folder (~1% folders),
// sizes like a media tree; emitted in code-unit order (fixed-width numbers sort as text).

function sizeOf(n: number): number {
  // A 32-bit integer hash of n (deterministic, no state): the class and a log-uniform size.
  let h = Math.imul(n ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  const u = (h >>> 0) / 2 ** 32;
  const v = ((Math.imul(h, 0x27d4eb2d) >>> 0) % 1_000_000) / 1_000_000;
  const logUniform = (min: number, max: number) => Math.round(min * (max / min) ** v);
  if (u < 0.2) return logUniform(1e3, 15e3); // thumbnails, avatars, chat
  if (u < 0.7) return logUniform(100e3, 8e6); // photos
  if (u < 0.95) return logUniform(50e3, 5e6); // documents
  return logUniform(5e6, 50e6); // videos
}

function shapeOf(files: number) {
  const courses = Math.ceil(files / (WEEKS_PER_COURSE * FILES_PER_WEEK));
  const width = Math.max(6, String(files - 1).length);
  return { courses, width };
}

function sha256Of(n: number): string {
  return createHash('sha256').update(`synthetic/${n}`).digest('hex');
}

/** The synthetic tree's rows in manifest order, as ScannedEntry (scan) or ManifestEntry (base). */
function* treeRows(files: number): Generator<{ dir?: string; n?: number; path: string }> {
  const { courses, width } = shapeOf(files);
  let n = 0;
  for (let c = 1; c <= courses && n < files; c++) {
    const course = `course-${String(c).padStart(3, '0')}`;
    yield { dir: course, path: course };
    for (let w = 0; w < WEEKS_PER_COURSE && n < files; w++) {
      const week = `${course}/week-${String(w).padStart(2, '0')}`;
      yield { dir: week, path: week };
      for (let f = 0; f < FILES_PER_WEEK && n < files; f++, n++) {
        yield { n, path: `${week}/file-${String(n).padStart(width, '0')}.jpg` };
      }
    }
  }
}

async function* syntheticListing(files: number, changed: boolean): AsyncGenerator<ScannedEntry> {
  let rows = 0;
  for (const r of treeRows(files)) {
    if (++rows % 10_000 === 0) sampleHeap();
    if (r.n === undefined) {
      yield { path: r.path, type: 'dir', mode: 0o755, mtimeMs: MTIME0 };
    } else {
      const moved = changed && r.n % CHANGED_EVERY === 37 ? 86_400_000 : 0;
      yield {
        path: r.path,
        type: 'file',
        size: sizeOf(r.n),
        mtimeMs: MTIME0 + r.n * 1000 + moved,
        mode: 0o644,
      };
    }
  }
}

function baseEntry(r: { n?: number; path: string }): ManifestEntry {
  if (r.n === undefined) return { path: r.path, type: 'dir', mode: 0o755, mtimeMs: MTIME0 };
  return {
    path: r.path,
    type: 'file',
    size: sizeOf(r.n),
    mtimeMs: MTIME0 + r.n * 1000,
    mode: 0o644,
    sha256: sha256Of(r.n),
    archive: BASE_ARCHIVE,
  } satisfies FileEntry;
}

/** The base manifest as a committed sharded full writes it: a header member, then the rows member. */
async function writeBaseManifest(file: string, files: number) {
  let bytes = 0;
  for (let n = 0; n < files; n++) bytes += sizeOf(n);
  const header: ManifestHeader = {
    format: 'media-backup/manifest',
    version: 1,
    backupId: BASE_ID,
    type: 'full',
    createdAt: '2026-12-01T02:00:00.000Z',
    baseBackupId: null,
    source: { path: '/bench/synthetic' },
    root: { mode: 0o755, mtimeMs: MTIME0 },
    totals: { files, bytes },
  };
  mkdirSync(path.dirname(file), { recursive: true });
  const partial = `${file}.partial`;
  const out = createWriteStream(partial);
  out.write(encodeHeaderMember(header));
  const writer = new ManifestMemberWriter();
  const written = pipeline(writer.member, out);
  for (const r of treeRows(files)) await writer.write(baseEntry(r));
  await Promise.all([writer.end(), written]);
  renameSync(partial, file);
  return { file, bytes: statSync(file).size };
}

// ---------------------------------------------------------------------------------------------
// The planner (writeShardPlan) with its spill file in a temp folder of its own, measured when the
// planner logs "sharded backup planned" (after both passes, before it removes the spill).

function dirBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

async function plan(
  storeDir: string,
  type: 'full' | 'incremental',
  entries: AsyncIterable<ScannedEntry>,
  baseEntries?: AsyncIterable<ManifestEntry>,
  root = '/bench/synthetic',
) {
  const spillDir = path.join(storeDir, '..', `spill-${process.pid}`);
  mkdirSync(spillDir, { recursive: true });
  process.env.TMPDIR = spillDir; // os.tmpdir() reads it on every call: the planner's spill lands here
  let spillBytes = 0;
  const logger: Logger = {
    ...silentLogger,
    info: (message) => {
      if (message === 'sharded backup planned') spillBytes = dirBytes(spillDir);
    },
  };
  const store = new FsObjectStore(storeDir);
  const started = performance.now();
  const planned = await writeShardPlan(
    { store, logger },
    {
      backupId: 'backup_20261201_030000',
      type,
      reason: 'bench',
      baseBackupId: baseEntries ? BASE_ID : null,
      createdAt: new Date('2026-12-01T03:00:00.000Z'),
      root,
      entries,
      baseEntries,
      skipped: () => [],
      // The synthetic listing has no scan time to derive a per-file cost from: the model's floor.
      timeModel: { perFileMs: MIN_PER_FILE_MS },
      gzipLevel: DEFAULT_LEVEL,
      maxShrinkPercent: DEFAULT_MAX_SHRINK_PERCENT,
    },
  );
  const seconds = (performance.now() - started) / 1000;
  const storeBytes = dirBytes(storeDir);
  await rm(spillDir, { recursive: true, force: true });
  return {
    seconds,
    rows: planned.planned.rows,
    files: planned.planned.files,
    readFiles: planned.planned.readFiles,
    shards: planned.shards,
    spillBytes,
    storeBytes,
    ...memoryFigures(),
  };
}

// ---------------------------------------------------------------------------------------------
// A backup of a real tree (single archive or sharded), with each shard's start and end taken from
// the store calls runShard makes: it reads `shard-NNNN.result.json` first and writes it last.

function timedStore(store: FsObjectStore, t0: number) {
  const shards = new Map<number, { startMs: number; endMs?: number }>();
  /** The plan's items (files and bytes each shard reads), from the shards.jsonl the planner writes. */
  const items = new Map<number, { files: number; bytes: number }>();
  let planEndMs: number | undefined;
  const proxy = new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const key = args[0];
        if (typeof key === 'string') {
          const now = performance.now() - t0;
          const m = /shard-(\d{4})\.result\.json$/.exec(key);
          if (m) {
            const shard = Number(m[1]);
            if (!shards.has(shard)) shards.set(shard, { startMs: now });
            else if (prop === 'put') shards.get(shard)!.endMs = now;
          }
          if (prop === 'put' && key.endsWith('/plan.json')) planEndMs = now;
          if (prop === 'put' && key.endsWith('/shards.jsonl') && typeof args[1] === 'string') {
            for (const line of args[1].split('\n').filter(Boolean)) {
              const item = JSON.parse(line) as { shard: number; files: number; bytes: number };
              items.set(item.shard, { files: item.files, bytes: item.bytes });
            }
          }
        }
        return value.apply(target, args);
      };
    },
  });
  return { store: proxy as ObjectStore, shards, items, planEnd: () => planEndMs };
}

async function backup(source: string, storeDir: string, shards: number, parallel: number) {
  const t0 = performance.now();
  const timing = timedStore(new FsObjectStore(storeDir), t0);
  const deps = { store: timing.store, clock: systemClock, logger: silentLogger };
  const result =
    shards === 0
      ? await runBackup(deps, { source, type: 'full' })
      : await runShardedBackup(deps, { source, type: 'full', shards, parallel });
  const totalMs = performance.now() - t0;
  const shardTimes = [...timing.shards]
    .map(([shard, t]) => ({ shard, ...t, ...(timing.items.get(shard) ?? { files: 0, bytes: 0 }) }))
    .sort((a, b) => a.shard - b.shard);
  const lastShardEnd = Math.max(...shardTimes.map((s) => s.endMs ?? 0));
  return {
    result,
    totalMs,
    planMs: timing.planEnd() ?? null,
    shardTimes,
    commitMs: shards === 0 ? null : totalMs - lastShardEnd,
    ...memoryFigures(),
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<unknown> {
  const [mode, ...args] = process.argv.slice(2);
  switch (mode) {
    case 'idle':
      return { mode, seconds: 0, rows: 0, ...memoryFigures() };
    case 'base':
      return { mode, ...(await writeBaseManifest(args[0], Number(args[1]))) };
    case 'backup':
      return { mode, ...(await backup(args[0], args[1], Number(args[2]), Number(args[3]))) };
    case 'plan-full':
      return { mode, ...(await plan(args[0], 'full', syntheticListing(Number(args[1]), false))) };
    case 'plan-incremental': {
      const base = await openManifestStream(createReadStream(args[2]), args[2]);
      return {
        mode,
        ...(await plan(args[0], 'incremental', syntheticListing(Number(args[1]), true), base.entries)),
      };
    }
    case 'memory-full':
    case 'memory-incremental': {
      // What runBackup holds before it archives: the whole scan in an array and, for an incremental,
      // the decoded base manifest; then diffManifests and entriesToPack over them.
      const started = performance.now();
      const scanned: ScannedEntry[] = [];
      for await (const e of syntheticListing(Number(args[0]), mode === 'memory-incremental')) scanned.push(e);
      const base =
        mode === 'memory-incremental' ? await decodeManifest(await readFile(args[1]), args[1]) : undefined;
      sampleHeap();
      const diff = diffManifests(scanned, base);
      sampleHeap();
      const toPack = entriesToPack(scanned, diff.toArchive);
      const seconds = (performance.now() - started) / 1000;
      return {
        mode,
        seconds,
        rows: scanned.length,
        readFiles: diff.toArchive.length,
        toPack: toPack.length,
        ...memoryFigures(),
      };
    }
    case 'scan-stream': {
      const started = performance.now();
      const scan = await scanTreeStream(args[1]);
      const r = await plan(args[0], 'full', scan.entries(), undefined, scan.root);
      return { mode, ...r, seconds: (performance.now() - started) / 1000 };
    }
    case 'scan-memory': {
      const started = performance.now();
      const scan = await scanTree(args[0]);
      sampleHeap();
      const diff = diffManifests(scan.entries, undefined);
      const toPack = entriesToPack(scan.entries, diff.toArchive);
      const seconds = (performance.now() - started) / 1000;
      return {
        mode,
        seconds,
        rows: scan.entries.length,
        readFiles: diff.toArchive.length,
        toPack: toPack.length,
        ...memoryFigures(),
      };
    }
    default:
      throw new Error(
        `planner-child: unknown mode ${JSON.stringify(mode)} (see the usage at the top of bench/planner-child.ts)`,
      );
  }
}

process.stdout.write(`${JSON.stringify(await main())}\n`);
