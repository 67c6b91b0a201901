import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
  type MockInstance,
  vi,
} from 'vitest';
import { STATUS_KEY } from '../../lambda/core/repository/layout.js';
import { handler as backupHandler } from '../../lambda/handlers/backup.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';

// Issue 11, "The demo must be able to take its first backup": a backup of a missing media folder
// fails with a message that says how to load media or fix the mount, records FAILED, and alarms
// (BackupFailed = 1, the metric of the backup-failed alarm that the <stack>-failing composite watches).

const dirs = tempDirs();
let s3: S3rverFixture;
let store: S3ObjectStore;
let mount: string;
let prefix: string;
let run = 0;
let stdout: MockInstance<typeof process.stdout.write>;

beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());

beforeEach(async () => {
  mount = await dirs.make('efs-');
  run += 1;
  prefix = `missing-media-${run}/media-backups/`;
  store = s3.makeStore(prefix);
  stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix, mount });
  vi.stubEnv('STACK_NAME', 'MediaBackupTest');
  stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
});
afterEach(async () => {
  stdout.mockRestore();
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

/** Values of the metrics printed as EMF on stdout. */
function emittedMetrics(): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const [chunk] of stdout.mock.calls) {
    for (const line of String(chunk).split('\n')) {
      if (!line.startsWith('{') || !line.includes('"_aws"')) continue;
      const doc = JSON.parse(line) as Record<string, unknown>;
      for (const name of ['BackupFailed', 'BackupSucceeded']) if (name in doc) values[name] = doc[name];
    }
  }
  return values;
}

describe('backup of a missing media folder (Lambda handler)', () => {
  it('fails naming the mount, the media path and the import into the bucket, records FAILED and counts BackupFailed', async () => {
    const attempt = backupHandler({ type: 'auto' }, makeLambdaContext());
    await expect(attempt).rejects.toMatchObject({ name: 'SourceError' });
    const error = (await attempt.catch((e: unknown) => e)) as Error;
    const media = path.join(mount, 'media');
    expect(error.message).toContain(`source folder ${media} does not exist.`);
    // Fix the mount: the real paths, not the variable names alone.
    expect(error.message).toContain(
      `mounts the EFS access point at ${mount} and reads the folder media in it`,
    );
    // Or load media: the real bucket URL and the restore event.
    expect(error.message).toContain(`aws s3 cp media.tar.gz s3://${s3.bucket}/${prefix}import/media.tar.gz`);
    expect(error.message).toContain('invoke the restore function with {"import":"media.tar.gz"}');
    expect(error.message).not.toContain('--source');
    expect(error.message).toContain('nothing was backed up');

    const status = JSON.parse((await store.get(STATUS_KEY))!.toString('utf8'));
    expect(status).toMatchObject({
      status: 'FAILED',
      error: { name: 'SourceError', message: error.message },
    });
    expect(emittedMetrics()).toEqual({ BackupFailed: 1, BackupSucceeded: 0 });
  });

  it('says the same when the media path is a file, not a folder', async () => {
    await mkdir(path.join(mount, 'other'));
    vi.stubEnv('MEDIA_PATH', 'other/file');
    await writeFile(path.join(mount, 'other', 'file'), 'not a folder');
    await expect(backupHandler({}, makeLambdaContext())).rejects.toThrow(
      /is not a folder\. Fix the mount: .* reads the folder other\/file in it.*\{"import":"media\.tar\.gz"\}/,
    );
  });
});
