import { readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { keysFor } from '../../lambda/core/repository/layout.js';
import type { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { useFolderStoreWorld } from '../fixtures/folder-world.js';

/**
 * The chain check compares each archive's stored size with its backup's metadata. When that
 * metadata is gone or unreadable the size cannot be checked, and a truncated archive must not be
 * built upon silently: auto takes a full and says why.
 */
const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
useFolderStoreWorld(dirs, { files: 12, seed: 22 }, (w) => {
  ({ source, storeDir, store } = w);
});

const backupOn = (day: string) =>
  runBackup(
    { store, clock: tickingClock(`${day}T02:00:00Z`), logger: silentLogger },
    { source, type: 'auto' },
  );

describe('chain check without the base metadata', () => {
  it('takes a full when the base archive is truncated and its metadata is missing', async () => {
    const full = await backupOn('2025-12-27');
    const archive = path.join(storeDir, full.archiveKey);
    await truncate(archive, (await readFile(archive)).length - 100);
    await rm(path.join(storeDir, keysFor('full', full.backupId).metadata));
    await writeFile(path.join(source, 'new.txt'), 'new\n');

    const next = await backupOn('2025-12-28');

    expect(next.type).toBe('full');
    expect(next.reason).toContain(`chain of ${full.backupId} is damaged`);
    expect(next.reason).toContain(`metadata of backup ${full.backupId}`);
  });

  it('takes a full when the base metadata is unreadable', async () => {
    const full = await backupOn('2025-12-27');
    await writeFile(path.join(storeDir, keysFor('full', full.backupId).metadata), '{not json');
    await writeFile(path.join(source, 'new.txt'), 'new\n');

    const next = await backupOn('2025-12-28');

    expect(next.type).toBe('full');
    expect(next.reason).toContain(`metadata of backup ${full.backupId}`);
  });
});
