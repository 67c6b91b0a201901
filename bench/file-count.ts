/**
 * File-count bench (issue 10 item 0): time and peak RSS of the CLI's full and incremental backups of
 * a tree of many tiny files (400 folders x 500 "avatars" for 200,000), reported per 100,000 files.
 * The byte-throughput bench uses a few thousand files; this one finds what grows with the file count
 * (scan, manifest, diff, per-entry tar headers).
 *
 *   BENCH_FILE_COUNT=200000 npm run bench    # runs only this section (~1 min here)
 *
 * The tree is cached under BENCH_DIR/files-<count> and rebuilt when missing. MB = 10^6 bytes.
 */
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CLI, CLI_NODE_ARGS, findGnuTime, round, run, table, timed } from './timing.js';

const FILES_PER_FOLDER = 500;
const GENERATOR = 'media-backup-bench/file-count/1';

interface BackupJson {
  readonly files: number;
  readonly changedFiles: number;
  readonly archiveBytes: number;
  readonly durationMs: number;
}

/** Builds (or reuses) a tree of `count` tiny files; returns its root. */
function ensureFileTree(dir: string, count: number): string {
  const root = path.join(dir, `files-${count}`);
  const marker = `${root}.done`;
  if (existsSync(marker)) return root;
  rmSync(root, { recursive: true, force: true });
  const started = performance.now();
  for (let n = 0; n < count; n++) {
    const folder = path.join(root, `room-${String(Math.floor(n / FILES_PER_FOLDER)).padStart(4, '0')}`);
    if (n % FILES_PER_FOLDER === 0) mkdirSync(folder, { recursive: true });
    // ~100 bytes: the cost measured is per file, not per byte.
    writeFileSync(path.join(folder, `avatar-${n}.jpg`), `${GENERATOR} ${n} `.padEnd(100, '.'));
  }
  writeFileSync(marker, `${GENERATOR}\n`);
  console.log(
    `Generated ${count} files in ${((performance.now() - started) / 1000).toFixed(1)} s under ${root}`,
  );
  return root;
}

/** Runs the file-count section alone; prints a table and one JSON line. */
export async function runFileCountBench(dir: string, count: number): Promise<void> {
  const root = ensureFileTree(dir, count);
  const scratch = path.join(dir, 'files-out');
  const store = path.join(scratch, 'store');
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const timeBin = findGnuTime();
  run('node', [CLI, '--version']);
  const backup = async (type: 'full' | 'incremental') => {
    run('sync', []);
    const r = await timed(timeBin, scratch, 'node', [
      ...CLI_NODE_ARGS,
      CLI,
      'backup',
      type,
      '--source',
      root,
      '--store',
      store,
      '--json',
    ]);
    return { ...r, result: JSON.parse(r.stdout) as BackupJson };
  };
  const full = await backup('full');
  // 1% of the files changed (new mtime), as in the byte bench's incremental.
  const later = new Date(Date.now() + 60_000);
  for (let n = 0; n < count; n += 100) {
    const folder = `room-${String(Math.floor(n / FILES_PER_FOLDER)).padStart(4, '0')}`;
    utimesSync(path.join(root, folder, `avatar-${n}.jpg`), later, later);
  }
  const incremental = await backup('incremental');
  if (full.result.files !== count || incremental.result.changedFiles !== Math.ceil(count / 100)) {
    throw new Error(
      `file-count bench: expected ${count} files / ${Math.ceil(count / 100)} changed, got ${full.result.files} / ${incremental.result.changedFiles}`,
    );
  }
  const per100k = (value: number | null) => (value === null ? null : round((value * 100_000) / count, 2));
  const rows = [
    { name: 'full', run: full },
    { name: 'incremental (1% changed)', run: incremental },
  ].map(({ name, run: r }) => ({
    name,
    seconds: round(r.seconds, 2),
    engineSeconds: round(r.result.durationMs / 1000, 2),
    peakRssMb: r.peakRssMb === null ? null : round(r.peakRssMb, 1),
    secondsPer100k: per100k(r.seconds),
    peakRssMbPer100k: per100k(r.peakRssMb),
  }));
  console.log(
    `\nFile count: ${count} files of ~100 bytes in ${Math.ceil(count / FILES_PER_FOLDER)} folders (CLI, folder store)\n`,
  );
  console.log(
    table([
      ['backup', 'wall s', 'engine s', 'peak RSS MB', 's per 100k files', 'peak RSS MB per 100k files'],
      ...rows.map((r) => [
        r.name,
        String(r.seconds),
        String(r.engineSeconds),
        String(r.peakRssMb ?? 'n/a'),
        String(r.secondsPer100k),
        String(r.peakRssMbPer100k ?? 'n/a'),
      ]),
    ]),
  );
  console.log(`\n${JSON.stringify({ fileCount: { files: count, runs: rows } })}`);
  rmSync(scratch, { recursive: true, force: true });
}
