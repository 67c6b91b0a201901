import { execFile } from 'node:child_process';
import { mkdir, open, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeEach, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../bench/timing.js';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { UsageError } from '../../lambda/core/errors.js';
import { listCommittedBackups, readManifest } from '../../lambda/core/repository/catalog.js';
import type { FileEntry } from '../../lambda/core/repository/manifest.js';
import { readStoreStatus } from '../../lambda/core/repository/status.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { faultyStore } from '../fixtures/faulty-store.js';
import { useFolderStoreWorld } from '../fixtures/folder-world.js';
import { randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';

const execFileAsync = promisify(execFile);
const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
useFolderStoreWorld(dirs, { files: 6, seed: 7 }, (w) => {
  ({ source, storeDir, store } = w);
});

describe('a file rewritten in place while it is read (issue 10 item 3)', () => {
  // Larger than everything the pipeline buffers with one worker and 64 KiB members, so the reader is
  // mid-file when the upload sees its first bytes.
  const BIG = 4 * 1024 * 1024;
  const video = () => path.join(source, 'materials', 'talk.mp4');

  /**
   * What `cp -p` or `rsync --inplace -t` do: new bytes written over the old ones, size unchanged,
   * mtime put back. Only ctime tells.
   */
  async function rewriteInPlaceKeepingSizeAndMtime(file: string, seed: number): Promise<void> {
    const before = await stat(file);
    const fh = await open(file, 'r+');
    try {
      await fh.write(randomBytesFrom(seededRandom(seed), before.size), 0, before.size, 0);
    } finally {
      await fh.close();
    }
    await utimes(file, before.atime, before.mtime);
    const after = await stat(file);
    expect([after.size, after.mtimeMs]).toEqual([before.size, before.mtimeMs]);
  }

  const backupWhile = (change: () => Promise<void>, clockStart?: string) =>
    runBackup(
      {
        store: faultyStore(store, { onUploadBytes: { after: 1, run: change } }),
        clock: tickingClock(clockStart),
        logger: silentLogger,
      },
      { source, gzip: { workers: 1, chunkBytes: 64 * 1024, level: 1 } },
    );

  beforeEach(async () => {
    await mkdir(path.dirname(video()), { recursive: true });
    await writeFile(video(), randomBytesFrom(seededRandom(1), BIG));
    // Whole seconds, so putting the mtime back (as cp -p does) restores it exactly.
    await utimes(video(), 1_760_000_000, 1_760_000_000);
  });

  it('is skipped as changed while being read, never committed under a hash of torn bytes', async () => {
    const result = await backupWhile(() => rewriteInPlaceKeepingSizeAndMtime(video(), 2));

    expect(result.skipped).toEqual([{ path: 'materials/talk.mp4', reason: 'changed while being read' }]);
    const manifest = await readManifest(store, (await listCommittedBackups(store))[0]);
    expect(manifest.entries.some((e) => e.path === 'materials/talk.mp4')).toBe(false);
  });

  it('keeps the previous version in an incremental, which restores byte-exact', async () => {
    const original = await readFile(video());
    const full = await runBackup({ store, clock: tickingClock(), logger: silentLogger }, { source });
    await writeFile(video(), randomBytesFrom(seededRandom(3), BIG)); // a real edit: re-read next time
    await utimes(video(), 1_760_000_100, 1_760_000_100);

    const inc = await backupWhile(
      () => rewriteInPlaceKeepingSizeAndMtime(video(), 4),
      '2025-12-28T02:00:00Z',
    );

    expect(inc.type).toBe('incremental');
    expect(inc.skipped).toEqual([
      { path: 'materials/talk.mp4', reason: 'changed while being read; previous version kept' },
    ]);
    const manifest = await readManifest(store, (await listCommittedBackups(store))[1]);
    expect((manifest.entries.find((e) => e.path === 'materials/talk.mp4') as FileEntry).archive).toBe(
      full.archiveKey,
    );
    const target = path.join(await dirs.make('restore-'), 'media');
    await runRestore({ store, clock: tickingClock(), logger: silentLogger }, { target });
    expect((await readFile(path.join(target, 'materials', 'talk.mp4'))).equals(original)).toBe(true);
  });
});

describe('a FIFO swapped in after the scan (issue 10 item 5)', () => {
  it('is skipped as not a regular file; the backup does not block on it', async () => {
    await writeFile(path.join(source, 'zz-swapped.jpg'), 'a regular file at scan time');

    // A child process: a backup blocked in open() blocks its thread, which no in-process timeout
    // interrupts. On the old code the child is killed at the timeout and this fails.
    const { stdout } = await execFileAsync(
      process.execPath,
      ['--import', 'tsx', 'test/fixtures/swap-after-scan-backup.ts', source, storeDir, 'zz-swapped.jpg'],
      { cwd: REPO_ROOT, timeout: 20_000, killSignal: 'SIGKILL' },
    );

    const result = JSON.parse(stdout) as Awaited<ReturnType<typeof runBackup>>;
    expect(result.status).toBe('SUCCEEDED');
    expect(result.skipped).toEqual([
      { path: 'zz-swapped.jpg', reason: 'became a FIFO after the scan: not a regular file, skipped' },
    ]);
  }, 30_000);
});

describe('a missing or unmounted source (issue 10 item 9)', () => {
  it('records FAILED with the error in the status object, then throws', async () => {
    const deps = { store, clock: tickingClock(), logger: silentLogger };
    await runBackup(deps, { source });
    expect((await readStoreStatus(store, new Date())).lastRun?.status).toBe('SUCCEEDED');
    const unmounted = path.join(source, 'not-mounted');

    await expect(runBackup(deps, { source: unmounted })).rejects.toThrow(
      /source folder .*not-mounted does not exist/,
    );

    const status = await readStoreStatus(store, new Date());
    expect(status.lastRun).toMatchObject({
      status: 'FAILED',
      error: { name: 'SourceError', message: expect.stringMatching(/not-mounted does not exist/) },
    });
    expect(status.healthy).toBe(false);
  });
});

describe('a source and a folder store that overlap (issue 10 item 7)', () => {
  it.each([
    ['the same folder', async () => [source, source], /are the same folder/],
    [
      'a store inside the source',
      async () => [source, path.join(source, 'backups')],
      /the store lies inside the source/,
    ],
    [
      'a source inside the store',
      async () => {
        const inner = path.join(storeDir, 'media');
        await mkdir(inner);
        await writeFile(path.join(inner, 'a.jpg'), 'a');
        return [inner, storeDir];
      },
      /the source lies inside the store/,
    ],
  ] as const)(
    '%s is refused with a UsageError naming both paths; nothing is written',
    async (_label, layout, how) => {
      const [from, storeAt] = await layout();
      const overlapping = new FsObjectStore(storeAt);
      const before = [(await readdir(from)).sort(), (await readdir(storeAt).catch(() => [])).sort()];

      const run = runBackup(
        { store: overlapping, clock: tickingClock(), logger: silentLogger },
        { source: from },
      );

      await expect(run).rejects.toThrow(UsageError);
      await expect(run).rejects.toThrow(how);
      await expect(run).rejects.toThrow(`source ${from}`);
      await expect(run).rejects.toThrow(`store ${overlapping.url}`);
      expect([(await readdir(from)).sort(), (await readdir(storeAt).catch(() => [])).sort()]).toEqual(before);
    },
  );

  it('compares real paths: a symlink to the source as the store is refused', async () => {
    const link = path.join(await dirs.make('link-'), 'store-link');
    await symlink(source, link);

    const run = runBackup(
      { store: new FsObjectStore(link), clock: tickingClock(), logger: silentLogger },
      { source },
    );

    await expect(run).rejects.toThrow(/are the same folder/);
  });
});
