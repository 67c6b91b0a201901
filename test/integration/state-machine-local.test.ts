import path from 'node:path';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { StateMachine } from 'aws-local-stepfunctions';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { listCommittedBackups } from '../../lambda/core/repository/catalog.js';
import { STATUS_KEY } from '../../lambda/core/repository/layout.js';
import { makeBackupHandler } from '../../lambda/handlers/backup.js';
import { handler as restoreHandler } from '../../lambda/handlers/restore.js';
import { handler as shardHandler } from '../../lambda/handlers/shard.js';
import { handler as cleanupHandler } from '../../lambda/handlers/shard-cleanup.js';
import { handler as commitHandler } from '../../lambda/handlers/shard-commit.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { BACKUP_STATES } from '../../lib/constructs/state-machines.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import {
  functionArn,
  type Json,
  lambdaInvokeTask,
  polyfillPromiseWithResolvers,
  withItemsInsteadOfItemReader,
} from '../fixtures/local-sfn.js';
import {
  captureStdout,
  emittedMetric,
  readItems,
  settle,
  synthesizedDefinition,
} from '../fixtures/local-sfn-run.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';
import { logicalId } from '../fixtures/stack-synth.js';

/**
 * The synthesized backup state machine run by aws-local-stepfunctions, its Lambda tasks bound to the
 * REAL shard, commit and cleanup handlers (through the Lambda service integration's shape: input
 * `{ FunctionName, Payload }`, result `{ Payload }`, a function error as `Error` = its name and
 * `Cause` = Lambda's error JSON), over s3rver and a temp folder standing in for EFS. The plan and the
 * execution input come from the real backup handler, whose StartExecution call is captured.
 *
 * What is NOT the AWS runtime here, plainly:
 * - aws-local-stepfunctions implements neither ItemReader nor the distributed mode. The ONE field
 *   changed for the local run is the Map's ItemReader: it is replaced by `ItemsPath: $.itemReaderItems` (a field no state uses), and the
 *   test reads the same shards.jsonl object (the execution input's `itemsKey`) from s3rver and passes
 *   its lines as `itemReaderItems`. ProcessorConfig (DISTRIBUTED), Label and ToleratedFailurePercentage are
 *   ignored by the interpreter: the children run as an inline Map, which also fails on the first
 *   failed child.
 * - A failed child reaches the Map's Catch with the child's own error here; in AWS the Map Run fails
 *   with States.ExceedToleratedFailureThreshold, whose cause does not name the shard (the cleanup
 *   handler's test below feeds it that error).
 * - Retry waits are overridden to 0 ms; the execution timeout is not reached.
 */

polyfillPromiseWithResolvers();

const dirs = tempDirs();
let s3: S3rverFixture;
let definition: Json;
let localDefinition: Json;
let functions: { shard: string; commit: string; cleanup: string };
let store: S3ObjectStore;
let mount: string;
let media: string;
let prefix: string;
let run = 0;
/** Everything written to stdout while a test runs (the handlers' EMF metric documents). */
let stdout: string[];

const STATE_MACHINE_ARN = 'arn:aws:states:us-east-1:123456789012:stateMachine:MediaBackupBackupStateMachine';

beforeAll(async () => {
  s3 = await startS3rver();
  const synthesized = synthesizedDefinition((stack) => stack.backupStateMachine);
  const { stack } = synthesized;
  definition = synthesized.definition;
  localDefinition = withItemsInsteadOfItemReader(definition, BACKUP_STATES.map, '$.itemReaderItems');
  functions = {
    shard: functionArn(logicalId(stack.shardFunction.function)),
    commit: functionArn(logicalId(stack.shardCommitFunction.function)),
    cleanup: functionArn(logicalId(stack.shardCleanupFunction.function)),
  };
}, 120_000);
afterAll(() => s3?.stop());

