import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { StateMachine } from 'aws-local-stepfunctions';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger, systemClock } from '../../lambda/core/deps.js';
import { VERIFY_STATUS_KEY } from '../../lambda/core/repository/layout.js';
import { runShardedBackup } from '../../lambda/core/sharding/sharded-backup.js';
import { handler as verifyPhaseHandler } from '../../lambda/handlers/verify-phase.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { VERIFY_STATES } from '../../lib/constructs/verify-state-machine.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import { type Json, polyfillPromiseWithResolvers } from '../fixtures/local-sfn.js';
import {
  captureStdout,
  emittedMetric,
  firstStepOnly,
  fromTheMap,
  readItems,
  recordedInvocations,
  settle,
  synthesizedDefinition,
} from '../fixtures/local-sfn-run.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';

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
  ({ definition } = synthesizedDefinition((stack) => stack.verifyStateMachine));
}, 120_000);
afterAll(() => s3?.stop());

beforeEach(async () => {
  run += 1;
  media = path.join(await dirs.make('media-'), 'media');
  prefix = `sfn-verify-${run}/media-backups/`;
  store = s3.makeStore(prefix);
  stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix });
  stdout = captureStdout();
});
afterEach(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

const emitted = (metric: string) => emittedMetric(stdout, metric);

async function verifyThroughStateMachine(
  request: Json,
  checkBinding: (payload: Json) => Promise<Json> = (payload) =>
    verifyPhaseHandler(payload, makeLambdaContext()),
) {
  const { invocations, bind } = recordedInvocations();
  const phase = (payload: Json) => verifyPhaseHandler(payload, makeLambdaContext());
  const overrides = {
    taskResourceLocalHandlers: {
      [VERIFY_STATES.plan]: bind(VERIFY_STATES.plan, phase),
      [VERIFY_STATES.check]: bind(VERIFY_STATES.check, checkBinding),
      [VERIFY_STATES.record]: bind(VERIFY_STATES.record, phase),
    },
    retryIntervalOverrides: { [VERIFY_STATES.check]: 0 },
  };
  // The plan step alone, then the rest from the Map on, with the check list read from s3rver.
  const planOnly = firstStepOnly(definition, VERIFY_STATES.plan, VERIFY_STATES.failed);
  const planned = await settle(new StateMachine(planOnly).run(request, { overrides }).result);
  if (planned.status === 'FAILED') throw new Error(`the plan step failed: ${JSON.stringify(planned.error)}`);
  const items = await readItems(store, s3.bucket, planned.output.itemsKey as string);
  const rest = await settle(
    new StateMachine(fromTheMap(definition, VERIFY_STATES.plan, VERIFY_STATES.map)).run(
      { ...planned.output, itemReaderItems: items },
      { overrides },
    ).result,
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
