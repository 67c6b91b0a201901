import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { StateMachine } from 'aws-local-stepfunctions';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger, systemClock } from '../../lambda/core/deps.js';
import { restoreLockPath } from '../../lambda/core/restorer/restore-lock.js';
import { runShardedBackup } from '../../lambda/core/sharding/sharded-backup.js';
import { handler as restorePhaseHandler } from '../../lambda/handlers/restore-phase.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { RESTORE_STATES } from '../../lib/constructs/restore-state-machine.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import { type Json, polyfillPromiseWithResolvers } from '../fixtures/local-sfn.js';
import {
  firstStepOnly,
  fromTheMap,
  readItems,
  recordedInvocations,
  settle,
  synthesizedDefinition,
} from '../fixtures/local-sfn-run.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';

/**
 * The synthesized restore state machine run by aws-local-stepfunctions, every task bound to the REAL
 * restore-phase handler (Lambda integration shape, see lambdaInvokeTask), over s3rver and a temp
 * folder standing in for EFS, restoring a real 3-part sharded backup (the engine's local runner).
 * As for the backup state machine, the ONE field changed is the Map's ItemReader: replaced by
 * `ItemsPath: $.itemReaderItems` (a field no state uses), the test reading the same archives.jsonl (the prepare step's `itemsKey`)
 * from s3rver between the prepare step and the Map. aws-local-stepfunctions runs the whole definition
 * in one go, so the execution is run twice: the prepare task alone first (a copy of the definition
 * ending after it), then the definition from the Map on, with the prepare step's output and the items.
 * The distributed mode, Label and ToleratedFailurePercentage are not interpreted (an inline Map).
 */

polyfillPromiseWithResolvers();

const dirs = tempDirs();
let s3: S3rverFixture;
let definition: Json;
let store: S3ObjectStore;
let mount: string;
let media: string;
let prefix: string;
let run = 0;

beforeAll(async () => {
  s3 = await startS3rver();
  ({ definition } = synthesizedDefinition((stack) => stack.restoreStateMachine));
}, 120_000);
afterAll(() => s3?.stop());

beforeEach(async () => {
  run += 1;
  mount = await dirs.make('efs-');
  media = path.join(mount, 'media');
  prefix = `sfn-restore-${run}/media-backups/`;
  store = s3.makeStore(prefix);
  stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix, mount });
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

async function restoreThroughStateMachine(
  request: Json,
  archiveBinding: (payload: Json) => Promise<Json> = (payload) =>
    restorePhaseHandler(payload, makeLambdaContext()),
) {
  const { invocations, bind } = recordedInvocations();
  const phase = (payload: Json) => restorePhaseHandler(payload, makeLambdaContext());
  const overrides = {
    taskResourceLocalHandlers: {
      [RESTORE_STATES.prepare]: bind(RESTORE_STATES.prepare, phase),
      [RESTORE_STATES.archive]: bind(RESTORE_STATES.archive, archiveBinding),
      [RESTORE_STATES.finish]: bind(RESTORE_STATES.finish, phase),
      [RESTORE_STATES.abandon]: bind(RESTORE_STATES.abandon, phase),
    },
    retryIntervalOverrides: { [RESTORE_STATES.archive]: 0, [RESTORE_STATES.finish]: 0 },
  };
  // The prepare step alone (PrepareRestore ending the execution, its Catch kept), then the rest from
  // the Map on, with the archive list read from s3rver.
  const prepareOnly = firstStepOnly(definition, RESTORE_STATES.prepare, RESTORE_STATES.failed);
  const prepared = await settle(new StateMachine(prepareOnly).run(request, { overrides }).result);
  if (prepared.status === 'FAILED') return { ...prepared, invocations };
  const items = await readItems(store, s3.bucket, prepared.output.itemsKey as string);
  const rest = await settle(
    new StateMachine(fromTheMap(definition, RESTORE_STATES.prepare, RESTORE_STATES.map)).run(
      { ...prepared.output, itemReaderItems: items },
      { overrides },
    ).result,
  );
  return { ...rest, prepared: prepared.output, items, invocations };
}

