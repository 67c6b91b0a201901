/**
 * "EFS-like" bench (issue 13): trees of small files (2-40 KB in 50 folders) read through the latency
 * file system (test/fixtures/latency-fs: a FUSE passthrough adding a delay to every lookup, getattr,
 * open, readdir and first read, as an NFS round trip), at 1 ms and 3 ms per operation. Times our full
 * backup, our incremental after 1% churn and our restore into a latency-backed target (CLI, folder
 * store on local disk), restic backup/restore and GNU tar -czf/-xzf on the same mounts; prints files/s,
 * MB/s and ratios to restic (backup) and to GNU tar (restore). Figures only: never fails on a timing.
 *
 *   BENCH_EFS=1 npm run bench                    # this section after the others
 *   BENCH_EFS=1 BENCH_ONLY_EFS=1 npm run bench   # this section alone
 *
 * BENCH_EFS_SHARDS=0 leaves out the sharded full (4 parts, 1 and 4 at a time).
 * Environment: BENCH_EFS_FILES (tree sizes, default "5000,20000"), BENCH_EFS_DELAYS (ms per operation,
 * default "1,3"), BENCH_EFS_PEERS=0 (skip restic and tar), BENCH_EFS_RESTIC_RESTORE=0 (skip restic's
 * restore, by far the slowest run: ~100 ms per file at 1 ms per call here), BENCH_EFS_LOCAL=0 (skip the local-disk
 * reference run of our backup), IO_CONCURRENCY (passed to our CLI). Needs /dev/fuse and
 * `apt-get install -y python3-fusepy fuse3` (restic: `apt-get install -y restic`); skips with the
 * reason otherwise.
 *
 * Before each timed tool the mounts are walked once with the delays paused: libfuse2 serializes the
 * first lookup of each name in a folder (no parallel dirops; NFS clients do not), and a tool should
 * not pay for that. Every call in the timed runs still pays the delay (no attribute cache). MB = 10^6.
 *
 * Measured here (2 cores shared with other jobs, 2026-12-01), 5,000 files / 104 MB:
 *   1 ms/op  before read-ahead: our full 108.5 s (46 files/s, 0.72x restic), incremental 35.9 s,
 *            restore 107.4 s (1.03x tar -xzf)
 *   1 ms/op  after: full 8.5 s (590 files/s, 9.0x restic's 66 files/s), incremental 3.9 s (46% of
 *            the full), restore 21.7 s (230 files/s, 5.1x tar -xzf's 45 files/s)
 *   3 ms/op  after: full 9.8 s (508 files/s, 21x restic's 24 files/s), incremental 3.6 s (36%),
 *            restore 55.4 s (90 files/s, 5.2x tar -xzf's 17 files/s)
 * 20,000 files / 420 MB at 1 ms/op, after: full 33.7 s (594 files/s), incremental 7.0 s (21% of the
 * full), restore 95.0 s (211 files/s). Restic's restore took over 20 minutes for 5,000 files at 1 ms.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type LatencyFs, latencyFsUnavailable, mountLatencyFs } from '../test/fixtures/latency-fs/index.js';
import { documentBytes, randomBytesFrom, seededRandom } from '../test/fixtures/media-tree.js';
import {
  CLI,
  CLI_ENV,
  CLI_NODE_ARGS,
  findGnuTime,
  MB,
  round,
  run,
  type TimedRun,
  table,
  timed,
} from './timing.js';

const GENERATOR = 'media-backup-bench/efs/1';
const FOLDERS = 50;
const MIN_SIZE = 2_000;
const MAX_SIZE = 40_000;
const CHURN = 0.01;

interface EfsRow {
  readonly files: number;
  readonly delayMs: number;
  readonly tool: string;
  readonly operation: 'backup' | 'incremental' | 'restore';
  readonly seconds: number;
  /** Files and bytes the run handled (the churned ones for an incremental's MB/s: whole tree scanned). */
  readonly filesPerSecond: number;
  readonly mbPerSecond: number;
  readonly peakRssMb: number | null;
}

interface EfsTree {
  readonly root: string;
  readonly files: string[];
  readonly bytes: number;
}

/** Builds (or reuses) `count` files of 2-40 KB (half random "media", half text) in 50 folders. */
function ensureEfsTree(dir: string, count: number): EfsTree {
  const root = path.join(dir, `efs-${count}`);
  const marker = `${root}.done`;
  const rand = seededRandom(count);
  const files: string[] = [];
  const sizes: number[] = [];
  for (let n = 0; n < count; n++) {
    files.push(path.join(`folder-${String(n % FOLDERS).padStart(2, '0')}`, `file-${n}.bin`));
    sizes.push(Math.floor(MIN_SIZE + rand() * (MAX_SIZE - MIN_SIZE)));
  }
  const bytes = sizes.reduce((a, b) => a + b, 0);
  if (existsSync(marker)) return { root, files, bytes };
  rmSync(root, { recursive: true, force: true });
  for (let f = 0; f < FOLDERS; f++)
    mkdirSync(path.join(root, `folder-${String(f).padStart(2, '0')}`), { recursive: true });
  const content = seededRandom(count + 1);
  for (let n = 0; n < count; n++) {
    const data = n % 2 === 0 ? randomBytesFrom(content, sizes[n]) : documentBytes(content, sizes[n]);
    writeFileSync(path.join(root, files[n]), data);
  }
  writeFileSync(marker, `${GENERATOR}\n`);
  return { root, files, bytes };
}

