import { z } from 'zod';
import type { ObjectStore } from '../store/types.js';
import { EventValidationError } from './errors.js';

/**
 * What the functions the state machines invoke (shard, commit, cleanup, restore phase, verify phase)
 * share: their event parsing, the error a Catch hands on, the item list a Distributed Map reads, and
 * the stop before the invocation's timeout.
 */

/** Step Functions' caught error: `Error` (name) and `Cause` (text; JSON for a Lambda function error). */
export const caughtError = z.looseObject({ Error: z.string().optional(), Cause: z.string().optional() });

/**
 * The event checked against `schema`; otherwise an EventValidationError `invalid <kind> event: ...`
 * naming each bad field in backticks (a message that names its field itself is kept as it is).
 */
export function parseStepEvent<T extends z.ZodType>(schema: T, event: unknown, kind: string): z.output<T> {
  const result = schema.safeParse(event ?? {});
  if (result.success) return result.data;
  const messages = result.error.issues.map((issue) => {
    const where = issue.path.map(String).join('.');
    return where && !issue.message.startsWith('`') ? `\`${where}\` ${issue.message}` : issue.message;
  });
  throw new EventValidationError(`invalid ${kind} event: ${messages.join('; ')}`, { cause: result.error });
}

/**
 * Writes the items a Distributed Map's ItemReader reads, one JSON object a line, at the store-relative
 * `key` under staging/: a run may have thousands of items, far beyond the 256 KB a state may carry.
 */
export async function putStagingItems(
  store: ObjectStore,
  key: string,
  items: readonly unknown[],
): Promise<void> {
  await store.put(key, items.map((item) => `${JSON.stringify(item)}\n`).join(''), {
    contentType: 'application/x-ndjson',
  });
}

/**
 * Runs `work` with a signal aborted after `budgetMs` (the time left minus DEADLINE_MARGIN_MS), so the
 * work stops cleanly with `deadlineError()` before Lambda's timeout kills it. When the deadline fired,
 * its error is thrown in place of whatever the aborted work threw.
 */
export async function withinDeadline<T>(
  budgetMs: number,
  deadlineError: () => Error,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const deadline = new AbortController();
  // setTimeout fires at once for a delay beyond 2^31 - 1 ms.
  const timer = setTimeout(
    () => deadline.abort(deadlineError()),
    Math.max(0, Math.min(budgetMs, 2 ** 31 - 1)),
  );
  try {
    return await work(deadline.signal);
  } catch (error) {
    throw deadline.signal.aborted ? deadline.signal.reason : error;
  } finally {
    clearTimeout(timer);
  }
}
