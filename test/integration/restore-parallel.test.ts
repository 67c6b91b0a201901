import { chmod, lstat, lutimes, mkdir, readdir, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { UsageError } from '../../lambda/core/errors.js';
import { ArchiveIntegrityError } from '../../lambda/core/restorer/archive-reader.js';
import { parseParallel, runRestore } from '../../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import type { ObjectStore } from '../../lambda/store/types.js';
import { runCli } from '../fixtures/cli.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { faultyStore } from '../fixtures/faulty-store.js';
import { flipOneByte } from '../fixtures/folder-world.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';
import { writeShardedBackup } from '../fixtures/sharded-backup.js';
import { besideTarget, fullSnapshot } from '../fixtures/tree-listing.js';

const dirs = tempDirs();
let s3: S3rverFixture;

beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());
afterEach(() => dirs.cleanup());

/**
 * A seeded media tree plus what a restore must also reproduce: links (one dangling), a private
 * folder and file, and folder mtimes set last (creating files moves them).
 */
async function seedTree(root: string, files: number): Promise<void> {
  await makeMediaTree(root, { files, maxFileBytes: 48 * 1024, seed: 7 });
  await mkdir(path.join(root, 'links'));
  await symlink('../avatars', path.join(root, 'links/to-avatars'));
  await symlink('nowhere/at-all', path.join(root, 'links/dangling'));
  await mkdir(path.join(root, 'zz-private'));
  await writeFile(path.join(root, 'zz-private/secret.txt'), 'only the owner reads this');
  await chmod(path.join(root, 'zz-private/secret.txt'), 0o600);
  const linkTime = new Date(Date.UTC(2025, 1, 3));
  await lutimes(path.join(root, 'links/to-avatars'), linkTime, linkTime);
  await lutimes(path.join(root, 'links/dangling'), linkTime, linkTime);
  for (const [i, d] of [
    'avatars',
    'chat',
    'links',
    'materials/course-1',
    'materials',
    'zz-private',
  ].entries()) {
    const t = new Date(Date.UTC(2025, 2, 1 + i));
    await utimes(path.join(root, d), t, t).catch(() => undefined);
  }
  await chmod(path.join(root, 'zz-private'), 0o750);
}

/** `inner` with its own getStream replaced (every other method of the real store kept). */
function withGetStream(inner: ObjectStore, getStream: ObjectStore['getStream']): ObjectStore {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'getStream') return getStream;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Records every archive stream a store hands out, to check they are all closed afterwards. */
function trackingStore(inner: ObjectStore): { store: ObjectStore; opened: Readable[] } {
  const opened: Readable[] = [];
  const store = withGetStream(inner, async (key) => {
    const stream = await inner.getStream(key);
    opened.push(stream);
    return stream;
  });
  return { store, opened };
}

describe.each(['folder', 's3rver'] as const)('a 3-part sharded backup in a %s store', (kind) => {
  const storeFor = async () =>
    kind === 'folder'
      ? new FsObjectStore(await dirs.make('store-'))
      : s3.makeStore(`parallel-${Math.random()}/`);

  it.each([1, 3])('restores byte-exact with parallel %i (bytes, modes, mtimes, links)', async (parallel) => {
    const source = await dirs.make('src-');
    await seedTree(source, 120);
    const store = await storeFor();
    const backup = await writeShardedBackup(store, source, { parts: 3 });
    const target = path.join(await dirs.make('restore-'), 'media');

    const result = await runRestore(
      { store, clock: tickingClock(), logger: silentLogger },
      { target, parallel },
    );

    expect(result.archivesRead).toEqual(backup.parts.map((p) => p.key));
    expect(result.files).toBe(backup.metadata.totals.files);
    expect(result.verified).toBe(true);
    expect(await fullSnapshot(target)).toEqual(await fullSnapshot(source));
    const rootStat = await lstat(target);
    expect(Math.floor(rootStat.mtimeMs / 1000)).toBe(Math.floor((await lstat(source)).mtimeMs / 1000));
    expect(await besideTarget(target)).toEqual([]);
  });
});

