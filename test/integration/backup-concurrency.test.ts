import { appendFile, mkdir, truncate, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { listCommittedBackups, readManifest } from '../../lambda/core/repository/catalog.js';
import type { FileEntry } from '../../lambda/core/repository/manifest.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { gnuTarList, tempDirs, tickingClock } from '../fixtures/engine.js';
import { faultyStore } from '../fixtures/faulty-store.js';
import { makeMediaTree, randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';

const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;

beforeEach(async () => {
  source = await dirs.make('src-');
  storeDir = await dirs.make('store-');
  store = new FsObjectStore(storeDir);
  await makeMediaTree(source, { files: 10, seed: 4 });
});
afterEach(() => dirs.cleanup());

describe('one backup at a time', () => {
  it('a second run against the same store fails fast saying a backup is already running', async () => {
    await writeFile(path.join(source, 'big.mp4'), randomBytesFrom(seededRandom(1), 8 * 1024 * 1024));
    let releaseFirst!: () => void;
    let firstIsUploading!: () => void;
    const gate = new Promise<void>((r) => {
      releaseFirst = r;
    });
    const uploading = new Promise<void>((r) => {
      firstIsUploading = r;
    });
    const slow = faultyStore(store, {
      onUploadBytes: {
        after: 1,
        run: async () => {
          firstIsUploading();
          await gate;
        },
      },
    });
    const first = runBackup({ store: slow, clock: tickingClock(), logger: silentLogger }, { source });
    await uploading;

    const started = Date.now();
    await expect(
      runBackup({ store, clock: tickingClock(), logger: silentLogger }, { source }),
    ).rejects.toThrow(/a backup is already running against file:\/\/.* \(started .* by .*\)/);
    expect(Date.now() - started).toBeLessThan(5000);

    releaseFirst();
    await expect(first).resolves.toMatchObject({ status: 'SUCCEEDED' });
    // The loser did not overwrite the winner's status, and the lock is free again.
    const status = JSON.parse((await store.get('status/last-run.json'))!.toString());
    expect(status.status).toBe('SUCCEEDED');
    await expect(
      runBackup({ store, clock: tickingClock('2026-01-01T00:00:00Z'), logger: silentLogger }, { source }),
    ).resolves.toMatchObject({
      status: 'SUCCEEDED',
    });
  });

  it.each([
    ['expired', { host: 'other-host', pid: 1, expiresAt: new Date(Date.now() - 1000).toISOString() }],
    [
      'held by a dead process on this host',
      { host: hostname(), pid: 2 ** 22 + 17, expiresAt: new Date(Date.now() + 3_600_000).toISOString() },
    ],
  ])('a lock left by a crashed run (%s) is taken over', async (_name, record) => {
    await mkdir(path.join(storeDir, 'locks'), { recursive: true });
    await writeFile(
      path.join(storeDir, 'locks/backup.lock'),
      JSON.stringify({ owner: 'crashed', acquiredAt: new Date(0).toISOString(), ...record }),
    );
    await expect(
      runBackup({ store, clock: tickingClock(), logger: silentLogger }, { source }),
    ).resolves.toMatchObject({
      status: 'SUCCEEDED',
    });
  });

  it('a live lock from another host is respected until it expires', async () => {
    await mkdir(path.join(storeDir, 'locks'), { recursive: true });
    await writeFile(
      path.join(storeDir, 'locks/backup.lock'),
      JSON.stringify({
        owner: 'other-host:99',
        acquiredAt: new Date().toISOString(),
        expiresAt: new Date(Date.now() + 600_000).toISOString(),
        host: 'other-host',
        pid: 99,
      }),
    );
    await expect(
      runBackup({ store, clock: tickingClock(), logger: silentLogger }, { source }),
    ).rejects.toThrow(/already running .* by other-host:99/);
    expect(await listCommittedBackups(store)).toEqual([]);
  });
});

describe('files that change while the backup reads them', () => {
  const BIG = 48 * 1024 * 1024;

  /** Runs a backup that changes the tree once the upload has started (the reader is then mid-file). */
  async function backupWhile(change: () => Promise<void>, clockStart?: string) {
    const hooked = faultyStore(store, { onUploadBytes: { after: 1, run: change } });
    return runBackup(
      { store: hooked, clock: tickingClock(clockStart), logger: silentLogger },
      { source, gzip: { workers: 1 } },
    );
  }

  it.each([
    ['grows', (p: string) => appendFile(p, 'more bytes')],
    ['shrinks', (p: string) => truncate(p, 1024)],
  ])('a file that %s mid-read is reported as skipped and the archive stays valid', async (_name, change) => {
    const big = path.join(source, 'materials/lecture.mp4');
    await mkdir(path.dirname(big), { recursive: true });
    await writeFile(big, randomBytesFrom(seededRandom(2), BIG));

    const result = await backupWhile(() => change(big));

    expect(result.skipped).toEqual([{ path: 'materials/lecture.mp4', reason: 'changed while being read' }]);
    expect(result.files).toBe(10);
    const [entry] = await listCommittedBackups(store);
    const manifest = await readManifest(store, entry);
    expect(manifest.entries.some((e) => e.path === 'materials/lecture.mp4')).toBe(false);
    // GNU tar still reads the whole archive (the entry was padded to its header size).
    expect(await gnuTarList(path.join(storeDir, result.archiveKey))).toContain('materials/lecture.mp4');
  });

  it('keeps the previous version of a file that changed mid-read in an incremental', async () => {
    const big = path.join(source, 'materials/lecture.mp4');
    await mkdir(path.dirname(big), { recursive: true });
    await writeFile(big, randomBytesFrom(seededRandom(2), BIG));
    const full = await runBackup({ store, clock: tickingClock(), logger: silentLogger }, { source });
    await writeFile(big, randomBytesFrom(seededRandom(3), BIG)); // a real edit: must be re-read

    const inc = await backupWhile(() => appendFile(big, 'x'), '2025-12-28T02:00:00Z');

    expect(inc.type).toBe('incremental');
    expect(inc.skipped).toEqual([
      { path: 'materials/lecture.mp4', reason: 'changed while being read; previous version kept' },
    ]);
    const manifest = await readManifest(store, (await listCommittedBackups(store))[1]);
    const kept = manifest.entries.find((e) => e.path === 'materials/lecture.mp4') as FileEntry;
    expect(kept.archive).toBe(full.archiveKey);
  });

  it('a file deleted after the scan is skipped as vanished', async () => {
    await writeFile(path.join(source, 'aaa-big.mp4'), randomBytesFrom(seededRandom(2), BIG));
    await writeFile(path.join(source, 'zzz-gone.pdf'), 'soon gone');
    const result = await backupWhile(() => unlink(path.join(source, 'zzz-gone.pdf')));
    expect(result.skipped).toEqual([{ path: 'zzz-gone.pdf', reason: 'vanished during the backup' }]);
    expect(result.files).toBe(11);
  });
});
