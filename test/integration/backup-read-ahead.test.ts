/**
 * Read-ahead (issue 13): with ioConcurrency > 1 files are opened and read by concurrent async calls
 * ahead of the tar stream. The archive and manifest must be exactly what one-at-a-time reading
 * writes, and the change rules must hold (changed mid-read, vanished, swapped for a FIFO).
 */
import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { UsageError } from '../../lambda/core/errors.js';
import { listCommittedBackups, readManifest } from '../../lambda/core/repository/catalog.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import type { ObjectStore } from '../../lambda/store/types.js';
import { gnuTarExtract, tempDirs, tickingClock } from '../fixtures/engine.js';
import { faultyStore } from '../fixtures/faulty-store.js';
import { makeMediaTree, randomBytesFrom, seededRandom, snapshotTree } from '../fixtures/media-tree.js';

const dirs = tempDirs();
let source: string;

beforeEach(async () => {
  source = await dirs.make('src-');
  await makeMediaTree(source, { files: 80, seed: 21 });
});
afterEach(() => dirs.cleanup());

async function backup(ioConcurrency: number, wrap: (s: ObjectStore) => ObjectStore = (s) => s) {
  const storeDir = await dirs.make('store-');
  const store = new FsObjectStore(storeDir);
  const result = await runBackup(
    { store: wrap(store), clock: tickingClock(), logger: silentLogger },
    { source, type: 'full', ioConcurrency, gzip: { workers: 1 } },
  );
  return { result, store, storeDir };
}

/** A store whose first list (right after the scan, before the archive) runs `change` on the tree. */
function afterScan(change: () => void) {
  return (inner: ObjectStore): ObjectStore => {
    let done = false;
    return Object.assign(Object.create(inner) as ObjectStore, {
      list: async (prefix: string) => {
        if (!done) {
          done = true;
          change();
        }
        return inner.list(prefix);
      },
    });
  };
}

describe('backup read-ahead (ioConcurrency > 1)', () => {
  it('writes the same manifest as one-at-a-time reading, and an archive GNU tar extracts to the tree', async () => {
    await writeFile(path.join(source, 'big.bin'), randomBytesFrom(seededRandom(3), 3 * 1024 * 1024 + 17));
    await writeFile(path.join(source, 'empty.txt'), '');
    await mkdir(path.join(source, 'nested/deeper'), { recursive: true });
    await writeFile(path.join(source, 'nested/deeper/x.txt'), 'x');
    await symlink('big.bin', path.join(source, 'link'));

    const sequential = await backup(1);
    const ahead = await backup(16);

    const entries = async (b: typeof sequential) =>
      (await readManifest(b.store, (await listCommittedBackups(b.store))[0])).entries.map((e) =>
        e.type === 'file' ? { ...e, archive: undefined } : e,
      );
    expect(await entries(ahead)).toEqual(await entries(sequential));
    expect(ahead.result).toMatchObject({ files: sequential.result.files, skipped: [] });
    const out = await dirs.make('extract-');
    await gnuTarExtract(path.join(ahead.storeDir, ahead.result.archiveKey), out);
    expect(await snapshotTree(out, { mtimes: true, modes: true })).toEqual(
      await snapshotTree(source, { mtimes: true, modes: true }),
    );
  });

  it('a read-ahead window smaller than the tree (2 files) still archives every file in order', async () => {
    const { result } = await backup(2);
    expect(result).toMatchObject({ status: 'SUCCEEDED', files: 80, skipped: [] });
  });

  it('a large file that grows while streamed is skipped as changed while being read', async () => {
    const big = path.join(source, 'aaa/lecture.mp4');
    await mkdir(path.dirname(big), { recursive: true });
    await writeFile(big, randomBytesFrom(seededRandom(2), 48 * 1024 * 1024));
    const { result } = await backup(16, (s) =>
      faultyStore(s, { onUploadBytes: { after: 1, run: () => appendFile(big, 'more') } }),
    );
    expect(result.skipped).toEqual([{ path: 'aaa/lecture.mp4', reason: 'changed while being read' }]);
    expect(result.files).toBe(80);
  });

  it('files deleted or swapped for a FIFO after the scan are skipped with their reasons, without blocking', async () => {
    await writeFile(path.join(source, 'gone.pdf'), 'soon gone');
    await writeFile(path.join(source, 'pipe.dat'), 'soon a FIFO');
    const { result } = await backup(
      16,
      afterScan(() => {
        execFileSync('rm', [path.join(source, 'gone.pdf'), path.join(source, 'pipe.dat')]);
        execFileSync('mkfifo', [path.join(source, 'pipe.dat')]);
      }),
    );
    expect(result.skipped).toEqual([
      { path: 'gone.pdf', reason: 'vanished during the backup' },
      { path: 'pipe.dat', reason: 'became a FIFO after the scan: not a regular file, skipped' },
    ]);
    expect(result.files).toBe(80);
  });

  it.each([0, -1, 1.5, 10_000])('rejects ioConcurrency %s with a UsageError', async (n) => {
    await expect(backup(n)).rejects.toThrow(UsageError);
  });
});
