/**
 * Synthetic-full bench (issue 15): on the bench tree after 1% churn, a normal full (re-reads and
 * recompresses everything) next to a synthetic full (reads only what changed, copies the rest from
 * the archives in the store), both to a folder store, both restored and compared byte for byte with
 * the churned tree. Figures only: it never fails on a timing; it throws when a restore differs from the
 * tree or when the synthetic full falls back to a normal one.
 *
 *   npm run bench                               # this section runs after the others
 *   BENCH_ONLY_SYNTHETIC=1 npm run bench        # this section alone (builds or reuses the 1 GiB tree)
 *   BENCH_SYNTHETIC=0 npm run bench             # skip it
 *
 * Environment: BENCH_SYNTHETIC_EFS=0 (skip the pair on the latency file system),
 * BENCH_SYNTHETIC_EFS_FILES (files of that smaller tree, default 5000; same generator, its bytes
 * scaled from the main tree's mean file size), BENCH_SYNTHETIC_EFS_DELAY (ms per call, default 1),
 * BENCH_SYNTHETIC_PROFILE=0 (skip the extra, untimed synthetic full run under `--cpu-prof`),
 * BENCH_SYNTHETIC_RUNS (rounds of the after-churn pair, default 2; medians reported).
 *
 * Steps, on a copy of the tree (the cached tree is shared with the other sections and left as is):
 * 1. normal full (`synthetic: false`) of the unchanged tree into the base store; every later full
 *    runs on a fresh copy of it (`cp -a`), so each starts from the same base;
 * 2. 1% churn, seeded: ~1% of the files (and about 1% of the bytes) rewritten with new bytes of the
 *    same size and a new mtime, a few files added, a few deleted, one chmod'ed;
 * 3. normal full after churn (`type: 'full', synthetic: false`): the peer;
 * 4. synthetic full after churn (`type: 'full', synthetic: true`); 3 and 4 interleaved for
 *    BENCH_SYNTHETIC_RUNS rounds, the order swapped every round;
 * 5. both restored with runRestore (each twice: normal, synthetic, synthetic, normal); every file's sha256, size, mode and mtime (and every folder's mode
 *    and mtime) compared with the churned tree;
 * 6. the same pair on the latency file system (test/fixtures/latency-fs, as bench/efs.ts) on a
 *    smaller tree, skipped with the reason when FUSE is unavailable.
 * Each backup is its own child process (this file bundled with esbuild, the CLI's node flags) under
 * GNU time: wall, CPU (user + system, all threads) and peak RSS are the child's. The child records the
 * time and process CPU of every store call the engine makes and of every log line, from which the
 * phase table (scan, staging, assembly, checks, commit) is computed. MB = 10^6 bytes.
 *
 * Measured here (2 cores shared with other agents' tests, 2026-12-01, 3 rounds, load average 4.5):
 * 1.08 GB tree after 1% churn: normal full 10.70 s (median; CPU 19.2 s), synthetic full 4.30 s (40.2%
 * of it; CPU 5.3 s), 1.38% of the tree read, archive +2,541 bytes. The synthetic full's time: range
 * copies 2.10 s and complete 0.61 s (the folder store's CRC64NVME and sha256 of every copied byte on
 * the main thread: 30% and 19% of the CPU profile's samples; then fsync), decide 0.32 s, scan 0.22 s,
 * staging 0.22 s, commit 0.20 s. At load 8-11 the ratio was 22-28% (the normal full suffers more).
 * Latency fs at 1 ms, 5,056 files / 265 MB: normal 14.49 s, synthetic 7.21 s (49.7%), 5.5 s of it the
 * scan.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import path from 'node:path';
import { type BackupSucceeded, runBackup } from '../lambda/core/archiver/backup.js';
import { scanTree } from '../lambda/core/archiver/scan.js';
import { type Logger, silentLogger, systemClock } from '../lambda/core/deps.js';
import { runRestore } from '../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../lambda/store/fs.js';
import type { ObjectStore } from '../lambda/store/types.js';
import { type LatencyFs, latencyFsUnavailable, mountLatencyFs } from '../test/fixtures/latency-fs/index.js';
import { documentBytes, randomBytesFrom, seededRandom } from '../test/fixtures/media-tree.js';

const MB = 1e6;
/** Issue 15's targets on the folder store. */
const TARGETS = { readShareOfTree: 0.05, timeShareOfNormal: 0.2 } as const;
/** Share of files (and, about, of bytes) rewritten by the churn. */
const CHURN_SHARE = 0.01;
const CHURN_ADDED = 5;
const CHURN_DELETED = 5;
/** Whole seconds, later than every mtime of the generated tree. */
const CHURN_MTIME_MS = Date.UTC(2026, 5, 1);
const MEDIA_EXTENSIONS = new Set(['.mp4', '.jpg', '.png']);

/** A tree built by bench/run.ts's generator. */
export interface SyntheticBenchTree {
  readonly root: string;
  readonly files: number;
  readonly bytes: number;
}

export interface SyntheticBenchInput {
  /** The bench's work folder (BENCH_DIR). */
  readonly dir: string;
  readonly seed: number;
  /** The ~1 GiB bench tree, built or reused. */
  readonly tree: SyntheticBenchTree;
  /** Builds or reuses a tree of about `bytes` with the same generator (for the latency-fs pair). */
  readonly treeOfBytes: (bytes: number) => SyntheticBenchTree;
}

