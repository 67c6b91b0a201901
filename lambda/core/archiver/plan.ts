import type { CatalogEntry } from '../repository/catalog.js';
import { backupIdTime } from '../repository/layout.js';
import {
  type BackupType,
  type ByteRange,
  comparePaths,
  type DirEntry,
  type FileEntry,
  type Manifest,
  type ManifestEntry,
  type SymlinkEntry,
} from '../repository/manifest.js';
import type { ScannedEntry, ScannedFile } from './scan.js';

export type RequestedType = BackupType | 'auto';

export interface TypeDecision {
  readonly type: BackupType;
  /** The committed backup an incremental builds on. */
  readonly base?: CatalogEntry;
  /** Why, in words an operator reads in logs and results. */
  readonly reason: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * `auto` (the daily default) takes a full when no committed full is younger than `fullIntervalDays`,
 * otherwise an incremental against the latest committed backup. Whether the chain can actually be
 * read is checked afterwards by the caller, which falls back to a full.
 */
export function chooseBackupType(
  requested: RequestedType,
  committed: readonly CatalogEntry[],
  now: Date,
  fullIntervalDays: number,
): TypeDecision {
  const latest = committed.at(-1);
  if (requested === 'full') return { type: 'full', reason: 'full backup requested' };
  if (requested === 'incremental') {
    return latest
      ? { type: 'incremental', base: latest, reason: `incremental requested, based on ${latest.backupId}` }
      : { type: 'full', reason: 'no committed backup to base an incremental on' };
  }
  const latestFull = committed.filter((e) => e.type === 'full').at(-1);
  if (!latestFull || !latest) return { type: 'full', reason: 'no committed full backup yet' };
  const ageMs = now.getTime() - backupIdTime(latestFull.backupId).getTime();
  if (ageMs >= fullIntervalDays * DAY_MS) {
    return {
      type: 'full',
      reason: `latest full ${latestFull.backupId} is ${(ageMs / DAY_MS).toFixed(1)} days old (full interval ${fullIntervalDays} days)`,
    };
  }
  return { type: 'incremental', base: latest, reason: `incremental on ${latest.backupId}` };
}

export interface BackupPlan {
  /** New or changed files: their bytes go into this backup's archive. */
  readonly toArchive: ScannedFile[];
  /** Unchanged files, carried over from the base manifest (bytes stay in the earlier archive). */
  readonly unchanged: Map<string, FileEntry>;
  /** Files in the base that are gone now. */
  readonly deleted: string[];
}

/**
 * What goes into this backup's archive, in path order: every folder and symlink (they are tiny, so
 * full + incrementals extracted with plain tar also recreate empty folders and links) and the files
 * to archive. Built without `push(...array)`: spreading 200,000 entries as call arguments overflowed
 * the stack ("Maximum call stack size exceeded", issue 10 item 0).
 */
export function entriesToPack(
  scanned: readonly ScannedEntry[],
  toArchive: readonly ScannedFile[],
): ScannedEntry[] {
  const out: ScannedEntry[] = scanned.filter((e) => e.type !== 'file');
  for (const file of toArchive) out.push(file);
  return out.sort((a, b) => comparePaths(a.path, b.path));
}

/**
 * A carried-over file whose mode changed: the new mode is recorded, and its byte range dropped, since
 * the tar header in that range holds the old mode (a synthetic full must not copy it; it reads the
 * file again instead).
 */
export function withNewMode(old: FileEntry, mode: number): FileEntry {
  const { range: _stale, ...rest } = old;
  return { ...rest, mode };
}

/**
 * Compares the scan with the base manifest. A file is unchanged when size and mtime match (the hash
 * comes from the earlier read, never a second one); a mode-only change is recorded without
 * re-archiving (withNewMode). A rename is a delete plus an add.
 */
export function diffManifests(
  current: readonly ScannedEntry[],
  base: Manifest | undefined,
  options: { rehashAll?: boolean } = {},
): BackupPlan {
  const previous = new Map<string, FileEntry>();
  if (base) for (const e of base.entries) if (e.type === 'file') previous.set(e.path, e);
  const toArchive: ScannedFile[] = [];
  const unchanged = new Map<string, FileEntry>();
  const present = new Set<string>();
  for (const entry of current) {
    if (entry.type !== 'file') continue;
    present.add(entry.path);
    const old = previous.get(entry.path);
    if (!options.rehashAll && old && old.size === entry.size && old.mtimeMs === entry.mtimeMs) {
      unchanged.set(entry.path, old.mode === entry.mode ? old : withNewMode(old, entry.mode));
    } else {
      toArchive.push(entry);
    }
  }
  const deleted = [...previous.keys()].filter((p) => !present.has(p));
  return { toArchive, unchanged, deleted };
}

/**
 * A folder or link entry of a manifest with its location: where an identical tar entry sits. Taken
 * from the base backup's entry when that one is identical (same mode and mtime; same target and
 * mtime), so it points into the same archive as its unchanged neighbours and a synthetic full can copy
 * them as one run; otherwise this archive's own entry (`own`), when there is one.
 */
export function locateFolderOrLink<E extends DirEntry | SymlinkEntry>(
  entry: E,
  base: ManifestEntry | undefined,
  own: { readonly archive: string; readonly range: ByteRange | undefined },
): E {
  if (base?.type === entry.type && base.archive !== undefined && base.range !== undefined) {
    const same =
      entry.type === 'dir'
        ? (base as DirEntry).mode === entry.mode && base.mtimeMs === entry.mtimeMs
        : (base as SymlinkEntry).target === entry.target && base.mtimeMs === entry.mtimeMs;
    if (same) return { ...entry, archive: base.archive, range: base.range };
  }
  return own.range ? { ...entry, archive: own.archive, range: own.range } : entry;
}
