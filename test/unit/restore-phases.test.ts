import { lstat, mkdir, readdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lambda/core/deps.js';
import { UsageError } from '../../lambda/core/errors.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { RestoreInProgressError, restoreLockPath } from '../../lambda/core/restorer/restore-lock.js';
import {
  abandonRestore,
  finishRestore,
  prepareRestore,
  type RestoreJob,
  RestoreJobError,
  restoreArchivePhase,
} from '../../lambda/core/restorer/restore-phases.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import type { ObjectStore } from '../../lambda/store/types.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { faultyStore } from '../fixtures/faulty-store.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type ShardedBackup, writeShardedBackup } from '../fixtures/sharded-backup.js';
import { besideTarget, fullSnapshot } from '../fixtures/tree-listing.js';

const dirs = tempDirs();
afterEach(() => dirs.cleanup());

/** Bytes, modes and mtimes of files, folders and links, keyed by relative path. */

interface World {
  readonly source: string;
  readonly store: FsObjectStore;
  readonly backup: ShardedBackup;
  readonly target: string;
}

async function world(files = 90): Promise<World> {
  const source = await dirs.make('src-');
  await makeMediaTree(source, { files, maxFileBytes: 40 * 1024, seed: 3 });
  await mkdir(path.join(source, 'links'));
  await symlink('../avatars', path.join(source, 'links/to-avatars'));
  const store = new FsObjectStore(await dirs.make('store-'));
  const backup = await writeShardedBackup(store, source, { parts: 3 });
  const target = path.join(await dirs.make('restore-'), 'media');
  return { source, store, backup, target };
}

/**
 * `inner`, except that `key` streams its first `afterBytes` bytes in 64 KiB chunks, waits until
 * `ready()` says the restore wrote something, then fails like a dropped connection.
 */
function breakingStore(
  inner: ObjectStore,
  key: string,
  afterBytes: number,
  ready: () => Promise<boolean>,
): ObjectStore {
  const getStream = async (k: string) => {
    if (k !== key) return inner.getStream(k);
    const data = (await inner.get(k))!.subarray(0, Math.floor(afterBytes));
    return Readable.from(
      (async function* () {
        for (let at = 0; at < data.length; at += 64 * 1024) yield data.subarray(at, at + 64 * 1024);
        while (!(await ready())) await new Promise((resolve) => setTimeout(resolve, 5));
        throw new Error(`injected: connection reset reading ${k}`);
      })(),
    );
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'getStream') return getStream;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const deps = (store: ObjectStore) => ({ store, clock: tickingClock(), logger: silentLogger });

/** The job as a state machine hands it on: JSON, nothing else. */
const overJson = (job: RestoreJob): RestoreJob => JSON.parse(JSON.stringify(job));

describe('restore phases (prepare, one step per archive, finish)', () => {
  it('run one by one in any order, with one archive retried after a failure, give the tree', async () => {
    const { source, store, backup, target } = await world();

    const job = overJson(await prepareRestore(deps(store), { target }));
    expect(job.archives.map((a) => a.key)).toEqual(backup.parts.map((p) => p.key));
    expect(job.files).toBe(backup.metadata.totals.files);
    expect(job.archives.reduce((sum, a) => sum + a.bytes, 0)).toBe(backup.metadata.totals.bytes);
    await expect(lstat(target)).rejects.toThrow(/ENOENT/);

    const [first, second, third] = job.archives.map((a) => a.key);
    // Part 2's download breaks half-way, once some of its files are in the staging folder.
    const filesOfSecond = backup.entries
      .filter((e) => e.type === 'file' && e.archive === second)
      .map((e) => e.path);
    const failing = breakingStore(store, second, backup.parts[1].bytes / 2, async () => {
      for (const p of filesOfSecond)
        if (await lstat(path.join(job.stagingDir, p)).catch(() => undefined)) return true;
      return false;
    });
    await expect(
      restoreArchivePhase({ store: failing, logger: silentLogger }, { job, archiveKey: second }),
    ).rejects.toThrow(/injected download failure|damaged or truncated/);
    const third1 = await restoreArchivePhase({ store, logger: silentLogger }, { job, archiveKey: third });
    const warnings: Record<string, unknown>[] = [];
    const logger = {
      ...silentLogger,
      warn: (_m: string, extra?: Record<string, unknown>) => warnings.push(extra ?? {}),
    };
    const second1 = await restoreArchivePhase({ store, logger }, { job, archiveKey: second });
    // The failed attempt had written files: the retry removed them (O_EXCL would refuse them).
    expect(warnings).toEqual([expect.objectContaining({ archiveKey: second, removed: expect.any(Number) })]);
    expect(warnings[0].removed).toBeGreaterThan(0);
    const first1 = await restoreArchivePhase({ store, logger: silentLogger }, { job, archiveKey: first });
    expect([first1, second1, third1].map((o) => o.alreadyDone)).toEqual([false, false, false]);
    expect(first1.files + second1.files + third1.files).toBe(job.files);
    expect(await lstat(target).catch(() => undefined)).toBeUndefined();

    const result = await finishRestore(deps(store), { job });

    expect(result).toMatchObject({
      status: 'SUCCEEDED',
      backupId: backup.backupId,
      target,
      files: job.files,
      bytes: job.bytes,
      verified: true,
      previousTree: null,
    });
    expect(await fullSnapshot(target)).toEqual(await fullSnapshot(source));
    expect(await besideTarget(target)).toEqual([]);
  });

  it('a retried archive that already finished is not read again', async () => {
    const { store, target } = await world(30);
    const job = await prepareRestore(deps(store), { target });
    const key = job.archives[0].key;
    const once = await restoreArchivePhase({ store, logger: silentLogger }, { job, archiveKey: key });
    const unreadable = faultyStore(store, { downloadFailsAfterBytes: 0 });

    const again = await restoreArchivePhase(
      { store: unreadable, logger: silentLogger },
      { job, archiveKey: key },
    );

    expect(again).toEqual({ ...once, alreadyDone: true });
    await abandonRestore({ logger: silentLogger }, { job });
  });

  it('replace: finish keeps the live tree beside the target and puts the backup in its place', async () => {
    const { source, store, target } = await world(40);
    await makeMediaTree(target, { files: 5, seed: 42 });
    const live = await fullSnapshot(target);

    const job = await prepareRestore(deps(store), { target, mode: 'replace' });
    for (const a of [...job.archives].reverse())
      await restoreArchivePhase({ store, logger: silentLogger }, { job, archiveKey: a.key });
    const result = await finishRestore(deps(store), { job });

    expect(result.previousTree).not.toBeNull();
    expect(await fullSnapshot(result.previousTree!)).toEqual(live);
    expect(await fullSnapshot(target)).toEqual(await fullSnapshot(source));
  });

  it('finish refuses while an archive is not restored; the target is untouched', async () => {
    const { store, target } = await world(30);
    await makeMediaTree(target, { files: 5, seed: 42 });
    const live = await fullSnapshot(target);
    const job = await prepareRestore(deps(store), { target, mode: 'replace' });
    await restoreArchivePhase({ store, logger: silentLogger }, { job, archiveKey: job.archives[0].key });

    await expect(finishRestore(deps(store), { job })).rejects.toThrow(RestoreJobError);
    await expect(finishRestore(deps(store), { job })).rejects.toThrow(
      /2 of 3 archive\(s\) were not restored/,
    );

    expect(await fullSnapshot(target)).toEqual(live);
    await abandonRestore({ logger: silentLogger }, { job });
  });

  it('abandon removes the staging folder and releases the lock; the live tree stays as it was', async () => {
    const { store, target } = await world(40);
    await makeMediaTree(target, { files: 5, seed: 42 });
    const live = await fullSnapshot(target);
    const job = await prepareRestore(deps(store), { target, mode: 'replace' });
    await restoreArchivePhase({ store, logger: silentLogger }, { job, archiveKey: job.archives[1].key });
    expect(await besideTarget(target)).toEqual(
      [path.basename(restoreLockPath(target)), path.basename(job.stagingDir)].sort(),
    );

    await abandonRestore(
      { logger: silentLogger },
      { job, error: { Error: 'States.TaskFailed', Cause: 'boom' } },
    );

    expect(await fullSnapshot(target)).toEqual(live);
    expect(await besideTarget(target)).toEqual([]);
    // Released: the next restore takes the lock.
    await runRestore(deps(store), { target, mode: 'replace' });
    await expect(
      restoreArchivePhase({ store, logger: silentLogger }, { job, archiveKey: job.archives[0].key }),
    ).rejects.toThrow(/restore job .* is gone/);
  });

  it('the job holds the target: another restore is refused until finish', async () => {
    const { store, target } = await world(20);
    const job = await prepareRestore(deps(store), { target });

    await expect(runRestore(deps(store), { target: `${target}/` })).rejects.toThrow(RestoreInProgressError);
    await expect(prepareRestore(deps(store), { target })).rejects.toThrow(RestoreInProgressError);

    for (const a of job.archives)
      await restoreArchivePhase({ store, logger: silentLogger }, { job, archiveKey: a.key });
    await finishRestore(deps(store), { job });
    const other = path.join(path.dirname(target), 'again');
    await runRestore(deps(store), { target: other });
    expect(await fullSnapshot(other)).toEqual(await fullSnapshot(target));
  });

  it('a failed prepare leaves nothing behind: an unknown backup, a non-empty new folder', async () => {
    const { store, target } = await world(10);
    await expect(prepareRestore(deps(store), { target, backup: 'backup_20200101_000000' })).rejects.toThrow(
      /not a committed backup/,
    );
    expect(await readdir(path.dirname(target))).toEqual([]);
    await makeMediaTree(target, { files: 2 });
    await expect(prepareRestore(deps(store), { target })).rejects.toThrow(/is not empty/);
    expect(await besideTarget(target)).toEqual([]);
  });

  it('refuses an archive the job does not read, and job references that are not its own', async () => {
    const { store, target } = await world(10);
    const job = await prepareRestore(deps(store), { target });
    await expect(
      restoreArchivePhase(
        { store, logger: silentLogger },
        { job, archiveKey: 'full/backup_20200101_000000.tar.gz' },
      ),
    ).rejects.toThrow(/does not read archive/);
    await expect(
      abandonRestore({ logger: silentLogger }, { job: { ...job, jobId: '../../etc' } }),
    ).rejects.toThrow(UsageError);
    await expect(
      abandonRestore({ logger: silentLogger }, { job: { ...job, target: 'relative/media' } }),
    ).rejects.toThrow(UsageError);
    expect(await besideTarget(target)).toContain(path.basename(job.stagingDir));
    await abandonRestore({ logger: silentLogger }, { job });
    expect(await besideTarget(target)).toEqual([]);
  });
});
