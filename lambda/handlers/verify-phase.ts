import { randomBytes } from 'node:crypto';
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import {
  type ArchiveCheckItem,
  type ArchiveCheckResult,
  checkArchiveItem,
  planArchiveChecks,
  recordArchiveChecks,
} from '../core/checker/verify.js';
import { systemClock } from '../core/deps.js';
import { openHandlerStore, readHandlerConfig } from './config.js';
import { EventValidationError, VerifyFailedError } from './errors.js';
import { parseVerifyEvent } from './events.js';
import { invocationMetrics, recordVerifyOutcome } from './metrics.js';
import { parseStepEvent, putStagingItems } from './phase-runtime.js';
import { invocationLogger } from './runtime.js';

/**
 * The steps of the verify state machine (lib/constructs/verify-state-machine.ts), a deep verify cut
 * into one check per archive (a sharded backup's parts checked side by side), one function with the
 * step in `phase`:
 * - `{ phase: 'plan', request }`: `request` is the verify function's event (`backup`, `all`); plans
 *   the archive checks (with the rotation slice for `latest`, as the scheduled drill) and writes them
 *   to `staging/verify-<runId>/items.jsonl` for the Distributed Map;
 * - `{ phase: 'check', runId, index, item }`: one archive, deep; the result is written to
 *   `staging/verify-<runId>/result-<index>.json` (a retry finding it there returns it);
 * - `{ phase: 'record', runId, items, rotating }`: reads every result, records the outcome in
 *   status/last-verify.json exactly as the verify function does, publishes `VerifyFailures`, and
 *   fails (VerifyFailedError listing every problem) when a backup is damaged, as the verify function.
 */
export type VerifyPhaseResult =
  | {
      readonly phase: 'plan';
      readonly runId: string;
      readonly items: number;
      readonly itemsKey: string;
      readonly rotating: boolean;
    }
  | { readonly phase: 'check'; readonly archiveKey: string; readonly ok: boolean; readonly reused: boolean }
  | {
      readonly phase: 'record';
      readonly status: 'SUCCEEDED';
      readonly backups: number;
      readonly archives: number;
      readonly filesVerified: number;
    };

const RUN_ID = /^\d{8}T\d{6}-[0-9a-f]{8}$/;
const runId = z.string().regex(RUN_ID, { error: 'must be the run id the plan step returned' });

const phaseEvent = z.discriminatedUnion(
  'phase',
  [
    z.strictObject({ phase: z.literal('plan'), request: z.unknown() }),
    z.strictObject({
      phase: z.literal('check'),
      runId,
      index: z.number().int().nonnegative(),
      item: z.looseObject({
        backupId: z.string().regex(/^backup_\d{8}_\d{6}$/),
        type: z.enum(['full', 'incremental']),
        archiveKey: z.string().min(1),
      }),
    }),
    z.strictObject({
      phase: z.literal('record'),
      runId,
      items: z.number().int().nonnegative(),
      rotating: z.boolean(),
    }),
  ],
  { error: () => '`phase` must be one of plan, check, record' },
);

const runFolder = (id: string) => `staging/verify-${id}/`;
const resultKey = (id: string, index: number) =>
  `${runFolder(id)}result-${String(index).padStart(5, '0')}.json`;

export async function handler(event: unknown, context: Context): Promise<VerifyPhaseResult> {
  const request = parseStepEvent(phaseEvent, event, 'verify phase');
  const config = readHandlerConfig();
  const { powertools: logger, engine } = invocationLogger(context, 'verify');
  logger.appendKeys({ phase: request.phase });
  const store = openHandlerStore(config);
  try {
    switch (request.phase) {
      case 'plan': {
        const verify = parseVerifyEvent(request.request, {
          bucket: config.bucketName,
          prefix: config.backupPrefix,
        });
        if (!verify.deep) {
          throw new EventValidationError(
            'invalid verify phase event: the verify state machine runs deep checks only; send {"deep":true} (a quick verify reads no archive: invoke the verify function)',
          );
        }
        const rotate = !verify.all && verify.backup === 'latest';
        const plan = await planArchiveChecks(store, { backup: verify.backup, all: verify.all, rotate });
        const now = systemClock.now().toISOString().replace(/[-:]/g, '').slice(0, 15);
        const id = `${now}-${randomBytes(4).toString('hex')}`;
        const key = `${runFolder(id)}items.jsonl`;
        await putStagingItems(store, key, plan.items);
        logger.info('deep verify planned', { runId: id, items: plan.items.length, rotating: plan.rotating });
        return {
          phase: 'plan',
          runId: id,
          items: plan.items.length,
          itemsKey: `${config.backupPrefix}${key}`,
          rotating: plan.rotating,
        };
      }
      case 'check': {
        const key = resultKey(request.runId, request.index);
        const earlier = await store.get(key);
        if (earlier) {
          const done = JSON.parse(earlier.toString('utf8')) as ArchiveCheckResult;
          return { phase: 'check', archiveKey: done.archiveKey, ok: done.ok, reused: true };
        }
        const result = await checkArchiveItem(store, request.item as ArchiveCheckItem);
        await store.put(key, JSON.stringify(result), { contentType: 'application/json' });
        logger.info('archive checked', {
          archiveKey: result.archiveKey,
          ok: result.ok,
          problems: result.problems,
        });
        return { phase: 'check', archiveKey: result.archiveKey, ok: result.ok, reused: false };
      }
      case 'record': {
        const keys = (await store.list(runFolder(request.runId)))
          .map((o) => o.key)
          .filter((k) => /\/result-\d{5}\.json$/.test(k))
          .sort();
        if (keys.length !== request.items) {
          throw new VerifyFailedError(
            `verify run ${request.runId} has ${keys.length} archive results for ${request.items} planned checks: a check did not finish; nothing was recorded`,
            [],
          );
        }
        const results: ArchiveCheckResult[] = [];
        for (const key of keys) {
          const data = await store.get(key);
          if (!data) throw new VerifyFailedError(`verify result ${key} vanished before it was recorded`, []);
          results.push(JSON.parse(data.toString('utf8')) as ArchiveCheckResult);
        }
        const metrics = invocationMetrics();
        let outcome: Awaited<ReturnType<typeof recordArchiveChecks>> | undefined;
        try {
          outcome = await recordArchiveChecks(store, results, systemClock.now(), {
            rotating: request.rotating,
            logger: engine,
          });
        } finally {
          recordVerifyOutcome(metrics, outcome);
          metrics.publishStoredMetrics();
        }
        if (outcome.status === 'FAILED') {
          const problems = outcome.backups.flatMap((b) => b.problems);
          const failed = outcome.backups.filter((b) => !b.ok).map((b) => b.backupId);
          throw new VerifyFailedError(
            `deep verify of ${store.url} found ${problems.length} problem(s) in ${failed.join(', ')}: ${problems.join('; ').slice(0, 20_000)}. Do not rely on ${failed.length === 1 ? 'this backup' : 'these backups'} for a restore; take a new full backup ({"type":"full"}) and look into what damaged the objects.`,
            problems,
          );
        }
        return {
          phase: 'record',
          status: 'SUCCEEDED',
          backups: outcome.backups.length,
          archives: results.length,
          filesVerified: outcome.backups.reduce((sum, b) => sum + (b.filesVerified ?? 0), 0),
        };
      }
    }
  } finally {
    store.client.destroy();
  }
}
