import type { ObjectStore } from '../../store/types.js';
import { ManifestError } from '../errors.js';
import type { SyntheticReport } from '../synthetic/synthetic-full.js';
import { keysFor, parseManifestKey, VERIFY_STATUS_KEY } from './layout.js';
import { type BackupType, decodeManifest, type Manifest } from './manifest.js';

/** One archive object of a backup: its key, size and checksums (docs/ARCHITECTURE.md, Metadata). */
export interface ArchiveRecord {
  readonly key: string;
  readonly bytes: number;
  /**
   * sha256 of the whole archive. Absent only for a synthetic full assembled inside S3 (its bytes never
   * passed through the writer): its `crc64nvme` identifies it instead.
   */
  readonly sha256?: string;
  /** S3's full-object CRC64NVME of the archive (base64), when the store keeps one: quick verify compares it. */
  readonly crc64nvme?: string;
}

/** One part archive of a sharded backup (`<type>/backup_<id>.part-NNNN.tar.gz`). */
export interface PartRecord extends ArchiveRecord {
  /** 1-based, equal to the NNNN of its key. */
  readonly index: number;
  /** First manifest row of the part's range (inclusive). */
  readonly firstPath: string;
  /** Last manifest row of the part's range (inclusive). */
  readonly lastPath: string;
  /** Files whose bytes are stored in this part. */
  readonly files: number;
  /** Where the gzip member holding this part's manifest rows sits in the manifest object. */
  readonly manifestRange: { readonly offset: number; readonly length: number };
}

/** `.metadata.json`: everything `list` and `status` need without reading manifests (docs/ARCHITECTURE.md, Metadata). */
export interface BackupMetadata {
  readonly backupId: string;
  readonly type: BackupType;
  readonly baseBackupId: string | null;
  readonly createdAt: string;
  readonly finishedAt: string;
  /** The one archive of a single-archive backup; absent for a sharded backup (see `parts`). */
  readonly archive?: ArchiveRecord;
  /** The part archives of a sharded backup, sorted by index; absent for a single-archive backup. */
  readonly parts?: readonly PartRecord[];
  /** How a sharded backup was cut (its plan object stays under `staging/` until the lifecycle removes it). */
  readonly sharding?: { readonly shards: number; readonly planKey: string };
  readonly totals: { readonly files: number; readonly bytes: number };
  readonly changed: { readonly files: number; readonly bytes: number };
  readonly deleted: number;
  readonly skipped: readonly { readonly path: string; readonly reason: string }[];
  readonly compression: { readonly ratio: number; readonly level: number; readonly storedMembers: number };
  readonly durationMs: number;
  readonly source: { readonly path: string; readonly host?: string };
  readonly toolVersion: string;
  /** A synthetic full (built from ranges of earlier archives plus the changed files): what it did. */
  readonly synthetic?: SyntheticReport;
  /** Why this full was not synthetic, or why a synthetic attempt fell back to a normal full. */
  readonly syntheticSkipped?: string;
}

/**
 * The archive objects a backup's metadata records: its parts when sharded, else its one archive.
 * Every consumer that needs "the backup's archives" goes through this (empty only for metadata that
 * records neither, which no writer produces).
 */
export function archivesOf(metadata: BackupMetadata): readonly ArchiveRecord[] {
  if (metadata.parts && metadata.parts.length > 0) return metadata.parts;
  return metadata.archive ? [metadata.archive] : [];
}

/** The record of `key` in a backup's metadata (one of its parts, or its archive); undefined if it names no such archive. */
export function archiveRecordOf(metadata: BackupMetadata, key: string): ArchiveRecord | undefined {
  return archivesOf(metadata).find((a) => a.key === key);
}

/** Total stored bytes of a backup's archives (the sum of its parts when sharded). */
export function archiveBytesOf(metadata: BackupMetadata): number {
  return archivesOf(metadata).reduce((sum, a) => sum + a.bytes, 0);
}

const PART_KEY = /^(full|incremental)\/(backup_\d{8}_\d{6})\.part-(\d{4})\.tar\.gz$/;
const ARCHIVE_OBJECT_KEY = /^(full|incremental)\/(backup_\d{8}_\d{6})(?:\.part-(\d{4}))?\.tar\.gz$/;

/** Parses a part archive's key, e.g. `full/backup_20251227_020000.part-0003.tar.gz`. */
export function parsePartKey(key: string): { type: BackupType; backupId: string; index: number } | undefined {
  const m = PART_KEY.exec(key);
  return m ? { type: m[1] as BackupType, backupId: m[2], index: Number(m[3]) } : undefined;
}

/** The backup an archive key (single archive or part) belongs to; undefined for other keys. */
export function backupOfArchiveKey(key: string): { type: BackupType; backupId: string } | undefined {
  const m = ARCHIVE_OBJECT_KEY.exec(key);
  return m ? { type: m[1] as BackupType, backupId: m[2] } : undefined;
}

