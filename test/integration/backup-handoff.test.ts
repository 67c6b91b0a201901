import { mkdir, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../lambda/core/deps.js';
import { listCommittedBackups } from '../../lambda/core/repository/catalog.js';
import { STATUS_KEY } from '../../lambda/core/repository/layout.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { commitShardedBackup, runShard, type ShardItem } from '../../lambda/core/sharding/sharded-backup.js';
import { makeBackupHandler } from '../../lambda/handlers/backup.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';

const dirs = tempDirs();
let s3: S3rverFixture;
let store: S3ObjectStore;
let media: string;
let run = 0;
const STATE_MACHINE = 'arn:aws:states:eu-west-1:123456789012:stateMachine:media-backup-backup';

beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());
beforeEach(async () => {
  const mount = await dirs.make('handoff-efs-');
  media = path.join(mount, 'media');
  await makeMediaTree(media, { files: 40, seed: 5 });
  run += 1;
  const prefix = `handoff-${run}/media-backups/`;
  store = s3.makeStore(prefix);
  stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix, mount });
  vi.stubEnv('BACKUP_STATE_MACHINE_ARN', STATE_MACHINE);
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

/**
 * Two 40 MB sparse files: at a modelled 1 MB/s ~80 s in all, more than the 30 s this invocation
 * leaves (90 s minus the 60 s deadline margin); each fits a shard budget of 60 s (SHARD_BUDGET_SECONDS).
 */
async function addBigFile(): Promise<void> {
  for (const name of ['lecture-1.mov', 'lecture-2.mov']) {
    const big = path.join(media, 'videos', name);
    await mkdir(path.dirname(big), { recursive: true });
    await writeFile(big, '');
    await truncate(big, 40e6);
  }
  vi.stubEnv('SHARD_BUDGET_SECONDS', '60');
}

const lockRecord = (raw: Buffer | undefined) =>
  JSON.parse(raw?.toString('utf8') ?? 'null') as { state: string; expiresAt: string; nonce: string };

