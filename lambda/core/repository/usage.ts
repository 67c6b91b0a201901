import type { ObjectStore, StoredObject } from '../../store/types.js';

/** What an object in a store is, by its key (docs/ARCHITECTURE.md, Object layout). */
export type ObjectCategory = 'full' | 'incremental' | 'metadata' | 'manifests' | 'status' | 'other';

export const OBJECT_CATEGORIES: readonly ObjectCategory[] = [
  'full',
  'incremental',
  'metadata',
  'manifests',
  'status',
  'other',
];

export interface ClassifiedObject extends StoredObject {
  readonly category: ObjectCategory;
  /** The backup the object belongs to (archives, parts, metadata, manifests); undefined otherwise. */
  readonly backupId: string | undefined;
  /** `full` or `incremental` for backup objects. */
  readonly backupType: 'full' | 'incremental' | undefined;
}

// `.part-0001` comes before `.tar.gz` in sharded backups.
const BACKUP_OBJECT =
  /^(full|incremental)\/(backup_\d{8}_\d{6})((?:\.part-\d+)?\.tar\.gz|\.tar\.gz\.metadata\.json|\.manifest\.jsonl\.gz)$/;

export function classifyObject(object: StoredObject): ClassifiedObject {
  const m = BACKUP_OBJECT.exec(object.key);
  if (m) {
    const type = m[1] as 'full' | 'incremental';
    const suffix = m[3];
    const category: ObjectCategory = suffix.endsWith('.metadata.json')
      ? 'metadata'
      : suffix.endsWith('.manifest.jsonl.gz')
        ? 'manifests'
        : type;
    return { ...object, category, backupId: m[2], backupType: type };
  }
  const category: ObjectCategory = object.key.startsWith('status/') ? 'status' : 'other';
  return { ...object, category, backupId: undefined, backupType: undefined };
}

/** Every object in the store, classified. One listing per top-level prefix the layout uses. */
export async function listStoreObjects(store: ObjectStore): Promise<ClassifiedObject[]> {
  const listed = await Promise.all(['full/', 'incremental/', 'status/', 'locks/'].map((p) => store.list(p)));
  return listed.flat().map(classifyObject);
}

export interface UsageBucket {
  readonly objects: number;
  readonly bytes: number;
}

export interface UsageReport {
  readonly store: string;
  readonly checkedAt: string;
  readonly total: UsageBucket;
  readonly byType: Readonly<Record<ObjectCategory, UsageBucket>>;
  /** By month the object was written (UTC, `YYYY-MM`), oldest first. */
  readonly byMonth: readonly {
    readonly month: string;
    readonly total: UsageBucket;
    readonly byType: Readonly<Record<ObjectCategory, UsageBucket>>;
  }[];
  /**
   * Bytes written in the 7 days before `checkedAt`. The lifecycle removes old objects continuously, so
   * this is the weekly intake, not the net change of the store's size.
   */
  readonly lastWeek: UsageBucket;
}

const WEEK_MS = 7 * 24 * 3_600_000;

function emptyByType(): Record<ObjectCategory, { objects: number; bytes: number }> {
  return Object.fromEntries(OBJECT_CATEGORIES.map((c) => [c, { objects: 0, bytes: 0 }])) as Record<
    ObjectCategory,
    { objects: number; bytes: number }
  >;
}

/** Store bytes by type and by month (the original scripts' disk-usage report). Pure. */
export function usageReport(storeUrl: string, objects: readonly ClassifiedObject[], now: Date): UsageReport {
  const total = { objects: 0, bytes: 0 };
  const byType = emptyByType();
  const lastWeek = { objects: 0, bytes: 0 };
  const months = new Map<
    string,
    { total: { objects: number; bytes: number }; byType: ReturnType<typeof emptyByType> }
  >();
  for (const object of objects) {
    const add = (bucket: { objects: number; bytes: number }) => {
      bucket.objects += 1;
      bucket.bytes += object.size;
    };
    add(total);
    add(byType[object.category]);
    const month = object.lastModified.toISOString().slice(0, 7);
    let entry = months.get(month);
    if (!entry) {
      entry = { total: { objects: 0, bytes: 0 }, byType: emptyByType() };
      months.set(month, entry);
    }
    add(entry.total);
    add(entry.byType[object.category]);
    const age = now.getTime() - object.lastModified.getTime();
    if (age >= 0 && age < WEEK_MS) add(lastWeek);
  }
  return {
    store: storeUrl,
    checkedAt: now.toISOString(),
    total,
    byType,
    byMonth: [...months.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([month, entry]) => ({ month, ...entry })),
    lastWeek,
  };
}

/** Lists the store and reports its usage. */
export async function readUsage(store: ObjectStore, now: Date): Promise<UsageReport> {
  return usageReport(store.url, await listStoreObjects(store), now);
}