beforeEach(async () => {
  run += 1;
  mount = await dirs.make('efs-');
  media = path.join(mount, 'media');
  prefix = `sfn-${run}/media-backups/`;
  store = s3.makeStore(prefix);
  stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix, mount });
  vi.stubEnv('BACKUP_STATE_MACHINE_ARN', STATE_MACHINE_ARN);
  vi.stubEnv('SHARDED_RUN_TIMEOUT_SECONDS', String(24 * 3600));
  stdout = captureStdout();
});
afterEach(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

/** Values of one metric in the EMF documents printed so far. */
const emitted = (metric: string) => emittedMetric(stdout, metric);

/**
 * A backup the time model says cannot fit one invocation: 12 files at 2.5 minutes each (30 min)
 * against 14 minutes left, so the backup function plans shards of the default 9-minute budget
 * (3 files each: 4 shards) and starts the state machine. Returns the captured execution input.
 */
async function startShardedBackup(): Promise<{ backupId: string; planKey: string; itemsKey: string }> {
  const starts: { stateMachineArn: string; name: string; input: string }[] = [];
  const backup = makeBackupHandler({
    timeModel: { perFileMs: 150_000, bytesPerSecond: Number.POSITIVE_INFINITY, commitMs: 0 },
    startExecution: async (input) => {
      starts.push(input);
      return `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:${input.name}`;
    },
  });
  const started = (await backup({ type: 'full' }, makeLambdaContext())) as Json;
  expect(started).toMatchObject({ status: 'STARTED', shards: 4 });
  expect(starts).toHaveLength(1);
  expect(starts[0]?.stateMachineArn).toBe(STATE_MACHINE_ARN);
  return JSON.parse(starts[0]?.input ?? '{}');
}

interface Invocation {
  readonly state: string;
  readonly functionName: string;
  readonly payload: Json;
}

/**
 * Runs the local copy of the synthesized definition on `input` (plus `items`). `shardBinding` may wrap
 * the real shard handler (fault injection around it); the commit and cleanup tasks run their handlers.
 */
async function execute(
  input: { backupId: string; planKey: string; itemsKey: string },
  shardBinding: (payload: Json) => Promise<Json> = (payload) => shardHandler(payload, makeLambdaContext()),
  cleanupBinding: (payload: Json) => Promise<Json> = (payload) =>
    cleanupHandler(payload, makeLambdaContext()),
) {
  const invocations: Invocation[] = [];
  const record = (state: string) => (functionName: string, payload: Json) =>
    invocations.push({ state, functionName, payload });
  const machine = new StateMachine(localDefinition, {
    validationOptions: { checkArn: true, checkPaths: true },
  });
  const execution = machine.run(
    // The shards.jsonl object the Distributed Map's ItemReader would read: same bucket, same full key.
    { ...input, itemReaderItems: await readItems(store, s3.bucket, input.itemsKey) },
    {
      overrides: {
        taskResourceLocalHandlers: {
          [BACKUP_STATES.shard]: lambdaInvokeTask(shardBinding, record(BACKUP_STATES.shard)),
          [BACKUP_STATES.commit]: lambdaInvokeTask(
            (payload) => commitHandler(payload, makeLambdaContext()),
            record(BACKUP_STATES.commit),
          ),
          [BACKUP_STATES.cleanup]: lambdaInvokeTask(cleanupBinding, record(BACKUP_STATES.cleanup)),
        },
        retryIntervalOverrides: {
          [BACKUP_STATES.shard]: 0,
          [BACKUP_STATES.commit]: 0,
          [BACKUP_STATES.cleanup]: 0,
        },
      },
    },
  );
  const outcome = await settle(execution.result);
  return { ...outcome, invocations };
}

/** The execution's output; fails the test with the error when the execution failed. */
function outputOf(result: Awaited<ReturnType<typeof execute>>): Json {
  if (result.status !== 'SUCCEEDED') throw new Error(`the execution failed: ${JSON.stringify(result.error)}`);
  return result.output;
}

/** Keys below the prefix (full keys) whose rest matches `pattern`. */
async function keysMatching(pattern: RegExp): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await store.client.send(
      new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix, ContinuationToken: token }),
    );
    keys.push(...(page.Contents ?? []).map((o) => o.Key!.slice(prefix.length)));
    token = page.NextContinuationToken;
  } while (token);
  return keys.filter((key) => pattern.test(key)).sort();
}

