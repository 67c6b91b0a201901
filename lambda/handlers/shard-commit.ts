import type { Context } from 'aws-lambda';
import { systemClock } from '../core/deps.js';
import { commitShardedBackup } from '../core/sharding/sharded-backup.js';
import { openHandlerStore, readHandlerConfig } from './config.js';
import { invocationMetrics, recordBackupSucceeded } from './metrics.js';
import { invocationLogger } from './runtime.js';
import { parseCommitEvent } from './shard-events.js';

/** What the commit task returns: the execution's output (small: the state limit is 256 KB). */
export interface ShardCommitResult {
  readonly status: 'SUCCEEDED';
  readonly backupId: string;
  readonly type: string;
  readonly manifestKey: string;
  readonly parts: number;
  readonly archiveBytes: number;
  readonly files: number;
  readonly changedFiles: number;
  readonly deletedFiles: number;
  /** Paths left out (unreadable, vanished): their count; the list is in status/last-run.json. */
  readonly skipped: number;
  readonly warnings: readonly string[];
  readonly durationMs: number;
}

/**
 * The commit step of the backup state machine, `{ planKey }`: checks that every shard's part is
 * present with its recorded size and checksum, writes the metadata listing the parts and, last, the
 * manifest (the commit marker), records the run in status/last-run.json and releases the lock the
 * backup function handed over (the engine's commitShardedBackup, idempotent: a retry after a lost
 * response finds the backup committed).
 *
 * Then it reports success exactly as a one-invocation backup does: `BackupSucceeded` = 1,
 * `BackupFailed` = 0 and the sizes (the dashboard's panels), and the hourly monitor sees the new
 * committed backup (`HoursSinceLastBackup`, the age alarm). A failed commit reports nothing here:
 * the state machine catches it and the cleanup step reports the failure, once.
 */
export async function handler(event: unknown, context: Context): Promise<ShardCommitResult> {
  const { planKey } = parseCommitEvent(event);
  const config = readHandlerConfig();
  const { powertools: logger, engine } = invocationLogger(context, 'backup');
  const store = openHandlerStore(config);
  const metrics = invocationMetrics();
  try {
    logger.info('sharded backup commit requested', { planKey, store: store.url });
    const result = await commitShardedBackup(
      { store, clock: systemClock, logger: engine, owner: context.awsRequestId },
      planKey,
    );
    // durationMs: from the plan to the commit, the run's whole time (not this invocation's).
    recordBackupSucceeded(metrics, result, result.durationMs);
    logger.info('sharded backup committed', {
      backupId: result.backupId,
      type: result.type,
      parts: result.parts.length,
      files: result.files,
      archiveBytes: result.archiveBytes,
      durationMs: result.durationMs,
    });
    return {
      status: 'SUCCEEDED',
      backupId: result.backupId,
      type: result.type,
      manifestKey: result.manifestKey,
      parts: result.parts.length,
      archiveBytes: result.archiveBytes,
      files: result.files,
      changedFiles: result.changedFiles,
      deletedFiles: result.deletedFiles,
      skipped: result.skipped.length,
      warnings: result.warnings.map((warning) => warning.message),
      durationMs: result.durationMs,
    };
  } finally {
    metrics.publishStoredMetrics();
    store.client.destroy();
  }
}
