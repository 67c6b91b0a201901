import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { listCommittedBackups } from '../../lambda/core/repository/catalog.js';
import type { FsObjectStore } from '../../lambda/store/fs.js';
import {
  ObjectExistsError,
  type ObjectStore,
  type PutOptions,
  type UploadOptions,
} from '../../lambda/store/types.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { useFolderStoreWorld } from '../fixtures/folder-world.js';

// Issue 12 section 1, end to end: an object that appears at a backup's key after the run chose its
// id (another writer racing, a planted fake "latest") is never overwritten, and nothing is committed.

const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
useFolderStoreWorld(dirs, { files: 5, seed: 3 }, (w) => {
  ({ source, storeDir, store } = w);
});

/** The store, with `planted` written at the first key whose name ends with `suffix` just before our write. */
function racingStore(inner: FsObjectStore, suffix: string): { store: ObjectStore; planted: string[] } {
  const planted: string[] = [];
  const plant = async (key: string) => {
    if (key.endsWith(suffix) && planted.length === 0) {
      planted.push(key);
      await inner.put(key, 'planted');
    }
  };
  const wrapped: ObjectStore = Object.create(inner);
  wrapped.upload = async (key: string, body: Readable, options?: UploadOptions) => {
    await plant(key);
    return inner.upload(key, body, options);
  };
  wrapped.put = async (key: string, body: Buffer | string, options?: PutOptions) => {
    await plant(key);
    return (inner as ObjectStore).put(key, body, options);
  };
  return { store: wrapped, planted };
}

describe('a backup never overwrites backup history', () => {
  it.each([
    ['archive', '.tar.gz'],
    ['metadata', '.metadata.json'],
    ['manifest', '.manifest.jsonl.gz'],
  ])(
    'a %s appearing at its key: ObjectExistsError, the object intact, nothing committed',
    async (_which, suffix) => {
      const racing = racingStore(store, suffix);

      await expect(
        runBackup({ store: racing.store, clock: tickingClock(), logger: silentLogger }, { source }),
      ).rejects.toThrow(ObjectExistsError);

      expect(racing.planted).toHaveLength(1);
      expect(await readFile(path.join(storeDir, racing.planted[0]), 'utf8')).toBe('planted');
      if (suffix !== '.manifest.jsonl.gz') expect(await listCommittedBackups(store)).toEqual([]);
      const status = JSON.parse((await store.get('status/last-run.json'))?.toString() ?? '{}');
      expect(status).toMatchObject({
        status: 'FAILED',
        error: { message: expect.stringContaining('refusing to overwrite backup history') },
      });
    },
  );
});