describe('the backup state machine run locally over the real handlers', () => {
  it('runs the same definition that was synthesized, but for the ItemReader', () => {
    const { ItemsPath, ...localMap } = localDefinition.States[BACKUP_STATES.map];
    const { ItemReader, ...map } = definition.States[BACKUP_STATES.map];
    expect(ItemsPath).toBe('$.itemReaderItems');
    expect(ItemReader.ReaderConfig.InputType).toBe('JSONL');
    expect(localMap).toEqual(map);
    const { [BACKUP_STATES.map]: _a, ...otherLocal } = localDefinition.States;
    const { [BACKUP_STATES.map]: _b, ...other } = definition.States;
    expect(otherLocal).toEqual(other);
  });

  it('commits a 4-shard backup: every shard invoked once, one commit, no cleanup; restore equals the tree', async () => {
    await makeMediaTree(media, { files: 12, seed: 71 });
    const input = await startShardedBackup();
    expect(input.itemsKey).toBe(`${prefix}staging/${input.backupId}/shards.jsonl`);

    const result = await execute(input);

    expect(result.status).toBe('SUCCEEDED');
    expect(outputOf(result)).toMatchObject({
      status: 'SUCCEEDED',
      backupId: input.backupId,
      type: 'full',
      parts: 4,
      files: 12,
    });
    const byState = (state: string) => result.invocations.filter((i) => i.state === state);
    expect(
      byState(BACKUP_STATES.shard)
        .map((i) => i.payload.item.shard)
        .sort(),
    ).toEqual([1, 2, 3, 4]);
    expect(byState(BACKUP_STATES.shard).every((i) => i.functionName === functions.shard)).toBe(true);
    expect(byState(BACKUP_STATES.commit)).toEqual([
      { state: BACKUP_STATES.commit, functionName: functions.commit, payload: { planKey: input.planKey } },
    ]);
    expect(byState(BACKUP_STATES.cleanup)).toEqual([]);

    expect((await listCommittedBackups(store)).map((b) => b.backupId)).toEqual([input.backupId]);
    expect(await keysMatching(/^full\//)).toEqual([
      `full/${input.backupId}.manifest.jsonl.gz`,
      ...[1, 2, 3, 4].map((n) => `full/${input.backupId}.part-000${n}.tar.gz`),
      `full/${input.backupId}.tar.gz.metadata.json`,
    ]);
    // The staleness alarm's source sees it (the monitor reads the committed backups); the commit
    // reported success once, and nothing reported a failure.
    expect(emitted('BackupSucceeded')).toEqual([1]);
    expect(emitted('BackupFailed')).toEqual([0]);

    const restored = (await restoreHandler({ backup: input.backupId }, makeLambdaContext())) as Json;
    expect(restored).toMatchObject({ status: 'SUCCEEDED', backupId: input.backupId, files: 12 });
    expect(await snapshotTree(path.join(mount, 'restores', input.backupId))).toEqual(
      await snapshotTree(media),
    );
  });

  it('a shard that keeps failing: retried, then the cleanup runs once, nothing is committed, the run is FAILED', async () => {
    await makeMediaTree(media, { files: 12, seed: 72 });
    const input = await startShardedBackup();
    // Shard 2's work list vanishes from the store: every attempt of that shard fails for real.
    await store.client.send(
      new DeleteObjectCommand({
        Bucket: s3.bucket,
        Key: `${prefix}staging/${input.backupId}/shard-0002.todo.jsonl.gz`,
      }),
    );

    const result = await execute(input);

    expect(result.status).toBe('FAILED');
    if (result.status !== 'FAILED') return;
    expect(result.error.cause).toMatchObject({ name: 'ShardedBackupFailed' });
    expect(String(result.error.cause?.message)).toMatch(
      new RegExp(
        `sharded backup ${input.backupId} failed, nothing was committed: shard 2 of 4: ShardFailedError`,
      ),
    );
    const shard2 = result.invocations.filter(
      (i) => i.state === BACKUP_STATES.shard && i.payload.item.shard === 2,
    );
    // The first attempt and the definition's two retries on States.TaskFailed.
    expect(shard2).toHaveLength(3);
    const cleanups = result.invocations.filter((i) => i.state === BACKUP_STATES.cleanup);
    expect(cleanups).toHaveLength(1);
    expect(cleanups[0]?.payload).toMatchObject({
      planKey: input.planKey,
      error: { Error: 'ShardFailedError', Cause: expect.stringContaining('"errorType":"ShardFailedError"') },
    });
    expect(result.invocations.filter((i) => i.state === BACKUP_STATES.commit)).toEqual([]);

    expect(await listCommittedBackups(store)).toEqual([]);
    expect(await keysMatching(/\.manifest\.jsonl\.gz$|\.metadata\.json$/)).toEqual([]);
    const status = JSON.parse((await store.get(STATUS_KEY))!.toString('utf8'));
    expect(status).toMatchObject({ status: 'FAILED', backupId: input.backupId, failedShard: 2 });
    // One failure signal for the run (the notify path's alarm), no success.
    expect(emitted('BackupFailed')).toEqual([1]);
    expect(emitted('BackupSucceeded')).toEqual([0]);

    // The lock handed to the run was released: the next backup runs at once (in one invocation).
    const next = (await makeBackupHandler()({ type: 'full' }, makeLambdaContext())) as Json;
    expect(next).toMatchObject({ status: 'SUCCEEDED', files: 12 });
  });

  it('a shard whose invocation fails after its part was written is retried without a second part', async () => {
    await makeMediaTree(media, { files: 12, seed: 73 });
    const input = await startShardedBackup();
    const attempts = new Map<number, number>();
    const partsSeen: string[][] = [];
    // Shard 3's first invocation does all its work, then is reported failed (a timeout after the upload,
    // a lost response): Step Functions retries it (States.TaskFailed).
    const flaky = async (payload: Json) => {
      const shard = payload.item.shard as number;
      attempts.set(shard, (attempts.get(shard) ?? 0) + 1);
      const result = await shardHandler(payload, makeLambdaContext());
      if (shard === 3 && attempts.get(shard) === 1) {
        partsSeen.push(await keysMatching(/\.part-0003\.tar\.gz$|shard-0003\.rows/));
        throw Object.assign(new Error('Task timed out after 900.00 seconds'), { name: 'Sandbox.Timedout' });
      }
      return result;
    };

    const result = await execute(input, flaky);

    expect(result.status).toBe('SUCCEEDED');
    expect(attempts.get(3)).toBe(2);
    const shard3 = result.invocations.filter(
      (i) => i.state === BACKUP_STATES.shard && i.payload.item.shard === 3,
    );
    expect(shard3).toHaveLength(2);
    // The part and its rows as the first attempt left them, and still exactly that after the retry.
    expect(partsSeen[0]).toHaveLength(2);
    expect(await keysMatching(/\.part-0003\.tar\.gz$|shard-0003\.rows/)).toEqual(partsSeen[0]);
    expect(await keysMatching(/\.part-\d{4}\.tar\.gz$/)).toHaveLength(4);
    expect(outputOf(result)).toMatchObject({ status: 'SUCCEEDED', parts: 4, files: 12 });

    const restored = (await restoreHandler({ backup: input.backupId }, makeLambdaContext())) as Json;
    expect(restored).toMatchObject({ status: 'SUCCEEDED', files: 12 });
    expect(await snapshotTree(path.join(mount, 'restores', input.backupId))).toEqual(
      await snapshotTree(media),
    );
  });
});

