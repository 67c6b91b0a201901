/**
 * Shard bench (issue 14): sharded backups of the bench's 1 GiB tree next to the single-archive full,
 * and the streaming planner at 1,000,000 files next to the in-memory plan. Figures only: it never
 * fails on a timing; it throws when a sharded backup's manifest or restore differs from the tree.
 *
 *   npm run bench                              # this section runs after the others
 *   BENCH_ONLY_SHARDS=1 npm run bench          # this section alone (builds or reuses the 1 GiB tree)
 *   BENCH_SHARDS=0 npm run bench               # skip it
 *
 * Environment: BENCH_SHARDS_FILES (synthetic planner listing, default 1000000), BENCH_SHARDS_SCAN_FILES
 * (real tree for scanTreeStream + writeShardPlan vs scanTree, default 100000; 0 skips),
 * BENCH_SHARDS_RESTORE=0 (skip the restore of the 4-shard backup).
 *
 * 1. Backups (each its own child process, bench/planner-child.ts bundled with esbuild, CLI node
 *    flags, folder store): runBackup (one archive) and runShardedBackup with 1, 2, 4 shards (parallel =
 *    shards) and 4 shards 2 at a time. Each shard's start and end come from the store calls runShard
 *    makes (its result.json is read first and written last). Checked: every sharded manifest lists the
 *    same paths, types, sizes, modes, mtimes and sha256 as the single archive's; the 4-shard backup is
 *    restored (runRestore verifies every file's sha256 against that manifest) and the restored tree's
 *    listing (path, type, size, mode, mtime) equals the source's.
 * 2. Planner (writeShardPlan) over a synthetic sorted listing: a full, and an incremental against a
 *    synthetic base manifest of the same files streamed from a file (openManifestStream), 1% changed.
 *    Peak RSS = the child's maxRSS; heapUsed sampled. Peer: the in-memory plan runBackup makes (the
 *    scan in an array, the decoded base manifest, diffManifests, entriesToPack).
 * 3. A real tree of small files: scanTreeStream + writeShardPlan vs scanTree + diffManifests.
 *
 * MB = 10^6 bytes.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import path from 'node:path';
import { scanTree } from '../lambda/core/archiver/scan.js';
import { DEFAULT_BYTES_PER_SECOND, MIN_PER_FILE_MS } from '../lambda/core/archiver/time-model.js';
import { silentLogger, systemClock } from '../lambda/core/deps.js';
import { decodeManifest, type ManifestEntry } from '../lambda/core/repository/manifest.js';
import { runRestore } from '../lambda/core/restorer/restore.js';
import {
  DEFAULT_SHARD_BUDGET_MS,
  MAX_ROWS_PER_SHARD,
  shardCostMs,
} from '../lambda/core/sharding/shard-plan.js';
import { FsObjectStore } from '../lambda/store/fs.js';
import { CLI_ENV, CLI_NODE_ARGS, findGnuTime, MB, REPO_ROOT, round, run, table, timed } from './timing.js';

/** Target of issue 14: the planner's peak memory at any file count. */
const PLANNER_PEAK_RSS_TARGET_MB = 300;
/** The README's estimate: a 500 GB full. */
const ESTIMATE_BYTES = 500e9;
/** Distributed Map MaxConcurrency values to estimate for (8 is the stack's default, shardMaxConcurrency). */
const ESTIMATE_CONCURRENCY = [8, 32, 100] as const;
/** The shard function's default memory (backupMemoryMb 3538 MB = 2 vCPUs), as this machine's cores. */
const LAMBDA_SHARD_VCPUS = 2;
const SCAN_FILES_PER_FOLDER = 500;
const SCAN_GENERATOR = 'media-backup-bench/shards-scan/1';

export interface ShardBenchTree {
  /** The bench's work folder (BENCH_DIR). */
  readonly dir: string;
  /** The 1 GiB tree bench/run.ts built. */
  readonly root: string;
  readonly files: number;
  readonly bytes: number;
  /** Reads every file once (untimed), so each timed backup starts with a warm page cache. */
  readonly warm: () => void;
}