/**
 * A committed backup: its manifest exists.
 *
 * Archive keys: `archiveKey` is the single-archive key (`<type>/backup_<id>.tar.gz`), which does NOT
 * exist for a sharded backup; `partKeys` are the part archives the same listing showed. What exists
 * is not what the backup needs (a deleted part is simply absent from `partKeys`): completeness checks
 * compare against the metadata (`archivesOf`). Use {@link archiveKeysOf} for "the archives this backup
 * has in the store".
 */
export interface CatalogEntry {
  readonly backupId: string;
  readonly type: BackupType;
  /** `<type>/backup_<id>.tar.gz`: the backup's archive unless it is sharded. */
  readonly archiveKey: string;
  /**
   * Part archives of this backup in the listing the entry came from, sorted by index; empty (or
   * absent, in entries built by hand) for a single-archive backup.
   */
  readonly partKeys?: readonly string[];
  readonly metadataKey: string;
  readonly manifestKey: string;
  /** When the manifest (the commit) was written, per the store. */
  readonly committedAt: Date;
}

/** Whether the listing showed part archives for this backup (it is sharded). */
export function isShardedEntry(entry: CatalogEntry): boolean {
  return (entry.partKeys?.length ?? 0) > 0;
}

/**
 * The archive keys of a backup as its listing shows them: its parts when it is sharded, else its one
 * archive key (which may be missing from the store; callers check).
 */
export function archiveKeysOf(entry: CatalogEntry): readonly string[] {
  return isShardedEntry(entry) ? (entry.partKeys as readonly string[]) : [entry.archiveKey];
}

/**
 * The archive keys a backup needs, from its metadata when readable (the authority: every part, also
 * a deleted one), else from the listing ({@link archiveKeysOf}).
 */
export function expectedArchiveKeys(entry: CatalogEntry, metadata: BackupMetadata | undefined): string[] {
  const recorded = metadata ? archivesOf(metadata).map((a) => a.key) : [];
  return recorded.length > 0 ? recorded : [...archiveKeysOf(entry)];
}

/**
 * Committed backups in a store, oldest first. An archive without a manifest is an aborted run and is
 * never listed (docs/ARCHITECTURE.md, principle 3).
 */
export async function listCommittedBackups(store: ObjectStore): Promise<CatalogEntry[]> {
  const [full, incremental] = await Promise.all([store.list('full/'), store.list('incremental/')]);
  return committedBackupsIn([...full, ...incremental]);
}

/**
 * The committed backups a store listing shows (its manifests), oldest first, each with the part
 * archives of its id found in the same listing (`partKeys`).
 */
export function committedBackupsIn(objects: readonly { key: string; lastModified: Date }[]): CatalogEntry[] {
  const parts = new Map<string, string[]>();
  for (const object of objects) {
    const part = parsePartKey(object.key);
    if (!part) continue;
    const id = `${part.type}/${part.backupId}`;
    const list = parts.get(id) ?? [];
    list.push(object.key);
    parts.set(id, list);
  }
  const out: CatalogEntry[] = [];
  for (const object of objects) {
    const parsed = parseManifestKey(object.key);
    if (!parsed) continue;
    const keys = keysFor(parsed.type, parsed.backupId);
    out.push({
      backupId: parsed.backupId,
      type: parsed.type,
      archiveKey: keys.archive,
      // NNNN is zero-padded, so lexical order is index order.
      partKeys: (parts.get(`${parsed.type}/${parsed.backupId}`) ?? []).sort(),
      metadataKey: keys.metadata,
      manifestKey: keys.manifest,
      committedAt: object.lastModified,
    });
  }
  // Ids are UTC timestamps, so lexical order is time order.
  return out.sort((a, b) => (a.backupId < b.backupId ? -1 : a.backupId > b.backupId ? 1 : 0));
}

export async function readManifest(store: ObjectStore, entry: CatalogEntry): Promise<Manifest> {
  const data = await store.get(entry.manifestKey);
  if (!data) throw new ManifestError(`manifest ${entry.manifestKey} is missing from ${store.url}`);
  const manifest = await decodeManifest(data, `${entry.manifestKey} (backup ${entry.backupId})`);
  if (manifest.header.backupId !== entry.backupId) {
    throw new ManifestError(
      `manifest ${entry.manifestKey} names backup ${manifest.header.backupId}, not ${entry.backupId}`,
    );
  }
  return manifest;
}

/** Metadata of a committed backup; `undefined` if the sidecar is missing or unreadable. */
export async function readMetadata(
  store: ObjectStore,
  entry: CatalogEntry,
): Promise<BackupMetadata | undefined> {
  const data = await store.get(entry.metadataKey);
  if (!data) return undefined;
  try {
    return JSON.parse(data.toString('utf8')) as BackupMetadata;
  } catch {
    return undefined;
  }
}

/** Every distinct archive a manifest needs for a full restore. */
export function archivesReferenced(manifest: Manifest): string[] {
  const keys = new Set<string>();
  for (const entry of manifest.entries) if (entry.type === 'file') keys.add(entry.archive);
  return [...keys].sort();
}

/**
 * Backups that the latest verify of each found damaged (`status/last-verify.json`, written by
 * verify): backup id -> what was wrong. A check that could not read the store (`inconclusive`) says
 * nothing about the content and is not damage. Reads both shapes verify writes: `backups` entries
 * with `problems`, and `results` entries with `error`.
 */
