import { stat } from 'node:fs/promises';
import { MediaBackupError } from '../../lambda/core/errors.js';
import type { ObjectStore } from '../../lambda/store/types.js';

/**
 * The store a read-only command was pointed at does not exist: a folder that is not there, or an S3
 * bucket that does not exist. Reported instead of "no backups", because a mistyped `--store` must not
 * look like an empty store (restic and borg refuse the same way).
 */
export class StoreNotFoundError extends MediaBackupError {
  override readonly name = 'StoreNotFoundError';
}

const CHECK = 'check --store (or BACKUP_STORE); a store is created by the first backup written to it';

/**
 * Throws {@link StoreNotFoundError} when a folder store's folder does not exist or is not a folder.
 * Only looks (stat): a read-only command never creates the store. S3 stores are not probed here (that
 * would cost a request on every command); their NoSuchBucket error is translated by
 * {@link storeNotFoundFrom} when the command's first request fails.
 */
export async function assertStoreExists(store: ObjectStore): Promise<void> {
  if (store.localPath === undefined) return;
  let isFolder: boolean;
  try {
    isFolder = (await stat(store.localPath)).isDirectory();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
    throw new StoreNotFoundError(`no backup store at ${store.url}: the folder does not exist; ${CHECK}`);
  }
  if (!isFolder) {
    throw new StoreNotFoundError(`no backup store at ${store.url}: it is a file, not a folder; ${CHECK}`);
  }
}

/**
 * A {@link StoreNotFoundError} for an S3 error whose cause chain holds `NoSuchBucket`; else undefined.
 * The S3 store's error names the operation and the `s3://bucket/key` it was about.
 */
export function storeNotFoundFrom(error: unknown): StoreNotFoundError | undefined {
  let cause: unknown = error;
  for (let depth = 0; cause instanceof Error && depth < 5; depth += 1) {
    if (cause.name === 'NoSuchBucket') {
      const location = (error as { location?: unknown }).location;
      const bucket =
        typeof location === 'string'
          ? /^s3:\/\/([^/]+)/.exec(location)?.[1]
          : /bucket (\S+)/.exec(cause.message)?.[1];
      return new StoreNotFoundError(
        `no backup store at ${bucket ? `s3://${bucket}/` : 'the S3 store'}: the bucket does not exist (NoSuchBucket); check --store (or BACKUP_STORE) and the region (AWS_REGION)`,
        { cause: error },
      );
    }
    cause = cause.cause;
  }
  return undefined;
}