interface ChildRunner {
  readonly command: string;
  readonly args: readonly string[];
}

interface ShardTime {
  readonly shard: number;
  readonly startMs: number;
  readonly endMs?: number;
  readonly files: number;
  readonly bytes: number;
}

interface BackupChild {
  readonly result: {
    readonly backupId: string;
    readonly manifestKey: string;
    readonly files: number;
    readonly bytes: number;
    readonly durationMs: number;
  };
  readonly totalMs: number;
  readonly planMs: number | null;
  readonly commitMs: number | null;
  readonly shardTimes: readonly ShardTime[];
  readonly peakRssMb: number;
}

interface PlanChild {
  readonly mode: string;
  readonly seconds: number;
  readonly rows: number;
  readonly readFiles?: number;
  readonly toPack?: number;
  readonly shards?: number;
  readonly spillBytes?: number;
  readonly storeBytes?: number;
  readonly peakRssMb: number;
  readonly peakHeapUsedMb: number;
}

function wholeEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new Error(`${name} must be a whole number >= ${min} (got ${JSON.stringify(raw)})`);
  }
  return value;
}

/**
 * Bundles bench/planner-child.ts with esbuild (as peers.ts does for the gzip variants) so the measured
 * process runs no tsx loader; node gets the CLI's flags and environment.
 */
async function buildChildRunner(): Promise<ChildRunner> {
  const outfile = path.join(REPO_ROOT, 'node_modules', '.cache', 'media-backup-bench', 'planner-child.mjs');
  try {
    const esbuild = await import('esbuild');
    await esbuild.build({
      absWorkingDir: REPO_ROOT,
      entryPoints: ['bench/planner-child.ts'],
      bundle: true,
      packages: 'external',
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile,
      logLevel: 'error',
    });
    return { command: 'node', args: [...CLI_NODE_ARGS, outfile] };
  } catch (error) {
    console.log(`  esbuild bundle of bench/planner-child.ts failed (${(error as Error).message}); using tsx`);
    return { command: 'node', args: ['--import', 'tsx', path.join(REPO_ROOT, 'bench', 'planner-child.ts')] };
  }
}

async function runChild<T>(
  runner: ChildRunner,
  timeBin: string | undefined,
  scratch: string,
  args: readonly string[],
): Promise<T & { wallSeconds: number; cpuSeconds: number | null }> {
  const t = await timed(timeBin, scratch, runner.command, [...runner.args, ...args], { env: { ...CLI_ENV } });
  const parsed = JSON.parse(t.stdout.trim().split('\n').at(-1) as string) as T;
  return { ...parsed, wallSeconds: t.seconds, cpuSeconds: t.cpuSeconds };
}

/** Archives (single or parts) under a folder store's `full/`: count and bytes. */
function archivesIn(store: string): { parts: number; bytes: number } {
  let parts = 0;
  let bytes = 0;
  for (const name of readdirSync(path.join(store, 'full'))) {
    if (!name.endsWith('.tar.gz')) continue;
    parts += 1;
    bytes += statSync(path.join(store, 'full', name)).size;
  }
  return { parts, bytes };
}

/** A manifest row without the archive that holds it: what must not depend on how it was sharded. */
function rowKey(e: ManifestEntry): string {
  switch (e.type) {
    case 'file':
      return `f ${e.path} ${e.size} ${e.mode} ${e.mtimeMs} ${e.sha256}`;
    case 'dir':
      return `d ${e.path} ${e.mode} ${e.mtimeMs}`;
    case 'symlink':
      return `l ${e.path} ${e.target} ${e.mtimeMs}`;
  }
}

async function manifestRows(store: string, manifestKey: string): Promise<string[]> {
  const manifest = await decodeManifest(readFileSync(path.join(store, manifestKey)), manifestKey);
  return manifest.entries.map(rowKey);
}

/** First difference between two row lists, or undefined when equal. */
function firstDifference(a: readonly string[], b: readonly string[]): string | undefined {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i])
      return `row ${i}: ${JSON.stringify(a[i] ?? '(none)')} vs ${JSON.stringify(b[i] ?? '(none)')}`;
  }
  return undefined;
}

