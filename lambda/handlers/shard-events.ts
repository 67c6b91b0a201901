import { z } from 'zod';
import type { ShardItem } from '../core/sharding/sharded-backup.js';
import { caughtError, parseStepEvent } from './phase-runtime.js';

/**
 * Events of the functions the backup state machine invokes (lib/constructs/state-machines.ts builds
 * them): the shard function gets `{ item }` (one line of shards.jsonl, through the Distributed Map's
 * ItemSelector), the commit function `{ planKey }`, the cleanup function `{ planKey, error }` (the
 * caught error, `{ Error, Cause }`). Messages name the field in backticks and show what came.
 */

/** A store-relative key of a run's work objects: `staging/backup_<id>/...`. */
const STAGING_KEY = /^staging\/backup_\d{8}_\d{6}\/[^/]+$/;

function shown(input: unknown): string {
  if (input === undefined) return 'nothing';
  const text = JSON.stringify(input) ?? String(input);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

const planKey = z
  .string({ error: (issue) => `must be a string (got ${shown(issue.input)})` })
  .regex(STAGING_KEY, {
    error: (issue) =>
      `must be a staging key like staging/backup_20261201_040000/plan.json (got ${shown(issue.input)})`,
  });

const count = z.number().int().nonnegative();

/**
 * One shard as the plan wrote it. Fields beyond these are kept (the engine owns the item's shape and
 * reads what it needs); these are the ones the handler and the logs rely on.
 */
const shardItem = z.looseObject({
  planKey,
  backupId: z.string().regex(/^backup_\d{8}_\d{6}$/),
  shard: z.number().int().min(1).max(9999),
  todoKey: z.string().regex(STAGING_KEY),
  firstPath: z.string(),
  lastPath: z.string(),
  rows: count,
  files: count,
  bytes: count,
});

function strictEvent<T extends z.ZodRawShape>(shape: T, example: string) {
  const allowed = Object.keys(shape)
    .map((key) => `\`${key}\``)
    .join(', ');
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `\`${k}\``).join(', ')}: this function accepts ${allowed}`
        : `the event must be a JSON object such as ${example} (got ${shown(issue.input)})`,
  });
}

const shardEventSchema = strictEvent(
  { item: shardItem },
  '{"item":{"planKey":"staging/backup_…/plan.json","shard":1,…}}',
);
const commitEventSchema = strictEvent({ planKey }, '{"planKey":"staging/backup_20261201_040000/plan.json"}');
const cleanupEventSchema = strictEvent(
  { planKey, error: caughtError },
  '{"planKey":"staging/backup_20261201_040000/plan.json","error":{"Error":"…","Cause":"…"}}',
);

/** The shard function's event: `{ item }`. */
export function parseShardEvent(event: unknown): { item: ShardItem } {
  return parseStepEvent(shardEventSchema, event, 'shard') as { item: ShardItem };
}

/** The commit function's event: `{ planKey }`. */
export function parseCommitEvent(event: unknown): { planKey: string } {
  return parseStepEvent(commitEventSchema, event, 'shard commit');
}

/** The cleanup function's event: `{ planKey, error: { Error, Cause } }`. */
export function parseCleanupEvent(event: unknown): {
  planKey: string;
  error: { Error?: string | undefined; Cause?: string | undefined };
} {
  return parseStepEvent(cleanupEventSchema, event, 'shard cleanup');
}

/**
 * What failed, from the error Step Functions caught: a readable message and the failed shard when the
 * error names it.
 *
 * - A Lambda function error arrives with `Cause` = Lambda's error JSON (`errorType`, `errorMessage`);
 *   the shard function's errors say `shard N of backup_…`.
 * - In AWS a failed shard fails its Map Run with `States.ExceedToleratedFailureThreshold`, whose
 *   cause does not carry the child's error: then no shard is named, and the message says where to look
 *   (the Map Run's failed child execution).
 * - Anything else (`States.Timeout`, `States.Runtime`, ...) is reported with its name and cause.
 */
export function describeCaughtError(error: { Error?: string | undefined; Cause?: string | undefined }): {
  message: string;
  shard?: number;
} {
  const name = error.Error?.trim() || 'an unknown error';
  const cause = error.Cause?.trim() ?? '';
  let text = cause;
  try {
    const parsed = JSON.parse(cause) as { errorType?: unknown; errorMessage?: unknown };
    if (parsed && typeof parsed.errorMessage === 'string') {
      text = `${typeof parsed.errorType === 'string' ? parsed.errorType : name}: ${parsed.errorMessage}`;
    }
  } catch {
    // not Lambda's error JSON: the cause as it is
  }
  if (name === 'States.ExceedToleratedFailureThreshold') {
    return {
      message:
        `a shard failed after its retries (${name}${cause ? `: ${cause}` : ''}); its error is in the failed child ` +
        'execution of the Map Run (Step Functions console: the execution, then the Map Run of BackUpShards)',
    };
  }
  const message = text ? (text.startsWith(name) ? text : `${name}: ${text}`) : name;
  const shard = /\bshard (\d{1,4})\b/.exec(text)?.[1];
  return { message, ...(shard === undefined ? {} : { shard: Number(shard) }) };
}
