import { mkdir, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lambda/core/deps.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { findRestoreLeftovers } from '../../lambda/core/restorer/restore-leftovers.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { CRAFTED_BACKUP_ID, craftBackup, fileLine, tarFile } from '../fixtures/crafted-backup.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';

const ID = CRAFTED_BACKUP_ID;
const ARCHIVE = `full/${ID}.tar.gz`;
const NOW = new Date('2025-12-30T12:00:00Z');
const HOUR = 3_600_000;

const dirs = tempDirs();
let parent: string;
let target: string;

beforeEach(async () => {
  parent = await dirs.make('leftovers-');
  target = path.join(parent, 'media');
});
afterEach(() => dirs.cleanup());

/** What `restore --replace` killed at various points leaves beside `media`, plus look-alikes. */
async function leaveLeftovers() {
  const staging = path.join(parent, 'media.restore-staging-0a1b2c3d');
  await mkdir(path.join(staging, 'avatars'), { recursive: true });
  await writeFile(path.join(staging, 'avatars/u1.jpg'), Buffer.alloc(1000));
  const stagedAt = new Date(NOW.getTime() - 2 * HOUR);
  await utimes(staging, stagedAt, stagedAt);
  const previous = path.join(parent, 'media.pre-restore-20251229_010203');
  await mkdir(path.join(previous, 'docs'), { recursive: true });
  await writeFile(path.join(previous, 'docs/a.pdf'), Buffer.alloc(300));
  await writeFile(path.join(previous, 'b.txt'), Buffer.alloc(45));
  // Not this target's: another folder's leftovers and a file with the same prefix.
  await mkdir(path.join(parent, 'media2.restore-staging-ffffffff'));
  await mkdir(path.join(parent, 'other.pre-restore-20251229_010203'));
  await writeFile(path.join(parent, 'media.restore-staging-notes.txt'), 'a file, not a restore folder');
  return { staging, previous, stagedAt };
}

describe('item 14: leftovers of killed restores are named with age and size', () => {
  it('findRestoreLeftovers lists the staging and pre-restore folders beside the target, oldest first', async () => {
    await mkdir(target);
    const { staging, previous, stagedAt } = await leaveLeftovers();

    const found = await findRestoreLeftovers(target, NOW);

    expect(found).toEqual([
      {
        path: previous,
        kind: 'pre-restore',
        createdAt: new Date('2025-12-29T01:02:03Z'),
        ageMs: NOW.getTime() - Date.parse('2025-12-29T01:02:03Z'),
        bytes: 345,
        files: 2,
        advice: expect.stringMatching(/was live at .*media before a --replace restore.*keep it until/),
      },
      {
        path: staging,
        kind: 'staging',
        createdAt: stagedAt,
        ageMs: 2 * HOUR,
        bytes: 1000,
        files: 1,
        advice: expect.stringMatching(/interrupted restore's unfinished, unverified copy.*safe to delete/),
      },
    ]);
  });

  it('when a restore was killed between its renames (target missing), the advice says how to undo it', async () => {
    const { staging, previous } = await leaveLeftovers();

    const found = await findRestoreLeftovers(target, NOW);

    expect(found.find((l) => l.path === previous)?.advice).toMatch(
      new RegExp(`${target} is missing: move this back to ${target} to undo the restore`),
    );
    expect(found.find((l) => l.path === staging)?.advice).toMatch(/fully extracted tree .* is missing/);
  });

  it('is empty for a target without leftovers, and for a parent folder that does not exist', async () => {
    await mkdir(target);
    expect(await findRestoreLeftovers(target, NOW)).toEqual([]);
    expect(await findRestoreLeftovers(path.join(parent, 'nope', 'media'), NOW)).toEqual([]);
  });

  it('the next restore names the leftovers in its result and notes, and does not touch them', async () => {
    const storeDir = await dirs.make('leftovers-store-');
    await craftBackup(storeDir, {
      tar: [tarFile('a.txt', 'A\n')],
      manifest: [fileLine('a.txt', 'A\n', ARCHIVE)],
    });
    await mkdir(target);
    const { staging, previous } = await leaveLeftovers();

    const result = await runRestore(
      {
        store: new FsObjectStore(storeDir),
        clock: tickingClock('2025-12-30T12:00:00Z'),
        logger: silentLogger,
      },
      { backup: ID, target, mode: 'replace' },
    );

    expect(result.leftovers.map((l) => l.path)).toEqual([previous, staging]);
    expect(result.notes).toEqual([
      expect.stringContaining(`left by an earlier restore: ${previous} (2 files, 345 bytes`),
      expect.stringContaining(`left by an earlier restore: ${staging} (1 files, 1000 bytes`),
    ]);
    // This restore's own copy of the live tree is its previousTree, not a leftover.
    expect(result.previousTree).not.toBe(previous);
    expect(await findRestoreLeftovers(target, NOW)).toHaveLength(3);
  });
});
