import {
  chmod,
  copyFile,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readlink,
  rename,
  symlink,
  unlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type BackupSucceeded, runBackup } from '../../lambda/core/archiver/backup.js';
import { runVerify } from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import type { ObjectStore } from '../../lambda/store/types.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { faultyStore } from '../fixtures/faulty-store.js';
import {
  documentBytes,
  makeMediaTree,
  randomBytesFrom,
  seededRandom,
  snapshotTree,
} from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';

const HOUR = 3_600_000;
const dirs = tempDirs();
let s3: S3rverFixture;
let runs = 0;

beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());
afterEach(() => dirs.cleanup());

const snap = (root: string) => snapshotTree(root, { mtimes: true, modes: true });

/**
 * Seeded random churn between backups: edits, adds, deletes, renames, mode changes, new folders and
 * links. Every changed file gets a distinct mtime, as a real edit would.
 */
async function mutate(root: string, rand: () => number, generation: number): Promise<void> {
  const files = Object.entries(await snapshotTree(root))
    .filter(([, v]) => v.type === 'file')
    .map(([p]) => p);
  const pick = () => files.splice((rand() * files.length) | 0, 1)[0];
  const stamp = (i: number) => new Date(Date.UTC(2025, 5, 1) + generation * 86_400_000 + i * 1000);
  for (let i = 0; i < 3 && files.length; i++) {
    const p = path.join(root, pick());
    await writeFile(p, randomBytesFrom(rand, (rand() * 20_000) | 0));
    await utimes(p, stamp(i), stamp(i));
  }
  for (let i = 0; i < 2 && files.length; i++) await unlink(path.join(root, pick()));
  if (files.length) {
    const from = pick();
    await mkdir(path.join(root, `renamed-${generation}`), { recursive: true });
    await rename(path.join(root, from), path.join(root, `renamed-${generation}`, path.basename(from)));
  }
  if (files.length) await chmod(path.join(root, pick()), 0o600);
  await mkdir(path.join(root, `chat/room-${generation}`), { recursive: true });
  const added = path.join(root, `chat/room-${generation}/notes ${generation}.pdf`);
  await writeFile(added, documentBytes(rand, 5000));
  await utimes(added, stamp(9), stamp(9));
  await mkdir(path.join(root, `empty-${generation}`));
  await symlink(`../chat/room-${generation}`, path.join(root, `empty-${generation}/link`));
}

describe.each(['folder', 's3rver'] as const)('restore round trip over generations (%s store)', (kind) => {
  let store: ObjectStore;
  let source: string;
  let clock: ReturnType<typeof tickingClock>;

  beforeEach(async () => {
    source = await dirs.make('src-');
    runs += 1;
    store =
      kind === 'folder' ? new FsObjectStore(await dirs.make('store-')) : s3.makeStore(`roundtrip-${runs}/`);
    clock = tickingClock('2025-12-20T02:00:00Z');
  });

  it('every backup restores to exactly the tree as it was when taken, and --at picks the right one', async () => {
    await makeMediaTree(source, { files: 30, seed: 77 });
    await symlink('/etc/hostname', path.join(source, 'outside-link'));
    await mkdir(path.join(source, 'empty-folder'));
    const rand = seededRandom(78);
    const plan: ('full' | 'incremental')[] = [
      'full',
      'incremental',
      'incremental',
      'incremental',
      'full',
      'incremental',
    ];
    const taken: { result: BackupSucceeded; tree: Awaited<ReturnType<typeof snap>> }[] = [];
    for (const [generation, type] of plan.entries()) {
      if (generation > 0) await mutate(source, rand, generation);
      clock.jump(HOUR);
      const result = await runBackup({ store, clock, logger: silentLogger }, { source, type });
      expect(result.type).toBe(type);
      taken.push({ result, tree: await snap(source) });
    }

    for (const { result, tree } of taken.slice(0)) {
      const target = path.join(await dirs.make('restore-'), 'media');
      const restored = await runRestore(
        { store, clock, logger: silentLogger },
        { backup: result.backupId, target },
      );
      expect(restored).toMatchObject({ backupId: result.backupId, verified: true, files: result.files });
      expect(await snap(target), result.backupId).toEqual(tree);
    }

    // Point in time: 30 minutes after the third backup is the third backup.
    const third = taken[2].result;
    const at = new Date(
      Date.parse(
        `${third.backupId.slice(7, 11)}-${third.backupId.slice(11, 13)}-${third.backupId.slice(13, 15)}T${third.backupId.slice(16, 18)}:${third.backupId.slice(18, 20)}:${third.backupId.slice(20, 22)}Z`,
      ) +
        30 * 60_000,
    );
    const target = path.join(await dirs.make('restore-'), 'media');
    const pit = await runRestore({ store, clock, logger: silentLogger }, { at, target });
    expect(pit.backupId).toBe(third.backupId);
    expect(await snap(target)).toEqual(taken[2].tree);

    const verify = await runVerify({ store, clock, logger: silentLogger }, { all: true, deep: true });
    expect(verify.status).toBe('SUCCEEDED');
    expect(verify.backups).toHaveLength(plan.length);
    expect(verify.backups.every((b) => b.filesVerified !== null && b.filesVerified > 0)).toBe(true);
  });
});

