import { access, readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { acquireRestoreLock, restoreLockPath } from '../../lambda/core/restorer/restore-lock.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';

/** Two restores into one folder would swap trees under each other: the second is refused. */
describe('one restore per target at a time', () => {
  const dirs = tempDirs();
  let source: string;
  let work: string;
  let deps: Parameters<typeof runRestore>[0];

  beforeEach(async () => {
    source = await dirs.make('rlock-src-');
    work = await dirs.make('rlock-work-');
    const store = new FsObjectStore(path.join(work, 'store'));
    deps = { store, clock: tickingClock(), logger: silentLogger };
    await makeMediaTree(source, { files: 8 });
    await runBackup({ store, clock: tickingClock(), logger: silentLogger }, { source });
  });
  afterEach(() => dirs.cleanup());

  it('refuses a restore while another holds the target, changing nothing, and works once it is released', async () => {
    const target = path.join(work, 'media');
    const other = await acquireRestoreLock(target, 'restore-fn:request-1');

    await expect(runRestore(deps, { target })).rejects.toThrow(
      /a restore into .*media is already running \(started .* by restore-fn:request-1; .*\)\. Nothing was changed/,
    );
    await expect(access(target)).rejects.toThrow(/ENOENT/);

    await other.release();
    const result = await runRestore(deps, { target });
    expect(result.status).toBe('SUCCEEDED');
    expect(await snapshotTree(target)).toEqual(await snapshotTree(source));
    // Released: no lock file is left beside the target.
    await expect(access(restoreLockPath(target))).rejects.toThrow(/ENOENT/);
  });

  it('of two restores started together into one target, exactly one runs', async () => {
    const target = path.join(work, 'media');

    const outcomes = await Promise.allSettled([
      runRestore({ ...deps, owner: 'a' }, { target }),
      runRestore({ ...deps, owner: 'b' }, { target }),
    ]);

    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const refused = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toMatchObject({ name: 'RestoreInProgressError' });
    expect(await snapshotTree(target)).toEqual(await snapshotTree(source));
    expect((await readdir(work)).sort()).toEqual(['media', 'store']);
  });

  it('a dry run takes no lock (it writes nothing)', async () => {
    const target = path.join(work, 'media');
    const other = await acquireRestoreLock(target, 'someone');

    await expect(runRestore(deps, { target, dryRun: true })).resolves.toMatchObject({ status: 'SUCCEEDED' });

    await other.release();
  });
});