// ---------------------------------------------------------------------------------------------
// The child: one runBackup, with every store call and log line timed.

interface ChildSpec {
  readonly source: string;
  readonly store: string;
  readonly synthetic: boolean;
}

interface CallRecord {
  readonly op: string;
  readonly key?: string;
  readonly bytes?: number;
  readonly startMs: number;
  readonly endMs: number;
  /** Process CPU (all threads), ms, at the start and end of the call. */
  readonly cpuStartMs: number;
  readonly cpuEndMs: number;
  readonly failed?: boolean;
}

interface PhaseFigure {
  readonly phase: string;
  readonly ms: number;
  readonly cpuMs: number;
}

interface PartFigure {
  readonly count: number;
  readonly bytes: number;
  /** Sum of the calls' durations (up to 4 run at once). */
  readonly sumMs: number;
}

interface ChildOutput {
  readonly result: BackupSucceeded;
  readonly phases: PhaseFigure[];
  readonly copyParts: PartFigure;
  readonly uploadParts: PartFigure;
  /** Whole-object reads (store.get: manifests, metadata), HEADs and listings the engine made. */
  readonly reads: {
    readonly gets: number;
    readonly getMs: number;
    readonly manifestGets: number;
    readonly heads: number;
    readonly lists: number;
  };
  readonly logs: { readonly atMs: number; readonly level: string; readonly message: string }[];
  readonly maxRssMb: number;
  readonly cpuSeconds: number;
  readonly returnedAtMs: number;
}

const cpuNowMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** A proxy of `target` that records every call returning a promise; `then` may wrap what it resolves to. */
function recording<T extends object>(
  target: T,
  prefix: string,
  calls: CallRecord[],
  then?: (op: string, value: unknown) => unknown,
): T {
  return new Proxy(target, {
    get(t, prop) {
      const value = Reflect.get(t, prop, t) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      return (...args: unknown[]) => {
        const startMs = performance.now();
        const cpuStartMs = cpuNowMs();
        const out = (value as (...a: unknown[]) => unknown).apply(t, args);
        if (!(out instanceof Promise)) return out;
        const record = (failed: boolean) => {
          const key = typeof args[0] === 'string' ? args[0] : undefined;
          const bytes =
            prop === 'copyPart'
              ? (args[4] as number)
              : prop === 'uploadPart'
                ? (args[2] as Buffer).length
                : undefined;
          calls.push({
            op: `${prefix}${prop}`,
            key,
            bytes,
            startMs,
            endMs: performance.now(),
            cpuStartMs,
            cpuEndMs: cpuNowMs(),
            ...(failed ? { failed } : {}),
          });
        };
        return out.then(
          (v: unknown) => {
            record(false);
            return then ? then(prop, v) : v;
          },
          (error: unknown) => {
            record(true);
            throw error;
          },
        );
      };
    },
  });
}

/**
 * Phases from the engine's store calls (see backup.ts): lock and leftovers; the scan (until the
 * catalog is listed); decide (chain, base manifest, pins); then either the archive upload (normal)
 * or the staging upload, the assembly (parts, complete = sha256 catch-up + fsync + link) and the
 * checks (HEAD, sampled ranges); the commit (metadata, manifest, status) and the lock release.
 */