function listFlag(name: string, fallback: string): number[] {
  return (process.env[name] || fallback)
    .split(',')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isFinite(n) && n >= 0);
}

function hasTool(bin: string, arg: string): boolean {
  return spawnSync(bin, [arg], { stdio: 'ignore' }).status === 0;
}

/** Untimed walk with the delays paused, so every name has a dentry (see the header). */
function warm(fs: LatencyFs): void {
  fs.pause(true);
  try {
    spawnSync('find', [fs.mountpoint, '-printf', '%s\n'], { stdio: 'ignore' });
  } finally {
    fs.pause(false);
  }
}

function clearFolder(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

function row(
  tree: { files: number; bytes: number },
  delayMs: number,
  tool: string,
  operation: EfsRow['operation'],
  t: TimedRun,
): EfsRow {
  return {
    files: tree.files,
    delayMs,
    tool,
    operation,
    seconds: round(t.seconds, 2),
    filesPerSecond: round(tree.files / t.seconds, 0),
    mbPerSecond: round(tree.bytes / MB / t.seconds, 2),
    peakRssMb: t.peakRssMb === null ? null : round(t.peakRssMb, 0),
  };
}

/** Runs the EFS-like section; prints a table per tree and delay, and one JSON line. */
export async function runEfsBench(dir: string): Promise<void> {
  const why = latencyFsUnavailable();
  if (why) {
    console.log(`\nEFS-like section skipped: ${why}`);
    return;
  }
  const counts = listFlag('BENCH_EFS_FILES', '5000,20000');
  const delays = listFlag('BENCH_EFS_DELAYS', '1,3');
  const peers = process.env.BENCH_EFS_PEERS !== '0';
  const restic = peers && hasTool('restic', 'version');
  const tar = peers && hasTool('tar', '--version');
  if (peers && !restic) console.log('restic not installed (apt-get install -y restic): its rows are skipped');
  const timeBin = findGnuTime();
  const scratch = path.join(dir, 'efs-out');
  mkdirSync(scratch, { recursive: true });
  run('node', [CLI, '--version']);
  // As `npx media-backup` runs: the shebang's UV_THREADPOOL_SIZE, plus IO_CONCURRENCY when given.
  const ioEnv = {
    ...CLI_ENV,
    ...(process.env.IO_CONCURRENCY ? { IO_CONCURRENCY: process.env.IO_CONCURRENCY } : {}),
  };
  const rows: EfsRow[] = [];
  // Each figure as soon as measured: a run that fails later (a peer, the mount) still leaves them.
  const record = (r: EfsRow) => {
    rows.push(r);
    console.log(`efs-row ${JSON.stringify(r)}`);
  };
  const cli = (args: string[]) =>
    timed(timeBin, scratch, 'node', [...CLI_NODE_ARGS, CLI, ...args], { env: ioEnv });
  const resticEnv = (repo: string) => ({
    env: {
      RESTIC_PASSWORD: 'media-backup-bench',
      RESTIC_REPOSITORY: repo,
      RESTIC_CACHE_DIR: path.join(scratch, 'restic-cache'),
    },
  });

  for (const count of counts) {
    const tree = ensureEfsTree(dir, count);
    const size = { files: tree.files.length, bytes: tree.bytes };
    console.log(
      `\nEFS-like tree: ${tree.files.length} files, ${(tree.bytes / MB).toFixed(1)} MB in ${FOLDERS} folders (${tree.root})`,
    );
    if (process.env.BENCH_EFS_LOCAL !== '0') {
      // Reference: our full backup of the same tree on the local disk.
      const store = path.join(scratch, 'store-local');
      clearFolder(store);
      const t = await cli(['backup', 'full', '--source', tree.root, '--store', store, '--json']);
      record(row(size, 0, 'media-backup (local disk)', 'backup', t));
      clearFolder(store);
    }
    for (const delayMs of delays) {
      const source = await mountLatencyFs({ source: tree.root, delayMs });
      const targetBacking = path.join(scratch, 'target');
      clearFolder(targetBacking);
      mkdirSync(targetBacking);
      const target = await mountLatencyFs({ source: targetBacking, delayMs, writeDelayMs: delayMs });
      try {
        const store = path.join(scratch, 'store');
        clearFolder(store);
        warm(source);
        const full = await cli(['backup', 'full', '--source', source.mountpoint, '--store', store, '--json']);
        record(row(size, delayMs, 'media-backup', 'backup', full));

        if (process.env.BENCH_EFS_SHARDS !== '0') {
          // Issue 14: the same full cut into 4 parts archived 4 at a time (the round trips of the
          // parts overlap; on 2 cores the CPU does not grow), and 1 at a time as its peer.
          for (const parallel of ['1', '4']) {
            const shardStore = path.join(scratch, 'store-shards');
            clearFolder(shardStore);
            warm(source);
            const sharded = await cli([
              'backup',
              'full',
              '--source',
              source.mountpoint,
              '--store',
              shardStore,
              '--shards',
              '4',
              '--parallel',
              parallel,
              '--json',
            ]);
            record(row(size, delayMs, `media-backup --shards 4 --parallel ${parallel}`, 'backup', sharded));
            clearFolder(shardStore);
          }
        }

        // 1% churn: new content and mtime, written on the backing folder.
        const later = Date.now() / 1000 + 60;
        const churned = tree.files.filter((_, i) => i % Math.round(1 / CHURN) === 0);
        for (const rel of churned) {
          const file = path.join(tree.root, rel);
          const st = statSync(file);
          writeFileSync(file, Buffer.alloc(st.size, 0x61 + (Math.floor(later) % 26)));
          utimesSync(file, later, later);
        }
        warm(source);
        const incr = await cli([
          'backup',
          'incremental',
          '--source',
          source.mountpoint,
          '--store',
          store,
          '--json',
        ]);
        record(row(size, delayMs, 'media-backup', 'incremental', incr));

        warm(target);
        const restored = await cli([
          'restore',
          '--store',
          store,
          '--target',
          path.join(target.mountpoint, 'ours'),
          '--json',
        ]);
        record(row(size, delayMs, 'media-backup', 'restore', restored));
        clearFolder(path.join(targetBacking, 'ours'));
        clearFolder(store);

        if (restic) {
          const repo = path.join(scratch, 'restic-repo');
          clearFolder(repo);
          clearFolder(path.join(scratch, 'restic-cache'));
          const init = spawnSync('restic', ['init'], {
            env: { ...process.env, ...resticEnv(repo).env },
            stdio: 'ignore',
          });
          if (init.status !== 0) throw new Error('restic init failed');
          warm(source);
          const b = await timed(
            timeBin,
            scratch,
            'restic',
            ['backup', '-q', source.mountpoint],
            resticEnv(repo),
          );
          record(row(size, delayMs, 'restic', 'backup', b));
        }
        if (restic && process.env.BENCH_EFS_RESTIC_RESTORE !== '0') {
          const repo = path.join(scratch, 'restic-repo');
          warm(target);
          const r = await timed(
            timeBin,
            scratch,
            'restic',
            ['restore', 'latest', '-q', '--target', path.join(target.mountpoint, 'restic')],
            resticEnv(repo),
          );
          record(row(size, delayMs, 'restic', 'restore', r));
          clearFolder(path.join(targetBacking, 'restic'));
        }
        clearFolder(path.join(scratch, 'restic-repo'));
        if (tar) {
          const archive = path.join(scratch, 'tree.tar.gz');
          warm(source);
          const c = await timed(timeBin, scratch, 'tar', ['-czf', archive, '-C', source.mountpoint, '.']);
          record(row(size, delayMs, 'GNU tar', 'backup', c));
          const into = path.join(target.mountpoint, 'tar');
          mkdirSync(into);
          warm(target);
          const x = await timed(timeBin, scratch, 'tar', ['-xzf', archive, '-C', into]);
          record(row(size, delayMs, 'GNU tar', 'restore', x));
          clearFolder(path.join(targetBacking, 'tar'));
          rmSync(archive, { force: true });
        }
      } finally {
        await source.stop();
        await target.stop();
      }
      printTable(rows.filter((r) => r.files === size.files && (r.delayMs === delayMs || r.delayMs === 0)));
    }
  }
  console.log(`\n${JSON.stringify({ efs: rows })}`);
  rmSync(scratch, { recursive: true, force: true });
}

function printTable(rows: readonly EfsRow[]): void {
  const find = (tool: string, op: string, delay: number) =>
    rows.find((r) => r.tool === tool && r.operation === op && r.delayMs === delay);
  console.log(
    `\n${table([
      ['run', 'ms/op', 'seconds', 'files/s', 'MB/s', 'peak RSS MB', 'vs restic backup', 'vs tar -xzf'],
      ...rows.map((r) => {
        const restic = find('restic', 'backup', r.delayMs);
        const tarX = find('GNU tar', 'restore', r.delayMs);
        const vsRestic =
          r.operation !== 'restore' && restic ? `${(restic.seconds / r.seconds).toFixed(2)}x` : '';
        const vsTar = r.operation === 'restore' && tarX ? `${(tarX.seconds / r.seconds).toFixed(2)}x` : '';
        return [
          `${r.tool} ${r.operation}`,
          String(r.delayMs),
          String(r.seconds),
          String(r.filesPerSecond),
          String(r.mbPerSecond),
          String(r.peakRssMb ?? 'n/a'),
          vsRestic,
          vsTar,
        ];
      }),
    ])}`,
  );
  for (const r of rows) {
    if (r.tool === 'media-backup' && r.operation === 'incremental') {
      const full = find('media-backup', 'backup', r.delayMs);
      if (full)
        console.log(
          `incremental (1% churn) at ${r.delayMs} ms: ${((r.seconds / full.seconds) * 100).toFixed(0)}% of the full's time (target <= 25%)`,
        );
    }
  }
}
