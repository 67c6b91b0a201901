import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { VERIFY_STATUS_KEY } from '../../lambda/core/repository/layout.js';
import { makeVerifyHandler } from '../../lambda/handlers/verify.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';

const dirs = tempDirs();
let s3: S3rverFixture;
let store: S3ObjectStore;
let run = 0;
const VERIFY_MACHINE = 'arn:aws:states:eu-west-1:123456789012:stateMachine:media-backup-verify';

beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());
beforeEach(async () => {
  run += 1;
  const prefix = `verify-handoff-${run}/media-backups/`;
  store = s3.makeStore(prefix);
  stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix });
  vi.stubEnv('VERIFY_STATE_MACHINE_ARN', VERIFY_MACHINE);
  const source = path.join(await dirs.make('verify-handoff-'), 'media');
  await makeMediaTree(source, { files: 20, seed: 9 });
  await runBackup(
    { store, clock: tickingClock('2026-12-01T02:00:00Z'), logger: silentLogger },
    { source, type: 'full' },
  );
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

describe('the verify function hands a deep verify too large for it to the deep verify state machine', () => {
  it('starts the state machine with the same request when the archives cannot be read in the time left', async () => {
    const starts: { stateMachineArn: string; name: string; input: string }[] = [];
    const handler = makeVerifyHandler({
      startExecution: async (input) => {
        starts.push(input);
        return 'arn:aws:states:eu-west-1:123456789012:execution:media-backup-verify:x';
      },
    });
    // 60.5 s left, 60 s kept free: not even the smallest archive fits.
    const result = await handler(
      { backup: 'latest', deep: true },
      makeLambdaContext({ remainingTimeInMillis: 60_500, awsRequestId: 'req-1' }),
    );
    expect(result).toMatchObject({ status: 'STARTED', estimatedSeconds: 1 });
    expect(starts).toEqual([
      { stateMachineArn: VERIFY_MACHINE, name: 'verify-req-1', input: '{"backup":"latest"}' },
    ]);
    // The state machine records the outcome; the function wrote nothing.
    expect(await store.get(VERIFY_STATUS_KEY)).toBeUndefined();
  });

  it('runs it itself when it fits, and a quick verify never hands off', async () => {
    const handler = makeVerifyHandler({
      startExecution: async () => {
        throw new Error('must not be started');
      },
    });
    expect((await handler({ deep: true }, makeLambdaContext())).status).toBe('SUCCEEDED');
    expect((await handler({}, makeLambdaContext({ remainingTimeInMillis: 60_500 }))).status).toBe(
      'SUCCEEDED',
    );
    expect(await store.get(VERIFY_STATUS_KEY)).toBeDefined();
  });
});
