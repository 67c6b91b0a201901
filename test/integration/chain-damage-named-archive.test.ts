import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { runVerify } from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import type { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { flipOneByte, useFolderStoreWorld } from '../fixtures/folder-world.js';

/**
 * Verify records damage per backup it checked, but the damage may sit in an archive another backup
 * owns (a deep check of an incremental reads its full's archive). A chain that needs that archive
 * must not be built upon, even when the backup verify named is not part of it.
 */
const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
useFolderStoreWorld(dirs, { files: 12, seed: 23 }, (w) => {
  ({ source, storeDir, store } = w);
});

const backupOn = (day: string) =>
  runBackup(
    { store, clock: tickingClock(`${day}T02:00:00Z`), logger: silentLogger },
    { source, type: 'auto' },
  );

describe('auto and damage verify found in an archive of another backup', () => {
  it('takes a full when verify of an older incremental found the full archive the latest still needs damaged', async () => {
    const full = await backupOn('2025-12-25');
    await writeFile(path.join(source, 'n1.txt'), 'one\n');
    const i1 = await backupOn('2025-12-26'); // holds n1 only
    await rm(path.join(source, 'n1.txt'));
    await writeFile(path.join(source, 'n2.txt'), 'two\n');
    const i2 = await backupOn('2025-12-27'); // needs the full's archive and its own, not i1's
    expect([i1.type, i2.type]).toEqual(['incremental', 'incremental']);
    await flipOneByte(storeDir, full.archiveKey);
    const verified = await runVerify(
      { store, clock: tickingClock('2025-12-27T03:00:00Z'), logger: silentLogger },
      { backup: i1.backupId, deep: true },
    );
    expect(verified.status).toBe('FAILED');
    await writeFile(path.join(source, 'n3.txt'), 'three\n');

    const next = await backupOn('2025-12-28');

    expect(next.type).toBe('full');
    expect(next.reason).toContain(`chain of ${i2.backupId} is damaged`);
    expect(next.reason).toContain(full.archiveKey);
  });
});