describe('restore modes (folder store)', () => {
  let store: FsObjectStore;
  let storeDir: string;
  let source: string;
  let clock: ReturnType<typeof tickingClock>;
  let live: string;

  beforeEach(async () => {
    source = await dirs.make('src-');
    storeDir = await dirs.make('store-');
    store = new FsObjectStore(storeDir);
    clock = tickingClock();
    await makeMediaTree(source, { files: 20, seed: 5 });
    await writeFile(path.join(source, 'lecture.mp4'), randomBytesFrom(seededRandom(6), 6 * 1024 * 1024));
    live = path.join(await dirs.make('live-'), 'media');
  });

  it('--replace swaps the restored tree in and keeps the previous one beside it', async () => {
    await runBackup({ store, clock, logger: silentLogger }, { source });
    await mkdir(live);
    await writeFile(path.join(live, 'corrupted.jpg'), 'garbage');
    const before = await snap(live);

    const result = await runRestore(
      { store, clock, logger: silentLogger },
      { target: live, mode: 'replace' },
    );

    expect(await snap(live)).toEqual(await snap(source));
    expect(result.previousTree).toMatch(/media\.pre-restore-\d{8}_\d{6}$/);
    expect(await snap(result.previousTree!)).toEqual(before);
  });

  it('rollback: a failure midway through a --replace restore leaves the live tree exactly as it was', async () => {
    await runBackup({ store, clock, logger: silentLogger }, { source });
    await makeMediaTree(live, { files: 8, seed: 99 });
    const before = await snap(live);
    const opened: Readable[] = [];
    const tracking: ObjectStore = Object.create(store, {
      getStream: {
        value: async (key: string) => {
          const body = await store.getStream(key);
          opened.push(body);
          return body;
        },
      },
    });
    const flaky = faultyStore(tracking, { downloadFailsAfterBytes: 2 * 1024 * 1024 });

    await expect(
      runRestore({ store: flaky, clock, logger: silentLogger }, { target: live, mode: 'replace' }),
    ).rejects.toThrow(/injected download failure/);

    // Every archive stream the store opened was closed, not left to the garbage collector (DEP0137).
    expect(opened.length).toBeGreaterThan(0);
    expect(opened.map((s) => s.destroyed)).toEqual(opened.map(() => true));

    expect(await snap(live)).toEqual(before);
    expect(await readdir(path.dirname(live))).toEqual(['media']); // no staging, no .pre-restore copy
  });

  it.each(['new-folder', 'replace'] as const)(
    "restores the target folder's own mode and mtime and every symlink's mtime (%s)",
    async (mode) => {
      const linkTime = new Date(Date.UTC(2024, 2, 3, 4, 5, 6));
      await symlink('lecture.mp4', path.join(source, 'latest-lecture'));
      await symlink('/nowhere', path.join(source, 'avatars/dangling'));
      await lutimes(path.join(source, 'latest-lecture'), linkTime, linkTime);
      await lutimes(path.join(source, 'avatars/dangling'), linkTime, new Date(linkTime.getTime() + 7000));
      const rootTime = new Date(Date.UTC(2023, 10, 12, 13, 14, 15));
      await chmod(source, 0o750);
      await utimes(source, rootTime, rootTime);
      await runBackup({ store, clock, logger: silentLogger }, { source });
      if (mode === 'replace') await makeMediaTree(live, { files: 2, seed: 1 });

      await runRestore({ store, clock, logger: silentLogger }, { target: live, mode });

      const root = await lstat(live);
      expect(root.mtimeMs).toBe(rootTime.getTime());
      expect(root.mode & 0o7777).toBe(0o750);
      expect((await lstat(path.join(live, 'latest-lecture'))).mtimeMs).toBe(linkTime.getTime());
      expect((await lstat(path.join(live, 'avatars/dangling'))).mtimeMs).toBe(linkTime.getTime() + 7000);
      expect(await readlink(path.join(live, 'avatars/dangling'))).toBe('/nowhere');
    },
  );

  it('refuses a non-empty target in new-folder mode, naming it', async () => {
    await runBackup({ store, clock, logger: silentLogger }, { source });
    await makeMediaTree(live, { files: 2 });
    const before = await snap(live);
    await expect(runRestore({ store, clock, logger: silentLogger }, { target: live })).rejects.toThrow(
      new RegExp(`restore target ${live} is not empty`),
    );
    expect(await snap(live)).toEqual(before);
  });

  it('--path restores only matching paths with their folders', async () => {
    await runBackup({ store, clock, logger: silentLogger }, { source });
    const result = await runRestore(
      { store, clock, logger: silentLogger },
      { target: live, paths: ['avatars'] },
    );
    const full = await snap(source);
    const expected = Object.fromEntries(
      Object.entries(full).filter(([p]) => p === 'avatars' || p.startsWith('avatars/')),
    );
    expect(Object.keys(expected).length).toBeGreaterThan(1);
    expect(await snap(live)).toEqual(expected);
    expect(result.files).toBe(Object.values(expected).filter((e) => e.type === 'file').length);
    await expect(
      runRestore({ store, clock, logger: silentLogger }, { target: `${live}2`, paths: ['nothing/**'] }),
    ).rejects.toThrow(/matches nothing/);
  });

  it('--dry-run reads and verifies everything and writes nothing', async () => {
    await runBackup({ store, clock, logger: silentLogger }, { source });
    const result = await runRestore({ store, clock, logger: silentLogger }, { dryRun: true, target: live });
    expect(result).toMatchObject({ dryRun: true, verified: true, files: 21 });
    await expect(readdir(path.dirname(live))).resolves.toEqual([]);
  });

  it('names what exists when the backup or time is unknown', async () => {
    const first = await runBackup({ store, clock, logger: silentLogger }, { source });
    await expect(
      runRestore({ store, clock, logger: silentLogger }, { backup: 'backup_20200101_000000', target: live }),
    ).rejects.toThrow(
      new RegExp(`backup_20200101_000000 is not a committed backup.*Available: ${first.backupId} \\(full\\)`),
    );
    await expect(
      runRestore(
        { store, clock, logger: silentLogger },
        { at: new Date('2020-01-01T00:00:00Z'), target: live },
      ),
    ).rejects.toThrow(
      new RegExp(`no committed backup at or before 2020-01-01.*the first is ${first.backupId}`),
    );
  });

  it.each([
    ['backup id', (id: string) => id],
    ['archive file name', (id: string) => `${id}.tar.gz`],
    ['archive key', (id: string) => `full/${id}.tar.gz`],
  ])('accepts the backup as a %s', async (_name, form) => {
    const first = await runBackup({ store, clock, logger: silentLogger }, { source });
    await writeFile(path.join(source, 'later.pdf'), 'later');
    await runBackup({ store, clock, logger: silentLogger }, { source });
    const result = await runRestore(
      { store, clock, logger: silentLogger },
      { backup: form(first.backupId), target: live },
    );
    expect(result.backupId).toBe(first.backupId);
    expect(result.files).toBe(21);
  });

  it('restores a downloaded archive, verified against the manifest beside it, or unverified without one', async () => {
    const full = await runBackup({ store, clock, logger: silentLogger }, { source });
    const downloads = await dirs.make('dl-');
    const archive = path.join(downloads, `${full.backupId}.tar.gz`);
    await copyFile(path.join(storeDir, full.archiveKey), archive);
    await copyFile(
      path.join(storeDir, full.manifestKey),
      path.join(downloads, `${full.backupId}.manifest.jsonl.gz`),
    );

    const verified = await runRestore(
      { store, clock, logger: silentLogger },
      { backup: archive, target: live },
    );
    expect(verified).toMatchObject({ verified: true, backupId: full.backupId, files: 21 });
    expect(await snap(live)).toEqual(await snap(source));

    await unlink(path.join(downloads, `${full.backupId}.manifest.jsonl.gz`));
    const other = path.join(await dirs.make('plain-'), 'media');
    const plain = await runRestore(
      { store, clock, logger: silentLogger },
      { backup: archive, target: other },
    );
    expect(plain).toMatchObject({ verified: false, backupId: null, files: 21 });
    expect(plain.notes[0]).toMatch(/no manifest beside/);
    expect(await snapshotTree(other)).toEqual(await snapshotTree(source));

    const partial = path.join(await dirs.make('partial-'), 'media');
    await runRestore(
      { store, clock, logger: silentLogger },
      { backup: archive, target: partial, paths: ['avatars'] },
    );
    const expected = Object.fromEntries(
      Object.entries(await snapshotTree(source)).filter(([p]) => p === 'avatars' || p.startsWith('avatars/')),
    );
    expect(Object.keys(expected).length).toBeGreaterThan(1);
    expect(await snapshotTree(partial)).toEqual(expected);
  });
});
