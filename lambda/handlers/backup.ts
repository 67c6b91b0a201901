import type { Context } from 'aws-lambda';
import {
  type BackupStarted,
  type BackupSucceeded,
  runBackup,
  type ShardHandOff,
} from '../core/archiver/backup.js';
import type { TimeModelRates } from '../core/archiver/time-model.js';
import { systemClock } from '../core/deps.js';
import { errorMessage } from '../core/errors.js';
import { abortShardedBackup, planShardedRun, writeShardPlan } from '../core/sharding/sharded-backup.js';
import type { S3ObjectStore } from '../store/s3.js';
import { type HandlerConfig, openHandlerStore, readHandlerConfig, underMount } from './config.js';
import { BackupDeadlineError } from './errors.js';
import { parseBackupEvent } from './events.js';
import { invocationMetrics, recordBackupFailed, recordBackupSucceeded } from './metrics.js';
import { invocationLogger } from './runtime.js';
import { type StartExecutionInput, startExecution } from './start-execution.js';

/**
 * Scheduled backup of `EFS_MOUNT/MEDIA_PATH` into the backup bucket. Event: `{"type":"auto"|"full"|"incremental"}`
 * (default auto). Returns the engine's typed result; any failure throws, so Lambda marks the invocation
 * failed, the schedule's retry policy applies and the error alarm fires.
 *
 * Two guards against the invocation's timeout, both `DEADLINE_MARGIN_MS` before it:
 * - after the scan, the engine's time model (core/archiver/time-model.ts) estimates the run from the plan; a run
 *   that cannot finish in the time left fails at once with InsufficientTimeError, before anything is
 *   uploaded, instead of working for minutes and dying at the deadline;
 * - a run that the estimate let through but that turns out slower is aborted by the deadline watch: it
 *   uploads nothing visible (the multipart upload is aborted).
 * Either way it records FAILED in status/last-run.json and releases the lock, whereas a run killed by
 * the timeout leaves the lock to expire.
 */
export const handler = makeBackupHandler();

export interface BackupHandlerOptions {
  /** Rates of the up-front estimate. @default the engine's (per-file cost measured by the scan) */
  readonly timeModel?: TimeModelRates;
  /** Starts the backup state machine (tests pass a fake). @default StartExecution with the SDK */
  readonly startExecution?: (input: StartExecutionInput) => Promise<string | undefined>;
}

/** How long a sharded run may take unless SHARDED_RUN_TIMEOUT_SECONDS says: the lock's TTL. */
export const DEFAULT_SHARDED_RUN_TIMEOUT_SECONDS = 12 * 60 * 60;

/**
 * The hand-off to the backup state machine when `BACKUP_STATE_MACHINE_ARN` is set: a run the time
 * model says cannot finish in this invocation is planned into shards and the state machine started
 * with `{ backupId, planKey, itemsKey }` (itemsKey: the S3 key of shards.jsonl, which its Distributed
 * Map reads). The execution is named after the backup id, so a repeated start cannot run it twice.
 */