function phasesOf(calls: readonly CallRecord[], calledAtMs: number, returned: { ms: number; cpuMs: number }) {
  const first = (pred: (c: CallRecord) => boolean) => calls.find(pred);
  const cpuAtStart = calls[0]?.cpuStartMs ?? 0;
  const lockEnd = first((c) => c.op === 'removeLeftovers') ?? first((c) => c.op === 'acquireLock');
  const catalog = first((c) => c.op === 'list' && c.key === 'full/' && c.startMs >= (lockEnd?.endMs ?? 0));
  const staging = first((c) => c.op === 'upload' && (c.key ?? '').startsWith('staging/'));
  const archive = first((c) => c.op === 'upload' && (c.key ?? '').startsWith('full/'));
  const assemble = first((c) => c.op === 'assemble');
  const complete = first((c) => c.op === 'assembly.complete');
  const commitStart = first((c) => c.op === 'put' && (c.key ?? '').endsWith('.metadata.json'));
  const puts = calls.filter((c) => c.op === 'put');
  const lastPut = puts.at(-1);
  const phases: PhaseFigure[] = [];
  let at = { ms: calledAtMs, cpuMs: cpuAtStart };
  const until = (phase: string, ms: number | undefined, cpuMs: number | undefined) => {
    if (ms === undefined || cpuMs === undefined) return;
    phases.push({ phase, ms: ms - at.ms, cpuMs: cpuMs - at.cpuMs });
    at = { ms, cpuMs };
  };
  until('lock, leftovers', lockEnd?.endMs, lockEnd?.cpuEndMs);
  until('scan of the tree', catalog?.startMs, catalog?.cpuStartMs);
  if (staging && assemble && complete) {
    until('decide (catalog, chain, base manifest, pins)', staging.startMs, staging.cpuStartMs);
    until('staging: read + gzip changed files', staging.endMs, staging.cpuEndMs);
    until('pin staging, plan parts', assemble.startMs, assemble.cpuStartMs);
    until('assembly: copy/upload parts', complete.startMs, complete.cpuStartMs);
    until('assembly: complete (sha256 catch-up, fsync, link)', complete.endMs, complete.cpuEndMs);
    until('checks (HEAD, sampled ranges, end member)', commitStart?.startMs, commitStart?.cpuStartMs);
  } else if (archive) {
    until('decide (catalog, chain, base manifest)', archive.startMs, archive.cpuStartMs);
    until('archive: read + gzip + write + fsync', archive.endMs, archive.cpuEndMs);
    until('checks (HEAD)', commitStart?.startMs, commitStart?.cpuStartMs);
  }
  until('commit (metadata, manifest, status)', lastPut?.endMs, lastPut?.cpuEndMs);
  until('lock release, return', returned.ms, returned.cpuMs);
  const parts = (op: string): PartFigure => {
    const list = calls.filter((c) => c.op === op);
    return {
      count: list.length,
      bytes: list.reduce((s, c) => s + (c.bytes ?? 0), 0),
      sumMs: list.reduce((s, c) => s + c.endMs - c.startMs, 0),
    };
  };
  const gets = calls.filter((c) => c.op === 'get');
  const manifestGets = calls.filter(
    (c) => (c.op === 'get' || c.op === 'getStream') && (c.key ?? '').endsWith('.manifest.jsonl.gz'),
  );
  return {
    phases,
    copyParts: parts('assembly.copyPart'),
    uploadParts: parts('assembly.uploadPart'),
    reads: {
      gets: gets.length,
      getMs: gets.reduce((sum, c) => sum + c.endMs - c.startMs, 0),
      manifestGets: manifestGets.length,
      heads: calls.filter((c) => c.op === 'head').length,
      lists: calls.filter((c) => c.op === 'list').length,
    },
  };
}

async function childMain(args: readonly string[]): Promise<void> {
  const spec = JSON.parse(args[0] ?? '') as ChildSpec;
  const calls: CallRecord[] = [];
  const logs: ChildOutput['logs'] = [];
  const log =
    (level: string) =>
    (message: string): void => {
      logs.push({ atMs: performance.now(), level, message });
    };
  const logger: Logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
  const store = recording(new FsObjectStore(spec.store) as ObjectStore, '', calls, (op, value) =>
    op === 'assemble' ? recording(value as object, 'assembly.', calls) : value,
  );
  const calledAtMs = performance.now();
  const result = await runBackup(
    { store, clock: systemClock, logger },
    { source: spec.source, type: 'full', synthetic: spec.synthetic },
  );
  const returned = { ms: performance.now(), cpuMs: cpuNowMs() };
  const usage = process.resourceUsage();
  const out: ChildOutput = {
    result,
    ...phasesOf(
      [...calls].sort((a, b) => a.startMs - b.startMs),
      calledAtMs,
      returned,
    ),
    logs,
    maxRssMb: (usage.maxRSS * 1024) / MB,
    cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6,
    returnedAtMs: returned.ms,
  };
  // Startup (node, imports) is the time before runBackup was called.
  out.phases.unshift({ phase: 'process start, imports', ms: calledAtMs, cpuMs: 0 });
  console.log(JSON.stringify(out));
}

if (process.env.BENCH_SYNTHETIC_CHILD === '1') await childMain(process.argv.slice(2));

// ---------------------------------------------------------------------------------------------
// The parent.

type Timing = typeof import('./timing.js');

interface Runner {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

interface Measured extends ChildOutput {
  readonly label: string;
  readonly wallSeconds: number;
  /** GNU time's figures when available, else the child's own. */
  readonly cpu: number;
  readonly peakRssMb: number;
}

/** Bundles this file (as bench/shards.ts bundles its child) so the measured process runs no tsx loader. */
async function buildRunner(t: Timing): Promise<Runner> {
  const outfile = path.join(
    t.REPO_ROOT,
    'node_modules',
    '.cache',
    'media-backup-bench',
    'synthetic-child.mjs',
  );
  const env = { ...t.CLI_ENV, BENCH_SYNTHETIC_CHILD: '1' };
  try {
    const esbuild = await import('esbuild');
    await esbuild.build({
      absWorkingDir: t.REPO_ROOT,
      entryPoints: ['bench/synthetic.ts'],
      bundle: true,
      packages: 'external',
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile,
      logLevel: 'error',
    });
    return { command: 'node', args: [...t.CLI_NODE_ARGS, outfile], env };
  } catch (error) {
    console.log(`  esbuild bundle of bench/synthetic.ts failed (${(error as Error).message}); using tsx`);
    return {
      command: 'node',
      args: ['--import', 'tsx', path.join(t.REPO_ROOT, 'bench', 'synthetic.ts')],
      env,
    };
  }
}

function sh(command: string, args: readonly string[]): void {
  const r = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
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

/** Reads every file once (untimed), so each timed backup starts with a warm page cache. */
function warmFiles(root: string): void {
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const fd = openSync(p, 'r');
        try {
          while (readSync(fd, buffer, 0, buffer.length, null) > 0);
        } finally {
          closeSync(fd);
        }
      }
    }
  };
  walk(root);
}