export async function readVerifiedDamage(store: ObjectStore): Promise<Map<string, string>> {
  const damaged = new Map<string, string>();
  const raw = await store.get(VERIFY_STATUS_KEY);
  if (!raw) return damaged;
  let record: { backups?: unknown; results?: unknown };
  try {
    record = JSON.parse(raw.toString('utf8')) as typeof record;
  } catch {
    return damaged;
  }
  const entries = Array.isArray(record.backups)
    ? record.backups
    : Array.isArray(record.results)
      ? record.results
      : [];
  // Later entries for the same backup win: the latest verify of it decides.
  for (const e of entries as Record<string, unknown>[]) {
    if (!e || typeof e.backupId !== 'string') continue;
    if (e.ok !== false || e.inconclusive === true) {
      damaged.delete(e.backupId);
      continue;
    }
    const problems = Array.isArray(e.problems) ? (e.problems as unknown[]).map(String) : [];
    const why =
      problems.length > 0 ? problems.join('; ') : typeof e.error === 'string' ? e.error : 'no details';
    damaged.set(e.backupId, why);
  }
  return damaged;
}

/** How a chain check reads sizes and metadata (the store directly, or a listing already made). */
export interface ChainLookup {
  /** Stored size of an object; undefined when it does not exist. */
  size(key: string): Promise<number | undefined>;
  metadata(entry: CatalogEntry): Promise<BackupMetadata | undefined>;
}

/**
 * What can be checked cheaply before trusting a restore point (no archive is read): every archive its
 * manifest references, and its own (every part of a sharded backup, per its metadata), exists with
 * the size recorded in its backup's metadata, and no backup holding one of them was found damaged by
 * verify. One sentence per problem; empty = sound.
 */
export async function chainProblems(
  backup: CatalogEntry,
  manifest: Manifest,
  committed: readonly CatalogEntry[],
  lookup: ChainLookup,
  damaged: ReadonlyMap<string, string>,
): Promise<string[]> {
  return chainProblemsOfArchives(backup, archivesReferenced(manifest), committed, lookup, damaged);
}

/**
 * {@link chainProblems} from the archive keys a manifest references, for callers that streamed the
 * manifest (the sharded planner) instead of holding it.
 */
export async function chainProblemsOfArchives(
  backup: CatalogEntry,
  referenced: Iterable<string>,
  committed: readonly CatalogEntry[],
  lookup: ChainLookup,
  damaged: ReadonlyMap<string, string>,
): Promise<string[]> {
  const byId = new Map<string, CatalogEntry>();
  for (const entry of committed) byId.set(entry.backupId, entry);
  byId.set(backup.backupId, backup);
  const holderOf = (key: string): CatalogEntry | undefined => {
    const owner = backupOfArchiveKey(key);
    const holder = owner ? byId.get(owner.backupId) : undefined;
    return holder && holder.type === owner?.type ? holder : undefined;
  };
  const keys = new Set(referenced);
  for (const key of expectedArchiveKeys(backup, await lookup.metadata(backup))) keys.add(key);
  const problems: string[] = [];
  // Per holder, once: a sharded backup has many parts, and one sentence per part would bury the rest.
  const unsizable = new Map<CatalogEntry, string[]>();
  const damageReported = new Set<string>();
  for (const key of [...keys].sort()) {
    const holder = holderOf(key);
    const size = await lookup.size(key);
    if (size === undefined) {
      problems.push(`archive ${key} is missing`);
      continue;
    }
    const meta = holder ? await lookup.metadata(holder) : undefined;
    if (holder && !meta) {
      // Without the recorded size a truncated archive would pass unnoticed: do not trust it.
      unsizable.set(holder, [...(unsizable.get(holder) ?? []), key]);
    } else if (meta) {
      const record = archiveRecordOf(meta, key);
      if (!record) {
        problems.push(
          `archive ${key} is not recorded in the metadata of backup ${meta.backupId} (${holder?.metadataKey}), so its size cannot be checked`,
        );
      } else if (record.bytes !== size) {
        problems.push(`archive ${key} is ${size} bytes; its metadata recorded ${record.bytes}`);
      }
    }
    const verdict = holder ? damaged.get(holder.backupId) : undefined;
    if (holder && verdict !== undefined) {
      if (!damageReported.has(holder.backupId)) {
        problems.push(`verify found backup ${holder.backupId} damaged (${verdict})`);
        damageReported.add(holder.backupId);
      }
      continue;
    }
    // Verify records damage under the backup it checked, which may be another one whose chain reads
    // this archive (a deep check of an older incremental reading the full): its verdict names the key.
    for (const [backupId, why] of damaged) {
      if (why.includes(key)) {
        problems.push(`verify of backup ${backupId} found archive ${key} damaged (${why})`);
        break;
      }
    }
  }
  for (const [holder, unsized] of unsizable) {
    problems.push(
      `metadata of backup ${holder.backupId} (${holder.metadataKey}) is missing or unreadable, so the size of archive ${unsized.join(', ')} cannot be checked`,
    );
  }
  return problems;
}
