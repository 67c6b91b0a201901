import { promisify } from 'node:util';
import { gunzip as gunzipCb, gzip as gzipCb } from 'node:zlib';
import { ManifestError, UnsafePathError } from '../errors.js';

const gzip = promisify(gzipCb);
const gunzip = promisify(gunzipCb);

export const MANIFEST_FORMAT = 'media-backup/manifest';
export const MANIFEST_VERSION = 1;

export type BackupType = 'full' | 'incremental';

/**
 * Where an entry's bytes lie in its archive object: the gzip members that hold exactly its tar
 * record(s) (long-name records, PAX header, header, data, padding). Those bytes gunzip on their own.
 */
export interface ByteRange {
  /** Offset of the first member in the archive object's (gzip) bytes. */
  readonly offset: number;
  /** Total bytes of the entry's members. */
  readonly length: number;
  /** CRC64NVME of exactly those bytes: base64 of the 8-byte big-endian value, as S3 writes it. */
  readonly crc64nvme: string;
}

export interface FileEntry {
  readonly path: string;
  readonly type: 'file';
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
  readonly sha256: string;
  /** Store key of the archive that holds this file's bytes. */
  readonly archive: string;
  /** The file's members in `archive`; absent in manifests written before ranges were recorded. */
  readonly range?: ByteRange;
}

export interface SymlinkEntry {
  readonly path: string;
  readonly type: 'symlink';
  readonly target: string;
  /**
   * Where an identical tar entry of this link (same target and mtime) sits: an archive of this
   * backup's chain and its byte range. A synthetic full copies it; absent in older manifests.
   */
  readonly archive?: string;
  readonly range?: ByteRange;
  /** The link's own mtime (lstat); absent in manifests written before it was recorded. */
  readonly mtimeMs?: number;
}

export interface DirEntry {
  readonly path: string;
  readonly type: 'dir';
  readonly mode: number;
  readonly mtimeMs?: number;
  /** As for a link: where an identical tar entry of this folder (same mode and mtime) sits. */
  readonly archive?: string;
  readonly range?: ByteRange;
}

export type ManifestEntry = FileEntry | SymlinkEntry | DirEntry;

export interface ManifestHeader {
  readonly format: typeof MANIFEST_FORMAT;
  readonly version: typeof MANIFEST_VERSION;
  readonly backupId: string;
  readonly type: BackupType;
  readonly createdAt: string;
  readonly baseBackupId: string | null;
  readonly source: { readonly path: string; readonly host?: string };
  /** The source folder's own mode and mtime; absent in manifests written before it was recorded. */
  readonly root?: { readonly mode: number; readonly mtimeMs: number };
  readonly totals: { readonly files: number; readonly bytes: number };
}

/**
 * Paths are the file names' bytes as strings: UTF-8, except that a byte which is not part of valid
 * UTF-8 (a Latin-1 name) is the lone surrogate U+DC80..U+DCFF (PEP 383's surrogateescape, written by
 * JSON.stringify as `\udce9`); valid UTF-8 names are stored exactly as before. See fs-names.ts.
 */
export interface Manifest {
  readonly header: ManifestHeader;
  /** Sorted by path (code unit order), unique. */
  readonly entries: readonly ManifestEntry[];
}

/**
 * A relative POSIX path that cannot escape its root: no `..`, no leading `/`, no NUL, no empty or `.`
 * segments. Every path from a scan, a manifest or an archive passes through here.
 */
export function assertSafeRelativePath(p: unknown, where: string): asserts p is string {
  if (typeof p !== 'string' || p.length === 0) {
    throw new UnsafePathError(`${where}: path must be a non-empty string (got ${JSON.stringify(p)})`);
  }
  if (p.includes('\0')) throw new UnsafePathError(`${where}: path ${JSON.stringify(p)} contains a NUL byte`);
  if (p.startsWith('/')) throw new UnsafePathError(`${where}: path ${JSON.stringify(p)} is absolute`);
  for (const segment of p.split('/')) {
    if (segment === '..') throw new UnsafePathError(`${where}: path ${JSON.stringify(p)} contains '..'`);
    if (segment === '' || segment === '.') {
      throw new UnsafePathError(`${where}: path ${JSON.stringify(p)} has an empty or '.' segment`);
    }
  }
}

export function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function totalsOf(entries: readonly ManifestEntry[]): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const e of entries) {
    if (e.type === 'file') {
      files += 1;
      bytes += e.size;
    }
  }
  return { files, bytes };
}