/** Untimed walk through the mount with the delays paused (as bench/efs.ts: libfuse2 serializes first lookups). */
function warmMount(fs: LatencyFs): void {
  fs.pause(true);
  try {
    spawnSync('find', [fs.mountpoint, '-printf', '%s\n'], { stdio: 'ignore' });
  } finally {
    fs.pause(false);
  }
}

interface ChurnSummary {
  readonly rewritten: number;
  readonly rewrittenBytes: number;
  readonly added: number;
  readonly addedBytes: number;
  readonly deleted: number;
  readonly deletedBytes: number;
  readonly chmodded: string;
  readonly chmoddedBytes: number;
  readonly filesBefore: number;
  readonly bytesBefore: number;
}

function contentFor(file: string, rand: () => number, size: number): Buffer {
  return MEDIA_EXTENSIONS.has(path.extname(file)) ? randomBytesFrom(rand, size) : documentBytes(rand, size);
}

/**
 * 1% churn, deterministic for a given tree and seed. Files are picked from a seeded shuffle, skipping
 * any that would take the bytes over 1% of the tree, until one short of 1% of the files; the last is
 * the file whose size brings the bytes closest to 1% of the tree: about 1% by files and by bytes. Each is replaced (unlinked, then written: never written
 * through a hard link) with new bytes of the same size and a new whole-second mtime. Then a few files
 * are added, a few deleted and one chmod'ed (its bytes unchanged).
 */
async function churnTree(root: string, seed: number): Promise<ChurnSummary> {
  const scan = await scanTree(root);
  const files = scan.entries.filter((e) => e.type === 'file');
  const bytesBefore = files.reduce((s, f) => s + f.size, 0);
  const rand = seededRandom(seed + 15);
  const order = files.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const wantFiles = Math.max(1, Math.round(files.length * CHURN_SHARE));
  const byteBudget = Math.round(bytesBefore * CHURN_SHARE);
  const picked: number[] = [];
  let pickedBytes = 0;
  let cursor = 0;
  for (; cursor < order.length && picked.length < wantFiles - 1; cursor++) {
    const f = files[order[cursor]];
    if (pickedBytes + f.size > byteBudget) continue;
    picked.push(order[cursor]);
    pickedBytes += f.size;
  }
  // The last one brings the bytes closest to the budget.
  let rest = order.slice(cursor);
  let last = 0;
  for (let k = 1; k < rest.length; k++) {
    const gap = (i: number) => Math.abs(byteBudget - pickedBytes - files[rest[i]].size);
    if (gap(k) < gap(last)) last = k;
  }
  if (rest.length > 0) {
    picked.push(rest[last]);
    pickedBytes += files[rest[last]].size;
    rest = rest.filter((_, k) => k !== last);
  }
  const deleted = rest.slice(0, CHURN_DELETED).map((i) => files[i]);
  const chmodded = files[rest[CHURN_DELETED]];
  const mtime = (n: number) => new Date(CHURN_MTIME_MS + n * 1000);
  let n = 0;
  for (const i of picked.sort((a, b) => a - b)) {
    const f = files[i];
    const abs = path.join(root, f.path);
    unlinkSync(abs);
    writeFileSync(abs, contentFor(f.path, rand, f.size), { mode: f.mode });
    chmodSync(abs, f.mode);
    utimesSync(abs, mtime(n), mtime(n));
    n += 1;
  }
  let deletedBytes = 0;
  for (const f of deleted) {
    unlinkSync(path.join(root, f.path));
    deletedBytes += f.size;
  }
  // chmod on a copy: the tree may share inodes with the cached tree.
  const chmodAbs = path.join(root, chmodded.path);
  const bytes = readFileSync(chmodAbs);
  const st = statSync(chmodAbs);
  unlinkSync(chmodAbs);
  writeFileSync(chmodAbs, bytes);
  chmodSync(chmodAbs, 0o600);
  utimesSync(chmodAbs, st.atime, st.mtime);
  const addedDir = path.join(root, 'reports', '2026-churn');
  mkdirSync(addedDir, { recursive: true });
  let addedBytes = 0;
  for (let a = 0; a < CHURN_ADDED; a++) {
    // Two photos of 1-2 MB, three small chat logs.
    const media = a < 2;
    const size = media ? 1_000_000 + Math.floor(rand() * 1_000_000) : 2_000 + Math.floor(rand() * 10_000);
    const file = path.join(addedDir, media ? `photo-${a}.jpg` : `log-${a}.txt`);
    writeFileSync(file, contentFor(file, rand, size));
    utimesSync(file, mtime(n), mtime(n));
    n += 1;
    addedBytes += size;
  }
  return {
    rewritten: picked.length,
    rewrittenBytes: pickedBytes,
    added: CHURN_ADDED,
    addedBytes,
    deleted: deleted.length,
    deletedBytes,
    chmodded: chmodded.path,
    chmoddedBytes: chmodded.size,
    filesBefore: files.length,
    bytesBefore,
  };
}