export function shardHandOff(
  store: S3ObjectStore,
  logger: Parameters<typeof writeShardPlan>[0]['logger'],
  env: NodeJS.ProcessEnv,
  start: NonNullable<BackupHandlerOptions['startExecution']>,
): ShardHandOff | undefined {
  const stateMachineArn = env.BACKUP_STATE_MACHINE_ARN;
  if (!stateMachineArn) return undefined;
  const raw = env.SHARDED_RUN_TIMEOUT_SECONDS;
  const seconds = raw === undefined || raw === '' ? DEFAULT_SHARDED_RUN_TIMEOUT_SECONDS : Number(raw);
  if (!Number.isInteger(seconds) || seconds < 900) {
    throw new Error(
      `SHARDED_RUN_TIMEOUT_SECONDS must be a whole number of seconds >= 900 (got ${JSON.stringify(raw)})`,
    );
  }
  const budget = env.SHARD_BUDGET_SECONDS;
  const shardBudgetMs = budget === undefined || budget === '' ? undefined : Number(budget) * 1000;
  if (shardBudgetMs !== undefined && !(Number.isInteger(shardBudgetMs) && shardBudgetMs >= 10_000)) {
    throw new Error(
      `SHARD_BUDGET_SECONDS must be a whole number of seconds >= 10 (got ${JSON.stringify(budget)})`,
    );
  }
  const rawMax = env.MAX_IN_MEMORY_ENTRIES;
  const maxEntries = rawMax === undefined || rawMax === '' ? undefined : Number(rawMax);
  if (maxEntries !== undefined && !(Number.isInteger(maxEntries) && maxEntries >= 1)) {
    throw new Error(`MAX_IN_MEMORY_ENTRIES must be a whole number >= 1 (got ${JSON.stringify(rawMax)})`);
  }
  const deps = { store, logger, clock: systemClock };
  return {
    // The lock outlives the execution's timeout a little, so a run that timed out is not overtaken
    // by the next one while its cleanup step still runs.
    lockTtlMs: (seconds + 600) * 1000,
    // Each shard is sized to finish in this much of the shard function's time (shard-plan.ts).
    plan: (inputs) => writeShardPlan(deps, { ...inputs, shardBudgetMs }),
    start: async (plan) => ({
      executionArn: await start({
        stateMachineArn,
        name: plan.backupId,
        input: JSON.stringify({
          backupId: plan.backupId,
          planKey: plan.planKey,
          itemsKey: `${store.prefix}${plan.itemsKey}`,
        }),
      }),
    }),
    maxInMemoryEntries: maxEntries,
    planFromScan: ({ scan, startedAt, lock, reason, options }) =>
      planShardedRun(
        { ...deps, owner: lock.token },
        { ...options, shardBudgetMs, shardReason: reason },
        startedAt,
        scan,
        lock,
      ),
    abort: async (planKey, failure) => {
      await abortShardedBackup(deps, planKey, failure);
    },
  };
}

/** The backup handler; options exist for tests (e.g. an estimate that lets a run reach the deadline watch). */
export function makeBackupHandler(options: BackupHandlerOptions = {}) {
  return async (event: unknown, context: Context): Promise<BackupSucceeded | BackupStarted> => {
    // Every invocation counts as succeeded or failed (EMF on stdout), whatever stopped it.
    const metrics = invocationMetrics();
    const started = Date.now();
    let handedOff = false;
    try {
      const result = await backupInvocation(event, context, options);
      // A run handed to the state machine succeeds (or fails) in its commit (or cleanup) step.
      if (result.status === 'SUCCEEDED') recordBackupSucceeded(metrics, result, Date.now() - started);
      else handedOff = true;
      return result;
    } catch (error) {
      recordBackupFailed(metrics, Date.now() - started);
      throw error;
    } finally {
      // Nothing to publish for a hand-off (powertools would warn about an empty metrics set).
      if (!handedOff) metrics.publishStoredMetrics();
    }
  };
}

