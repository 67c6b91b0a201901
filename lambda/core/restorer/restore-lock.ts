import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fsLeaseBackend } from '../../store/fs-lock.js';
import { acquireLease, releaseHandedOverLease } from '../../store/lease.js';
import { type LockHandle, LockHeldError } from '../../store/types.js';
import { MediaBackupError } from '../errors.js';

/** A lock not renewed for this long belongs to a restore that died (renewed every third of it). */
export const RESTORE_LOCK_TTL_MS = 10 * 60 * 1000;

/**
 * A restore run as a state machine's steps (restore-phases.ts) hands the lock over with this TTL: no
 * process renews it between the steps, so it must outlast the whole run (the state machine's own
 * timeout is shorter). A run that dies without its cleanup step blocks the target this long at most.
 */
export const RESTORE_JOB_LOCK_TTL_MS = 12 * 60 * 60 * 1000;

/** Another restore is writing into the same target: this one changed nothing. */
export class RestoreInProgressError extends MediaBackupError {
  override readonly name = 'RestoreInProgressError';
}

/** `DIR.restore-lock`, beside the target on the same file system (EFS included: link() works there). */
export function restoreLockPath(target: string): string {
  return `${path.resolve(target)}.restore-lock`;
}

/**
 * One restore per target at a time, as one backup per store: two restores into the same folder
 * (a re-invoked Lambda, a second operator) would swap trees under each other. The backup lock's
 * protocol (complete lock file linked into place, renewed, taken over only once expired) on a file
 * beside the target. Without process ids in the record: Lambda sandboxes share host names and
 * pid numbers, so a live lock of another sandbox could look dead.
 */
export async function acquireRestoreLock(target: string, owner: string): Promise<LockHandle> {
  const file = restoreLockPath(target);
  await mkdir(path.dirname(file), { recursive: true });
  try {
    return await acquireLease(fsLeaseBackend(file, target, RESTORE_LOCK_TTL_MS), target, {
      owner,
      ttlMs: RESTORE_LOCK_TTL_MS,
    });
  } catch (error) {
    if (!(error instanceof LockHeldError)) throw error;
    const h = error.holder;
    throw new RestoreInProgressError(
      `a restore into ${path.resolve(target)} is already running` +
        (h
          ? ` (started ${h.acquiredAt} by ${h.owner}; its lock ${file} expires at ${h.expiresAt} if that run died)`
          : ` (lock ${file})`) +
        '. Nothing was changed: wait for it to finish, then check the target before restoring again.',
      { cause: error },
    );
  }
}

/**
 * Releases a restore lock handed over with `LockHandle.handOver` (by a restore job's prepare step),
 * given the token handOver returned. False when the lock is no longer that job's (released already,
 * or expired and taken over): nothing is changed then.
 */
export async function releaseHandedOverRestoreLock(target: string, token: string): Promise<boolean> {
  return releaseHandedOverLease(fsLeaseBackend(restoreLockPath(target), target, RESTORE_LOCK_TTL_MS), token);
}
