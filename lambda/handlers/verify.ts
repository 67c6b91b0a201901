import type { Context } from 'aws-lambda';
import { runVerify, type VerifyResult } from '../core/checker/verify.js';
import { systemClock } from '../core/deps.js';
import { archiveBytesOf, listCommittedBackups, readMetadata } from '../core/repository/catalog.js';
import { resolveRestorePoint } from '../core/restorer/resolve.js';
import type { S3ObjectStore } from '../store/s3.js';
import { openHandlerStore, readHandlerConfig } from './config.js';
import { VerifyFailedError } from './errors.js';
import { parseVerifyEvent } from './events.js';
import { invocationMetrics, recordVerifyOutcome } from './metrics.js';
import { invocationLogger } from './runtime.js';
import { type StartExecutionInput, startExecution } from './start-execution.js';

/**
 * Checks that backups can be restored. Event: `{"backup"?: "latest"|id, "all"?: bool, "deep"?: bool}`.
 * Returns the engine's result when everything checked out. When a problem is found the invocation
 * fails (throws {@link VerifyFailedError} listing every problem), so Lambda's error metric and the
 * verify alarm fire; a returned FAILED result would look like a success to both.
 */
export const handler = makeVerifyHandler();

/** A deep verify too large for one invocation, handed to the deep verify state machine. */
export interface VerifyStarted {
  readonly status: 'STARTED';
  readonly executionArn?: string;
  /** Archive bytes the deep verify reads, and the seconds estimated for it at DEEP_VERIFY_BYTES_PER_SECOND. */
  readonly bytes: number;
  readonly estimatedSeconds: number;
}

/** Read + hash + gunzip + tar throughput assumed for a deep verify (this machine: ~60-100 MB/s). */
export const DEEP_VERIFY_BYTES_PER_SECOND = 40e6;
/** Time kept free before the invocation's end. */
const VERIFY_MARGIN_MS = 60_000;

export interface VerifyHandlerOptions {
  /** Starts the deep verify state machine (tests pass a fake). @default StartExecution with the SDK */
  readonly startExecution?: (input: StartExecutionInput) => Promise<string | undefined>;
}

/**
 * The verify handler. With `VERIFY_STATE_MACHINE_ARN` set, a deep verify whose archives (the chain of
 * the backup checked, or all with `all`) would take longer to read than this invocation has left is
 * started on the deep verify state machine instead (one invocation per archive), and returns STARTED:
 * the weekly scheduled drill of a sharded 500 GB backup no longer times out every week.
 */
export function makeVerifyHandler(options: VerifyHandlerOptions = {}) {
  return (event: unknown, context: Context): Promise<VerifyResult | VerifyStarted> =>
    verifyInvocation(event, context, options);
}

async function deepVerifyBytes(
  store: S3ObjectStore,
  request: { backup: string; all?: boolean },
): Promise<number> {
  const committed = await listCommittedBackups(store);
  let chain = committed;
  if (!request.all) {
    const target = await resolveRestorePoint(store, { backup: request.backup });
    const at = committed.findIndex((c) => c.backupId === target.backupId);
    let from = at;
    while (from > 0 && committed[from].type !== 'full') from -= 1;
    chain = committed.slice(from, at + 1);
  }
  let bytes = 0;
  for (const entry of chain) {
    const metadata = await readMetadata(store, entry);
    if (metadata) bytes += archiveBytesOf(metadata);
  }
  return bytes;
}

async function verifyInvocation(
  event: unknown,
  context: Context,
  options: VerifyHandlerOptions,
): Promise<VerifyResult | VerifyStarted> {
  const config = readHandlerConfig();
  const request = parseVerifyEvent(event, { bucket: config.bucketName, prefix: config.backupPrefix });
  const { powertools: logger, engine: engineLogger } = invocationLogger(context, 'verify');
  const store = openHandlerStore(config);
  // VerifyFailures is what the verify alarm watches; it is published whatever happens below.
  const metrics = invocationMetrics();
  let result: VerifyResult | undefined;
  let handedOff = false;
  try {
    logger.info('verify requested', { ...request, store: store.url });
    const stateMachineArn = process.env.VERIFY_STATE_MACHINE_ARN;
    if (request.deep && stateMachineArn) {
      const bytes = await deepVerifyBytes(store, request);
      const estimatedSeconds = Math.ceil(bytes / DEEP_VERIFY_BYTES_PER_SECOND);
      const leftMs = context.getRemainingTimeInMillis() - VERIFY_MARGIN_MS;
      if (estimatedSeconds * 1000 > leftMs) {
        const start = options.startExecution ?? startExecution;
        const executionArn = await start({
          stateMachineArn,
          name: `verify-${context.awsRequestId}`,
          input: JSON.stringify({ backup: request.backup, ...(request.all ? { all: true } : {}) }),
        });
        handedOff = true;
        logger.info('deep verify handed to the deep verify state machine', {
          bytes,
          estimatedSeconds,
          executionArn,
        });
        return { status: 'STARTED', executionArn, bytes, estimatedSeconds };
      }
    }
    result = await runVerify(
      { store, clock: systemClock, logger: engineLogger },
      {
        backup: request.all ? undefined : request.backup,
        all: request.all,
        deep: request.deep,
        // The scheduled drill ({"backup":"latest","deep":true}) rotates over older archives too.
        rotate: request.deep && !request.all && request.backup === 'latest',
        // Deep checks of a sharded backup read two parts at a time (downloads overlap).
        parallel: 2,
      },
    );
    if (result.status === 'FAILED') {
      const problems = result.backups.flatMap((b) => b.problems);
      const failed = result.backups.filter((b) => !b.ok).map((b) => b.backupId);
      throw new VerifyFailedError(
        `verify${result.deep ? ' --deep' : ''} of ${store.url} found ${problems.length} problem(s) in ${failed.join(', ')}: ${problems.join('; ')}. Do not rely on ${failed.length === 1 ? 'this backup' : 'these backups'} for a restore; take a new full backup ({"type":"full"}) and look into what damaged the objects.`,
        problems,
      );
    }
    return result;
  } finally {
    // A hand-off records its outcome in the state machine's RecordChecks step.
    if (!handedOff) {
      recordVerifyOutcome(metrics, result);
      metrics.publishStoredMetrics();
    }
    store.client.destroy();
  }
}