/** Every entry's path, type, size, mode and mtime in whole ms (utimes keeps microseconds, not the source's ns). */
async function treeListing(root: string): Promise<string[]> {
  const scan = await scanTree(root);
  return scan.entries.map((e) => {
    const ms = Math.floor(e.mtimeMs);
    if (e.type === 'file') return `f ${e.path} ${e.size} ${e.mode} ${ms}`;
    return e.type === 'dir' ? `d ${e.path} ${e.mode} ${ms}` : `l ${e.path} ${e.target} ${ms}`;
  });
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A tree of `count` ~100-byte files, 500 a folder (as the file-count bench's), cached. */
function ensureScanTree(dir: string, count: number): string {
  const root = path.join(dir, `shards-scan-${count}`);
  const marker = `${root}.done`;
  if (existsSync(marker)) return root;
  rmSync(root, { recursive: true, force: true });
  const started = performance.now();
  for (let n = 0; n < count; n++) {
    const folder = path.join(root, `room-${String(Math.floor(n / SCAN_FILES_PER_FOLDER)).padStart(4, '0')}`);
    if (n % SCAN_FILES_PER_FOLDER === 0) mkdirSync(folder, { recursive: true });
    writeFileSync(path.join(folder, `avatar-${n}.jpg`), `${SCAN_GENERATOR} ${n} `.padEnd(100, '.'));
  }
  writeFileSync(marker, `${SCAN_GENERATOR}\n`);
  console.log(
    `  generated ${count} files under ${root} in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  return root;
}

const mb = (bytes: number) => (bytes / MB).toFixed(1);
const f1 = (v: number) => v.toFixed(1);
const f2 = (v: number) => v.toFixed(2);

/** Runs the whole section: prints tables, the estimate and one `BENCH_SHARDS_JSON` line. */
export async function runShardBench(tree: ShardBenchTree): Promise<void> {
  const sectionStarted = performance.now();
  const plannerFiles = wholeEnv('BENCH_SHARDS_FILES', 1_000_000, 1000);
  const scanFiles = wholeEnv('BENCH_SHARDS_SCAN_FILES', 100_000, 0);
  const restoreCheck = process.env.BENCH_SHARDS_RESTORE !== '0';
  const scratch = path.join(tree.dir, 'shards-out');
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const timeBin = findGnuTime();
  const runner = await buildChildRunner();
  const cores = availableParallelism();
  console.log('');
  console.log(
    `Sharded backups (issue 14): ${tree.files} files, ${tree.bytes} bytes (${mb(tree.bytes)} MB), ${cores} cores, ` +
      `load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' / ')}`,
  );

  // ------------------------------------------------------------------------------------------
  // 1. The 1 GiB tree: one archive vs 1, 2, 4 shards.
  const configs = [
    { label: 'single archive (runBackup)', shards: 0, parallel: 1 },
    { label: '1 shard', shards: 1, parallel: 1 },
    { label: '2 shards, parallel 2', shards: 2, parallel: 2 },
    { label: '4 shards, parallel 4', shards: 4, parallel: 4 },
    { label: '4 shards, parallel 2', shards: 4, parallel: 2 },
  ] as const;
  const backups: {
    label: string;
    shards: number;
    parallel: number;
    child: BackupChild & { wallSeconds: number; cpuSeconds: number | null };
    parts: number;
    outputBytes: number;
    manifest: string;
    rows: number;
  }[] = [];
  let singleRows: string[] | undefined;
  let restore: { seconds: number; files: number; equal: string; label: string } | undefined;
  for (const c of configs) {
    const store = path.join(scratch, 'store');
    rmSync(store, { recursive: true, force: true });
    run('sync', []);
    tree.warm();
    const child = await runChild<BackupChild>(runner, timeBin, scratch, [
      'backup',
      tree.root,
      store,
      String(c.shards),
      String(c.parallel),
    ]);
    const out = archivesIn(store);
    const rows = await manifestRows(store, child.result.manifestKey);
    let manifest: string;
    if (!singleRows) {
      singleRows = rows;
      manifest = `peer (${rows.length} rows)`;
    } else {
      const diff = firstDifference(rows, singleRows);
      if (diff) {
        throw new Error(
          `shard bench: the manifest of "${c.label}" differs from the single archive's (paths, sizes, modes, mtimes, sha256): ${diff}`,
        );
      }
      manifest = `same ${rows.length} rows`;
    }
    if (c.shards === 4 && c.parallel === 4 && restoreCheck) {
      const target = path.join(scratch, 'restored');
      run('sync', []);
      const started = performance.now();
      const r = await runRestore(
        { store: new FsObjectStore(store), clock: systemClock, logger: silentLogger },
        { backup: child.result.backupId, target, parallel: 2 },
      );
      const seconds = (performance.now() - started) / 1000;
      const diff = firstDifference(await treeListing(target), await treeListing(tree.root));
      if (diff)
        throw new Error(`shard bench: the restored 4-shard backup differs from the source tree: ${diff}`);
      restore = { seconds, files: r.files, equal: 'equal', label: c.label };
      rmSync(target, { recursive: true, force: true });
    }
    rmSync(store, { recursive: true, force: true });
    backups.push({ ...c, child, parts: out.parts, outputBytes: out.bytes, manifest, rows: rows.length });
    console.log(
      `  ${c.label}: ${f2(child.wallSeconds)} s, ${out.bytes} bytes in ${out.parts} archive(s), manifest ${manifest}`,
    );
  }
  const single = backups[0];
  const shardSeconds = (s: ShardTime) => ((s.endMs ?? s.startMs) - s.startMs) / 1000;
  console.log('');
  console.log(
    `Backups of the ${mb(tree.bytes)} MB tree (folder store, each a child process; wall = process start to exit; ` +
      'ratio = single archive wall / this wall; per-shard rate = median over its shards of bytes (files) read / shard time)',
  );
  console.log(
    table([
      [
        'backup',
        'wall s',
        'ratio',
        'plan s',
        'commit s',
        'output bytes',
        'vs single',
        'parts',
        'per-shard MB/s',
        'per-shard files/s',
        'CPU s',
        'peak RSS MB',
        'manifest',
      ],
      ...backups.map((b) => {
        const st = b.child.shardTimes;
        const rate = st.length ? median(st.map((s) => s.bytes / MB / shardSeconds(s))) : null;
        const filesRate = st.length ? median(st.map((s) => s.files / shardSeconds(s))) : null;
        return [
          b.label,
          f2(b.child.wallSeconds),
          f2(single.child.wallSeconds / b.child.wallSeconds),
          b.child.planMs === null ? '-' : f2(b.child.planMs / 1000),
          b.child.commitMs === null ? '-' : f2(b.child.commitMs / 1000),
          String(b.outputBytes),
          `${((b.outputBytes / single.outputBytes) * 100).toFixed(2)}%`,
          String(b.parts),
          rate === null ? '-' : f1(rate),
          filesRate === null ? '-' : filesRate.toFixed(0),
          b.child.cpuSeconds === null ? '?' : f1(b.child.cpuSeconds),
          f1(b.child.peakRssMb),
          b.manifest,
        ];
      }),
    ]),
  );
  if (restore) {
    console.log(
      `Restore of "${restore.label}" (runRestore, parts 2 at a time, every file's sha256 verified against the manifest): ` +
        `${f2(restore.seconds)} s, ${restore.files} files; restored tree (path, type, size, mode, mtime in ms of every entry) ${restore.equal} to the source`,
    );
  } else {
    console.log('Restore check skipped (BENCH_SHARDS_RESTORE=0): only the manifests were compared.');
  }

  // ------------------------------------------------------------------------------------------
  // 2. The planner at BENCH_SHARDS_FILES files.
  const baseFile = path.join(tree.dir, `shards-base-${plannerFiles}.manifest.jsonl.gz`);
  if (!existsSync(baseFile)) {
    const b = await runChild<{ bytes: number }>(runner, timeBin, scratch, [
      'base',
      baseFile,
      String(plannerFiles),
    ]);
    console.log(
      `  wrote the synthetic base manifest ${baseFile} (${mb(b.bytes)} MB) in ${f1(b.wallSeconds)} s`,
    );
  }
  const baseBytes = statSync(baseFile).size;
  const planStore = (name: string) => {
    const dir = path.join(scratch, name, 'store');
    rmSync(path.dirname(dir), { recursive: true, force: true });
    return dir;
  };
  const plannerRuns: (PlanChild & { wallSeconds: number; label: string })[] = [];
  const planner = async (label: string, args: string[]) => {
    run('sync', []);
    const r = await runChild<PlanChild>(runner, timeBin, scratch, args);
    plannerRuns.push({ ...r, label });
    rmSync(path.join(scratch, 'plan'), { recursive: true, force: true });
    console.log(`  ${label}: ${f1(r.seconds)} s, peak RSS ${f1(r.peakRssMb)} MB`);
    return r;
  };
  const n = String(plannerFiles);
  const idle = await planner('idle child (node + the same imports)', ['idle']);
  const planFull = await planner('writeShardPlan, full', ['plan-full', planStore('plan'), n]);
  const planInc = await planner('writeShardPlan, incremental (base streamed, 1% changed)', [
    'plan-incremental',
    planStore('plan'),
    n,
    baseFile,
  ]);
  const memFull = await planner('in memory, full (array + diffManifests + entriesToPack)', [
    'memory-full',
    n,
  ]);
  const memInc = await planner('in memory, incremental (+ decodeManifest of the base)', [
    'memory-incremental',
    n,
    baseFile,
  ]);
  console.log('');
  console.log(
    `Planner at ${plannerFiles} files (synthetic sorted listing course-NNN/week-NN/file-NNNNNN.jpg, ~1% folders; ` +
      `base manifest ${mb(baseBytes)} MB gzip, streamed from a file with openManifestStream; each row its own child; ` +
      "peak RSS = the child's maxRSS; heapUsed sampled every 50 ms and every 10,000 rows)",
  );
  const opt = (v: number | undefined, f: (v: number) => string) => (v === undefined ? '-' : f(v));
  console.log(
    table([
      [
        'plan',
        'seconds',
        'rows/s',
        'rows',
        'files to read',
        'shards',
        'spill MB',
        'todo objects MB',
        'peak RSS MB',
        'over idle MB',
        'peak heapUsed MB',
      ],
      ...plannerRuns.map((r) => [
        r.label,
        r.mode === 'idle' ? '-' : f1(r.seconds),
        r.mode === 'idle' ? '-' : Math.round(r.rows / r.seconds).toLocaleString('en-US'),
        r.mode === 'idle' ? '-' : String(r.rows),
        opt(r.readFiles, String),
        opt(r.shards, String),
        opt(r.spillBytes, mb),
        opt(r.storeBytes, mb),
        f1(r.peakRssMb),
        f1(r.peakRssMb - idle.peakRssMb),
        f1(r.peakHeapUsedMb),
      ]),
    ]),
  );
  const plannerPeak = Math.max(planFull.peakRssMb, planInc.peakRssMb);
  console.log(
    `Streaming vs in memory: full peak RSS x${(planFull.peakRssMb / memFull.peakRssMb).toFixed(3)}, ` +
      `incremental x${(planInc.peakRssMb / memInc.peakRssMb).toFixed(3)}; time full x${(planFull.seconds / memFull.seconds).toFixed(2)}, ` +
      `incremental x${(planInc.seconds / memInc.seconds).toFixed(2)} (the streaming planner also writes the todo objects)`,
  );
  console.log(
    `Target (issue 14): planner peak RSS <= ${PLANNER_PEAK_RSS_TARGET_MB} MB at ${plannerFiles} files: ` +
      `full ${f1(planFull.peakRssMb)} MB, incremental ${f1(planInc.peakRssMb)} MB -> ` +
      `${plannerPeak <= PLANNER_PEAK_RSS_TARGET_MB ? 'MET' : 'NOT MET'}`,
  );

  // ------------------------------------------------------------------------------------------
  // 3. A real tree of small files.
  let scanRuns: { stream: PlanChild; memory: PlanChild } | undefined;
  if (scanFiles > 0) {
    const root = ensureScanTree(tree.dir, scanFiles);
    const stream = await planner(`scanTreeStream + writeShardPlan, ${scanFiles} real files`, [
      'scan-stream',
      planStore('plan'),
      root,
    ]);
    const memory = await planner(`scanTree + diffManifests + entriesToPack, ${scanFiles} real files`, [
      'scan-memory',
      root,
    ]);
    scanRuns = { stream, memory };
    console.log('');
    console.log(
      `Real tree: ${scanFiles} files of ~100 bytes, ${Math.ceil(scanFiles / SCAN_FILES_PER_FOLDER)} folders (local disk, page cache warm after the first walk)`,
    );
    console.log(
      table([
        ['plan', 'seconds', 'rows', 'peak RSS MB', 'over idle MB', 'peak heapUsed MB'],
        ...[stream, memory].map((r) => [
          r.mode === 'scan-stream'
            ? 'scanTreeStream + writeShardPlan'
            : 'scanTree + diffManifests + entriesToPack',
          f1(r.seconds),
          String(r.rows),
          f1(r.peakRssMb),
          f1(r.peakRssMb - idle.peakRssMb),
          f1(r.peakHeapUsedMb),
        ]),
      ]),
    );
  }

  // ------------------------------------------------------------------------------------------
  // The README's estimate, from the shard that ran alone (1 shard, parallel 1: all cores its own).
  const alone = backups.find((b) => b.shards === 1)!;
  const aloneShard = alone.child.shardTimes[0];
  const rateMb = aloneShard.bytes / MB / shardSeconds(aloneShard);
  const rateFiles = aloneShard.files / shardSeconds(aloneShard);
  const meanFileBytes = tree.bytes / tree.files;
  const estFiles = ESTIMATE_BYTES / meanFileBytes;
  const totalShardSeconds = ESTIMATE_BYTES / MB / rateMb;
  // How the planner would cut it: by its time model (default rates: the Lambda sees no measured
  // throughput), DEFAULT_SHARD_BUDGET_MS each and at most MAX_ROWS_PER_SHARD rows a shard.
  const estRows = estFiles * (single.rows / tree.files);
  const modelMs = shardCostMs(
    { perFileMs: MIN_PER_FILE_MS, bytesPerSecond: DEFAULT_BYTES_PER_SECOND },
    estFiles,
    ESTIMATE_BYTES,
  );
  const estShards = Math.max(
    Math.ceil(modelMs / DEFAULT_SHARD_BUDGET_MS),
    Math.ceil(estRows / MAX_ROWS_PER_SHARD),
  );
  const oneShardSeconds = totalShardSeconds / estShards;
  // Commit copies every shard's rows member into the manifest: scaled by rows from the 4-shard run.
  const four = backups.find((b) => b.shards === 4 && b.parallel === 4)!;
  const commitSeconds = ((four.child.commitMs ?? 0) / 1000) * (estFiles / tree.files);
  const planRowsPerSecond = planFull.rows / planFull.seconds;
  console.log('');
  console.log(
    `Per-shard rate (1 shard alone on ${cores} cores, the tree's mix: mean file ${(meanFileBytes / 1e3).toFixed(0)} KB): ` +
      `${f1(rateMb)} MB/s, ${rateFiles.toFixed(0)} files/s; with 2 and 4 shards at once here each shard gets ` +
      `a share of the same ${cores} cores (table above).`,
  );
  console.log(
    `Estimate (not a measurement) for a ${ESTIMATE_BYTES / 1e9} GB full of this mix (~${(estFiles / 1e6).toFixed(1)} M files, ` +
      `~${(estRows / 1e6).toFixed(1)} M rows): ${(totalShardSeconds / 60).toFixed(0)} shard-minutes at ${f1(rateMb)} MB/s per shard. ` +
      `The planner cuts ${estShards} shards (its model: ${DEFAULT_BYTES_PER_SECOND / 1e6} MB/s and ${MIN_PER_FILE_MS} ms a file, ` +
      `${DEFAULT_SHARD_BUDGET_MS / 60_000} min a shard, at most ${MAX_ROWS_PER_SHARD.toLocaleString('en-US')} rows a shard) of ` +
      `~${(ESTIMATE_BYTES / estShards / 1e9).toFixed(1)} GB, each ${(oneShardSeconds / 60).toFixed(1)} min at the measured rate. ` +
      `T = ceil(shards / M) x one shard + commit (${f1(commitSeconds / 60)} min: the 4-shard run's commit scaled by files). ` +
      `Assumes each Lambda shard has ${LAMBDA_SHARD_VCPUS} vCPUs of its own (the default 3538 MB) and runs at the rate measured here, ` +
      'and that EFS and S3 throughput are not the bound up to M (the aggregate read is min(M, shards) x the per-shard rate). ' +
      `Excludes the plan: its scan of the tree on EFS, plus the planner's own work (${Math.round(planRowsPerSecond).toLocaleString('en-US')} rows/s here: ` +
      `${(estRows / planRowsPerSecond / 60).toFixed(1)} min for ~${(estRows / 1e6).toFixed(1)} M rows).`,
  );
  const estimateRows = ESTIMATE_CONCURRENCY.map((m) => {
    const waves = Math.ceil(estShards / m);
    const minutes = (waves * oneShardSeconds + commitSeconds) / 60;
    const neededFor60 = ((ESTIMATE_BYTES / estShards) * waves) / MB / Math.max(1, 3600 - commitSeconds);
    return { m, waves, minutes, aggregateMbPerSecond: Math.min(m, estShards) * rateMb, neededFor60 };
  });
  console.log(
    table([
      [
        'MaxConcurrency M',
        'waves of shards',
        'T minutes (estimate)',
        'aggregate read MB/s (EFS; S3 writes ~0.76 of it)',
        'per-shard MB/s needed for T = 60 min',
      ],
      ...estimateRows.map((e) => [
        String(e.m),
        String(e.waves),
        f1(e.minutes),
        e.aggregateMbPerSecond.toFixed(0),
        `${f1(e.neededFor60)} (${e.neededFor60 <= rateMb ? 'met' : 'not met'} by ${f1(rateMb)})`,
      ]),
    ]),
  );
  const sectionSeconds = (performance.now() - sectionStarted) / 1000;
  console.log(`Shard section took ${f1(sectionSeconds)} s.`);
  rmSync(scratch, { recursive: true, force: true });

  const summary = {
    tree: { files: tree.files, bytes: tree.bytes },
    backups: backups.map((b) => ({
      label: b.label,
      shards: b.shards,
      parallel: b.parallel,
      wallSeconds: round(b.child.wallSeconds, 3),
      planSeconds: b.child.planMs === null ? null : round(b.child.planMs / 1000, 3),
      commitSeconds: b.child.commitMs === null ? null : round(b.child.commitMs / 1000, 3),
      outputBytes: b.outputBytes,
      parts: b.parts,
      cpuSeconds: b.child.cpuSeconds,
      peakRssMb: round(b.child.peakRssMb, 1),
      shardTimes: b.child.shardTimes,
      manifest: b.manifest,
    })),
    restore: restore ?? null,
    planner: { files: plannerFiles, baseManifestBytes: baseBytes, runs: plannerRuns },
    plannerTarget: {
      peakRssMb: round(plannerPeak, 1),
      target: PLANNER_PEAK_RSS_TARGET_MB,
      met: plannerPeak <= PLANNER_PEAK_RSS_TARGET_MB,
    },
    scan: scanRuns ?? null,
    perShard: { mbPerSecond: round(rateMb, 1), filesPerSecond: round(rateFiles, 0) },
    estimate: {
      bytes: ESTIMATE_BYTES,
      files: Math.round(estFiles),
      rows: Math.round(estRows),
      shards: estShards,
      oneShardSeconds: round(oneShardSeconds, 0),
      commitSeconds: round(commitSeconds, 0),
      concurrency: estimateRows,
    },
    sectionSeconds: round(sectionSeconds, 1),
  };
  console.log(`BENCH_SHARDS_JSON ${JSON.stringify(summary)}`);
}
