/**
 * Throughput bench: our full and incremental backups against GNU `tar -czf` on a seeded media-like
 * tree, and (issue 6) our first backup against `tar | pigz`, restic and borg, our backup to s3rver,
 * and gzip-setting variants of our engine. Prints figures and whether the targets are met; it never
 * fails on a timing.
 *
 *   npm run bench                          # ~1 GiB tree under /tmp/media-backup-bench
 *   BENCH_BYTES=100000000 npm run bench    # quick run on ~100 MB
 *   BENCH_PEERS=0 npm run bench            # skip pigz/restic/borg
 *   BENCH_FILE_COUNT=200000 npm run bench  # only the file-count section (bench/file-count.ts)
 *   BENCH_EFS=1 npm run bench              # adds the EFS-like section (bench/efs.ts, latency FUSE)
 *   BENCH_EFS=1 BENCH_ONLY_EFS=1 npm run bench   # only the EFS-like section
 *   BENCH_ONLY_SHARDS=1 npm run bench      # only the shard section (bench/shards.ts); BENCH_SHARDS=0 skips it
 *   BENCH_ONLY_SYNTHETIC=1 npm run bench   # only the synthetic-full section (bench/synthetic.ts); BENCH_SYNTHETIC=0 skips it
 *
 * Environment: BENCH_DIR (work folder), BENCH_BYTES (tree size), BENCH_RUNS (repetitions, median
 * reported), BENCH_SEED (tree seed), BENCH_PEERS=0 (skip the pigz/restic/borg peers), BENCH_S3=0
 * (skip our backup to s3rver), BENCH_VARIANTS=0 (skip the gzip-setting variants). Missing peers
 * are installed with `apt-get install -y pigz restic borgbackup` (needs root); one that cannot be
 * installed is reported and skipped.
 *
 * Every timed command runs as its own child process under GNU time, so its peak RSS is measured
 * apart from this process. MB = 10^6 bytes throughout.
 */
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import path from 'node:path';
import { DEFAULT_LEVEL } from '../lambda/core/archiver/parallel-gzip.js';
import { documentBytes, seededRandom } from '../test/fixtures/media-tree.js';
import { startS3rver } from '../test/fixtures/s3rver.js';
import { runEfsBench } from './efs.js';
import { runFileCountBench } from './file-count.js';
import {
  buildVariantRunner,
  ensurePeerTools,
  type GzipVariant,
  type PeerName,
  type PeerRun,
  runBorg,
  runPigz,
  runRestic,
  runVariant,
  type ToolStatus,
} from './peers.js';
import { runShardBench } from './shards.js';
import { runSyntheticBench } from './synthetic.js';
import {
  CLI,
  CLI_NODE_ARGS,
  findGnuTime,
  MB,
  type Measured,
  maxOrNull,
  median,
  newMeasured,
  round,
  run,
  sleep,
  summarize,
  table,
  timed,
  verdict,
} from './timing.js';

/** Bump when the tree layout or content rules change, so cached trees are rebuilt. */
const GENERATOR = 'media-backup-bench/1';
const WRITE_CHUNK = 1024 * 1024;
/** BENCH_FILE_COUNT below this is not worth a per-100k figure. */
const FILE_COUNT_MIN = 1000;
/** Share of files the incremental finds changed. */
const CHANGED_SHARE = 0.01;

const TARGETS = {
  fullSpeedVsTar: 1.0,
  fullSizeVsTar: 1.02,
  incrementalVsFullTime: 0.1,
  peakRssMb: 200,
  restoreSpeedVsTar: 1.0,
} as const;

/** Issue 6 ("faster than restic and borg on a first backup, still plain tar.gz"). */
const ISSUE6_TARGETS = {
  fullSpeedVsRestic: 1.1,
  fullSpeedVsBorg: 1.1,
  fullSizeVsRestic: 1.0,
  peakRssMb: 200,
  incrementalVsFullTime: 0.05,
  s3SpeedVsFolder: 0.8,
} as const;

/** In-process runBackup variants (the CLI has no compression flags). */
const GZIP_VARIANTS: readonly GzipVariant[] = [
  { name: 'engine level 1', level: 1 },
  { name: 'engine level 3', level: 3 },
  { name: 'engine level 4', level: 4 },
  { name: 'engine level 5', level: 5 },
  { name: 'engine level 6', level: 6 },
  { name: 'engine default level, 1 worker', workers: 1 },
  { name: 'engine default level, 3 workers', workers: 3 },
];

interface BenchConfig {
  readonly dir: string;
  readonly treeBytes: number;
  readonly runs: number;
  readonly seed: number;
  readonly peers: boolean;
  readonly s3: boolean;
  readonly variants: boolean;
}

type ContentKind = 'media' | 'document';

interface TreeFile {
  readonly index: number;
  readonly path: string;
  readonly kind: ContentKind;
  readonly size: number;
  readonly mtimeMs: number;
}

interface TreeMarker {
  readonly generator: string;
  readonly seed: number;
  readonly treeBytes: number;
  readonly files: number;
  readonly bytes: number;
}

interface BackupJson {
  readonly backupId: string;
  readonly archiveKey: string;
  readonly type: string;
  readonly archiveBytes: number;
  readonly files: number;
  readonly bytes: number;
  readonly changedFiles: number;
  readonly changedBytes: number;
  readonly durationMs: number;
}

function readConfig(): BenchConfig {
  const positive = (name: string, fallback: number): number => {
    const raw = process.env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new Error(`${name} must be a whole number >= 1 (got ${JSON.stringify(raw)})`);
    }
    return value;
  };
  return {
    dir: path.resolve(process.env.BENCH_DIR || '/tmp/media-backup-bench'),
    treeBytes: positive('BENCH_BYTES', 1024 ** 3),
    runs: positive('BENCH_RUNS', 3),
    seed: positive('BENCH_SEED', 20251127),
    peers: process.env.BENCH_PEERS !== '0',
    s3: process.env.BENCH_S3 !== '0',
    variants: process.env.BENCH_VARIANTS !== '0',
  };
}

