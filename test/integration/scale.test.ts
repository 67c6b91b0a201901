import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { runVerify } from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { listBackups } from '../../lambda/core/repository/status.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';

/**
 * File-count scale (issue 10 item 0): a full backup of 200,000 small files failed at once with
 * "Maximum call stack size exceeded" (every changed entry spread as call arguments). This run takes
 * about a minute on a 2-core box, so it runs when MEDIA_BACKUP_SCALE_TEST=1 (.ci/run sets it); the
 * default run keeps the fast in-memory regression in test/unit/backup-pack-order.test.ts.
 */
const FOLDERS = Number(process.env.MEDIA_BACKUP_SCALE_FOLDERS ?? 400);
const FILES_PER_FOLDER = 500;
const TOTAL = FOLDERS * FILES_PER_FOLDER;

const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
const clock = tickingClock();
const deps = () => ({ store, clock, logger: silentLogger });

/** Path -> sha256 of every file below `root`, as one digest (order-independent of readdir). */
function treeDigest(root: string): { files: number; digest: string } {
  const lines: string[] = [];
  const walk = (abs: string, rel: string) => {
    for (const d of readdirSync(abs, { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) walk(path.join(abs, d.name), r);
      else
        lines.push(
          `${r}\0${createHash('sha256')
            .update(readFileSync(path.join(abs, d.name)))
            .digest('hex')}`,
        );
    }
  };
  walk(root, '');
  lines.sort();
  return { files: lines.length, digest: createHash('sha256').update(lines.join('\n')).digest('hex') };
}

describe.runIf(process.env.MEDIA_BACKUP_SCALE_TEST === '1')(`a tree of ${TOTAL} files`, () => {
  beforeAll(async () => {
    source = await dirs.make('scale-src-');
    storeDir = await dirs.make('scale-store-');
    store = new FsObjectStore(storeDir);
    // Synchronous writes: ~10x faster than fs.promises for tiny files.
    for (let f = 0; f < FOLDERS; f++) {
      const folder = path.join(source, `room-${String(f).padStart(3, '0')}`);
      mkdirSync(folder);
      for (let i = 0; i < FILES_PER_FOLDER; i++)
        writeFileSync(path.join(folder, `avatar-${i}.jpg`), `${f}:${i}\n`);
    }
  }, 120_000);
  afterAll(() => dirs.cleanup());

  it('is backed up (full, then incremental), listed, verified and restored byte-exact', async () => {
    const timings: Record<string, number> = {};
    const timed = async <T>(label: string, work: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      const result = await work();
      timings[label] = Math.round(performance.now() - t0);
      return result;
    };

    const full = await timed('full', () => runBackup(deps(), { source, type: 'full' }));
    expect(full).toMatchObject({ status: 'SUCCEEDED', type: 'full', files: TOTAL, changedFiles: TOTAL });
    expect(full.skipped).toEqual([]);

    writeFileSync(path.join(source, 'room-000', 'avatar-0.jpg'), 'changed\n');
    const incremental = await timed('incremental', () => runBackup(deps(), { source, type: 'auto' }));
    expect(incremental).toMatchObject({ type: 'incremental', files: TOTAL, changedFiles: 1 });

    const listed = await timed('list', () => listBackups(store));
    expect(listed.map((b) => [b.backupId, b.files])).toEqual([
      [full.backupId, TOTAL],
      [incremental.backupId, TOTAL],
    ]);

    const verified = await timed('verify', () => runVerify(deps(), { all: true }));
    expect(verified.status).toBe('SUCCEEDED');

    const target = path.join(await dirs.make('scale-restore-'), 'media');
    const restored = await timed('restore', () => runRestore(deps(), { backup: 'latest', target }));
    expect(restored).toMatchObject({ files: TOTAL, verified: true });
    expect(treeDigest(target)).toEqual(treeDigest(source));
    // Visible with --reporter=verbose; the bench reports time and RSS per 100k files.
    process.stderr.write(`scale test (${TOTAL} files), ms: ${JSON.stringify(timings)}\n`);
  }, 300_000);
});
