import { MediaBackupError, UsageError } from '../core/errors.js';

/**
 * The invocation's event is not one this function accepts. The message names the field; nothing was
 * read or written. Retrying the same event cannot succeed.
 */
export class EventValidationError extends UsageError {
  override readonly name = 'EventValidationError';
}

/**
 * An environment variable of the function is missing or malformed. The message names the variable;
 * the stack (or whoever deployed the function) must fix it.
 */
export class HandlerConfigError extends UsageError {
  override readonly name = 'HandlerConfigError';
}

/**
 * The backup could not finish within this invocation's time limit. The upload was aborted and nothing
 * was committed; the previous backups are untouched.
 */
export class BackupDeadlineError extends MediaBackupError {
  override readonly name = 'BackupDeadlineError';
}

/** A verify run found problems; `problems` lists them, one sentence each, naming the backup. */
export class VerifyFailedError extends MediaBackupError {
  override readonly name = 'VerifyFailedError';
  constructor(
    message: string,
    readonly problems: readonly string[],
  ) {
    super(message);
  }
}