// ---------------------------------------------------------------------------------------------
// The tree: layout from the seeded PRNG, content from a per-file key, so any single file can be
// rewritten to exactly its original bytes (the incremental step relies on that).
// ---------------------------------------------------------------------------------------------

function logUniform(rand: () => number, min: number, max: number): number {
  return Math.round(min * (max / min) ** rand());
}

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)];
}

/**
 * 60% of the bytes incompressible media (100 KB-50 MB), 25% text-like documents (50 KB-5 MB), 15%
 * small files (1-15 KB) in many nested folders; the small-file count scales with the tree size
 * (about 20k at 1 GiB).
 */
function planTree(seed: number, treeBytes: number): TreeFile[] {
  const rand = seededRandom(seed);
  const files: TreeFile[] = [];
  const baseMtime = Date.UTC(2025, 0, 1);
  let planned = 0;
  const add = (p: string, kind: ContentKind, size: number) => {
    const index = files.length;
    // Whole seconds in the past: an edit always moves mtime, and tar and we see the same value.
    files.push({ index, path: p, kind, size, mtimeMs: baseMtime + index * 60_000 });
    planned += size;
  };
  /** Adds files until this class's share of the bytes is spent (the last file takes what is left). */
  const fill = (budget: number, min: number, next: (remaining: number) => void) => {
    const end = planned + Math.round(budget);
    while (end - planned >= min) next(end - planned);
  };

  const courses = Math.max(2, Math.round(treeBytes / 100e6));
  fill(treeBytes * 0.6, 100e3, (remaining) => {
    const course = `materials/course-${1 + Math.floor(rand() * courses)}`;
    const r = rand();
    const n = files.length;
    if (r < 0.3) {
      add(`${course}/video/lecture-${n}.mp4`, 'media', Math.min(remaining, logUniform(rand, 5e6, 50e6)));
    } else if (r < 0.65) {
      const student = `submissions/2025/student-${String(Math.floor(rand() * 200)).padStart(3, '0')}`;
      add(`${student}/photo-${n}.jpg`, 'media', Math.min(remaining, logUniform(rand, 100e3, 8e6)));
    } else {
      add(`${course}/images/slide-${n}.png`, 'media', Math.min(remaining, logUniform(rand, 100e3, 4e6)));
    }
  });
  fill(treeBytes * 0.25, 50e3, (remaining) => {
    const size = Math.min(remaining, logUniform(rand, 50e3, 5e6));
    const r = rand();
    const n = files.length;
    if (r < 0.45) {
      add(`materials/course-${1 + Math.floor(rand() * courses)}/docs/handout-${n}.pdf`, 'document', size);
    } else if (r < 0.8) {
      const student = `submissions/2025/student-${String(Math.floor(rand() * 200)).padStart(3, '0')}`;
      add(`${student}/essay-${n}.docx`, 'document', size);
    } else {
      add(
        `reports/2025-${pick(rand, ['01', '02', '03', '04', '05', '06'])}/grades-${n}.xlsx`,
        'document',
        size,
      );
    }
  });
  const rooms = Math.max(4, Math.round(treeBytes / 30e6));
  fill(treeBytes * 0.15, 1e3, (remaining) => {
    const size = Math.min(remaining, 1000 + Math.floor(rand() * 14_000));
    const r = rand();
    const n = files.length;
    if (r < 0.35) {
      const shard = Math.floor(rand() * 256)
        .toString(16)
        .padStart(2, '0');
      add(`avatars/${shard}/user-${n}.jpg`, 'media', size);
    } else if (r < 0.5) {
      add(`thumbnails/course-${1 + Math.floor(rand() * courses)}/thumb-${n}.png`, 'media', size);
    } else {
      const room = `room-${String(Math.floor(rand() * rooms)).padStart(3, '0')}`;
      const day = `2025-0${1 + Math.floor(rand() * 6)}-${String(1 + Math.floor(rand() * 28)).padStart(2, '0')}`;
      const ext = rand() < 0.8 ? 'txt' : 'json';
      add(`chat/${room}/${day}/msg-${n}.${ext}`, 'document', size);
    }
  });
  return files;
}

/**
 * Writes one file in 1 MiB chunks (never the whole file in memory). Media bytes are AES-128-CTR
 * keystream (deterministic, incompressible, GB/s); documents come from the seeded text generator.
 * `variant` 0 is the original content; other variants are same-size edits.
 */
function writeTreeFile(root: string, seed: number, file: TreeFile, variant: number, mtimeMs: number): void {
  const digest = createHash('sha256').update(`${GENERATOR}/${seed}/${file.index}/${variant}`).digest();
  const abs = path.join(root, file.path);
  const fd = openSync(abs, 'w');
  try {
    let left = file.size;
    if (file.kind === 'media') {
      const cipher = createCipheriv('aes-128-ctr', digest.subarray(0, 16), Buffer.alloc(16));
      const zeros = Buffer.alloc(Math.min(WRITE_CHUNK, file.size));
      while (left > 0) {
        const n = Math.min(zeros.length, left);
        writeAll(fd, cipher.update(zeros.subarray(0, n)));
        left -= n;
      }
    } else {
      const rand = seededRandom(digest.readUInt32LE(0));
      while (left > 0) {
        const n = Math.min(WRITE_CHUNK, left);
        writeAll(fd, documentBytes(rand, n));
        left -= n;
      }
    }
  } finally {
    closeSync(fd);
  }
  const mtime = new Date(mtimeMs);
  utimesSync(abs, mtime, mtime);
}

function writeAll(fd: number, buffer: Buffer): void {
  let offset = 0;
  while (offset < buffer.length) offset += writeSync(fd, buffer, offset);
}

function markerPath(config: BenchConfig): string {
  return path.join(config.dir, 'tree.json');
}

function treeRoot(config: BenchConfig): string {
  return path.join(config.dir, 'tree');
}

