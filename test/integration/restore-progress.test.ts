import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lambda/core/deps.js';
import { MediaBackupError } from '../../lambda/core/errors.js';
import { type RestoreProgress, runRestore } from '../../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { CRAFTED_BACKUP_ID, craftBackup, fileLine, tarFile } from '../fixtures/crafted-backup.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';

const ID = CRAFTED_BACKUP_ID;
const ARCHIVE = `full/${ID}.tar.gz`;

const dirs = tempDirs();
let storeDir: string;
let target: string;
const video = randomBytes(3 * 1024 * 1024);
const small = ['a photo\n', 'a note\n'];
const totalBytes = video.length + small[0].length + small[1].length;

beforeEach(async () => {
  storeDir = await dirs.make('progress-store-');
  target = path.join(await dirs.make('progress-target-'), 'media');
  await craftBackup(storeDir, {
    tar: [tarFile('a.jpg', small[0]), tarFile('b.txt', small[1]), tarFile('video.mp4', video)],
    manifest: [
      fileLine('a.jpg', small[0], ARCHIVE),
      fileLine('b.txt', small[1], ARCHIVE),
      fileLine('video.mp4', video, ARCHIVE),
    ],
  });
});
afterEach(() => dirs.cleanup());

const deps = () => ({
  store: new FsObjectStore(storeDir),
  clock: tickingClock('2025-12-30T00:00:00Z'),
  logger: silentLogger,
});

describe('item 18: restore and verify --deep report progress in bytes and files', () => {
  it.each([
    ['restore', false],
    ['dry run (what verify --deep runs)', true],
  ])(
    '%s: bytes and files done against the manifest totals, bytes moving inside a large file',
    async (_label, dryRun) => {
      const seen: RestoreProgress[] = [];

      await runRestore(deps(), { backup: ID, target, dryRun, onProgress: (p) => seen.push(p) });

      expect(seen.at(-1)).toEqual({ bytes: totalBytes, totalBytes, files: 3, totalFiles: 3 });
      for (const [i, p] of seen.entries()) {
        expect(p).toMatchObject({ totalBytes, totalFiles: 3 });
        if (i > 0) expect(p.bytes).toBeGreaterThanOrEqual(seen[i - 1].bytes);
        if (i > 0) expect(p.files).toBeGreaterThanOrEqual(seen[i - 1].files);
      }
      // The bar moves while the 3 MiB video is being written, not only when it is done.
      const duringVideo = seen.filter((p) => p.files === 2 && p.bytes > totalBytes - video.length);
      expect(duringVideo.some((p) => p.bytes < totalBytes)).toBe(true);
    },
  );

  it('a stop signal (Ctrl-C) mid-file ends the restore with its reason; staging removed, nothing restored', async () => {
    class Stopped extends MediaBackupError {
      override readonly name = 'InterruptedError';
    }
    const controller = new AbortController();

    const restoring = runRestore(deps(), {
      backup: ID,
      target,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.files === 2 && p.bytes > totalBytes - video.length)
          controller.abort(new Stopped('interrupted by SIGINT'));
      },
    });

    await expect(restoring).rejects.toThrow(/^interrupted by SIGINT$/);
    expect(existsSync(target)).toBe(false);
    expect(await readdir(path.dirname(target))).toEqual([]);
  });
});
