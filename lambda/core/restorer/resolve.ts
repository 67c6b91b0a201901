import type { ObjectStore } from '../../store/types.js';
import { BackupStateError, UsageError } from '../errors.js';
import { type CatalogEntry, listCommittedBackups } from '../repository/catalog.js';
import { backupIdTime } from '../repository/layout.js';

export interface RestorePointSpec {
  /** `latest` (default), a backup id, an archive file name or key (`full/backup_….tar.gz`). */
  readonly backup?: string;
  /** The latest committed backup at or before this instant. */
  readonly at?: Date;
}

/** Parses `--at` / `at`: an ISO-8601 instant; a date without a zone is read as UTC. */
export function parseInstant(value: string, option = '--at'): Date {
  const withZone =
    /([zZ]|[+-]\d{2}:?\d{2})$/.test(value) || /^\d{4}-\d{2}-\d{2}$/.test(value) ? value : `${value}Z`;
  const time = Date.parse(withZone);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(time)) {
    throw new UsageError(
      `${option} must be an ISO-8601 time such as 2025-12-27T02:00:00Z (got ${JSON.stringify(value)})`,
    );
  }
  return new Date(time);
}

/** The backup id a user's BACKUP argument names, or undefined for `latest`. */
export function backupIdFromSpec(spec: string): string | undefined {
  if (spec === 'latest') return undefined;
  const m =
    /^(?:(?:.*\/)?(?:full|incremental)\/)?(backup_\d{8}_\d{6})(?:\.tar\.gz|\.manifest\.jsonl\.gz|\.tar\.gz\.metadata\.json)?$/.exec(
      spec,
    );
  if (!m) {
    throw new UsageError(
      `backup must be "latest", a backup id like backup_20251227_020000, or an archive name like full/backup_20251227_020000.tar.gz (got ${JSON.stringify(spec)})`,
    );
  }
  return m[1];
}

/**
 * Finds the committed backup a restore or verify is about. Errors list what exists, so an operator
 * at 3 a.m. can pick the right one.
 */
export async function resolveRestorePoint(store: ObjectStore, spec: RestorePointSpec): Promise<CatalogEntry> {
  const committed = await listCommittedBackups(store);
  const wantedId = backupIdFromSpec(spec.backup ?? 'latest');
  if (committed.length === 0) {
    throw new BackupStateError(
      `${wantedId ? `backup ${wantedId} is not a committed backup: ` : ''}there are no committed backups in ${store.url}; nothing to restore from`,
    );
  }
  if (wantedId && spec.at) {
    throw new UsageError('give either a backup id or --at, not both');
  }
  if (spec.at) {
    const at = spec.at.getTime();
    const candidates = committed.filter((c) => backupIdTime(c.backupId).getTime() <= at);
    const found = candidates.at(-1);
    if (!found) {
      throw new BackupStateError(
        `no committed backup at or before ${spec.at.toISOString()}: the first is ${committed[0].backupId}. ${available(committed)}`,
      );
    }
    return found;
  }
  if (!wantedId) return committed.at(-1)!;
  const found = committed.find((c) => c.backupId === wantedId);
  if (!found) {
    throw new BackupStateError(
      `backup ${wantedId} is not a committed backup in ${store.url} (never taken, expired, or its run did not finish). ${available(committed)}`,
    );
  }
  return found;
}

function available(committed: readonly CatalogEntry[]): string {
  const shown = committed.slice(-10).map((c) => `${c.backupId} (${c.type})`);
  return `Available${committed.length > 10 ? ` (latest 10 of ${committed.length})` : ''}: ${shown.join(', ')}.`;
}
