import type { Context } from 'aws-lambda';
import { runVerify, type VerifyResult } from '../core/checker/verify.js';
import { systemClock } from '../core/deps.js';
import { openHandlerStore, readHandlerConfig } from './config.js';
import { VerifyFailedError } from './errors.js';
import { parseVerifyEvent } from './events.js';
import { invocationMetrics, recordVerifyOutcome } from './metrics.js';
import { invocationLogger } from './runtime.js';

/**
 * Checks that backups can be restored. Event: `{"backup"?: "latest"|id, "all"?: bool, "deep"?: bool}`.
 * Returns the engine's result when everything checked out. When a problem is found the invocation
 * fails (throws {@link VerifyFailedError} listing every problem), so Lambda's error metric and the
 * verify alarm fire; a returned FAILED result would look like a success to both.
 */
export const handler = async (event: unknown, context: Context): Promise<VerifyResult> => {
  const config = readHandlerConfig();
  const request = parseVerifyEvent(event, { bucket: config.bucketName, prefix: config.backupPrefix });
  const { powertools: logger, engine: engineLogger } = invocationLogger(context, 'verify');
  const store = openHandlerStore(config);
  // VerifyFailures is what the verify alarm watches; it is published whatever happens below.
  const metrics = invocationMetrics();
  let result: VerifyResult | undefined;
  try {
    logger.info('verify requested', { ...request, store: store.url });
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
    recordVerifyOutcome(metrics, result);
    metrics.publishStoredMetrics();
    store.client.destroy();
  }
};
