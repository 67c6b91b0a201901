/**
 * Errors an operator sees. Each has a stable `name` (for metrics, alarms and tests) and a message that
 * says what failed, where, and what to do next.
 */
export class MediaBackupError extends Error {
  override readonly name: string = 'MediaBackupError';
}

/** The source folder is missing, not a folder, or unreadable: nothing was written. */
export class SourceError extends MediaBackupError {
  override readonly name = 'SourceError';
}

/** A manifest or metadata object cannot be parsed or breaks the data contract. */
export class ManifestError extends MediaBackupError {
  override readonly name = 'ManifestError';
}

/** A path from a scan, manifest or archive that could escape its root. */
export class UnsafePathError extends MediaBackupError {
  override readonly name = 'UnsafePathError';
}

/** The requested operation does not make sense for the store's current content. */
export class BackupStateError extends MediaBackupError {
  override readonly name = 'BackupStateError';
}

/** Bad option or setting; the CLI maps this to exit code 2. */
export class UsageError extends MediaBackupError {
  override readonly name: string = 'UsageError';
}

/**
 * A restore could not write to its target (disk full, quota, read-only, permission): a local
 * problem, not a fault of the backup, which stays good.
 */
export class RestoreTargetError extends MediaBackupError {
  override readonly name = 'RestoreTargetError';
}

/** The archive written to the store does not match what was produced. */
export class ArchiveVerificationError extends MediaBackupError {
  override readonly name = 'ArchiveVerificationError';
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
