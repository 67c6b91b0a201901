import type { Context } from 'aws-lambda';
import { systemClock } from '../core/deps.js';
import { abortShardedBackup, readShardPlan } from '../core/sharding/sharded-backup.js';
import { openHandlerStore, readHandlerConfig } from './config.js';
import { invocationMetrics, recordBackupFailed } from './metrics.js';
import { invocationLogger } from './runtime.js';
import { describeCaughtError, parseCleanupEvent } from './shard-events.js';

/** Longest message handed back: it becomes the Fail state's cause (at most 32,768 characters). */
const MAX_MESSAGE = 4000;

/** What the cleanup task returns; `message` becomes the execution's failure cause. */
export interface ShardCleanupResult {
  readonly status: 'FAILED';
  readonly backupId: string | null;
  readonly shard: number | null;
  readonly message: string;
}

/**
 * The cleanup step of the backup state machine, `{ planKey, error }`, run once when the shards or the
 * commit failed (the Catch of both; not retried on its own errors). Names the failed shard when the
 * caught error does (see describeCaughtError), then the engine's abortShardedBackup: FAILED recorded
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
  const failure = describeCaughtError(error);
  const config = readHandlerConfig();
  const { powertools: logger, engine } = invocationLogger(context, 'backup');
  const store = openHandlerStore(config);
  const metrics = invocationMetrics();
  try {
    const plan = await readShardPlan(store, planKey).catch(() => undefined);
    logger.error('sharded backup failed: cleaning up', {
      planKey,
      backupId: plan?.backupId,
      shard: failure.shard,
      error: failure.message,
    });
    await abortShardedBackup(
      { store, clock: systemClock, logger: engine, owner: context.awsRequestId },
      planKey,
      failure,
    );
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
