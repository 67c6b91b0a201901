import type { Context } from 'aws-lambda';
import { systemClock } from '../core/deps.js';
import { abortShardedBackup, readShardPlan } from '../core/sharding/sharded-backup.js';
import type { ObjectStore } from '../store/types.js';
import { openHandlerStore, readHandlerConfig } from './config.js';
import { invocationMetrics, recordBackupFailed } from './metrics.js';
import { invocationLogger } from './runtime.js';
import { describeCaughtError, parseCleanupEvent } from './shard-events.js';

/** Longest message handed back: it becomes the Fail state's cause (at most 32,768 characters). */
const MAX_MESSAGE = 4000;

/** What the cleanup task returns; `message` becomes the execution's failure cause. */
export interface ShardCleanupResult {
  /** COMMITTED: the backup was committed after all (the commit's answer was lost); nothing undone. */
  readonly status: 'FAILED' | 'COMMITTED';
  readonly backupId: string | null;
  readonly shard: number | null;
  readonly message: string;
}

/**
 * The cleanup step of the backup state machine, `{ planKey, error }`, run once when the shards or the
 * commit failed (the Catch of both; not retried on its own errors). Names the failed shard when the
 * caught error does (see describeCaughtError) or, when it names none (in AWS a failed shard reaches
 * this step as the Map Run's States.ExceedToleratedFailureThreshold), from the failure records the
 * shard function writes under staging/; then the engine's abortShardedBackup: FAILED recorded
 * in status/last-run.json with the shard, the run's multipart uploads aborted, the lock released.
 * Nothing was committed: the manifest is written last, by the commit only.
 *
 * It reports the failure the way a failed backup invocation does, `BackupFailed` = 1: the
 * `backup-failed` alarm, a member of the `<stack>-failing` composite, whose one email is the notify
 * path. The state machine's own failed-execution alarm is a member of the same composite, so the run
 * that fails here still mails once.
 */
export async function handler(event: unknown, context: Context): Promise<ShardCleanupResult> {
  const started = Date.now();
  const { planKey, error } = parseCleanupEvent(event);
  const caught = describeCaughtError(error);
  const config = readHandlerConfig();
  const { powertools: logger, engine } = invocationLogger(context, 'backup');
  const store = openHandlerStore(config);
  const metrics = invocationMetrics();
  try {
    const plan = await readShardPlan(store, planKey).catch(() => undefined);
    const failure =
      caught.shard === undefined ? ((await recordedShardFailure(store, planKey)) ?? caught) : caught;
    logger.error('sharded backup failed: cleaning up', {
      planKey,
      backupId: plan?.backupId,
      shard: failure.shard,
      error: failure.message,
    });
    const outcome = await abortShardedBackup(
      { store, clock: systemClock, logger: engine, owner: context.awsRequestId },
      planKey,
      failure,
    );
    if (outcome === 'already-committed') {
      // The commit succeeded though its step reported a failure (an answer lost): no failed backup.
      const backupId = plan?.backupId ?? null;
      return {
        status: 'COMMITTED',
        backupId,
        shard: null,
        message: `backup ${backupId} is committed; nothing to clean up`,
      };
    }
    const createdAt = plan ? Date.parse(plan.createdAt) : Number.NaN;
    recordBackupFailed(
      metrics,
      Number.isFinite(createdAt) ? Math.max(0, Date.now() - createdAt) : Date.now() - started,
    );
    const backupId = plan?.backupId ?? /staging\/(backup_\d{8}_\d{6})\//.exec(planKey)?.[1] ?? null;
    const message = `sharded backup ${backupId ?? planKey} failed, nothing was committed: ${
      failure.shard === undefined ? '' : `shard ${failure.shard}${plan ? ` of ${plan.shards}` : ''}: `
    }${failure.message}`;
    return {
      status: 'FAILED',
      backupId,
      shard: failure.shard ?? null,
      message: message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message,
    };
  } finally {
    metrics.publishStoredMetrics();
    store.client.destroy();
  }
}

/**
 * The failure a shard recorded (shard.ts), when the caught error names none: in AWS a failed shard
 * reaches the cleanup as the Map Run's `States.ExceedToleratedFailureThreshold`. The lowest shard
 * number that recorded a failure, with its own message; undefined when none did.
 */
async function recordedShardFailure(
  store: ObjectStore,
  planKey: string,
): Promise<{ message: string; shard: number } | undefined> {
  const folder = /^(staging\/backup_\d{8}_\d{6}\/)/.exec(planKey)?.[1];
  if (!folder) return undefined;
  const records = (await store.list(folder).catch(() => []))
    .map((o) => ({ key: o.key, shard: Number(/\/shard-(\d{4})\.failed-[^/]+\.json$/.exec(o.key)?.[1]) }))
    .filter((r) => Number.isInteger(r.shard) && r.shard > 0)
    .sort((a, b) => a.shard - b.shard || a.key.localeCompare(b.key));
  const first = records[0];
  if (!first) return undefined;
  const data = await store.get(first.key).catch(() => undefined);
  const recorded = data ? (JSON.parse(data.toString('utf8')) as { message?: unknown }) : {};
  const message = typeof recorded.message === 'string' ? recorded.message : `shard ${first.shard} failed`;
  return {
    message: `${message} (the Map Run stopped: States.ExceedToleratedFailureThreshold)`,
    shard: first.shard,
  };
}