export async function encodeManifest(manifest: Manifest): Promise<Buffer> {
  const lines = [JSON.stringify(manifest.header)];
  for (const entry of manifest.entries) lines.push(JSON.stringify(entry));
  // Level 1: a 20k-file manifest gzips in a third of the time for ~10% more bytes, on every backup.
  return gzip(Buffer.from(`${lines.join('\n')}\n`, 'utf8'), { level: 1 });
}

/** Parses and validates a `.manifest.jsonl.gz`; `label` names it in errors (e.g. the store key). */
export async function decodeManifest(data: Buffer, label: string): Promise<Manifest> {
  let text: string;
  try {
    text = (await gunzip(data)).toString('utf8');
  } catch (error) {
    throw new ManifestError(`manifest ${label} is not a valid gzip file (${(error as Error).message})`, {
      cause: error,
    });
  }
  const lines = text.split('\n').filter((line) => line.length > 0);
  if (lines.length === 0) throw new ManifestError(`manifest ${label} is empty`);
  const header = validateHeader(parseLine(lines[0], label, 1), label);
  const entries: ManifestEntry[] = [];
  let previous: string | undefined;
  const notFolders = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const where = `manifest ${label} line ${i + 1}`;
    const entry = validateEntry(parseLine(lines[i], label, i + 1), where, header.backupId);
    if (previous !== undefined && comparePaths(previous, entry.path) >= 0) {
      throw new ManifestError(`${where}: path ${JSON.stringify(entry.path)} is out of order or duplicated`);
    }
    assertNotBelowNonFolder(entry.path, notFolders, where);
    if (entry.type !== 'dir') notFolders.set(entry.path, entry.type);
    previous = entry.path;
    entries.push(entry);
  }
  assertTotalsMatch(header, totalsOf(entries), label);
  return { header, entries };
}

/** Checks a manifest's first line (format, version, backupId, type, root); shared with manifest-stream.ts. */
export function validateHeader(raw: Record<string, unknown>, label: string): ManifestHeader {
  const header = raw as unknown as ManifestHeader;
  if (header.format !== MANIFEST_FORMAT || header.version !== MANIFEST_VERSION) {
    throw new ManifestError(
      `manifest ${label} has format ${JSON.stringify(header.format)} version ${JSON.stringify(header.version)}; expected ${MANIFEST_FORMAT} version ${MANIFEST_VERSION}`,
    );
  }
  if (typeof header.backupId !== 'string' || (header.type !== 'full' && header.type !== 'incremental')) {
    throw new ManifestError(`manifest ${label} header lacks a valid backupId or type`);
  }
  if (header.root !== undefined && (!isMode(header.root?.mode) || !isTime(header.root?.mtimeMs))) {
    throw new ManifestError(
      `manifest ${label} line 1: manifest field invalid in backup ${header.backupId}: header \`root\` = ${JSON.stringify(header.root)}, expected { mode: 0..0o7777, mtimeMs: a finite time }. The manifest is damaged or was altered (the archive itself may be fine).`,
    );
  }
  return header;
}

/** The header's totals must equal the entries' (computed as `totalsOf` does); shared with manifest-stream.ts. */
export function assertTotalsMatch(
  header: ManifestHeader,
  totals: { readonly files: number; readonly bytes: number },
  label: string,
): void {
  if (header.totals?.files !== totals.files || header.totals?.bytes !== totals.bytes) {
    throw new ManifestError(
      `manifest ${label} header totals (${header.totals?.files} files, ${header.totals?.bytes} bytes) do not match its entries (${totals.files} files, ${totals.bytes} bytes)`,
    );
  }
}

/**
 * A scan never follows links, so nothing it records can lie below a symlink or a file. An entry that
 * does would make a restore write through the link, out of the target: reject it.
 */
export function assertNotBelowNonFolder(
  p: string,
  notFolders: ReadonlyMap<string, string>,
  where: string,
): void {
  for (let at = p.indexOf('/'); at > 0; at = p.indexOf('/', at + 1)) {
    const kind = notFolders.get(p.slice(0, at));
    if (kind) {
      throw new UnsafePathError(
        `${where}: path ${JSON.stringify(p)} lies below ${JSON.stringify(p.slice(0, at))}, which is a ${kind}, not a folder`,
      );
    }
  }
}

/** Archive keys a manifest may reference: this layout's archives only, never an arbitrary key. */
const ARCHIVE_KEY = /^(full|incremental)\/backup_\d{8}_\d{6}(\.part-\d{4})?\.tar\.gz$/;

export function parseLine(line: string, label: string, lineNo: number): Record<string, unknown> {
  try {
    const value = JSON.parse(line) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through to the error below
  }
  throw new ManifestError(`manifest ${label} line ${lineNo} is not a JSON object`);
}

