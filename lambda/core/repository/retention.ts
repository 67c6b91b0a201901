import type { ObjectStore } from '../../store/types.js';
import { errorMessage } from '../errors.js';
import {
  archivesReferenced,
  expectedArchiveKeys,
  listCommittedBackups,
  readManifest,
  readMetadata,
} from './catalog.js';
import { backupIdTime } from './layout.js';
import { type ClassifiedObject, listStoreObjects } from './usage.js';

const DAY_MS = 24 * 3_600_000;

export interface RetentionOptions {
  /** Every restore point younger than this stays restorable. @default 30 */
  readonly retentionDays?: number;
  /** An incremental chain reaches back at most this far to its full. @default 7 */
  readonly fullIntervalDays?: number;
  /** How far ahead `expiringSoon` looks. @default 7 */
  readonly horizonDays?: number;
}

export interface BackupRetention {
  readonly backupId: string;
  readonly type: 'full' | 'incremental';
  /** Its manifest exists (an uncommitted backup is an aborted run's leftovers). */
  readonly committed: boolean;
  readonly createdAt: string;
  readonly objects: number;
  readonly bytes: number;
  /** When the lifecycle removes the first of its objects. */
  readonly expiresAt: string;
  /** Days from now until `expiresAt`; 0 or less = due (the lifecycle runs once a day, asynchronously). */
  readonly daysLeft: number;
  /**
   * Until when a restore of this backup works: the earliest expiry among its own manifest and every
   * archive it references. Null for an uncommitted backup, or when its manifest could not be read.
   */
  readonly restorableUntil: string | null;
}

export interface RetentionReport {
  readonly store: string;
  readonly checkedAt: string;
  readonly retentionDays: number;
  readonly fullIntervalDays: number;
  /** Lifecycle expiration of `full/` and `incremental/` objects, in days after creation. */
  readonly expireAfterDays: number;
  /** Every backup (committed or not) with objects in the store, oldest first. */
  readonly backups: readonly BackupRetention[];
  /** Backups whose objects the lifecycle removes within `horizonDays`. */
  readonly expiringSoon: {
    readonly horizonDays: number;
    readonly backups: readonly string[];
    readonly bytes: number;
  };
  /** Objects outside full/ and incremental/ (status, locks): the lifecycle never removes them. */
  readonly kept: { readonly objects: number; readonly bytes: number };
}

/**
 * When S3 lifecycle expiration removes an object: creation + days, rounded up to the next midnight
 * UTC (that is how S3 counts expiration days).
 */
export function lifecycleExpiry(created: Date, days: number): Date {
  const t = created.getTime() + days * DAY_MS;
  return new Date(Math.floor(t / DAY_MS) * DAY_MS + DAY_MS);
}

/**
 * What the lifecycle will expire and when (the original scripts' cleanup simulation). Pure: objects
 * from a listing, `references` (backup id -> archive keys it needs: those its manifest names, and every
 * part of a sharded backup) when known. A sharded backup's objects (every part) are grouped under its id.
 */
export function retentionReport(
  storeUrl: string,
  objects: readonly ClassifiedObject[],
  now: Date,
  options: RetentionOptions = {},
  references: ReadonlyMap<string, readonly string[]> = new Map(),
): RetentionReport {
  const retentionDays = options.retentionDays ?? 30;
  const fullIntervalDays = options.fullIntervalDays ?? 7;
  const horizonDays = options.horizonDays ?? 7;
  const expireAfterDays = retentionDays + fullIntervalDays;

  const expiryOf = new Map<string, Date>();
  const groups = new Map<string, ClassifiedObject[]>();
  let keptObjects = 0;
  let keptBytes = 0;
  for (const object of objects) {
    if (object.backupId === undefined) {
      keptObjects += 1;
      keptBytes += object.size;
      continue;
    }
    expiryOf.set(object.key, lifecycleExpiry(object.lastModified, expireAfterDays));
    const group = groups.get(object.backupId) ?? [];
    group.push(object);
    groups.set(object.backupId, group);
  }

  const backups: BackupRetention[] = [];
  for (const [backupId, group] of [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const expiries = group.map((o) => expiryOf.get(o.key)?.getTime() ?? Number.POSITIVE_INFINITY);
    const expiresAt = new Date(minOf(expiries));
    const manifest = group.find((o) => o.category === 'manifests');
    let restorableUntil: Date | null = null;
    const refs = references.get(backupId);
    if (manifest && refs) {
      // A referenced archive that is already gone makes the backup unrestorable now.
      const needed = [manifest.key, ...refs].map((key) => expiryOf.get(key)?.getTime() ?? now.getTime());
      restorableUntil = new Date(minOf(needed));
    }
    backups.push({
      backupId,
      type: group[0].backupType ?? 'full',
      committed: manifest !== undefined,
      createdAt: backupIdTime(backupId).toISOString(),
      objects: group.length,
      bytes: group.reduce((sum, o) => sum + o.size, 0),
      expiresAt: expiresAt.toISOString(),
      daysLeft: Number(((expiresAt.getTime() - now.getTime()) / DAY_MS).toFixed(2)),
      restorableUntil: restorableUntil?.toISOString() ?? null,
    });
  }
  const soon = backups.filter((b) => b.daysLeft <= horizonDays);
  return {
    store: storeUrl,
    checkedAt: now.toISOString(),
    retentionDays,
    fullIntervalDays,
    expireAfterDays,
    backups,
    expiringSoon: {
      horizonDays,
      backups: soon.map((b) => b.backupId),
      bytes: soon.reduce((sum, b) => sum + b.bytes, 0),
    },
    kept: { objects: keptObjects, bytes: keptBytes },
  };
}

/** The smallest number; a loop, not Math.min(...values), which overflows the stack on large arrays. */
function minOf(values: readonly number[]): number {
  let min = Number.POSITIVE_INFINITY;
  for (const v of values) if (v < min) min = v;
  return min;
}

/** Lists the store, reads every committed manifest for its references, and reports retention. */
export async function readRetention(
  deps: { store: ObjectStore; logger?: { warn(message: string, ...extra: Record<string, unknown>[]): void } },
  now: Date,
  options: RetentionOptions = {},
): Promise<RetentionReport> {
  const { store } = deps;
  const [objects, committed] = await Promise.all([listStoreObjects(store), listCommittedBackups(store)]);
  const references = new Map<string, readonly string[]>();
  for (const entry of committed) {
    try {
      const referenced = archivesReferenced(await readManifest(store, entry));
      // A sharded backup needs every one of its parts (per its metadata), also those holding only
      // folders, which no file row names.
      const metadata = (entry.partKeys?.length ?? 0) > 0 ? await readMetadata(store, entry) : undefined;
      const own = metadata?.parts ? expectedArchiveKeys(entry, metadata) : [];
      references.set(entry.backupId, [...new Set([...referenced, ...own])].sort());
    } catch (error) {
      deps.logger?.warn('manifest unreadable; restorableUntil unknown', {
        backupId: entry.backupId,
        error: errorMessage(error),
      });
    }
  }
  return retentionReport(store.url, objects, now, options, references);
}
