import type { ObjectStore } from '../store/types.js';
import { ManifestError } from './errors.js';
import { keysFor, parseManifestKey } from './layout.js';
import { type BackupType, decodeManifest, type Manifest } from './manifest.js';

/** `.metadata.json`: everything `list` and `status` need without reading manifests (DESIGN.md 4). */
export interface BackupMetadata {
  readonly backupId: string;
  readonly type: BackupType;
  readonly baseBackupId: string | null;
  readonly createdAt: string;
  readonly finishedAt: string;
  readonly archive: { readonly key: string; readonly bytes: number; readonly sha256: string };
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
 * never listed (DESIGN.md principle 3).
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
