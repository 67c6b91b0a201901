import type { Context } from 'aws-lambda';
import { errorMessage, MediaBackupError } from '../core/errors.js';
import { runShard, type ShardItem, stagingPrefix } from '../core/sharding/sharded-backup.js';
import type { ObjectStore } from '../store/types.js';
import { sourceHint } from './backup.js';
import { openHandlerStore, readHandlerConfig, underMount } from './config.js';
import { BackupDeadlineError } from './errors.js';
import { withinDeadline } from './phase-runtime.js';
import { invocationLogger } from './runtime.js';
import { parseShardEvent } from './shard-events.js';

/** A shard failed; the message starts with `shard N of backup_…` so the cleanup step can name it. */
export class ShardFailedError extends MediaBackupError {
  override readonly name = 'ShardFailedError';
}

/** What the shard task returns (kept small: the state machine discards it, see state-machines.ts). */
export interface ShardTaskResult {
  readonly status: 'SUCCEEDED';
  readonly backupId: string;
  readonly shard: number;
  /** The part written (or found complete from an earlier attempt); absent for a shard with nothing to pack. */
  readonly partKey: string | null;
  readonly partBytes: number;
  readonly files: number;
  /** True when an earlier attempt had finished this shard: nothing was written now. */
  readonly reused: boolean;
}

/**
 * One shard of a sharded backup, invoked by the backup state machine's Distributed Map with
 * `{ item }` (one line of `staging/backup_<id>/shards.jsonl`). Reads the shard's range of the media
 * tree on EFS and writes its part `<type>/backup_<id>.part-NNNN.tar.gz` with its manifest rows.
 *
 * Idempotent (the engine's runShard): a retry after a failed or lost attempt never writes a second copy
 * of a part and never replaces one an earlier attempt completed. Like the backup function it stops
 * `DEADLINE_MARGIN_MS` before its timeout with a clear error (the upload aborted, nothing half-written
 * visible), instead of being killed by the timeout. Any failure is thrown as ShardFailedError naming the
 * shard; the state machine retries it, then fails the run and cleans up.
 */
export async function handler(event: unknown, context: Context): Promise<ShardTaskResult> {
  const { item } = parseShardEvent(event);
  const config = readHandlerConfig();
  const { powertools: logger, engine } = invocationLogger(context, 'backup');
  logger.appendKeys({ backupId: item.backupId, shard: item.shard });
  const source = underMount(config, config.mediaPath);
  const leftAtStart = context.getRemainingTimeInMillis();
  const budgetMs = leftAtStart - config.deadlineMarginMs;
  const failed = (message: string, cause?: unknown) =>
    new ShardFailedError(`shard ${item.shard} of ${item.backupId} failed: ${message}`, { cause });
  if (budgetMs <= 0) {
    throw failed(
      `this invocation has ${leftAtStart} ms left, not more than DEADLINE_MARGIN_MS (${config.deadlineMarginMs} ms); nothing was written. Raise the shard function's timeout well above DEADLINE_MARGIN_MS.`,
    );
  }
  const store = openHandlerStore(config);
  logger.info('shard started', { files: item.files, bytes: item.bytes, budgetMs });
  try {
    const outcome = await withinDeadline(
      budgetMs,
      () =>
        new BackupDeadlineError(
          `the shard (${item.files} files, ${item.bytes} bytes, ${item.firstPath} .. ${item.lastPath}) did not finish within this invocation (stopped ${config.deadlineMarginMs} ms before the timeout, after ${budgetMs} ms); its upload was aborted. The plan sized it from the time model's rates: EFS or S3 was slower than they say. A retry resumes nothing but starts the shard again; give the shard function more memory if this repeats.`,
        ),
      (signal) =>
        runShard({ store, logger: engine }, item, {
          source,
          sourceHint: sourceHint(config, store.url),
          gzip: { level: config.compressionLevel },
          signal,
        }),
    );
    logger.info('shard done', {
      partKey: outcome.part?.key ?? null,
      partBytes: outcome.part?.bytes ?? 0,
      files: outcome.files,
      reused: outcome.reused === true,
    });
    return {
      status: 'SUCCEEDED',
      backupId: outcome.backupId,
      shard: outcome.shard,
      partKey: outcome.part?.key ?? null,
      partBytes: outcome.part?.bytes ?? 0,
      files: outcome.files,
      reused: outcome.reused === true,
    };
  } catch (reason) {
    // The deadline's error when it fired (withinDeadline), else the engine's.
    logger.error('shard failed', { error: errorMessage(reason) });
    const shardFailed = failed(`${(reason as Error)?.name ?? 'Error'}: ${errorMessage(reason)}`, reason);
    await recordShardFailure(store, item, context.awsRequestId, shardFailed.message).catch((recordError) =>
      logger.warn('could not record the shard failure for the cleanup step', {
        error: errorMessage(recordError),
      }),
    );
    throw shardFailed;
  } finally {
    store.client.destroy();
  }
}

/**
 * `staging/backup_<id>/shard-NNNN.failed-<requestId>.json`: one per failed attempt, created once. In
 * AWS a failed shard fails its Map Run with `States.ExceedToleratedFailureThreshold`, whose cause does
 * not carry the shard's error; the cleanup step reads these to name the shard and its error.
 */
export function shardFailureKey(backupId: string, shard: number, requestId: string): string {
  const safeId = requestId.replace(/[^A-Za-z0-9-]/g, '_');
  return `${stagingPrefix(backupId)}shard-${String(shard).padStart(4, '0')}.failed-${safeId}.json`;
}

async function recordShardFailure(
  store: ObjectStore,
  item: ShardItem,
  requestId: string,
  message: string,
): Promise<void> {
  await store.put(
    shardFailureKey(item.backupId, item.shard, requestId),
    `${JSON.stringify({ shard: item.shard, backupId: item.backupId, message: message.slice(0, 4000) })}\n`,
    { contentType: 'application/json' },
  );
}
