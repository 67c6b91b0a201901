import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { handler as backupHandler } from '../../lambda/handlers/backup.js';
import { handler as restoreHandler } from '../../lambda/handlers/restore.js';
import { handler as verifyHandler } from '../../lambda/handlers/verify.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext, succeeded } from '../fixtures/lambda-context.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';

const dirs = tempDirs();
const prefix = 'keys/media-backups/';
let s3: S3rverFixture;
let mount: string;

beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());
beforeEach(async () => {
  mount = await dirs.make('efs-');
  stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix, mount });
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

describe('restore and verify handlers: backup keys as people paste them', () => {
  it('restore and verify take the archive key as `aws s3 ls --recursive` prints it and as an s3:// URL', async () => {
    await makeMediaTree(`${mount}/media`, { files: 5, seed: 43 });
    const full = succeeded(await backupHandler({ type: 'full' }, makeLambdaContext()));

    const dryRun = await restoreHandler(
      { backup: `s3://${s3.bucket}/${prefix}${full.archiveKey}`, dryRun: true },
      makeLambdaContext(),
    );
    expect(dryRun).toMatchObject({ status: 'SUCCEEDED', backupId: full.backupId, targetPath: null });
    await expect(
      verifyHandler({ backup: `${prefix}${full.archiveKey}` }, makeLambdaContext()),
    ).resolves.toMatchObject({
      status: 'SUCCEEDED',
      backups: [expect.objectContaining({ backupId: full.backupId, ok: true })],
    });
    await expect(
      restoreHandler({ backup: `s3://other-bucket/${prefix}${full.archiveKey}` }, makeLambdaContext()),
    ).rejects.toThrow(
      /names bucket "other-bucket", but this function's backups are in s3:\/\/media-backup-test\//,
    );
  });
});