async function shardedBackup(files: number, seed: number) {
  await makeMediaTree(media, { files, seed });
  return runShardedBackup({ store, clock: systemClock, logger: silentLogger }, { source: media, shards: 3 });
}

describe('the restore state machine run locally over the real restore-phase handler', () => {
  it('restores a 3-part sharded backup into restores/<backupId>: one child per part, equal to the tree', async () => {
    const backup = await shardedBackup(15, 81);
    expect(backup.parts).toHaveLength(3);

    const result = await restoreThroughStateMachine({ backup: 'latest' });

    expect(result.status).toBe('SUCCEEDED');
    if (result.status !== 'SUCCEEDED') return;
    expect(result.prepared).toMatchObject({
      backupId: backup.backupId,
      itemsKey: expect.stringMatching(
        /^sfn-restore-\d+\/media-backups\/staging\/restore-[0-9a-f]{16}\/archives\.jsonl$/,
      ),
    });
    expect(result.items.map((item: Json) => item.key)).toEqual(backup.parts.map((p) => p.key));
    expect(result.output).toMatchObject({
      phase: 'finish',
      status: 'SUCCEEDED',
      backupId: backup.backupId,
      targetPath: `restores/${backup.backupId}`,
      files: 15,
      archivesRead: 3,
      verified: true,
    });
    const archives = result.invocations.filter((i) => i.state === RESTORE_STATES.archive);
    expect(archives.map((i) => i.payload.archiveKey).sort()).toEqual(backup.parts.map((p) => p.key).sort());
    expect(result.invocations.filter((i) => i.state === RESTORE_STATES.abandon)).toEqual([]);
    const target = path.join(mount, 'restores', backup.backupId);
    expect(await snapshotTree(target)).toEqual(await snapshotTree(media));
    // Nothing of the job is left beside the target, and its lock is released.
    expect((await readdir(path.join(mount, 'restores'))).sort()).toEqual([backup.backupId]);
    expect(existsSync(restoreLockPath(target))).toBe(false);
  });

  it('a part missing before the run: prepare refuses it naming the part, and the run ends there', async () => {
    const backup = await shardedBackup(15, 82);
    const missing = backup.parts[1]!.key;
    await store.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: `${prefix}${missing}` }));

    // prepare checks that every archive exists: the run ends there, with nothing to abandon.
    const refused = await restoreThroughStateMachine({ backup: backup.backupId });
    expect(refused.status).toBe('FAILED');
    if (refused.status !== 'FAILED') return;
    expect(refused.error.cause?.message).toContain(missing);
    expect(refused.invocations.map((i) => i.state)).toEqual([RESTORE_STATES.prepare]);
    expect(existsSync(path.join(mount, 'restores', backup.backupId))).toBe(false);
  });

  it('an archive that fails on every attempt: tried 3 times, abandoned once, the target untouched', async () => {
    const backup = await shardedBackup(15, 83);
    const failing = backup.parts[2]!.key;
    // The part disappears after prepare checked it (lifecycle, an operator): every extraction of it fails.
    const archiveBinding = async (payload: Json) => {
      if (payload.archiveKey === failing) {
        await store.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: `${prefix}${failing}` }));
      }
      return restorePhaseHandler(payload, makeLambdaContext());
    };

    const result = await restoreThroughStateMachine({ backup: backup.backupId }, archiveBinding);

    expect(result.status).toBe('FAILED');
    if (result.status !== 'FAILED') return;
    const attempts = result.invocations.filter(
      (i) => i.state === RESTORE_STATES.archive && i.payload.archiveKey === failing,
    );
    expect(attempts).toHaveLength(3);
    const abandons = result.invocations.filter((i) => i.state === RESTORE_STATES.abandon);
    expect(abandons).toHaveLength(1);
    expect(abandons[0]?.payload.error.Cause).toContain(failing);
    expect(result.invocations.filter((i) => i.state === RESTORE_STATES.finish)).toEqual([]);
    // The execution fails with the archive's own error.
    expect(String(result.error.cause?.message)).toContain(failing);
    const target = path.join(mount, 'restores', backup.backupId);
    expect(existsSync(target)).toBe(false);
    expect(await readdir(path.join(mount, 'restores'))).toEqual([]);
    expect(existsSync(restoreLockPath(target))).toBe(false);
  });
});
