import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { handler as backupHandler } from '../../lambda/handlers/backup.js';
import { handler as restoreHandler } from '../../lambda/handlers/restore.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';

const execFileAsync = promisify(execFile);
const dirs = tempDirs();
let s3: S3rverFixture;
let store: S3ObjectStore;
let mount: string;
let run = 0;

beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());
beforeEach(async () => {
  mount = await dirs.make('efs-');
  run += 1;
  const prefix = `import-${run}/media-backups/`;
  store = s3.makeStore(prefix);
  stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix, mount });
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

/** What a user does: GNU tar of a folder, uploaded under <prefix>import/. */
async function uploadMediaArchive(name: string): Promise<string> {
  const source = await dirs.make('upload-');
  await makeMediaTree(source, { files: 12, seed: 7 });
  const archive = path.join(await dirs.make('tgz-'), name);
  // The README's command, whose member names start with "./".
  await execFileAsync('tar', ['-czf', archive, '-C', source, '.']);
  await store.put(`import/${name}`, await readFile(archive), { tier: 'archive' });
  return source;
}

describe('demo: the restore function imports an uploaded tar.gz into the empty media folder', () => {
  it('extracts it into MEDIA_PATH, and the first backup of that tree succeeds', async () => {
    const source = await uploadMediaArchive('media.tar.gz');

    const imported = await restoreHandler({ import: 'media.tar.gz' }, makeLambdaContext());

    expect(imported).toMatchObject({
      status: 'SUCCEEDED',
      targetPath: 'media',
      target: path.join(mount, 'media'),
      mode: 'new-folder',
      files: 12,
      verified: false,
    });
    expect(imported.source).toMatch(/import\/media\.tar\.gz$/);
    expect(await snapshotTree(path.join(mount, 'media'))).toEqual(await snapshotTree(source));
    await expect(backupHandler({ type: 'full' }, makeLambdaContext())).resolves.toMatchObject({
      status: 'SUCCEEDED',
      files: 12,
    });
  });

  it('refuses to import into a media folder that already holds files, changing nothing', async () => {
    await uploadMediaArchive('media.tar.gz');
    await makeMediaTree(path.join(mount, 'media'), { files: 2, seed: 1 });
    const before = await snapshotTree(path.join(mount, 'media'));

    await expect(
      restoreHandler({ import: 'import/media.tar.gz' }, makeLambdaContext()),
    ).rejects.toMatchObject({
      name: 'TargetNotEmptyError',
    });
    expect(await snapshotTree(path.join(mount, 'media'))).toEqual(before);
  });

  it('names the upload command when the archive is not in the bucket', async () => {
    await expect(restoreHandler({ import: 'missing.tar.gz' }, makeLambdaContext())).rejects.toThrow(
      /there is no import\/missing\.tar\.gz in s3:\/\/.*: upload the media archive first, e\.g\. `tar -czf media\.tar\.gz -C <folder> \. && aws s3 cp media\.tar\.gz s3:\/\/.*import\/missing\.tar\.gz`, then invoke the restore function with \{"import":"missing\.tar\.gz"\}/,
    );
  });

  it('extracts under the restore safety rules: an entry escaping the target is refused, nothing lands', async () => {
    const evil = await dirs.make('evil-');
    await writeFile(path.join(evil, 'ok.txt'), 'fine');
    const archive = path.join(await dirs.make('tgz-'), 'evil.tar.gz');
    // GNU tar keeps a leading "../" with -P: the archive names a path outside the target.
    await execFileAsync('tar', ['-czPf', archive, '-C', evil, 'ok.txt', `../${path.basename(evil)}/ok.txt`]);
    await store.put('import/evil.tar.gz', await readFile(archive), { tier: 'archive' });

    await expect(restoreHandler({ import: 'evil.tar.gz' }, makeLambdaContext())).rejects.toMatchObject({
      name: 'UnsafePathError',
    });
    await expect(readFile(path.join(mount, 'media', 'ok.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
