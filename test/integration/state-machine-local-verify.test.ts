import path from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { CfnElement } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { StateMachine } from 'aws-local-stepfunctions';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger, systemClock } from '../../lambda/core/deps.js';
import { VERIFY_STATUS_KEY } from '../../lambda/core/repository/layout.js';
import { runShardedBackup } from '../../lambda/core/sharding/sharded-backup.js';
import { handler as verifyPhaseHandler } from '../../lambda/handlers/verify-phase.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { VERIFY_STATES } from '../../lib/constructs/verify-state-machine.js';
import { MediaBackupStack, parseConfig } from '../../lib/index.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import {
  type CfnTemplate,
  definitionOf,
  type Json,
  lambdaInvokeTask,
  parseJsonLines,
  polyfillPromiseWithResolvers,
  withItemsInsteadOfItemReader,
} from '../fixtures/local-sfn.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';
import { newTestApp } from '../infra/test-app.js';

/**
 * The synthesized deep verify state machine run by aws-local-stepfunctions over the REAL verify-phase
 * handler and s3rver, on a real 3-part sharded backup. As for the other state machines, the Map's
 * ItemReader is the one field replaced (ItemsPath, the same items.jsonl read from s3rver), and the run
 * is split after the plan step so the test can read that object in between. `$$.Map.Item.Index` is
 * provided by the interpreter as in AWS.
 */

polyfillPromiseWithResolvers();

const dirs = tempDirs();
let s3: S3rverFixture;
let definition: Json;
let store: S3ObjectStore;
let prefix: string;
let media: string;
let run = 0;
let stdout: string[];

beforeAll(async () => {
  s3 = await startS3rver();
  const app = newTestApp();
  const stack = new MediaBackupStack(app, 'MediaBackup', { config: parseConfig({ shardMaxConcurrency: 2 }) });
  const json = Template.fromStack(stack).toJSON() as CfnTemplate;
  definition = definitionOf(
    json,
    stack.getLogicalId(stack.verifyStateMachine.stateMachine.node.defaultChild as CfnElement),
  );
}, 120_000);
afterAll(() => s3?.stop());