describe('parallel extraction', () => {
  it('a full and two incrementals restore byte-exact with parallel 3', async () => {
    const source = await dirs.make('src-');
    await seedTree(source, 60);
    const store = new FsObjectStore(await dirs.make('store-'));
    const clock = tickingClock();
    await runBackup({ store, clock, logger: silentLogger }, { source, type: 'full' });
    await writeFile(path.join(source, 'chat/new-1.txt'), 'after the full');
    await runBackup({ store, clock, logger: silentLogger }, { source, type: 'incremental' });
    await writeFile(path.join(source, 'chat/new-2.txt'), 'after the first incremental');
    await utimes(path.join(source, 'chat'), new Date(Date.UTC(2025, 3, 1)), new Date(Date.UTC(2025, 3, 1)));
    const last = await runBackup({ store, clock, logger: silentLogger }, { source, type: 'incremental' });
    const target = path.join(await dirs.make('restore-'), 'media');

    const result = await runRestore({ store, clock, logger: silentLogger }, { target, parallel: 3 });

    expect(result.backupId).toBe(last.backupId);
    expect(result.archivesRead).toHaveLength(3);
    expect(await fullSnapshot(target)).toEqual(await fullSnapshot(source));
  });

  it('progress adds up across archives extracted at once', async () => {
    const source = await dirs.make('src-');
    await seedTree(source, 90);
    const store = new FsObjectStore(await dirs.make('store-'));
    const backup = await writeShardedBackup(store, source, { parts: 3 });
    const target = path.join(await dirs.make('restore-'), 'media');
    const seen: { bytes: number; files: number; totalBytes: number; totalFiles: number }[] = [];

    await runRestore(
      { store, clock: tickingClock(), logger: silentLogger },
      { target, parallel: 3, onProgress: (p) => seen.push(p) },
    );

    const last = seen.at(-1)!;
    expect(last.files).toBe(backup.metadata.totals.files);
    expect(last.totalFiles).toBe(backup.metadata.totals.files);
    expect(last.bytes).toBe(backup.metadata.totals.bytes);
    expect(last.totalBytes).toBe(backup.metadata.totals.bytes);
    for (let i = 1; i < seen.length; i++) expect(seen[i].bytes).toBeGreaterThanOrEqual(seen[i - 1].bytes);
  });

  it.each([0, 65, 1.5])('rejects parallel %s with a UsageError naming the option', (value) => {
    expect(() => parseParallel(value, '--parallel')).toThrow(UsageError);
    expect(() => parseParallel(value, '--parallel')).toThrow(
      /--parallel must be a whole number from 1 to 64/,
    );
  });

  it('parses --parallel as typed', () => {
    expect(parseParallel('3', '--parallel')).toBe(3);
    expect(() => parseParallel('three', '--parallel')).toThrow(/got "three"/);
  });
});

