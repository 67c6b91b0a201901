import type { ObjectStore } from '../../store/types.js';
import { ManifestError } from '../errors.js';
import { keysFor, parseManifestKey, VERIFY_STATUS_KEY } from './layout.js';
import { type BackupType, decodeManifest, type Manifest } from './manifest.js';

/** `.metadata.json`: everything `list` and `status` need without reading manifests (docs/ARCHITECTURE.md, Metadata). */
export interface BackupMetadata {
  readonly backupId: string;
  readonly type: BackupType;
  readonly baseBackupId: string | null;
  readonly createdAt: string;
  readonly finishedAt: string;
  readonly archive: {
    readonly key: string;
    readonly bytes: number;
    readonly sha256: string;
    /** S3's full-object CRC64NVME of the archive (base64), when the store keeps one: quick verify compares it. */
    readonly crc64nvme?: string;
  };
  readonly totals: { readonly files: number; readonly bytes: number };
  readonly changed: { readonly files: number; readonly bytes: number };
  readonly deleted: number;
  readonly skipped: readonly { readonly path: string; readonly reason: string }[];
  readonly compression: { readonly ratio: number; readonly level: number; readonly storedMembers: number };
  readonly durationMs: number;
  readonly source: { readonly path: string; readonly host?: string };
  readonly toolVersion: string;
}

/** A committed backup: its manifest exists. */
export interface CatalogEntry {
  readonly backupId: string;
  readonly type: BackupType;
  readonly archiveKey: string;
  readonly metadataKey: string;
  readonly manifestKey: string;
  /** When the manifest (the commit) was written, per the store. */
  readonly committedAt: Date;
}

/**
 * Committed backups in a store, oldest first. An archive without a manifest is an aborted run and is
 * never listed (docs/ARCHITECTURE.md, principle 3).
 */
export async function listCommittedBackups(store: ObjectStore): Promise<CatalogEntry[]> {
  const [full, incremental] = await Promise.all([store.list('full/'), store.list('incremental/')]);
  return committedBackupsIn([...full, ...incremental]);
}

/** The committed backups a store listing shows (its manifests), oldest first. */
export function committedBackupsIn(objects: readonly { key: string; lastModified: Date }[]): CatalogEntry[] {
  const out: CatalogEntry[] = [];
  for (const object of objects) {
    const parsed = parseManifestKey(object.key);
    if (!parsed) continue;
    const keys = keysFor(parsed.type, parsed.backupId);
    out.push({
      backupId: parsed.backupId,
      type: parsed.type,
      archiveKey: keys.archive,
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
 * manifest references, and its own, exists with the size recorded in its backup's metadata, and no
 * backup holding one of them was found damaged by verify. One sentence per problem; empty = sound.
 */
export async function chainProblems(
  backup: CatalogEntry,
  manifest: Manifest,
  committed: readonly CatalogEntry[],
  lookup: ChainLookup,
  damaged: ReadonlyMap<string, string>,
): Promise<string[]> {
  const holders = new Map<string, CatalogEntry>();
  for (const entry of committed) holders.set(entry.archiveKey, entry);
  const keys = new Set(archivesReferenced(manifest));
  keys.add(backup.archiveKey);
  const problems: string[] = [];
  for (const key of [...keys].sort()) {
    const holder = holders.get(key);
    const size = await lookup.size(key);
    if (size === undefined) {
      problems.push(`archive ${key} is missing`);
      continue;
    }
    const meta = holder ? await lookup.metadata(holder) : undefined;
    if (holder && !meta) {
      // Without the recorded size a truncated archive would pass unnoticed: do not trust it.
      problems.push(
        `metadata of backup ${holder.backupId} (${holder.metadataKey}) is missing or unreadable, so the size of archive ${key} cannot be checked`,
      );
    } else if (meta && meta.archive.bytes !== size) {
      problems.push(`archive ${key} is ${size} bytes; its metadata recorded ${meta.archive.bytes}`);
    }
    const verdict = holder ? damaged.get(holder.backupId) : undefined;
    if (holder && verdict !== undefined) {
      problems.push(`verify found backup ${holder.backupId} damaged (${verdict})`);
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
  return problems;
}