beforeEach(async () => {
  run += 1;
  media = path.join(await dirs.make('media-'), 'media');
  prefix = `sfn-verify-${run}/media-backups/`;
  store = s3.makeStore(prefix);
  stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix });
  stdout = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: unknown) => {
    stdout.push(String(chunk));
    return true;
  });
});
afterEach(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

function emitted(metric: string): unknown[] {
  return stdout
    .flatMap((chunk) => chunk.split('\n'))
    .filter((line) => line.startsWith('{') && line.includes('"_aws"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((doc) => metric in doc)
    .map((doc) => doc[metric]);
}

function planOnly(): Json {
  const copy = structuredClone(definition);
  const { Next: _next, ...plan } = copy.States[VERIFY_STATES.plan];
  copy.States = {
    [VERIFY_STATES.plan]: { ...plan, End: true },
    [VERIFY_STATES.failed]: copy.States[VERIFY_STATES.failed],
  };
  return copy;
}

function fromTheMap(): Json {
  const copy = withItemsInsteadOfItemReader(definition, VERIFY_STATES.map, '$.itemReaderItems');
  delete copy.States[VERIFY_STATES.plan];
  copy.StartAt = VERIFY_STATES.map;
  return copy;
}

async function verifyThroughStateMachine(
  request: Json,
  checkBinding: (payload: Json) => Promise<Json> = (payload) =>
    verifyPhaseHandler(payload, makeLambdaContext()),
) {
  const invocations: { state: string; payload: Json }[] = [];
  const bind = (state: string, handler: (payload: Json) => Promise<Json>) =>
    lambdaInvokeTask(handler, (_fn, payload) => invocations.push({ state, payload }));
  const phase = (payload: Json) => verifyPhaseHandler(payload, makeLambdaContext());
  const overrides = {
    taskResourceLocalHandlers: {
      [VERIFY_STATES.plan]: bind(VERIFY_STATES.plan, phase),
      [VERIFY_STATES.check]: bind(VERIFY_STATES.check, checkBinding),
      [VERIFY_STATES.record]: bind(VERIFY_STATES.record, phase),
    },
    retryIntervalOverrides: { [VERIFY_STATES.check]: 0 },
  };
  const settle = (promise: Promise<unknown>) =>
    promise.then(
      (output) => ({ status: 'SUCCEEDED' as const, output: output as Json }),
      (error: { cause?: Json }) => ({ status: 'FAILED' as const, error }),
    );
  const planned = await settle(new StateMachine(planOnly()).run(request, { overrides }).result);
  if (planned.status === 'FAILED') throw new Error(`the plan step failed: ${JSON.stringify(planned.error)}`);
  const object = await store.client.send(
    new GetObjectCommand({ Bucket: s3.bucket, Key: planned.output.itemsKey as string }),
  );
  const items = parseJsonLines(await object.Body!.transformToString('utf8'));
  const rest = await settle(
    new StateMachine(fromTheMap()).run({ ...planned.output, itemReaderItems: items }, { overrides }).result,
  );
  return { ...rest, planned: planned.output, items, invocations };
}

async function shardedBackup(seed: number) {
  await makeMediaTree(media, { files: 15, seed });
  return runShardedBackup({ store, clock: systemClock, logger: silentLogger }, { source: media, shards: 3 });
}

const lastVerify = async () => JSON.parse((await store.get(VERIFY_STATUS_KEY))!.toString('utf8'));

describe('the deep verify state machine run locally over the real verify-phase handler', () => {
  it('checks each part of a 3-part sharded backup once and records it deep-verified', async () => {
    const backup = await shardedBackup(91);

    const result = await verifyThroughStateMachine({ backup: 'latest', deep: true });

    expect(result.status).toBe('SUCCEEDED');
    if (result.status !== 'SUCCEEDED') return;
    expect(result.items.map((item: Json) => item.archiveKey).sort()).toEqual(
      backup.parts.map((p) => p.key).sort(),
    );
    expect(result.output).toMatchObject({
      phase: 'record',
      status: 'SUCCEEDED',
      backups: 1,
      archives: 3,
      filesVerified: 15,
    });
    const checks = result.invocations.filter((i) => i.state === VERIFY_STATES.check);
    expect(checks.map((i) => i.payload.index).sort()).toEqual([0, 1, 2]);
    const record = await lastVerify();
    expect(JSON.stringify(record)).toContain(backup.backupId);
    for (const part of backup.parts) expect(JSON.stringify(record)).toContain(part.key);
    expect(emitted('VerifyFailures')).toEqual([0]);
  });

  it('a damaged part: every check runs once, the damage is recorded, the run fails naming the part', async () => {
    const backup = await shardedBackup(92);
    const damaged = backup.parts[1]!.key;
    const bytes = (await store.get(damaged))!;
    bytes[bytes.length >> 1] ^= 0xff;
    await store.client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}${damaged}`, Body: bytes }),
    );

    const result = await verifyThroughStateMachine({ backup: backup.backupId, deep: true });

    expect(result.status).toBe('FAILED');
    if (result.status !== 'FAILED') return;
    expect(result.error.cause).toMatchObject({ name: 'VerifyFailedError' });
    expect(String(result.error.cause?.message)).toContain(damaged);
    expect(result.invocations.filter((i) => i.state === VERIFY_STATES.check)).toHaveLength(3);
    expect(result.invocations.filter((i) => i.state === VERIFY_STATES.record)).toHaveLength(1);
    expect(JSON.stringify(await lastVerify())).toContain(damaged);
    expect(emitted('VerifyFailures')).toEqual([1]);
  });

  it('a check reported failed after it finished is retried and reuses its result', async () => {
    await shardedBackup(93);
    let first = true;
    const flaky = async (payload: Json) => {
      const result = await verifyPhaseHandler(payload, makeLambdaContext());
      if (payload.index === 0 && first) {
        first = false;
        throw Object.assign(new Error('Task timed out after 900.00 seconds'), { name: 'Sandbox.Timedout' });
      }
      return result;
    };

    const result = await verifyThroughStateMachine({ backup: 'latest', deep: true }, flaky);

    expect(result.status).toBe('SUCCEEDED');
    const index0 = result.invocations.filter((i) => i.state === VERIFY_STATES.check && i.payload.index === 0);
    expect(index0).toHaveLength(2);
    const again = await verifyPhaseHandler(index0[1]!.payload, makeLambdaContext());
    expect(again).toMatchObject({ phase: 'check', reused: true, ok: true });
    if (result.status === 'SUCCEEDED')
      expect(result.output).toMatchObject({ archives: 3, filesVerified: 15 });
  });
});