/** Every entry: files with size, mode, mtime (whole ms) and sha256; folders with mode and mtime. */
async function treeListing(root: string): Promise<Map<string, string>> {
  const scan = await scanTree(root);
  const out = new Map<string, string>();
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  for (const e of scan.entries) {
    const ms = Math.floor(e.mtimeMs);
    if (e.type === 'file') {
      const hash = createHash('sha256');
      const fd = openSync(path.join(root, e.path), 'r');
      try {
        for (let n = readSync(fd, buffer, 0, buffer.length, null); n > 0; ) {
          hash.update(buffer.subarray(0, n));
          n = readSync(fd, buffer, 0, buffer.length, null);
        }
      } finally {
        closeSync(fd);
      }
      out.set(e.path, `file ${e.size} ${e.mode.toString(8)} ${ms} ${hash.digest('hex')}`);
    } else if (e.type === 'dir') {
      out.set(e.path, `dir ${e.mode.toString(8)} ${ms}`);
    } else {
      out.set(e.path, `symlink ${e.target} ${ms}`);
    }
  }
  return out;
}

function listingDifferences(got: Map<string, string>, want: Map<string, string>): string[] {
  const diffs: string[] = [];
  for (const [p, v] of want) {
    const g = got.get(p);
    if (g !== v) diffs.push(`${JSON.stringify(p)}: restored ${g ?? '(missing)'}, tree ${v}`);
  }
  for (const p of got.keys())
    if (!want.has(p)) diffs.push(`${JSON.stringify(p)}: restored but not in the tree`);
  return diffs;
}

interface PairResult {
  readonly label: string;
  readonly tree: { files: number; bytes: number };
  readonly churn: ChurnSummary;
  readonly base: Measured;
  readonly normal: Measured;
  readonly synthetic: Measured;
  /** Every round's run (normal / synthetic are the last ones). */
  readonly normals: Measured[];
  readonly synthetics: Measured[];
  readonly restores: { label: string; seconds: number; files: number }[];
  readonly cpuProfile?: ProfileLine[];
}

interface ProfileLine {
  readonly fn: string;
  readonly selfMs: number;
}

/** Self time per function over every thread's .cpuprofile in `dir` (the main thread and the gzip workers). */
function summarizeCpuProfiles(dir: string): { lines: ProfileLine[]; totalMs: number; files: number } {
  const self = new Map<string, number>();
  let totalMs = 0;
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  for (const file of files) {
    const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as {
      nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
      samples: number[];
      timeDeltas: number[];
    };
    const names = new Map<number, string>();
    for (const node of profile.nodes) {
      const { functionName, url, lineNumber } = node.callFrame;
      const where = url
        ? ` ${url.replace(/^.*\/(node_modules\/[^/]+|lambda|bench)\//, '$1/')}:${lineNumber + 1}`
        : '';
      names.set(node.id, `${functionName || '(anonymous)'}${where}`);
    }
    profile.samples.forEach((id, i) => {
      const us = profile.timeDeltas[i + 1] ?? 0;
      const name = names.get(id) ?? '?';
      if (name.startsWith('(idle)')) return;
      self.set(name, (self.get(name) ?? 0) + us / 1000);
      totalMs += us / 1000;
    });
  }
  const lines = [...self.entries()]
    .map(([fn, selfMs]) => ({ fn, selfMs }))
    .sort((a, b) => b.selfMs - a.selfMs);
  return { lines, totalMs, files: files.length };
}