describe('the backup function hands a run too long for one invocation to the backup state machine', () => {
  it('plans shards, starts the execution with the ItemReader key, keeps the lock until the commit', async () => {
    await addBigFile();
    const starts: { stateMachineArn: string; name: string; input: string }[] = [];
    const handler = makeBackupHandler({
      timeModel: { perFileMs: 1, bytesPerSecond: 1e6 },
      startExecution: async (input) => {
        starts.push(input);
        return `${STATE_MACHINE.replace(':stateMachine:', ':execution:')}:${input.name}`;
      },
    });
    const result = await handler({ type: 'full' }, makeLambdaContext({ remainingTimeInMillis: 90_000 }));
    expect(result.status).toBe('STARTED');
    if (result.status !== 'STARTED') return;
    expect(result.shards).toBeGreaterThan(1);
    expect(starts).toHaveLength(1);
    expect(starts[0].stateMachineArn).toBe(STATE_MACHINE);
    expect(starts[0].name).toBe(result.backupId);
    const input = JSON.parse(starts[0].input) as { backupId: string; planKey: string; itemsKey: string };
    expect(input).toEqual({
      backupId: result.backupId,
      planKey: `staging/${result.backupId}/plan.json`,
      itemsKey: `${store.prefix}staging/${result.backupId}/shards.jsonl`,
    });
    // Nothing committed yet, and the lock is held for the execution: another run is refused.
    expect(await listCommittedBackups(store)).toEqual([]);
    // (Read, not contended: s3rver ignores If-None-Match; lock-race.test.ts covers the protocol.)
    const handedOver = lockRecord(await store.get('locks/backup.lock'));
    expect(handedOver.state).toBe('held');
    expect(Date.parse(handedOver.expiresAt) - Date.now()).toBeGreaterThan(12 * 3600_000);

    // What the Distributed Map does: one shard invocation per line of the items object, then commit.
    const items = ((await store.get(input.itemsKey.slice(store.prefix.length))) as Buffer)
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ShardItem);
    expect(items).toHaveLength(result.shards);
    const deps = { store, clock: tickingClock('2026-12-01T02:00:00Z'), logger: silentLogger };
    for (const item of items.reverse()) await runShard(deps, item, { source: media });
    const committed = await commitShardedBackup(deps, input.planKey);
    expect(committed.backupId).toBe(result.backupId);
    expect(JSON.parse(((await store.get(STATUS_KEY)) as Buffer).toString('utf8'))).toMatchObject({
      status: 'SUCCEEDED',
      backupId: result.backupId,
    });
    // The commit released the handed-over lock.
    expect(lockRecord(await store.get('locks/backup.lock'))).toMatchObject({
      state: 'released',
      nonce: handedOver.nonce,
    });
    const target = path.join(await dirs.make('handoff-restore-'), 'media');
    await runRestore(deps, { backup: result.backupId, target });
    expect(await snapshotTree(target)).toEqual(await snapshotTree(media));
  }, 120_000);

  it('when the execution cannot be started: FAILED recorded, lock released, nothing committed', async () => {
    await addBigFile();
    const handler = makeBackupHandler({
      timeModel: { perFileMs: 1, bytesPerSecond: 1e6 },
      startExecution: async () => {
        throw new Error('AccessDeniedException: not authorized to perform states:StartExecution');
      },
    });
    await expect(
      handler({ type: 'full' }, makeLambdaContext({ remainingTimeInMillis: 90_000 })),
    ).rejects.toThrow(/states:StartExecution/);
    expect(await listCommittedBackups(store)).toEqual([]);
    const status = JSON.parse(((await store.get(STATUS_KEY)) as Buffer).toString('utf8'));
    expect(status.status).toBe('FAILED');
    expect(status.error.message).toMatch(/could not be started/);
    expect(lockRecord(await store.get('locks/backup.lock')).state).toBe('released');
  }, 120_000);

  it('a tree over the in-memory cap is planned from the streaming scan (incremental on a streamed base) and handed off', async () => {
    const starts: { input: string }[] = [];
    const handler = makeBackupHandler({
      startExecution: async (input) => {
        starts.push(input);
        return 'arn:execution';
      },
    });
    // A first full in one invocation (40 files + folders fit the default cap).
    const full = await handler({ type: 'full' }, makeLambdaContext());
    expect(full.status).toBe('SUCCEEDED');
    await writeFile(path.join(media, 'chat/new.png'), 'new');
    vi.stubEnv('MAX_IN_MEMORY_ENTRIES', '10');
    const result = await handler({ type: 'auto' }, makeLambdaContext());
    expect(result.status).toBe('STARTED');
    if (result.status !== 'STARTED') return;
    expect(result.type).toBe('incremental');
    expect(result.reason).toMatch(/sharded: the tree has more than 10 entries/);
    const input = JSON.parse(starts[0].input) as { planKey: string; itemsKey: string };
    const items = ((await store.get(input.itemsKey.slice(store.prefix.length))) as Buffer)
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ShardItem);
    const deps = { store, clock: tickingClock('2026-12-01T03:00:00Z'), logger: silentLogger };
    for (const item of items) await runShard(deps, item, { source: media });
    const committed = await commitShardedBackup(deps, input.planKey);
    expect(committed).toMatchObject({ type: 'incremental', changedFiles: 1 });
    const target = path.join(await dirs.make('handoff-large-'), 'media');
    await runRestore(deps, { backup: committed.backupId, target });
    expect(await snapshotTree(target)).toEqual(await snapshotTree(media));
  });

  it('a run that fits stays one invocation even with the state machine configured', async () => {
    const handler = makeBackupHandler({
      startExecution: async () => {
        throw new Error('must not be called');
      },
    });
    const result = await handler({ type: 'full' }, makeLambdaContext());
    expect(result.status).toBe('SUCCEEDED');
  });
});
