import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import { systemClock } from '../core/deps.js';
import { errorMessage } from '../core/errors.js';
import { resolveRestorePoint } from '../core/restorer/resolve.js';
import {
  abandonRestore,
  finishRestore,
  prepareRestore,
  type RestoreJobRef,
  restoreArchivePhase,
} from '../core/restorer/restore-phases.js';
import { openHandlerStore, readHandlerConfig, underMount } from './config.js';
import { BackupDeadlineError, EventValidationError } from './errors.js';
import { parseRestoreEvent } from './events.js';
import { caughtError, parseStepEvent, putStagingItems, withinDeadline } from './phase-runtime.js';
import { invocationLogger } from './runtime.js';

/**
 * The steps of the restore state machine (lib/constructs/restore-state-machine.ts), one function with
 * the step in `phase`:
 * - `{ phase: 'prepare', request }`: `request` is the restore function's event (`backup`, `at`,
 *   `paths`, `target`, `mode`); returns the job reference and the S3 key of the archive list the
 *   Distributed Map reads;
 * - `{ phase: 'archive', job, archiveKey }`: extracts one archive into the job's staging folder;
 * - `{ phase: 'finish', job }`: checks, swaps in, releases the lock;
 * - `{ phase: 'abandon', job, error }`: removes the staging folder, releases the lock.
 */
export type RestorePhaseResult =
  | {
      readonly phase: 'prepare';
      readonly job: RestoreJobRef;
      readonly backupId: string;
      readonly archives: number;
      readonly itemsKey: string;
    }
  | {
      readonly phase: 'archive';
      readonly archiveKey: string;
      readonly files: number;
      readonly alreadyDone: boolean;
    }
  | {
      readonly phase: 'finish';
      readonly status: 'SUCCEEDED';
      readonly backupId: string | null;
      readonly target: string | null;
      readonly targetPath: string | null;
      readonly mode: string;
      readonly files: number;
      readonly bytes: number;
      readonly archivesRead: number;
      readonly previousTree: string | null;
      readonly verified: boolean;
    }
  | { readonly phase: 'abandon'; readonly message: string };

const jobRef = z.looseObject({
  jobId: z.string().regex(/^[0-9a-f]{16}$/, { error: 'must be the job id prepare returned (16 hex digits)' }),
  target: z.string().min(1),
  lockToken: z.string().optional(),
});

const phaseEvent = z.discriminatedUnion(
  'phase',
  [
    z.strictObject({ phase: z.literal('prepare'), request: z.unknown() }),
    z.strictObject({ phase: z.literal('archive'), job: jobRef, archiveKey: z.string().min(1) }),
    z.strictObject({ phase: z.literal('finish'), job: jobRef }),
    z.strictObject({
      phase: z.literal('abandon'),
      job: jobRef,
      error: caughtError.optional(),
    }),
  ],
  { error: () => '`phase` must be one of prepare, archive, finish, abandon' },
);

export async function handler(event: unknown, context: Context): Promise<RestorePhaseResult> {
  const request = parseStepEvent(phaseEvent, event, 'restore phase');
  const config = readHandlerConfig();
  const { powertools: logger, engine } = invocationLogger(context, 'restore');
  logger.appendKeys({ phase: request.phase });
  const store = openHandlerStore(config);
  const deps = { store, clock: systemClock, logger: engine, owner: `restore:${context.awsRequestId}` };
  try {
    switch (request.phase) {
      case 'prepare': {
        const restore = parseRestoreEvent(request.request, {
          bucket: config.bucketName,
          prefix: config.backupPrefix,
        });
        if (restore.dryRun || restore.import !== undefined) {
          throw new EventValidationError(
            "invalid restore phase event: `dryRun` and `import` are the restore function's: invoke it for them (a dry run writes nothing, so it needs no state machine)",
          );
        }
        const point = await resolveRestorePoint(store, { backup: restore.backup, at: restore.at });
        const targetPath =
          restore.target ??
          (restore.mode === 'replace' ? config.mediaPath : `${config.restoresPath}/${point.backupId}`);
        const target = underMount(config, targetPath);
        await mkdir(path.dirname(target), { recursive: true });
        const job = await prepareRestore(deps, {
          backup: point.backupId,
          paths: restore.paths,
          target,
          mode: restore.mode,
        });
        // The archive list goes to S3 for the Distributed Map's ItemReader: a job may need thousands
        // of parts, far beyond the 256 KB a state may carry. Created once (never replaced).
        const key = `staging/restore-${job.jobId}/archives.jsonl`;
        await putStagingItems(
          store,
          key,
          job.archives.map((a) => ({ key: a.key, files: a.files, bytes: a.bytes })),
        );
        logger.info('restore prepared', {
          backupId: job.backupId,
          target,
          archives: job.archives.length,
          files: job.files,
        });
        return {
          phase: 'prepare',
          job: { jobId: job.jobId, target: job.target, lockToken: job.lockToken },
          backupId: job.backupId,
          archives: job.archives.length,
          itemsKey: `${config.backupPrefix}${key}`,
        };
      }
      case 'archive': {
        const budgetMs = context.getRemainingTimeInMillis() - config.deadlineMarginMs;
        const outcome = await withinDeadline(
          budgetMs,
          () =>
            new BackupDeadlineError(
              `archive ${request.archiveKey} could not be extracted within this invocation (stopped ${config.deadlineMarginMs} ms before the timeout); the retry removes this attempt's files and starts the archive again. Give the restore phase function more memory if this repeats.`,
            ),
          (signal) => restoreArchivePhase(deps, { job: request.job, archiveKey: request.archiveKey, signal }),
        );
        logger.info('archive restored', { ...outcome });
        return {
          phase: 'archive',
          archiveKey: outcome.archiveKey,
          files: outcome.files,
          alreadyDone: outcome.alreadyDone,
        };
      }
      case 'finish': {
        const result = await finishRestore(deps, { job: request.job });
        const targetPath =
          result.target === null
            ? null
            : path.relative(config.efsMount, result.target).split(path.sep).join('/');
        logger.info('restore finished', {
          backupId: result.backupId,
          target: result.target,
          files: result.files,
        });
        return {
          phase: 'finish',
          status: result.status,
          backupId: result.backupId,
          target: result.target,
          targetPath,
          mode: result.mode,
          files: result.files,
          bytes: result.bytes,
          archivesRead: result.archivesRead.length,
          previousTree: result.previousTree,
          verified: result.verified,
        };
      }
      case 'abandon': {
        const cause = request.error?.Cause ?? '';
        const message = `restore job ${request.job.jobId} into ${request.job.target} was abandoned: ${request.error?.Error ?? 'an error'}${cause ? `: ${cause.slice(0, 2000)}` : ''}; the staging folder was removed and the target is as it was`;
        logger.error('restore failed: abandoning the job', {
          jobId: request.job.jobId,
          error: request.error,
        });
        await abandonRestore({ logger: engine }, { job: request.job, error: request.error });
        return { phase: 'abandon', message };
      }
    }
  } catch (error) {
    logger.error('restore phase failed', { error: errorMessage(error) });
    throw error;
  } finally {
    store.client.destroy();
  }
}
