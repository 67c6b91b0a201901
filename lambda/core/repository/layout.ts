import type { BackupType } from './manifest.js';

/** Object layout in a store (docs/ARCHITECTURE.md, Object layout). */

const BACKUP_ID = /^backup_(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})$/;

export const STATUS_KEY = 'status/last-run.json';
export const BACKUP_LOCK = 'backup';
/**
 * Written by verify after each run: `{ checkedAt, results: [{ backupId, ok, error? }] }`. A backup whose
 * latest result is `ok: false` is damaged: `auto` never builds an incremental on a chain containing it
 * and health is critical while the latest restore point depends on it.
 */
export const VERIFY_STATUS_KEY = 'status/last-verify.json';

export function backupIdFor(date: Date): string {
  const iso = date.toISOString(); // 2025-12-27T02:00:00.000Z, always UTC
  return `backup_${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}_${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
}

export function isBackupId(id: string): boolean {
  return BACKUP_ID.test(id);
}

/** The UTC instant a backup id names. */
export function backupIdTime(id: string): Date {
  const m = BACKUP_ID.exec(id);
  if (!m) throw new Error(`not a backup id: ${id}`);
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
}

export interface BackupKeys {
  readonly archive: string;
  readonly metadata: string;
  readonly manifest: string;
}

export function keysFor(type: BackupType, backupId: string): BackupKeys {
  const base = `${type}/${backupId}`;
  return {
    archive: `${base}.tar.gz`,
    metadata: `${base}.tar.gz.metadata.json`,
    manifest: `${base}.manifest.jsonl.gz`,
  };
}

/** Parses a committed backup's manifest key, e.g. `incremental/backup_20251228_020000.manifest.jsonl.gz`. */
export function parseManifestKey(key: string): { type: BackupType; backupId: string } | undefined {
  const m = /^(full|incremental)\/(backup_\d{8}_\d{6})\.manifest\.jsonl\.gz$/.exec(key);
  return m ? { type: m[1] as BackupType, backupId: m[2] } : undefined;
}
