import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lambda/core/deps.js';
import { type RestoreMode, runRestore } from '../../lambda/core/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import type { ObjectStore } from '../../lambda/store/types.js';
import { CRAFTED_BACKUP_ID, craftBackup, fileLine, MTIME_MS, tarFile } from '../fixtures/crafted-backup.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';

const ID = CRAFTED_BACKUP_ID;
const ARCHIVE = `full/${ID}.tar.gz`;
const A = 'alpha: a small file the manifest declares truthfully\n';
const MODES: RestoreMode[] = ['new-folder', 'replace'];
const SNAPSHOT = { mtimes: true, modes: true } as const;

const dirs = tempDirs();
let storeDir: string;
let sandbox: string;
let target: string;

beforeEach(async () => {
  storeDir = await dirs.make('failure-store-');
  sandbox = await dirs.make('failure-sandbox-');
  target = path.join(sandbox, 'target');
});
afterEach(() => dirs.cleanup());

function deps(store: ObjectStore = new FsObjectStore(storeDir)) {
  return { store, clock: tickingClock('2025-12-30T00:00:00Z'), logger: silentLogger };
}

/** Prepares the target for `mode` and returns a check that nothing live changed and nothing was left. */
async function armTarget(mode: RestoreMode) {
  if (mode === 'replace') await makeMediaTree(target, { files: 4, seed: 3, maxFileBytes: 2048 });
  const liveBefore = mode === 'replace' ? await snapshotTree(target, SNAPSHOT) : undefined;
  return async () => {
    const names = await readdir(sandbox);
    expect(names.filter((n) => n.includes('.restore-staging-'))).toEqual([]);
    expect(names.filter((n) => n.includes('.pre-restore-'))).toEqual([]);
    if (mode === 'replace') expect(await snapshotTree(target, SNAPSHOT)).toEqual(liveBefore);
    else expect(existsSync(target)).toBe(false);
  };
}

/**
 * A store whose archive stream, before handing on each chunk, records the largest file found in any
 * staging folder beside the target (every earlier chunk has been written by then: the writer is
 * synchronous) and counts the archive bytes read.
 */
function watchedStore(inner: ObjectStore) {
  const seen = { maxStagedBytes: 0, archiveBytesRead: 0 };
  const measure = () => {
    for (const name of readdirSync(sandbox)) {
      if (!name.includes('.restore-staging-')) continue;
      const walk = (dir: string) => {
        for (const d of readdirSync(dir, { withFileTypes: true })) {
          const p = path.join(dir, d.name);
          if (d.isDirectory()) walk(p);
          else seen.maxStagedBytes = Math.max(seen.maxStagedBytes, lstatSync(p).size);
        }
      };
      walk(path.join(sandbox, name));
    }
  };
  const store: ObjectStore = Object.create(inner, {
    getStream: {
      value: async (key: string) => {
        const body = await inner.getStream(key);
        const watch = new Transform({
          transform(chunk: Buffer, _enc, done) {
            measure();
            seen.archiveBytesRead += chunk.length;
            done(null, chunk);
          },
          flush(done) {
            measure();
            done();
          },
        });
        body.on('error', (error) => watch.destroy(error));
        watch.on('close', () => body.destroy());
        return body.pipe(watch);
      },
    },
  });
  return { store, seen };
}

describe('item 6: restore enforces the manifest sizes while writing', () => {
  it.each(MODES)(
    'an archive entry far larger than the declared size is refused before its bytes are written (%s)',
    async (mode) => {
      // 16 MiB of incompressible bytes under the name of a file the manifest says is 54 bytes.
      const huge = randomBytes(16 * 1024 * 1024);
      const crafted = await craftBackup(storeDir, {
        tar: [{ header: { name: 'docs/', type: 'directory', mode: 0o755 } }, tarFile('docs/a.txt', huge)],
        manifest: [
          { path: 'docs', type: 'dir', mode: 0o755, mtimeMs: MTIME_MS },
          fileLine('docs/a.txt', A, ARCHIVE),
        ],
      });
      const assertUntouched = await armTarget(mode);
      const { store, seen } = watchedStore(new FsObjectStore(storeDir));

      const restoring = runRestore(deps(store), { backup: ID, target, mode });
      await restoring.catch(() => undefined);

      // Never more than the declared size on disk, and it stopped at the entry's header, long
      // before the end of the archive.
      expect(seen.maxStagedBytes).toBeLessThanOrEqual(A.length);
      expect(seen.archiveBytesRead).toBeLessThan(crafted.archiveBytes / 2);
      await assertUntouched();
      await expect(restoring).rejects.toThrow(
        new RegExp(
          `backup ${ID} archive ${ARCHIVE}: file "docs/a.txt" is ${huge.length} bytes in the archive but the manifest declares ${A.length} bytes`,
        ),
      );
    },
  );

  it('a dry run (verify --deep) refuses the oversized entry the same way', async () => {
    await craftBackup(storeDir, {
      tar: [tarFile('a.txt', randomBytes(64 * 1024))],
      manifest: [fileLine('a.txt', A, ARCHIVE)],
    });
    await expect(runRestore(deps(), { backup: ID, dryRun: true })).rejects.toThrow(
      /"a\.txt" is 65536 bytes in the archive but the manifest declares \d+ bytes/,
    );
  });
});