/** Runs the whole section: prints the tables and one `BENCH_SYNTHETIC_JSON` line. */
export async function runSyntheticBench(input: SyntheticBenchInput): Promise<void> {
  const sectionStarted = performance.now();
  const t: Timing = await import('./timing.js');
  const work = path.join(input.dir, 'synthetic-out');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const runs = wholeEnv('BENCH_SYNTHETIC_RUNS', 2, 1);
  const timeBin = t.findGnuTime();
  const runner = await buildRunner(t);
  const load = () =>
    loadavg()
      .map((l) => l.toFixed(2))
      .join(' / ');
  console.log('');
  console.log(
    `Synthetic fulls (issue 15): ${availableParallelism()} cores, load average before ${load()} (1/5/15 min)`,
  );

  const child = async (
    label: string,
    spec: ChildSpec,
    nodeArgs: readonly string[] = [],
  ): Promise<Measured> => {
    sh('sync', []);
    const r = await t.timed(
      timeBin,
      work,
      runner.command,
      [...nodeArgs, ...runner.args, JSON.stringify(spec)],
      {
        env: runner.env,
      },
    );
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as ChildOutput;
    const m: Measured = {
      ...out,
      label,
      wallSeconds: r.seconds,
      cpu: r.cpuSeconds ?? out.cpuSeconds,
      peakRssMb: r.peakRssMb ?? out.maxRssMb,
    };
    m.phases.push({ phase: 'process exit', ms: r.seconds * 1000 - out.returnedAtMs, cpuMs: 0 });
    console.log(
      `  ${label}: ${r.seconds.toFixed(2)} s, CPU ${m.cpu.toFixed(1)} s, peak RSS ${m.peakRssMb.toFixed(0)} MB, ` +
        `${out.result.archiveBytes} bytes${out.result.synthetic ? ' (synthetic)' : ''}${out.result.syntheticSkipped ? ` (not synthetic: ${out.result.syntheticSkipped})` : ''}`,
    );
    return m;
  };

  /** One pair: base full, churn, normal full and synthetic full, restores checked. */
  const pair = async (
    label: string,
    tree: SyntheticBenchTree,
    mount: ((backing: string) => Promise<LatencyFs>) | undefined,
    profile: boolean,
  ): Promise<PairResult> => {
    const slug = label.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
    const dir = path.join(work, slug);
    const backing = path.join(dir, 'tree');
    mkdirSync(dir, { recursive: true });
    // A copy: the churn must not touch the cached tree the other sections use.
    sh('cp', ['-a', tree.root, backing]);
    const fs = mount ? await mount(backing) : undefined;
    const source = fs?.mountpoint ?? backing;
    const warm = () => {
      warmFiles(backing);
      if (fs) warmMount(fs);
    };
    try {
      const storeBase = path.join(dir, 'store-base');
      const storeA = path.join(dir, 'store-normal');
      const storeB = path.join(dir, 'store-synthetic');
      const storeP = path.join(dir, 'store-profile');
      warm();
      const base = await child(`${label}: normal full, unchanged tree`, {
        source,
        store: storeBase,
        synthetic: false,
      });
      const churn = await churnTree(backing, input.seed);
      console.log(
        `  churn: ${churn.rewritten} files rewritten (${churn.rewrittenBytes} bytes), ${churn.added} added (${churn.addedBytes} bytes), ` +
          `${churn.deleted} deleted, 1 chmod'ed (${churn.chmodded}, ${churn.chmoddedBytes} bytes)`,
      );
      // Interleaved, the order swapped every round; each run on a fresh copy of the base store.
      const normals: Measured[] = [];
      const synthetics: Measured[] = [];
      const one = async (kind: 'normal' | 'synthetic', round: number) => {
        const store = kind === 'normal' ? storeA : storeB;
        rmSync(store, { recursive: true, force: true });
        sh('cp', ['-a', storeBase, store]);
        warm();
        const m = await child(`${label}: ${kind} full after churn (round ${round + 1})`, {
          source,
          store,
          synthetic: kind === 'synthetic',
        });
        if (kind === 'synthetic' && !m.result.synthetic) {
          throw new Error(
            `synthetic bench (${label}): the synthetic full was not synthetic: ${m.result.syntheticSkipped ?? 'no reason given'}`,
          );
        }
        if (kind === 'normal' && m.result.synthetic) {
          throw new Error(`synthetic bench (${label}): the normal full after churn was built synthetically`);
        }
        (kind === 'normal' ? normals : synthetics).push(m);
      };
      for (let round = 0; round < runs; round++) {
        const order =
          round % 2 === 0 ? (['normal', 'synthetic'] as const) : (['synthetic', 'normal'] as const);
        for (const kind of order) await one(kind, round);
      }
      const normal = normals.at(-1) as Measured;
      const synthetic = synthetics.at(-1) as Measured;
      let cpuProfile: ProfileLine[] | undefined;
      if (profile) {
        const profDir = path.join(dir, 'cpu-profile');
        sh('cp', ['-a', storeBase, storeP]);
        warm();
        const p = await child(
          `${label}: synthetic full under --cpu-prof (untimed)`,
          { source, store: storeP, synthetic: true },
          ['--cpu-prof', `--cpu-prof-dir=${profDir}`],
        );
        const s = summarizeCpuProfiles(profDir);
        cpuProfile = s.lines.slice(0, 15);
        console.log('');
        console.log(
          `CPU profile of that run (${s.files} thread profile(s), ${(s.totalMs / 1000).toFixed(2)} s sampled on JS threads, ` +
            `idle excluded; libuv pool work (file reads, writes, fsync) and native zlib/crypto outside JS frames appear as "(program)" ` +
            `or not at all; process CPU ${p.cpu.toFixed(1)} s): top functions by self time`,
        );
        console.log(
          t.table([
            ['function', 'self ms', 'share'],
            ...cpuProfile.map((l) => [
              l.fn.length > 100 ? `${l.fn.slice(0, 97)}...` : l.fn,
              l.selfMs.toFixed(0),
              `${((l.selfMs / s.totalMs) * 100).toFixed(1)}%`,
            ]),
          ]),
        );
        rmSync(storeP, { recursive: true, force: true });
        rmSync(profDir, { recursive: true, force: true });
      }

      // Restores, compared with the churned tree (read on the backing folder: no latency there); each
      // twice, in the order normal, synthetic, synthetic, normal (the second of two restores in a row
      // may pay for the first one's writeback).
      rmSync(storeBase, { recursive: true, force: true });
      const expected = await treeListing(backing);
      const restores: PairResult['restores'] = [];
      for (const [which, m, store] of [
        ['normal', normal, storeA],
        ['synthetic', synthetic, storeB],
        ['synthetic', synthetic, storeB],
        ['normal', normal, storeA],
      ] as const) {
        const target = path.join(dir, `restored-${which}`);
        sh('sync', []);
        const started = performance.now();
        const r = await runRestore(
          { store: new FsObjectStore(store), clock: systemClock, logger: silentLogger },
          { backup: m.result.backupId, target },
        );
        const seconds = (performance.now() - started) / 1000;
        const diffs = listingDifferences(await treeListing(target), expected);
        if (diffs.length > 0) {
          throw new Error(
            `synthetic bench (${label}): the restored ${which} full ${m.result.backupId} differs from the churned tree in ${diffs.length} entries (sha256, size, mode, mtime): ${diffs.slice(0, 5).join('; ')}`,
          );
        }
        restores.push({ label: which, seconds, files: r.files });
        rmSync(target, { recursive: true, force: true });
      }
      console.log(
        `  restores: ${restores.map((r) => `${r.label} ${r.seconds.toFixed(1)} s`).join(', ')}; both byte-exact (${expected.size} entries: sha256, size, mode, mtime)`,
      );
      return {
        label,
        tree: { files: normal.result.files, bytes: normal.result.bytes },
        churn,
        base,
        normal,
        synthetic,
        normals,
        synthetics,
        restores,
        cpuProfile,
      };
    } finally {
      await fs?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  };

  const results: PairResult[] = [];
  console.log(`  tree: ${input.tree.files} files, ${input.tree.bytes} bytes (${input.tree.root})`);
  const local = await pair('local disk', input.tree, undefined, process.env.BENCH_SYNTHETIC_PROFILE !== '0');
  results.push(local);
  printPair(t, local, true);

  let efsSkipped: string | undefined;
  if (process.env.BENCH_SYNTHETIC_EFS === '0') efsSkipped = 'BENCH_SYNTHETIC_EFS=0';
  else efsSkipped = latencyFsUnavailable();
  if (efsSkipped) {
    console.log(`\nSynthetic fulls on the latency file system skipped: ${efsSkipped}`);
  } else {
    const files = wholeEnv('BENCH_SYNTHETIC_EFS_FILES', 5000, 100);
    const delayMs = wholeEnv('BENCH_SYNTHETIC_EFS_DELAY', 1, 0);
    const small = input.treeOfBytes(Math.round((files * input.tree.bytes) / input.tree.files));
    console.log('');
    console.log(
      `  latency-fs tree: ${small.files} files, ${small.bytes} bytes (${small.root}), ${delayMs} ms per call`,
    );
    const efs = await pair(
      `latency fs ${delayMs} ms`,
      small,
      (backing) => mountLatencyFs({ source: backing, delayMs }),
      false,
    );
    results.push(efs);
    printPair(t, efs, false);
  }
  const sectionSeconds = (performance.now() - sectionStarted) / 1000;
  console.log(`Synthetic section took ${sectionSeconds.toFixed(1)} s; load average after ${load()}.`);
  rmSync(work, { recursive: true, force: true });
  const summary = {
    pairs: results.map((r) => ({
      label: r.label,
      tree: r.tree,
      churn: r.churn,
      restores: r.restores,
      runs: [r.base, ...r.normals, ...r.synthetics].map((m) => ({
        label: m.label,
        wallSeconds: t.round(m.wallSeconds, 3),
        cpuSeconds: t.round(m.cpu, 2),
        peakRssMb: t.round(m.peakRssMb, 1),
        archiveBytes: m.result.archiveBytes,
        changedBytes: m.result.changedBytes,
        synthetic: m.result.synthetic ?? null,
        phases: m.phases.map((p) => ({ ...p, ms: Math.round(p.ms), cpuMs: Math.round(p.cpuMs) })),
      })),
      cpuProfile: r.cpuProfile ?? null,
    })),
    efsSkipped: efsSkipped ?? null,
    sectionSeconds: t.round(sectionSeconds, 1),
  };
  console.log(`BENCH_SYNTHETIC_JSON ${JSON.stringify(summary)}`);
}

function printPair(t: Timing, r: PairResult, withTargets: boolean): void {
  const mb = (b: number) => (b / MB).toFixed(1);
  const readOf = (m: Measured) => m.result.synthetic?.bytesReadFromSource ?? m.result.changedBytes;
  const treeBytes = r.tree.bytes;
  const wallOf = (ms: readonly Measured[]) => t.median(ms.map((m) => m.wallSeconds));
  const cpuOf = (ms: readonly Measured[]) => t.median(ms.map((m) => m.cpu));
  /** Median wall and CPU, largest peak RSS; bytes from the last run (every round writes the same). */
  const row = (name: string, ms: readonly Measured[]): string[] => {
    const m = ms.at(-1) as Measured;
    const s = m.result.synthetic;
    return [
      name,
      wallOf(ms).toFixed(2),
      ms.map((x) => x.wallSeconds.toFixed(2)).join(', '),
      cpuOf(ms).toFixed(1),
      Math.max(...ms.map((x) => x.peakRssMb)).toFixed(0),
      mb(readOf(m)),
      `${((readOf(m) / m.result.bytes) * 100).toFixed(2)}%`,
      String(m.result.archiveBytes),
      s ? mb(s.bytesCopied) : '-',
      s ? mb(s.bytesFetched) : '-',
      s ? mb(s.bytesStaged) : '-',
      s ? `${s.copyParts}/${s.uploadParts}` : '-',
      s ? String(s.filesCopied) : '-',
    ];
  };
  const c = r.churn;
  console.log('');
  console.log(
    `Synthetic vs normal full, ${r.label}: ${r.tree.files} files, ${treeBytes} bytes (${mb(treeBytes)} MB) after churn: ` +
      `${c.rewritten} files rewritten (${((c.rewritten / c.filesBefore) * 100).toFixed(2)}% of files, ${((c.rewrittenBytes / c.bytesBefore) * 100).toFixed(2)}% of bytes), ` +
      `${c.added} added (${mb(c.addedBytes)} MB), ${c.deleted} deleted, 1 chmod'ed. Each backup a child process ` +
      `(wall = process start to exit; CPU = user + system of all its threads); after churn: median of ${r.normals.length} round(s), ` +
      'normal and synthetic interleaved, each on a fresh copy of the base store; read = file bytes read from the tree',
  );
  console.log(
    t.table([
      [
        'run',
        'wall s',
        'wall samples s',
        'CPU s',
        'peak RSS MB',
        'read MB',
        'read % of tree',
        'archive bytes',
        'copied MB',
        'fetched MB',
        'staged MB',
        'copy/upload parts',
        'files copied',
      ],
      row('normal full, unchanged tree (the base)', [r.base]),
      row('normal full after churn', r.normals),
      row('synthetic full after churn', r.synthetics),
    ]),
  );
  const normalWall = wallOf(r.normals);
  const syntheticWall = wallOf(r.synthetics);
  const timeRatio = syntheticWall / normalWall;
  const cpuRatio = cpuOf(r.synthetics) / cpuOf(r.normals);
  const readRatio = readOf(r.synthetic) / readOf(r.normal);
  const readShare = readOf(r.synthetic) / treeBytes;
  const sizeDiff = r.synthetic.result.archiveBytes - r.normal.result.archiveBytes;
  console.log(
    `Synthetic / normal: wall ${(timeRatio * 100).toFixed(1)}%, CPU ${(cpuRatio * 100).toFixed(1)}%, bytes read ${(readRatio * 100).toFixed(2)}%; ` +
      `archive ${sizeDiff >= 0 ? '+' : ''}${sizeDiff} bytes (${((sizeDiff / r.normal.result.archiveBytes) * 100).toFixed(4)}%) vs the normal full ` +
      '(the same entries; only where gzip members are cut may differ)',
  );
  console.log(
    `Restores (runRestore, every file's sha256 checked): ${r.restores.map((x) => `${x.label} ${x.seconds.toFixed(1)} s (${x.files} files)`).join(', ')}; ` +
      'both equal to the churned tree (sha256, size, mode, mtime of every file; mode and mtime of every folder). ' +
      'Restore times grow with the writeback of the restores before them, whatever the kind: compare by position',
  );
  if (withTargets) {
    console.log('Targets (issue 15, folder store):');
    console.log(
      `  synthetic full reads <= ${TARGETS.readShareOfTree * 100}% of the tree: ${(readShare * 100).toFixed(2)}% -> ${t.verdict(readShare <= TARGETS.readShareOfTree)}`,
    );
    console.log(
      `  synthetic full takes <= ${TARGETS.timeShareOfNormal * 100}% of the normal full's time: ${(timeRatio * 100).toFixed(1)}% ` +
        `(median ${syntheticWall.toFixed(2)} s vs ${normalWall.toFixed(2)} s) -> ${t.verdict(timeRatio <= TARGETS.timeShareOfNormal)}` +
        (timeRatio > TARGETS.timeShareOfNormal
          ? `; missed by ${((timeRatio - TARGETS.timeShareOfNormal) * 100).toFixed(1)} points (${(syntheticWall - TARGETS.timeShareOfNormal * normalWall).toFixed(2)} s over)`
          : ''),
    );
  }
  const phaseTable = (m: Measured) => {
    const total = m.phases.reduce((s, p) => s + p.ms, 0);
    return t.table([
      ['phase', 'ms', 'share', 'process CPU ms'],
      ...m.phases.map((p) => [
        p.phase,
        p.ms.toFixed(0),
        `${((p.ms / total) * 100).toFixed(1)}%`,
        p.phase === 'process start, imports' || p.phase === 'process exit' ? '-' : p.cpuMs.toFixed(0),
      ]),
    ]);
  };
  console.log('');
  console.log(
    `Where the time goes (${r.label}, the last round), from the child's timestamps of the engine's store calls (process CPU = all threads):`,
  );
  console.log(`Synthetic full (${r.synthetic.wallSeconds.toFixed(2)} s):`);
  console.log(phaseTable(r.synthetic));
  const cp = r.synthetic.copyParts;
  const up = r.synthetic.uploadParts;
  console.log(
    `  parts: ${cp.count} copies (${mb(cp.bytes)} MB, ${(cp.sumMs / 1000).toFixed(2)} s summed over calls, ` +
      `${cp.sumMs > 0 ? (cp.bytes / MB / (cp.sumMs / 1000)).toFixed(0) : '-'} MB/s per call), ${up.count} uploads ` +
      `(${mb(up.bytes)} MB, ${(up.sumMs / 1000).toFixed(2)} s summed); up to 4 at once`,
  );
  const rd = r.synthetic.reads;
  console.log(
    `  store calls: ${rd.manifestGets} manifest reads (get or stream), ${rd.gets} whole-object reads (${rd.getMs.toFixed(0)} ms), ` +
      `${rd.heads} HEADs, ${rd.lists} listings`,
  );
  console.log(`Normal full after churn (${r.normal.wallSeconds.toFixed(2)} s):`);
  console.log(phaseTable(r.normal));
}
