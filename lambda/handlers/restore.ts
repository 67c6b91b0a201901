import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Context } from 'aws-lambda';
import { systemClock } from '../core/deps.js';
import { UsageError } from '../core/errors.js';
import { resolveRestorePoint } from '../core/restorer/resolve.js';
import { type RestoreResult, runRestore } from '../core/restorer/restore.js';
import type { S3ObjectStore } from '../store/s3.js';
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
    if (request.import !== undefined) {
      return await importMedia(config, store, request.import, engineLogger, logger);
    }
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
      { store, clock: systemClock, logger: engineLogger, owner: `restore:${context.awsRequestId}` },
      {
        backup: point.backupId,
        paths: request.paths,
        target,
        mode: request.mode,
        dryRun: request.dryRun,
        // A sharded backup's parts (or a full and its incrementals) stream side by side: their
        // downloads and EFS writes overlap. Two suit the default 2-vCPU function.
        parallel: 2,
      },
    );
    return { ...result, targetPath };
  } finally {
    store.client.destroy();
  }
};

/**
 * Demo: load a first media tree through the product itself. The demo file system is empty, isolated
 * and mounted read-only by the backup function, so a user uploads a tar.gz to
 * `<prefix>import/<name>.tar.gz` and this extracts it into MEDIA_PATH with the restore engine: the
 * same safety rules as any restore (no path outside the target, no links followed, extracted into a
 * staging folder first) and only into an empty or missing media folder. The archive has no manifest,
 * so the files are not hash-checked (the result says so in `verified` and `notes`). The download goes
 * to the function's /tmp (512 MB unless the function's ephemeral storage is raised).
 */
async function importMedia(
  config: HandlerConfig,
  store: S3ObjectStore,
  key: string,
  engineLogger: Parameters<typeof runRestore>[0]['logger'],
  logger: Logger,
): Promise<RestoreHandlerResult> {
  const target = underMount(config, config.mediaPath);
  logger.info('import requested', { key, store: store.url, target });
  if (!(await store.head(key))) {
    throw new ImportSourceMissingError(
      `there is no ${key} in ${store.url}: upload the media archive first, e.g. \`tar -czf media.tar.gz -C <folder> . && aws s3 cp media.tar.gz ${store.url}${key}\`, then invoke the restore function with {"import":"${path.posix.basename(key)}"}`,
    );
  }
  const scratch = await mkdtemp(path.join(tmpdir(), 'media-import-'));
  try {
    const local = path.join(scratch, path.posix.basename(key));
    await pipeline(await store.getStream(key), createWriteStream(local));
    await mkdir(path.dirname(target), { recursive: true });
    const result = await runRestore(
      { store, clock: systemClock, logger: engineLogger },
      { backup: local, target, mode: 'new-folder' },
    );
    return { ...result, source: `${store.url}${key}`, targetPath: config.mediaPath };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Thrown when the archive to import is not in the bucket. */
export class ImportSourceMissingError extends UsageError {
  override readonly name = 'ImportSourceMissingError';
}

function defaultTarget(config: HandlerConfig, request: RestoreEvent, backupId: string): string {
  return request.mode === 'replace' ? config.mediaPath : `${config.restoresPath}/${backupId}`;
}