describe('the cleanup step with the error AWS hands it', () => {
  it("names the failed shard from the shard's failure record when the Map Run's error does not", async () => {
    await makeMediaTree(media, { files: 12, seed: 75 });
    const input = await startShardedBackup();
    await store.client.send(
      new DeleteObjectCommand({
        Bucket: s3.bucket,
        Key: `${prefix}staging/${input.backupId}/shard-0003.todo.jsonl.gz`,
      }),
    );
    // What AWS hands the Catch of a Distributed Map whose child failed: the Map Run's error, not the
    // child's (the local interpreter would pass the child's).
    const awsMapRunError = (payload: Json) =>
      cleanupHandler(
        {
          ...payload,
          error: {
            Error: 'States.ExceedToleratedFailureThreshold',
            Cause: 'The specified tolerated failure threshold was exceeded',
          },
        },
        makeLambdaContext(),
      );

    const result = await execute(input, undefined, awsMapRunError);

    expect(result.status).toBe('FAILED');
    if (result.status !== 'FAILED') return;
    // One record per failed attempt of shard 3 (first try and two retries).
    expect(await keysMatching(/shard-0003\.failed-[^/]+\.json$/)).toHaveLength(3);
    expect(String(result.error.cause?.message)).toMatch(
      new RegExp(`failed, nothing was committed: shard 3 of 4: shard 3 of ${input.backupId} failed: `),
    );
    expect(String(result.error.cause?.message)).toContain('States.ExceedToleratedFailureThreshold');
    const status = JSON.parse((await store.get(STATUS_KEY))!.toString('utf8'));
    expect(status).toMatchObject({ status: 'FAILED', backupId: input.backupId, failedShard: 3 });
    expect(emitted('BackupFailed')).toEqual([1]);
  });

  it('aborts the run on States.ExceedToleratedFailureThreshold, says where the shard error is, reports once', async () => {
    await makeMediaTree(media, { files: 12, seed: 74 });
    const input = await startShardedBackup();

    const result = await cleanupHandler(
      {
        planKey: input.planKey,
        error: {
          Error: 'States.ExceedToleratedFailureThreshold',
          Cause: 'The specified tolerated failure threshold was exceeded',
        },
      },
      makeLambdaContext(),
    );

    expect(result).toMatchObject({ status: 'FAILED', backupId: input.backupId, shard: null });
    expect(result.message).toMatch(/nothing was committed: a shard failed after its retries/);
    expect(result.message).toMatch(/failed child execution of the Map Run/);
    const status = JSON.parse((await store.get(STATUS_KEY))!.toString('utf8'));
    expect(status).toMatchObject({ status: 'FAILED', backupId: input.backupId });
    expect(status).not.toHaveProperty('failedShard');
    expect(emitted('BackupFailed')).toEqual([1]);
    // The lock is free again.
    expect(await makeBackupHandler()({ type: 'full' }, makeLambdaContext())).toMatchObject({
      status: 'SUCCEEDED',
    });
  });

  it('refuses an event that is not the state machine’s, naming the field', async () => {
    await expect(
      cleanupHandler({ planKey: 'full/backup_20261201_040000.tar.gz', error: {} }, makeLambdaContext()),
    ).rejects.toMatchObject({
      name: 'EventValidationError',
      message: expect.stringContaining('`planKey` must be a staging key'),
    });
    await expect(
      shardHandler({ item: { shard: 1 }, extra: true }, makeLambdaContext()),
    ).rejects.toMatchObject({
      name: 'EventValidationError',
      message: expect.stringContaining('unknown field `extra`'),
    });
  });
});
