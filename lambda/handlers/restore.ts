import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Context } from 'aws-lambda';
import { systemClock } from '../core/deps.js';
import { resolveRestorePoint } from '../core/resolve.js';
import { type RestoreResult, runRestore } from '../core/restore.js';
import { type HandlerConfig, openHandlerStore, readHandlerConfig, underMount } from './config.js';
import { parseRestoreEvent, type RestoreEvent } from './events.js';
import { invocationLogger } from './runtime.js';

export interface RestoreHandlerResult extends RestoreResult {
  /** The target relative to the file system mount (null for a dry run). */
  readonly targetPath: string | null;
}

/**
 * Operator-invoked restore from the backup bucket onto EFS.
 * Event: `{"backup"?, "at"?, "paths"?, "target"?, "mode"?: "new-folder"|"replace", "dryRun"?}`.
 * Default target: `RESTORES_PATH/<backupId>` for a new folder, `MEDIA_PATH` for `replace` (the
 * previous tree is kept beside it as `MEDIA_PATH.pre-restore-<time>`). Every file's sha256 is
 * checked before anything live is touched; any failure throws and leaves the target as it was.
 */
export const handler = async (event: unknown, context: Context): Promise<RestoreHandlerResult> => {
  const config = readHandlerConfig();
  // The key may be pasted as `aws s3 ls --recursive` prints it, or as s3://bucket/key, of this store only.
  const request = parseRestoreEvent(event, { bucket: config.bucketName, prefix: config.backupPrefix });
  const { powertools: logger, engine: engineLogger } = invocationLogger(context, 'restore');
  const store = openHandlerStore(config);
  try {
    // Resolve `latest` / `at` first so the default target names the real backup id, and so the
    // engine gets an id (never a spec it might read as a local file).
    const point = await resolveRestorePoint(store, { backup: request.backup, at: request.at });
    const targetPath = request.dryRun
      ? null
      : (request.target ?? defaultTarget(config, request, point.backupId));
    const target = targetPath === null ? undefined : underMount(config, targetPath);
    logger.info('restore requested', {
      backupId: point.backupId,
      target,
      mode: request.mode,
      dryRun: request.dryRun,
      paths: request.paths,
    });
    // The staging folder is created beside the target, so its parent must exist (restores/ is new
    // on a fresh file system).
    if (target) await mkdir(path.dirname(target), { recursive: true });
    const result = await runRestore(
      { store, clock: systemClock, logger: engineLogger },
      {
        backup: point.backupId,
        paths: request.paths,
        target,
        mode: request.mode,
        dryRun: request.dryRun,
      },
    );
    return { ...result, targetPath };
  } finally {
    store.client.destroy();
  }
};

function defaultTarget(config: HandlerConfig, request: RestoreEvent, backupId: string): string {
  return request.mode === 'replace' ? config.mediaPath : `${config.restoresPath}/${backupId}`;
}
