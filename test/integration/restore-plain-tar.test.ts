import { execFile } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../lambda/core/deps.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';

const execFileAsync = promisify(execFile);

/**
 * An archive made by hand with the obvious GNU tar command (`tar -czf x.tar.gz -C media .`), as an
 * operator loading the demo or moving from the old scripts would, names its entries `./` and
 * `./avatars/u1.jpg`. Restoring it must give the tree, and `./` must not open a way out.
 */
describe('restoring a tar.gz made with `tar -C DIR .`', () => {
  const dirs = tempDirs();
  let source: string;
  let work: string;
  let deps: Parameters<typeof runRestore>[0];

  beforeEach(async () => {
    source = await dirs.make('plain-tar-src-');
    work = await dirs.make('plain-tar-work-');
    deps = {
      store: new FsObjectStore(path.join(work, 'store')),
      clock: tickingClock(),
      logger: silentLogger,
    };
  });
  afterEach(() => dirs.cleanup());

  it('restores the tree exactly; the `./` root entry is the target itself', async () => {
    await makeMediaTree(source, { files: 12 });
    await mkdir(path.join(source, 'empty-folder'));
    await symlink('avatars', path.join(source, 'link-to-avatars'));
    const archive = path.join(work, 'media.tar.gz');
    await execFileAsync('tar', ['-czf', archive, '-C', source, '.']);
    const { stdout } = await execFileAsync('tar', ['-tzf', archive]);
    expect(stdout.split('\n')[0]).toBe('./');

    const target = path.join(work, 'restored');
    const result = await runRestore(deps, { backup: archive, target });

    expect(result.status).toBe('SUCCEEDED');
    expect(await snapshotTree(target, { modes: true })).toEqual(await snapshotTree(source, { modes: true }));
  });

  it('still refuses `./../escape` after dropping the leading `./`', async () => {
    const staging = path.join(work, 'craft');
    await mkdir(path.join(staging, 'inner'), { recursive: true });
    await writeFile(path.join(work, 'escape'), 'outside\n');
    const archive = path.join(work, 'evil.tar.gz');
    // GNU tar keeps `./../escape` as given when -P is on; the name reaches the archive verbatim.
    await execFileAsync('tar', ['-czPf', archive, '-C', path.join(staging, 'inner'), './../../escape']);

    const target = path.join(work, 'restored');
    await expect(runRestore(deps, { backup: archive, target })).rejects.toThrow(/'\.\.'/);
  });
});