async function backupInvocation(
  event: unknown,
  context: Context,
  options: BackupHandlerOptions,
): Promise<BackupSucceeded | BackupStarted> {
  const request = parseBackupEvent(event);
  const config = readHandlerConfig();
  const { powertools: logger, engine: engineLogger } = invocationLogger(context, 'backup');
  const source = underMount(config, config.mediaPath);

  const leftAtStart = context.getRemainingTimeInMillis();
  const budgetMs = leftAtStart - config.deadlineMarginMs;
  if (budgetMs <= 0) {
    throw new BackupDeadlineError(
      `the backup of ${source} was not started: this invocation has ${leftAtStart} ms left, not more than DEADLINE_MARGIN_MS (${config.deadlineMarginMs} ms). Nothing was written. Raise the function's timeout well above DEADLINE_MARGIN_MS (up to 15 minutes), or lower DEADLINE_MARGIN_MS.`,
    );
  }
  const store = openHandlerStore(config);
  const deadline = new AbortController();
  const deadlineError = () =>
    new BackupDeadlineError(
      `the backup of ${source} could not finish within this invocation's time limit (stopped ${config.deadlineMarginMs} ms before the timeout, after ${budgetMs} ms). Nothing was committed and the upload was aborted; the previous backups are intact. Give the function more memory (Lambda allots CPU in proportion to memory, and compression is CPU-bound), or make each run smaller: exclude folders with BACKUP_EXCLUDE or split the tree into several functions.`,
    );
  const timer = setTimeout(
    () => deadline.abort(deadlineError()),
    // setTimeout fires at once for delays past 2^31-1 ms; Lambda's 15 minutes are far below that.
    Math.min(budgetMs, 2 ** 31 - 1),
  );
  /**
   * The time the engine's estimate must fit in: what the deadline watch leaves. Once that is spent
   * (the watch's timer may run late on a busy event loop), the run has met the deadline: abort with
   * its error rather than report an estimate against no time at all.
   */
  const remainingMs = () => {
    const left = context.getRemainingTimeInMillis() - config.deadlineMarginMs;
    if (left <= 0 && !deadline.signal.aborted) deadline.abort(deadlineError());
    deadline.signal.throwIfAborted();
    return left;
  };

  logger.info('backup requested', { type: request.type, source, store: store.url, budgetMs });
  try {
    const result = await runBackup(
      { store, clock: systemClock, logger: engineLogger, owner: context.awsRequestId },
      {
        source,
        type: request.type,
        exclude: config.exclude,
        fullIntervalDays: config.fullIntervalDays,
        synthetic: config.syntheticFulls ? 'auto' : false,
        normalFullEvery: config.normalFullEvery,
        // Workers default to os.availableParallelism(): the function's vCPUs, set by its memory.
        gzip: { level: config.compressionLevel },
        signal: deadline.signal,
        // Refuse up front (InsufficientTimeError, FAILED recorded) a run the estimate says cannot finish.
        remainingMs,
        timeModel: options.timeModel,
        sourceHint: sourceHint(config, store.url),
        // EFS: every stat is a network round trip, so scan with concurrent calls.
        concurrentIo: true,
        handOff: shardHandOff(store, engineLogger, process.env, options.startExecution ?? startExecution),
      },
    );
    if (result.status === 'STARTED') {
      logger.info('backup handed to the backup state machine', { ...result });
      return result;
    }
    logger.info('backup succeeded', {
      backupId: result.backupId,
      type: result.type,
      files: result.files,
      changedFiles: result.changedFiles,
      archiveBytes: result.archiveBytes,
      skipped: result.skipped.length,
      durationMs: result.durationMs,
    });
    return result;
  } catch (error) {
    // The engine reports our abort reason; should a library surface its own AbortError instead,
    // the operator still needs the deadline message, which says what to change.
    if (deadline.signal.aborted && (error as Error)?.name === 'AbortError') {
      logger.error('backup aborted at the deadline', { error: errorMessage(error) });
      throw deadline.signal.reason;
    }
    throw error;
  } finally {
    clearTimeout(timer);
    store.client.destroy();
  }
}

/**
 * The advice of a missing or unreadable media folder, with the real paths and bucket: either the
 * file system is not what the function mounts, or it is empty (the demo's is, until media is imported).
 */
export function sourceHint(config: HandlerConfig, storeUrl: string): string {
  const importKey = `${storeUrl}import/media.tar.gz`;
  return (
    `Fix the mount: the function mounts the EFS access point at ${config.efsMount} and reads the folder ${config.mediaPath} in it (MEDIA_PATH); ` +
    `check that the access point's root holds that folder and that its POSIX user may read it. ` +
    `Or load media into an empty file system (the demo's): upload a tar.gz of the media tree (member names without ./) with \`aws s3 cp media.tar.gz ${importKey}\`, ` +
    `then invoke the restore function with {"import":"media.tar.gz"} (README, demo step 2), and run the backup again`
  );
}