function readMarker(config: BenchConfig): TreeMarker | undefined {
  try {
    return JSON.parse(readFileSync(markerPath(config), 'utf8')) as TreeMarker;
  } catch {
    return undefined;
  }
}

function writeMarker(config: BenchConfig, files: readonly TreeFile[]): void {
  const marker: TreeMarker = {
    generator: GENERATOR,
    seed: config.seed,
    treeBytes: config.treeBytes,
    files: files.length,
    bytes: files.reduce((sum, f) => sum + f.size, 0),
  };
  writeFileSync(markerPath(config), `${JSON.stringify(marker, null, 2)}\n`);
}

/** Reuses the tree when its marker matches; otherwise rebuilds it. The marker is written last. */
function ensureTree(config: BenchConfig, files: readonly TreeFile[]): void {
  const marker = readMarker(config);
  const root = treeRoot(config);
  if (
    marker &&
    marker.generator === GENERATOR &&
    marker.seed === config.seed &&
    marker.treeBytes === config.treeBytes &&
    marker.files === files.length &&
    existsSync(root)
  ) {
    console.log(`Tree: reusing ${root} (marker ${markerPath(config)})`);
    return;
  }
  console.log(`Tree: generating ${root} (seed ${config.seed}, ${files.length} files) ...`);
  const started = performance.now();
  rmSync(markerPath(config), { force: true });
  rmSync(root, { recursive: true, force: true });
  const made = new Set<string>();
  for (const file of files) {
    const dir = path.dirname(path.join(root, file.path));
    if (!made.has(dir)) {
      mkdirSync(dir, { recursive: true });
      made.add(dir);
    }
    writeTreeFile(root, config.seed, file, 0, file.mtimeMs);
  }
  run('sync', []);
  writeMarker(config, files);
  console.log(`Tree: generated in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/** Files edited before each timed incremental: ~1% of all files, picked once by the seeded PRNG. */
function pickChangedFiles(seed: number, files: readonly TreeFile[]): TreeFile[] {
  const rand = seededRandom(seed + 1);
  const count = Math.max(1, Math.round(files.length * CHANGED_SHARE));
  const order = files.map((f) => f.index);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(rand() * (order.length - i));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order
    .slice(0, count)
    .sort((a, b) => a - b)
    .map((i) => files[i]);
}

/** Reads every file once so the timed runs start from a warm page cache (GNU tar into /dev/null would not read). */
function warmPageCache(root: string, files: readonly TreeFile[]): number {
  const buffer = Buffer.allocUnsafe(WRITE_CHUNK);
  const started = performance.now();
  for (const file of files) {
    const fd = openSync(path.join(root, file.path), 'r');
    try {
      while (readSync(fd, buffer, 0, buffer.length, null) > 0);
    } finally {
      closeSync(fd);
    }
  }
  return (performance.now() - started) / 1000;
}

/** The shard section (bench/shards.ts, issue 14) on the same tree, built or reused. */
async function runShardSection(config: BenchConfig): Promise<void> {
  mkdirSync(config.dir, { recursive: true });
  const files = planTree(config.seed, config.treeBytes);
  ensureTree(config, files);
  const root = treeRoot(config);
  await runShardBench({
    dir: config.dir,
    root,
    files: files.length,
    bytes: files.reduce((sum, f) => sum + f.size, 0),
    warm: () => {
      warmPageCache(root, files);
    },
  });
}

/** The synthetic-full section (bench/synthetic.ts, issue 15): the same generator, at two sizes. */
async function runSyntheticSection(config: BenchConfig): Promise<void> {
  const treeAt = (dir: string, treeBytes: number) => {
    const c = { ...config, dir, treeBytes };
    mkdirSync(dir, { recursive: true });
    const files = planTree(c.seed, treeBytes);
    ensureTree(c, files);
    return { root: treeRoot(c), files: files.length, bytes: files.reduce((sum, f) => sum + f.size, 0) };
  };
  await runSyntheticBench({
    dir: config.dir,
    seed: config.seed,
    tree: treeAt(config.dir, config.treeBytes),
    treeOfBytes: (bytes) => treeAt(path.join(config.dir, `synthetic-tree-${bytes}`), bytes),
  });
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const config = readConfig();
  if (process.env.BENCH_ONLY_EFS === '1') {
    // Alone: the EFS-like section (bench/efs.ts) builds its own small-file trees.
    await runEfsBench(config.dir);
    return;
  }
  if (process.env.BENCH_ONLY_SHARDS === '1') {
    await runShardSection(config);
    return;
  }
  if (process.env.BENCH_ONLY_SYNTHETIC === '1') {
    await runSyntheticSection(config);
    return;
  }
  const fileCount = process.env.BENCH_FILE_COUNT;
  if (fileCount) {
    // Alone: the file-count section does not need the byte tree, the peers or the variants.
    const count = Number(fileCount);
    if (!Number.isSafeInteger(count) || count < FILE_COUNT_MIN) {
      throw new Error(
        `BENCH_FILE_COUNT must be a whole number >= ${FILE_COUNT_MIN} (got ${JSON.stringify(fileCount)})`,
      );
    }
    await runFileCountBench(config.dir, count);
    return;
  }
  const root = treeRoot(config);
  const scratch = path.join(config.dir, 'out');
  mkdirSync(config.dir, { recursive: true });
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });

  const tarVersion = spawnSync('tar', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
  const gzipVersion = spawnSync('gzip', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0];
  const machine = {
    cores: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGb: round(totalmem() / 1e9, 1),
    node: process.version,
    tar: tarVersion,
    gzip: gzipVersion,
  };
  console.log(
    `Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGb} GB RAM, Node ${machine.node}, ${machine.tar}, ${machine.gzip}`,
  );

  const loadBefore = loadavg().map((l) => round(l, 2));
  console.log(`Load average before (1/5/15 min): ${loadBefore.join(' / ')}`);

  const files = planTree(config.seed, config.treeBytes);
  const treeBytes = files.reduce((sum, f) => sum + f.size, 0);
  ensureTree(config, files);
  const byKind = (kind: ContentKind, small: boolean) =>
    files.filter((f) => f.kind === kind && f.size < 16e3 === small).reduce((s, f) => s + f.size, 0);
  const smallFiles = files.filter((f) => f.size < 16e3).length;
  console.log(
    `Tree: ${files.length} files, ${treeBytes} bytes (${(treeBytes / MB).toFixed(1)} MB): ` +
      `media ${(byKind('media', false) / MB).toFixed(1)} MB, documents ${(byKind('document', false) / MB).toFixed(1)} MB, ` +
      `${smallFiles} small files ${((byKind('media', true) + byKind('document', true)) / MB).toFixed(1)} MB`,
  );

  const timeBin = findGnuTime();
  if (!timeBin)
    console.log('Peak RSS unavailable: GNU time (/usr/bin/time) is missing and could not be installed.');

  // Peers of issue 6: found or installed before the warm-up pass, so apt-get does not evict the tree.
  const tools: ToolStatus[] = config.peers ? ensurePeerTools() : [];
  for (const tool of tools) {
    console.log(
      tool.version ? `Peer ${tool.name}: ${tool.version}` : `${tool.name} not available: ${tool.reason}`,
    );
  }
  if (!config.peers) console.log('Peers (pigz, restic, borg) skipped: BENCH_PEERS=0');
  const variantRunner = config.variants ? await buildVariantRunner() : undefined;

  // Untimed: tsx compiles the CLI's TypeScript on first use and caches it; warm that cache too.
  run('node', [CLI, '--version']);
  const readSeconds = warmPageCache(root, files);
  console.log(
    `Warm-up read pass (untimed, in this process): ${readSeconds.toFixed(2)} s, ${(treeBytes / MB / readSeconds).toFixed(0)} MB/s`,
  );

  const changed = pickChangedFiles(config.seed, files);
  const changedBytes = changed.reduce((sum, f) => sum + f.size, 0);
  const full = newMeasured('media-backup full');
  const tar = newMeasured('tar -czf');
  const incremental = newMeasured('media-backup incremental (1% files changed)');
  const restore = newMeasured('media-backup restore of the full (every sha256 verified)');
  const tarExtract = newMeasured('tar -xzf of the same archive');
  const tarSyncSeconds: number[] = [];
  const tarOut = path.join(scratch, 'tree.tar.gz');
  const store = path.join(scratch, 'store');

  const cores = availableParallelism();
  const peerLabel: Record<PeerName, string> = {
    pigz: `tar -cf - | pigz -p ${cores} -6`,
    restic: 'restic backup (first, zstd auto)',
    borg: 'borg create --compression lz4',
  };
  const peerRunners: Record<PeerName, typeof runPigz> = { pigz: runPigz, restic: runRestic, borg: runBorg };
  /** Peers still being run, and why each one that is not was dropped. */
  const peerMeasured = new Map<PeerName, Measured>();
  const peerUnavailable = new Map<PeerName, string>();
  for (const tool of tools) {
    if (tool.version) peerMeasured.set(tool.name, newMeasured(peerLabel[tool.name]));
    else peerUnavailable.set(tool.name, tool.reason ?? 'unknown');
  }
  /** User + system CPU of each CLI full: the basis of the README's throughput-per-vCPU estimates. */
  const fullCpuSeconds: number[] = [];
  const s3 = newMeasured('media-backup full to s3rver');
  /** CPU seconds of our CLI and of s3rver in each s3rver run: both share the same cores. */
  const s3CpuSplit: { cli: number | null; s3rver: number }[] = [];
  let s3Unavailable: string | null = config.s3 ? null : 'skipped (BENCH_S3=0)';
  const variants = GZIP_VARIANTS.map((v) => ({ variant: v, measured: newMeasured(v.name) }));
  const recordPeer = (m: Measured, r: PeerRun) => {
    m.seconds.push(r.seconds);
    m.peakRssMb.push(r.peakRssMb);
    m.outputBytes.push(r.outputBytes);
  };

  for (let rep = 1; rep <= config.runs; rep++) {
    console.log(`Run ${rep}/${config.runs} ...`);
    // Each timed command starts with no dirty pages left by the previous one (tar does not fsync;
    // our folder store does), so one command's writeback is never billed to the next.
    run('sync', []);

    rmSync(tarOut, { force: true });
    // Before every timed read of the tree: the page cache here does not keep 1 GiB across the runs
    // in between (a re-read after writing 1 GB took 2-3x as long), so every tool starts warm.
    warmPageCache(root, files);
    const t = await timed(timeBin, scratch, 'tar', ['-czf', tarOut, '-C', root, '.']);
    tar.seconds.push(t.seconds);
    tar.peakRssMb.push(t.peakRssMb);
    tar.outputBytes.push(statSync(tarOut).size);
    const syncStarted = performance.now();
    run('sync', []);
    tarSyncSeconds.push((performance.now() - syncStarted) / 1000);
    rmSync(tarOut, { force: true });

    rmSync(store, { recursive: true, force: true });
    warmPageCache(root, files);
    const f = await timed(timeBin, scratch, 'node', [
      ...CLI_NODE_ARGS,
      CLI,
      'backup',
      'full',
      '--source',
      root,
      '--store',
      store,
      '--json',
    ]);
    const fullResult = JSON.parse(f.stdout) as BackupJson;
    const fullEnded = performance.now();
    full.seconds.push(f.seconds);
    full.peakRssMb.push(f.peakRssMb);
    full.outputBytes.push(fullResult.archiveBytes);
    full.engineSeconds.push(fullResult.durationMs / 1000);
    if (f.cpuSeconds !== null) fullCpuSeconds.push(f.cpuSeconds);
    if (fullResult.files !== files.length || fullResult.bytes !== treeBytes) {
      console.log(
        `  warning: full backup saw ${fullResult.files} files / ${fullResult.bytes} bytes, tree has ${files.length} / ${treeBytes}`,
      );
    }

    // Restore of that full into an empty folder (verifying every sha256) against GNU tar -xzf of
    // the very same archive, each into a fresh folder and each followed by an untimed cleanup.
    const restoreTarget = path.join(scratch, 'restored');
    const tarTarget = path.join(scratch, 'tar-extracted');
    run('sync', []);
    const r = await timed(timeBin, scratch, 'node', [
      ...CLI_NODE_ARGS,
      CLI,
      'restore',
      fullResult.backupId,
      '--store',
      store,
      '--target',
      restoreTarget,
      '--json',
    ]);
    restore.seconds.push(r.seconds);
    restore.peakRssMb.push(r.peakRssMb);
    restore.outputBytes.push(treeBytes);
    restore.engineSeconds.push((JSON.parse(r.stdout) as { durationMs: number }).durationMs / 1000);
    rmSync(restoreTarget, { recursive: true, force: true });
    run('sync', []);
    mkdirSync(tarTarget);
    const x = await timed(timeBin, scratch, 'tar', [
      '-xzf',
      path.join(store, fullResult.archiveKey),
      '-C',
      tarTarget,
    ]);
    tarExtract.seconds.push(x.seconds);
    tarExtract.peakRssMb.push(x.peakRssMb);
    tarExtract.outputBytes.push(treeBytes);
    rmSync(tarTarget, { recursive: true, force: true });
    console.log(`  restore ${r.seconds.toFixed(2)} s, tar -xzf ${x.seconds.toFixed(2)} s`);

    // The incremental: its base is the full just timed (same tree, fresh store). Before it, the same
    // seeded 1% of files get new same-size content and an mtime one day later; afterwards they are
    // rewritten to their original bytes and mtime. So every repetition times identical work (the
    // same files and bytes changed against the same base), and the cached tree stays pristine. The
    // marker is withdrawn meanwhile, so an interrupted bench rebuilds the tree next time.
    rmSync(markerPath(config), { force: true });
    for (const file of changed) writeTreeFile(root, config.seed, file, rep, file.mtimeMs + 86_400_000);
    run('sync', []);
    // Backup ids have one-second resolution and the engine waits for a fresh second rather than
    // reuse one; a real incremental runs hours after the full, so keep that wait out of the timing.
    const waitMs = 1100 - (performance.now() - fullEnded);
    if (waitMs > 0) await sleep(waitMs);
    const i = await timed(timeBin, scratch, 'node', [
      ...CLI_NODE_ARGS,
      CLI,
      'backup',
      'incremental',
      '--source',
      root,
      '--store',
      store,
      '--json',
    ]);
    const incResult = JSON.parse(i.stdout) as BackupJson;
    incremental.seconds.push(i.seconds);
    incremental.peakRssMb.push(i.peakRssMb);
    incremental.outputBytes.push(incResult.archiveBytes);
    incremental.engineSeconds.push(incResult.durationMs / 1000);
    if (
      incResult.type !== 'incremental' ||
      incResult.changedFiles !== changed.length ||
      incResult.changedBytes !== changedBytes
    ) {
      console.log(
        `  warning: incremental was ${incResult.type} with ${incResult.changedFiles} changed files / ${incResult.changedBytes} bytes; expected incremental with ${changed.length} / ${changedBytes}`,
      );
    }
    for (const file of changed) writeTreeFile(root, config.seed, file, 0, file.mtimeMs);
    writeMarker(config, files);
    rmSync(store, { recursive: true, force: true });
    console.log(
      `  tar ${t.seconds.toFixed(2)} s, full ${f.seconds.toFixed(2)} s (engine ${(fullResult.durationMs / 1000).toFixed(2)} s), ` +
        `incremental ${i.seconds.toFixed(2)} s (engine ${(incResult.durationMs / 1000).toFixed(2)} s)`,
    );

    // Issue 6 peers: each on the pristine tree, into fresh output, after a sync (in the runners).
    const ctx = { timeBin, scratch, root, cores };
    for (const [name, measured] of [...peerMeasured]) {
      try {
        warmPageCache(root, files);
        const p = await peerRunners[name](ctx);
        recordPeer(measured, p);
        console.log(`  ${measured.name}: ${p.seconds.toFixed(2)} s, ${p.outputBytes} bytes`);
      } catch (error) {
        const reason = (error as Error).message.split('\n').slice(0, 3).join(' / ');
        console.log(`  ${name} failed, dropped from the remaining runs: ${reason}`);
        peerMeasured.delete(name);
        peerUnavailable.set(name, `failed: ${reason}`);
      }
    }

    if (s3Unavailable === null) {
      // A fresh s3rver (and temp folder) per repetition, served from this process's event loop
      // while the CLI child uploads to it: it competes with the backup for the same cores.
      let server: Awaited<ReturnType<typeof startS3rver>> | undefined;
      try {
        // s3rver keeps objects in a folder: in RAM (/dev/shm) when there is one, so its 1.6 GB of part
        // and object writes neither wait on this disk nor evict the source tree from the page cache
        // (real S3 does not write to the backed-up machine's disk either).
        server = await startS3rver({ parentDir: existsSync('/dev/shm') ? '/dev/shm' : undefined });
        run('sync', []);
        warmPageCache(root, files);
        const serverCpu = process.cpuUsage();
        const b = await timed(
          timeBin,
          scratch,
          'node',
          [
            ...CLI_NODE_ARGS,
            CLI,
            'backup',
            'full',
            '--source',
            root,
            '--store',
            `s3://${server.bucket}/bench/`,
            '--json',
          ],
          {
            env: {
              S3_ENDPOINT: server.endpoint,
              S3_FORCE_PATH_STYLE: 'true',
              S3_CHECKSUMS: 'off',
              AWS_ACCESS_KEY_ID: 'S3RVER',
              AWS_SECRET_ACCESS_KEY: 'S3RVER',
              AWS_REGION: 'us-east-1',
            },
          },
        );
        const r = JSON.parse(b.stdout) as BackupJson;
        recordPeer(s3, { ...b, outputBytes: r.archiveBytes });
        s3.engineSeconds.push(r.durationMs / 1000);
        const used = process.cpuUsage(serverCpu);
        const s3rverCpu = (used.user + used.system) / 1e6;
        s3CpuSplit.push({ cli: b.cpuSeconds, s3rver: s3rverCpu });
        console.log(
          `  ${s3.name}: ${b.seconds.toFixed(2)} s (engine ${(r.durationMs / 1000).toFixed(2)} s); ` +
            `CPU: our CLI ${b.cpuSeconds?.toFixed(1) ?? '?'} s, s3rver (bench process) ${s3rverCpu.toFixed(1)} s`,
        );
      } catch (error) {
        s3Unavailable = `failed: ${(error as Error).message.split('\n').slice(0, 3).join(' / ')}`;
        console.log(`  s3rver backup ${s3Unavailable}`);
      } finally {
        await server?.stop();
      }
    }

    if (variantRunner) {
      for (const { variant, measured } of variants) {
        warmPageCache(root, files);
        const v = await runVariant({ timeBin, scratch, root, cores }, variantRunner, variant);
        recordPeer(measured, v);
        measured.engineSeconds.push(v.durationMs / 1000);
        console.log(
          `  ${variant.name}: ${v.seconds.toFixed(2)} s, ${v.outputBytes} bytes, CPU ${v.cpuSeconds?.toFixed(1) ?? '?'} s ` +
            `(${v.cpuSeconds === null ? '?' : (v.cpuSeconds / (treeBytes / 1e9)).toFixed(1)} CPU-s per GB)`,
        );
      }
    }
  }
  rmSync(scratch, { recursive: true, force: true });
  const loadAfter = loadavg().map((l) => round(l, 2));
  console.log(`Load average after (1/5/15 min, includes this bench's own runs): ${loadAfter.join(' / ')}`);
  if (loadBefore[0] > machine.cores / 2) {
    console.log(
      '  warning: other processes were using the CPU before the bench started; timings may be noisy.',
    );
  }

  const sFull = summarize(full, treeBytes);
  const sTar = summarize(tar, treeBytes);
  const sInc = summarize(incremental, treeBytes);
  const speedRatio = (s: { medianSeconds: number }) => round(sTar.medianSeconds / s.medianSeconds, 2);
  const fullSizeRatio = sFull.outputBytes / sTar.outputBytes;
  const incVsFull = sInc.medianSeconds / sFull.medianSeconds;
  const oursPeakRss = maxOrNull([sFull.peakRssMb, sInc.peakRssMb]);
  const sRestore = summarize(restore, treeBytes);
  const sTarX = summarize(tarExtract, treeBytes);
  const restoreRatio = round(sTarX.medianSeconds / sRestore.medianSeconds, 2);
  const rss = (v: number | null) => (v === null ? 'n/a' : v.toFixed(1));

  console.log('');
  console.log(
    `Results: median of ${config.runs} run(s), page cache warm; MB/s = 10^6 bytes of source file data ` +
      `(the whole tree, ${treeBytes} bytes, also for the incremental) per wall-clock second, process start-up included`,
  );
  console.log(
    table([
      [
        'name',
        'median s',
        'MB/s',
        'ratio to tar -czf speed',
        'output bytes',
        'output vs tar -czf size',
        'peak RSS MB',
      ],
      [
        sFull.name,
        sFull.medianSeconds.toFixed(2),
        sFull.mbPerSecond.toFixed(1),
        speedRatio(sFull).toFixed(2),
        String(sFull.outputBytes),
        `${(fullSizeRatio * 100).toFixed(2)}%`,
        rss(sFull.peakRssMb),
      ],
      [
        sTar.name,
        sTar.medianSeconds.toFixed(2),
        sTar.mbPerSecond.toFixed(1),
        '1.00',
        String(sTar.outputBytes),
        '100.00%',
        rss(sTar.peakRssMb),
      ],
      [
        sInc.name,
        sInc.medianSeconds.toFixed(2),
        sInc.mbPerSecond.toFixed(1),
        speedRatio(sInc).toFixed(2),
        String(sInc.outputBytes),
        '-',
        rss(sInc.peakRssMb),
      ],
    ]),
  );
  console.log('');
  console.log(
    table([
      ['restore', 'median s', 'MB/s', 'ratio to tar -xzf speed', 'peak RSS MB'],
      [
        sRestore.name,
        sRestore.medianSeconds.toFixed(2),
        sRestore.mbPerSecond.toFixed(1),
        restoreRatio.toFixed(2),
        rss(sRestore.peakRssMb),
      ],
      [
        sTarX.name,
        sTarX.medianSeconds.toFixed(2),
        sTarX.mbPerSecond.toFixed(1),
        '1.00',
        rss(sTarX.peakRssMb),
      ],
    ]),
  );
  console.log('');
  console.log(
    `Incremental changed set: ${changed.length} files (${(CHANGED_SHARE * 100).toFixed(0)}% of ${files.length}), ${changedBytes} bytes`,
  );
  console.log(
    `Engine time (durationMs, excludes node/tsx start-up): full ${sFull.engineSeconds?.toFixed(2)} s, incremental ${sInc.engineSeconds?.toFixed(2)} s`,
  );
  if (fullCpuSeconds.length > 0) {
    const cpu = median(fullCpuSeconds);
    console.log(
      `CPU of the CLI full (user + system, median): ${cpu.toFixed(1)} s = ${(cpu / (treeBytes / 1e9)).toFixed(1)} CPU-s per GB ` +
        `of source; one core's worth of throughput: ${(treeBytes / MB / cpu).toFixed(0)} MB/s`,
    );
  }
  console.log(
    `Note: our folder store fsyncs the archive; tar -czf does not. Flushing tar's output afterwards (untimed sync) took a median ${median(tarSyncSeconds).toFixed(2)} s.`,
  );
  const targets = {
    fullSpeedVsTar: {
      value: speedRatio(sFull),
      target: `>= ${TARGETS.fullSpeedVsTar}`,
      met: speedRatio(sFull) >= TARGETS.fullSpeedVsTar,
    },
    fullSizeVsTar: {
      value: round(fullSizeRatio, 4),
      target: `<= ${TARGETS.fullSizeVsTar}`,
      met: fullSizeRatio <= TARGETS.fullSizeVsTar,
    },
    incrementalVsFullTime: {
      value: round(incVsFull, 4),
      target: `< ${TARGETS.incrementalVsFullTime}`,
      met: incVsFull < TARGETS.incrementalVsFullTime,
    },
    restoreSpeedVsTar: {
      value: restoreRatio,
      target: `>= ${TARGETS.restoreSpeedVsTar}`,
      met: restoreRatio >= TARGETS.restoreSpeedVsTar,
    },
    peakRssMb: {
      value: oursPeakRss === null ? null : round(oursPeakRss, 1),
      target: `< ${TARGETS.peakRssMb}`,
      met: oursPeakRss === null ? null : oursPeakRss < TARGETS.peakRssMb,
    },
  };
  console.log('Targets:');
  console.log(
    `  full backup at least as fast as tar -czf (ratio >= ${TARGETS.fullSpeedVsTar.toFixed(1)}): ${speedRatio(sFull).toFixed(2)} -> ${verdict(targets.fullSpeedVsTar.met)}`,
  );
  console.log(
    `  full output no more than 2% larger than tar -czf's: ${((fullSizeRatio - 1) * 100).toFixed(2)}% -> ${verdict(targets.fullSizeVsTar.met)}`,
  );
  console.log(
    `  incremental under 10% of the full's time: ${(incVsFull * 100).toFixed(1)}% (${sInc.medianSeconds.toFixed(2)} s vs ${sFull.medianSeconds.toFixed(2)} s) -> ${verdict(targets.incrementalVsFullTime.met)}`,
  );
  console.log(
    `  peak RSS under ${TARGETS.peakRssMb} MB (full and incremental): ${oursPeakRss === null ? 'unavailable' : `${oursPeakRss.toFixed(1)} MB`} -> ${verdict(targets.peakRssMb.met)}`,
  );

  console.log(
    `  restore at least as fast as tar -xzf while verifying every hash (ratio >= ${TARGETS.restoreSpeedVsTar.toFixed(1)}): ${restoreRatio.toFixed(2)} -> ${verdict(targets.restoreSpeedVsTar.met)}`,
  );

  // ------------------------------------------------------------------------------------------
  // Issue 6: first backup vs peers, s3rver, gzip settings
  // ------------------------------------------------------------------------------------------
  type Summary = ReturnType<typeof summarize>;
  const sS3 = s3.seconds.length > 0 ? summarize(s3, treeBytes) : null;
  const sPeers = new Map<PeerName, Summary>();
  for (const [name, m] of peerMeasured) if (m.seconds.length > 0) sPeers.set(name, summarize(m, treeBytes));
  const sVariants = variants
    .filter((v) => v.measured.seconds.length > 0)
    .map((v) => ({
      ...summarize(v.measured, treeBytes),
      level: v.variant.level ?? DEFAULT_LEVEL,
      workers: v.variant.workers ?? null,
    }));
  const vsOurs = (x: Summary) => ({
    speed: round(x.mbPerSecond / sFull.mbPerSecond, 2),
    size: x.outputBytes / sFull.outputBytes,
  });
  const peerRow = (x: Summary): string[] => [
    x.name,
    x.mbPerSecond.toFixed(1),
    vsOurs(x).speed.toFixed(2),
    String(x.outputBytes),
    `${(vsOurs(x).size * 100).toFixed(2)}%`,
    rss(x.peakRssMb),
  ];
  const missingRow = (name: string, reason: string): string[] => [
    `${name}: not available (${reason.length > 60 ? `${reason.slice(0, 57)}...` : reason})`,
    '-',
    '-',
    '-',
    '-',
    '-',
  ];
  const header = ['name', 'MB/s', 'ratio to ours', 'output bytes', 'output vs ours', 'peak RSS MB'];
  const peerRows: string[][] = [header, peerRow(sFull)];
  if (sS3) peerRows.push(peerRow(sS3));
  else peerRows.push(missingRow(s3.name, s3Unavailable ?? 'no runs'));
  peerRows.push(peerRow(sTar));
  for (const name of ['pigz', 'restic', 'borg'] as const) {
    const x = sPeers.get(name);
    if (x) peerRows.push(peerRow(x));
    else if (peerUnavailable.has(name)) peerRows.push(missingRow(name, peerUnavailable.get(name)!));
  }
  console.log('');
  console.log(
    "First backup vs peers (issue 6): ratio to ours = that row's MB/s / our folder-store full's MB/s " +
      '(below 1.00 = slower than ours); output = archive bytes, or repository bytes (apparent size) for restic and borg',
  );
  console.log(table(peerRows));
  if (config.peers) {
    console.log(
      `Notes: the pigz row is one \`bash -c\` pipeline; GNU time reports the largest single process's RSS in it, not the sum. ` +
        'restic and borg are timed without their untimed `init`; restic 0.14 compresses with zstd (auto) and dedups; ' +
        'borg 1.2 is single-threaded, lz4, dedup. Only our folder store fsyncs its output.',
    );
  }
  if (sS3) {
    const cpu = s3CpuSplit.at(-1);
    if (cpu) {
      console.log(
        `CPU of the last s3rver run: our CLI ${cpu.cli?.toFixed(1) ?? '?'} s, s3rver ${cpu.s3rver.toFixed(1)} s, ` +
          `on ${cores} cores: the pair cannot finish in less than ${((Number(cpu.cli ?? 0) + cpu.s3rver) / cores).toFixed(1)} s of wall time.`,
      );
    }
    console.log(
      `Note: s3rver runs in the bench process on the same ${cores} cores and writes every part to a folder ` +
        '(/dev/shm when present), then concatenates the parts: its CPU and I/O are billed to the s3rver row.',
    );
  }
  if (sVariants.length > 0) {
    console.log('');
    console.log(
      'Gzip settings (runBackup in a child process, folder store; the CLI has no compression flag): ' +
        'ratio and output vs our CLI full',
    );
    console.log(table([header, peerRow(sFull), ...sVariants.map(peerRow)]));
    const l6 = sVariants.find((v) => v.level === 6 && v.workers === null);
    const l1 = sVariants.find((v) => v.level === 1 && v.workers === null);
    if (l6 && l1) {
      console.log(
        `Level 1 vs level 6 (default workers): ${(l1.mbPerSecond / l6.mbPerSecond).toFixed(2)}x the speed, ` +
          `${((l1.outputBytes / l6.outputBytes - 1) * 100).toFixed(2)}% more output bytes`,
      );
    }
  }

  const restic = sPeers.get('restic');
  const borg = sPeers.get('borg');
  const ratioOrNull = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? null : round(a / b, 4);
  const vsRestic = ratioOrNull(sFull.mbPerSecond, restic?.mbPerSecond);
  const vsBorg = ratioOrNull(sFull.mbPerSecond, borg?.mbPerSecond);
  const sizeVsRestic = ratioOrNull(sFull.outputBytes, restic?.outputBytes);
  const s3VsFolder = ratioOrNull(sS3?.mbPerSecond, sFull.mbPerSecond);
  const check = (value: number | null, ok: (v: number) => boolean) => ({
    value,
    met: value === null ? null : ok(value),
  });
  const issue6 = {
    fullSpeedVsRestic: {
      ...check(vsRestic, (v) => v >= ISSUE6_TARGETS.fullSpeedVsRestic),
      target: `>= ${ISSUE6_TARGETS.fullSpeedVsRestic}`,
    },
    fullSpeedVsBorg: {
      ...check(vsBorg, (v) => v >= ISSUE6_TARGETS.fullSpeedVsBorg),
      target: `>= ${ISSUE6_TARGETS.fullSpeedVsBorg}`,
    },
    fullSizeVsRestic: {
      ...check(sizeVsRestic, (v) => v <= ISSUE6_TARGETS.fullSizeVsRestic),
      target: `<= ${ISSUE6_TARGETS.fullSizeVsRestic}`,
    },
    peakRssMb: {
      ...check(oursPeakRss === null ? null : round(oursPeakRss, 1), (v) => v <= ISSUE6_TARGETS.peakRssMb),
      target: `<= ${ISSUE6_TARGETS.peakRssMb}`,
    },
    incrementalVsFullTime: {
      ...check(round(incVsFull, 4), (v) => v <= ISSUE6_TARGETS.incrementalVsFullTime),
      target: `<= ${ISSUE6_TARGETS.incrementalVsFullTime}`,
    },
    s3SpeedVsFolder: {
      ...check(s3VsFolder, (v) => v >= ISSUE6_TARGETS.s3SpeedVsFolder),
      target: `>= ${ISSUE6_TARGETS.s3SpeedVsFolder}`,
    },
  };
  const show = (v: number | null, f: (v: number) => string, missing: string) => (v === null ? missing : f(v));
  const x = (v: number) => `${v.toFixed(2)}x`;
  console.log('Targets (issue 6):');
  console.log(
    `  full backup >= ${ISSUE6_TARGETS.fullSpeedVsRestic}x restic's throughput: ${show(vsRestic, x, 'restic not measured')} -> ${verdict(issue6.fullSpeedVsRestic.met)}`,
  );
  console.log(
    `  full backup >= ${ISSUE6_TARGETS.fullSpeedVsBorg}x borg's throughput: ${show(vsBorg, x, 'borg not measured')} -> ${verdict(issue6.fullSpeedVsBorg.met)}`,
  );
  console.log(
    `  full output no larger than restic's repository: ${show(sizeVsRestic, (v) => `${(v * 100).toFixed(2)}% of restic's`, 'restic not measured')} -> ${verdict(issue6.fullSizeVsRestic.met)}`,
  );
  console.log(
    `  peak RSS <= ${ISSUE6_TARGETS.peakRssMb} MB (full and incremental): ${show(oursPeakRss, (v) => `${v.toFixed(1)} MB`, 'unavailable')} -> ${verdict(issue6.peakRssMb.met)}`,
  );
  console.log(
    `  incremental <= ${ISSUE6_TARGETS.incrementalVsFullTime * 100}% of the full's time: ${(incVsFull * 100).toFixed(1)}% -> ${verdict(issue6.incrementalVsFullTime.met)}`,
  );
  console.log(
    `  backup to s3rver >= ${ISSUE6_TARGETS.s3SpeedVsFolder * 100}% of the folder store's throughput: ${show(s3VsFolder, (v) => `${(v * 100).toFixed(1)}%`, 'not measured')} -> ${verdict(issue6.s3SpeedVsFolder.met)}`,
  );

  const summary = {
    machine,
    tree: { root, seed: config.seed, files: files.length, bytes: treeBytes, smallFiles },
    runs: config.runs,
    loadAverage: { before: loadBefore, after: loadAfter },
    warmReadMbPerSecond: round(treeBytes / MB / readSeconds, 1),
    incrementalChange: { files: changed.length, bytes: changedBytes },
    tarSyncSeconds: round(median(tarSyncSeconds), 3),
    results: { full: sFull, tar: sTar, incremental: sInc, restore: sRestore, tarExtract: sTarX },
    targets,
    peers: {
      tools,
      unavailable: Object.fromEntries(peerUnavailable),
      results: Object.fromEntries(sPeers),
    },
    s3rver: sS3 ?? { unavailable: s3Unavailable },
    gzipVariants: sVariants,
    issue6Targets: issue6,
  };
  console.log(`BENCH_JSON ${JSON.stringify(summary)}`);
  if (process.env.BENCH_SHARDS !== '0') await runShardSection(config);
  if (process.env.BENCH_SYNTHETIC !== '0') await runSyntheticSection(config);
  if (process.env.BENCH_EFS === '1') await runEfsBench(config.dir);
}

await main();