describe('a failure in one archive with parallel 3', () => {
  /** A live tree at the target, a 3-part backup of another tree in the store. */
  async function world() {
    const source = await dirs.make('src-');
    await seedTree(source, 320);
    const storeDir = await dirs.make('store-');
    const inner = new FsObjectStore(storeDir);
    const backup = await writeShardedBackup(inner, source, { parts: 3 });
    const target = path.join(await dirs.make('restore-'), 'media');
    await makeMediaTree(target, { files: 10, seed: 99 });
    return { storeDir, inner, backup, target, live: await fullSnapshot(target) };
  }

  it('a download failing mid-way in one part leaves the live tree as it was, no staging, every stream closed', async () => {
    const { inner, backup, target, live } = await world();
    // The store reads 1 MiB at a time: the part must outlast one read for the failure to come mid-way.
    expect(backup.parts[1].bytes).toBeGreaterThan(1_200_000);
    const tracked = trackingStore(inner);
    const store = faultyStore(tracked.store, {
      downloadFailsAfterBytes: 1_100_000,
      downloadFailsFor: new RegExp(backup.parts[1].key.replace(/\./g, '\\.')),
    });

    await expect(
      runRestore(
        { store, clock: tickingClock(), logger: silentLogger },
        { target, mode: 'replace', parallel: 3 },
      ),
    ).rejects.toThrow(/injected download failure|damaged or truncated/);

    expect(tracked.opened.length).toBeGreaterThanOrEqual(2);
    await vi.waitFor(() => expect(tracked.opened.every((s) => s.destroyed || s.closed)).toBe(true));
    expect(await fullSnapshot(target)).toEqual(live);
    expect(await besideTarget(target)).toEqual([]);
  });

  it('a corrupt part fails the restore as damaged; the live tree stays, nothing is left beside it', async () => {
    const { storeDir, inner, backup, target, live } = await world();
    await flipOneByte(storeDir, backup.parts[2].key);

    await expect(
      runRestore(
        { store: inner, clock: tickingClock(), logger: silentLogger },
        { target, mode: 'replace', parallel: 3 },
      ),
    ).rejects.toThrow(ArchiveIntegrityError);

    expect(await fullSnapshot(target)).toEqual(live);
    expect(await besideTarget(target)).toEqual([]);
  });

  it('stops an archive still waiting for bytes and closes its stream when another fails', async () => {
    const { inner, backup, target, live } = await world();
    // Part 3 hands out its first 4 KiB, then stalls forever: only the abort can end its read. Part 2
    // fails once part 3 is waiting.
    let stalled: Readable | undefined;
    let part3Waiting!: () => void;
    const waiting = new Promise<void>((resolve) => {
      part3Waiting = resolve;
    });
    const store = withGetStream(inner, async (key) => {
      if (key === backup.parts[1].key) {
        await waiting;
        throw new Error(`injected: ${key} cannot be opened`);
      }
      if (key !== backup.parts[2].key) return inner.getStream(key);
      const head = (await inner.get(key))!.subarray(0, 4096);
      let sent = false;
      stalled = new Readable({
        read() {
          if (sent) return part3Waiting();
          sent = true;
          this.push(head);
        },
      });
      return stalled;
    });

    await expect(
      runRestore(
        { store, clock: tickingClock(), logger: silentLogger },
        { target, mode: 'replace', parallel: 3 },
      ),
    ).rejects.toThrow(/injected: .*part-0002.* cannot be opened/);

    expect(stalled?.destroyed).toBe(true);
    expect(await fullSnapshot(target)).toEqual(live);
    expect(await besideTarget(target)).toEqual([]);
  });
});

describe('restore --parallel on the CLI', () => {
  it('restores a sharded backup with --parallel 3, reading every part', async () => {
    const source = await dirs.make('src-');
    await seedTree(source, 60);
    const storeDir = await dirs.make('store-');
    const backup = await writeShardedBackup(new FsObjectStore(storeDir), source, { parts: 3 });
    const target = path.join(await dirs.make('restore-'), 'media');

    const run = await runCli([
      'restore',
      '--target',
      target,
      '--store',
      storeDir,
      '--parallel',
      '3',
      '--json',
    ]);

    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).archivesRead).toEqual(backup.parts.map((p) => p.key));
    expect(await fullSnapshot(target)).toEqual(await fullSnapshot(source));
  });

  it.each(['0', 'two'])('refuses --parallel %s as a usage error, writing nothing', async (value) => {
    const source = await dirs.make('src-');
    await seedTree(source, 5);
    const storeDir = await dirs.make('store-');
    await writeShardedBackup(new FsObjectStore(storeDir), source, { parts: 2 });
    const target = path.join(await dirs.make('restore-'), 'media');

    const run = await runCli(['restore', '--target', target, '--store', storeDir, '--parallel', value]);

    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--parallel must be a whole number from 1 to 64/);
    expect(await readdir(path.dirname(target))).toEqual([]);
  });
});
