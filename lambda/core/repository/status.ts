import type { ObjectStore } from '../../store/types.js';
import {
  archiveBytesOf,
  type BackupMetadata,
  type CatalogEntry,
  expectedArchiveKeys,
  listCommittedBackups,
  readMetadata,
} from './catalog.js';
import { backupIdTime, STATUS_KEY } from './layout.js';

/** One committed backup as `list` shows it. */
export interface BackupListing {
  readonly backupId: string;
  readonly type: 'full' | 'incremental';
  readonly createdAt: string;
  readonly baseBackupId: string | null;
  /** `<type>/backup_<id>.tar.gz`; a sharded backup has none (see `archiveKeys`). */
  readonly archiveKey: string;
  /** Its archive objects: the parts of a sharded backup (per its metadata, else the listing), else `archiveKey`. */
  readonly archiveKeys?: readonly string[];
  /** Part archives of a sharded backup; 0 for a single-archive backup. */
  readonly parts?: number;
  /** From the metadata sidecar (the sum of the parts when sharded); null when the sidecar is missing or unreadable. */
  readonly archiveBytes: number | null;
  readonly files: number | null;
  readonly bytes: number | null;
  readonly changedFiles: number | null;
  readonly skipped: number | null;
}

/** Committed backups, oldest first, with what their metadata says. */
export async function listBackups(store: ObjectStore): Promise<BackupListing[]> {
  const committed = await listCommittedBackups(store);
  return Promise.all(committed.map(async (entry) => toListing(entry, await readMetadata(store, entry))));
}

function toListing(entry: CatalogEntry, metadata: BackupMetadata | undefined): BackupListing {
  return {
    backupId: entry.backupId,
    type: entry.type,
    createdAt: metadata?.createdAt ?? backupIdTime(entry.backupId).toISOString(),
    baseBackupId: metadata?.baseBackupId ?? null,
    archiveKey: entry.archiveKey,
    archiveKeys: expectedArchiveKeys(entry, metadata),
    parts: metadata?.parts?.length ?? entry.partKeys?.length ?? 0,
    archiveBytes: metadata ? archiveBytesOf(metadata) : null,
    files: metadata?.totals.files ?? null,
    bytes: metadata?.totals.bytes ?? null,
    changedFiles: metadata?.changed.files ?? null,
    skipped: metadata?.skipped.length ?? null,
  };
}

export interface LastRun {
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly backupId?: string;
  readonly type?: string;
  readonly error?: { readonly name: string; readonly message: string };
  readonly [key: string]: unknown;
}

export interface StoreStatus {
  readonly store: string;
  /** status/last-run.json; null when no run was recorded (or it is unreadable). */
  readonly lastRun: LastRun | null;
  readonly latestBackup: BackupListing | null;
  readonly committedBackups: number;
  /** Hours since the latest committed backup was taken; null when there is none. */
  readonly hoursSinceLastBackup: number | null;
  /** `ok` only when the last run succeeded and a committed backup exists. */
  readonly healthy: boolean;
}

export async function readStoreStatus(store: ObjectStore, now: Date): Promise<StoreStatus> {
  const [raw, backups] = await Promise.all([store.get(STATUS_KEY), listBackups(store)]);
  let lastRun: LastRun | null = null;
  if (raw) {
    try {
      lastRun = JSON.parse(raw.toString('utf8')) as LastRun;
    } catch {
      lastRun = null;
    }
  }
  const latest = backups.at(-1) ?? null;
  const hours = latest ? (now.getTime() - backupIdTime(latest.backupId).getTime()) / 3_600_000 : null;
  return {
    store: store.url,
    lastRun,
    latestBackup: latest,
    committedBackups: backups.length,
    hoursSinceLastBackup: hours === null ? null : Number(hours.toFixed(2)),
    healthy: latest !== null && lastRun?.status === 'SUCCEEDED',
  };
}