/** Permission bits a scan records (`st_mode & 0o7777`): anything else is not a mode we wrote. */
const MAX_MODE = 0o7777;
/** The JavaScript Date range (±100,000,000 days from 1970): any real file time fits. */
const MAX_TIME_MS = 8.64e15;

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
/** Base64 of 8 bytes: 12 characters, the 11th using only the 4 bits left, then one '='. */
const CRC64NVME_BASE64 = /^[A-Za-z0-9+/]{10}[AEIMQUYcgkosw048]=$/;
const isByteRange = (v: unknown): v is ByteRange => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const r = v as Record<string, unknown>;
  return (
    isCount(r.offset) &&
    isCount(r.length) &&
    (r.length as number) > 0 &&
    Number.isSafeInteger((r.offset as number) + (r.length as number)) &&
    typeof r.crc64nvme === 'string' &&
    CRC64NVME_BASE64.test(r.crc64nvme)
  );
};
const isMode = (v: unknown): v is number => isCount(v) && v <= MAX_MODE;
const isTime = (v: unknown): v is number =>
  typeof v === 'number' && Number.isFinite(v) && Math.abs(v) <= MAX_TIME_MS;

/**
 * Checks one entry field by field, so a bad value is reported as the manifest's fault (naming the
 * backup, the path and the field) before a restore passes it to chmod/utimes, whose errors would
 * otherwise look like a damaged archive.
 */
export function validateEntry(raw: Record<string, unknown>, where: string, backupId: string): ManifestEntry {
  assertSafeRelativePath(raw.path, where);
  const invalid = (field: string, expected: string) =>
    new ManifestError(
      `${where}: manifest field invalid${where.includes(backupId) ? '' : ` in backup ${backupId}`}: ${String(raw.type)} ${JSON.stringify(raw.path)} has \`${field}\` = ${JSON.stringify(raw[field]) ?? 'missing'}, expected ${expected}. The manifest is damaged or was altered (the archive itself may be fine): restore another backup, or extract this backup's archive with GNU tar.`,
    );
  const check = (field: string, ok: (v: unknown) => boolean, expected: string, optional = false) => {
    if (optional && raw[field] === undefined) return;
    if (!ok(raw[field])) throw invalid(field, expected);
  };
  /**
   * `archive` (a key of this layout) and the optional `range`; a folder or link records both or
   * neither (`optional`), a file always names its archive.
   */
  const checkLocation = (optional: boolean) => {
    if (optional && raw.archive === undefined) {
      if (raw.range !== undefined) throw invalid('archive', 'an archive key alongside `range`');
      return;
    }
    check(
      'range',
      isByteRange,
      "{ offset, length, crc64nvme }: offset a non-negative integer, length a positive integer (offset + length a safe integer), crc64nvme the base64 of 8 bytes (12 characters ending in '=')",
      true,
    );
    if (typeof raw.archive !== 'string' || !ARCHIVE_KEY.test(raw.archive)) {
      throw new UnsafePathError(
        `${where}: ${raw.type === 'file' ? 'file' : String(raw.type)} entry ${JSON.stringify(raw.path)} names archive ${JSON.stringify(raw.archive)}, which is not a media-backup archive key`,
      );
    }
  };
  const MODE = 'a permission mode from 0 to 0o7777 (4095)';
  const TIME = 'a time in milliseconds since 1970 (a finite number within ±8.64e15)';
  switch (raw.type) {
    case 'file':
      check('size', isCount, 'a byte count (a non-negative integer)');
      check('mtimeMs', isTime, TIME);
      check('mode', isMode, MODE);
      check('sha256', (v) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v), '64 lowercase hex digits');
      check('archive', (v) => typeof v === 'string', 'an archive key');
      checkLocation(false);
      return raw as unknown as FileEntry;
    case 'symlink':
      if (typeof raw.target !== 'string' || raw.target.length === 0 || raw.target.includes('\0')) {
        throw new ManifestError(`${where}: symlink ${JSON.stringify(raw.path)} has an invalid target`);
      }
      check('mtimeMs', isTime, TIME, true);
      checkLocation(true);
      return raw as unknown as SymlinkEntry;
    case 'dir':
      check('mode', isMode, MODE);
      check('mtimeMs', isTime, TIME, true);
      checkLocation(true);
      return raw as unknown as DirEntry;
    default:
      throw new ManifestError(`${where}: unknown entry type ${JSON.stringify(raw.type)}`);
  }
}
