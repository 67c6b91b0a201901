/** Issue 13: a backup that cannot finish in the invocation's remaining time fails fast, recorded as FAILED. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { InsufficientTimeError } from '../../lambda/core/archiver/time-model.js';
import type { Logger } from '../../lambda/core/deps.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { listCommittedBackups } from '../../lambda/core/repository/catalog.js';
import type { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { useFolderStoreWorld } from '../fixtures/folder-world.js';

const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
useFolderStoreWorld(dirs, { files: 40, seed: 3 }, (w) => {
  ({ source, storeDir, store } = w);
});

describe('time model in the backup', () => {
  it('refuses a run whose estimate exceeds the remaining time: InsufficientTimeError, FAILED status, nothing committed', async () => {
    const run = runBackup(
      { store, clock: tickingClock(), logger: silentLogger },
      // 40 files at 100 ms each = 4 s + commit, against 2 s left.
      { source, type: 'full', remainingMs: () => 2_000, timeModel: { perFileMs: 100, commitMs: 0 } },
    );
    await expect(run).rejects.toThrow(InsufficientTimeError);
    await expect(run).rejects.toThrow(/40 files .* need about 4 s .* only 2 s remain/);
    const status = JSON.parse(await readFile(path.join(storeDir, 'status/last-run.json'), 'utf8'));
    expect(status).toMatchObject({ status: 'FAILED', error: { name: 'InsufficientTimeError' } });
    expect(await listCommittedBackups(store)).toEqual([]);
    expect((await store.list('full/')).map((o) => o.key)).toEqual([]);
  });

  it('logs the estimate and runs when it fits', async () => {
    const infos: { message: string; fields?: Record<string, unknown> }[] = [];
    const logger: Logger = {
      ...silentLogger,
      info: (message: string, fields?: Record<string, unknown>) => {
        infos.push({ message, fields });
      },
    };
    const result = await runBackup(
      { store, clock: tickingClock(), logger },
      { source, type: 'full', remainingMs: () => 60_000, timeModel: { perFileMs: 100, commitMs: 0 } },
    );
    expect(result.status).toBe('SUCCEEDED');
    const estimate = infos.find((i) => i.message === 'backup estimate');
    expect(estimate?.fields).toMatchObject({ perFileMs: 100, remainingMs: 60_000 });
    expect(estimate?.fields?.estimatedMs).toBeGreaterThanOrEqual(4_000);
  });
});
