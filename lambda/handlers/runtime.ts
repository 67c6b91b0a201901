import { Logger } from '@aws-lambda-powertools/logger';
import type { Context } from 'aws-lambda';
import type { Logger as EngineLogger } from '../core/deps.js';

export interface InvocationLogger {
  /** The powertools Logger itself, for the handler's own lines. */
  readonly powertools: Logger;
  /** The same logger as the engine's `Logger` interface. */
  readonly engine: EngineLogger;
}

/**
 * A powertools Logger for one invocation: JSON lines with the Lambda context (request id, function
 * name, cold start) and the operation. Built per invocation rather than at import time so that
 * `POWERTOOLS_*` settings are read when the handler runs, like the rest of the configuration.
 */
export function invocationLogger(
  context: Context,
  operation: 'backup' | 'restore' | 'verify' | 'monitor' | 'notify',
): InvocationLogger {
  const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME || 'media-backup' });
  logger.addContext(context);
  logger.appendKeys({ operation, requestId: context.awsRequestId });
  // powertools' Logger satisfies the engine's interface as it is.
  return { powertools: logger, engine: logger };
}
