import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  fchmodSync,
  constants as fsConstants,
  futimesSync,
  lstatSync,
  mkdirSync,
  openSync,
  writeSync,
} from 'node:fs';
import {
  chmod,
  type FileHandle,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  symlink,
  utimes,
} from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import picomatch from 'picomatch';
import type { ObjectStore } from '../../store/types.js';
import type { Clock, Logger } from '../deps.js';
import {
  BackupStateError,
  errorMessage,
  MediaBackupError,
  RestoreTargetError,
  UsageError,
} from '../errors.js';
import { fsPath } from '../fs-names.js';
import { defaultIoConcurrency, parseIoConcurrency } from '../io-concurrency.js';
import { readManifest } from '../repository/catalog.js';
import { backupIdFor } from '../repository/layout.js';
import {
  comparePaths,
  type DirEntry,
  decodeManifest,
  type FileEntry,
  type Manifest,
  type SymlinkEntry,
} from '../repository/manifest.js';
import { ArchiveIntegrityError, readTarGz, type TarEntry } from './archive-reader.js';
import { resolveRestorePoint } from './resolve.js';
import { findRestoreLeftovers, type RestoreLeftover } from './restore-leftovers.js';
import { acquireRestoreLock, restoreLockPath } from './restore-lock.js';

export { findRestoreLeftovers, type RestoreLeftover } from './restore-leftovers.js';

export interface RestoreDeps {
  readonly store: ObjectStore;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Identifies this run in the target's restore lock (host:pid, or the Lambda request id). */
  readonly owner?: string;
}

export type RestoreMode = 'new-folder' | 'replace';

export interface RestoreOptions {
  /** `latest`, a backup id, an archive name or key, or the path of a downloaded `.tar.gz`. */
  readonly backup?: string;
  readonly at?: Date;
  /** Globs on the relative path; only matching files and links (and their folders) are restored. */
  readonly paths?: readonly string[];
  /** Folder to restore into; required unless `dryRun`. */
  readonly target?: string;
  /** @default 'new-folder' */
  readonly mode?: RestoreMode;
  /** Download, decompress and verify everything; write nothing. */
  readonly dryRun?: boolean;
  /**
   * Called as bytes are restored (or, in a dry run / `verify --deep`, verified): after every chunk
   * and every file. Totals come from the manifest; both are 0 for an archive without one.
   */
  readonly onProgress?: (progress: RestoreProgress) => void;
  /** Stops the restore (Ctrl-C): the staging folder is removed and the target left as it was. */
  readonly signal?: AbortSignal;
  /**
   * Files written at once into the staging folder (issue 13): on a network file system every
   * create, write, chmod/utimes and close is a round trip. 1 writes one file at a time with
   * synchronous calls (fastest on a local disk).
   * @default 32 when the target's folder is on NFS/EFS, SMB, FUSE, ..., else 1
   */
  readonly ioConcurrency?: number;
}

/** Restore progress, in the shape the CLI's progress bar takes (`TransferProgress`). */
export interface RestoreProgress {
  readonly bytes: number;
  readonly totalBytes: number;
  readonly files: number;
  readonly totalFiles: number;
}

export interface RestoreResult {
  readonly status: 'SUCCEEDED';
  /** null for a downloaded archive without a manifest beside it. */
  readonly backupId: string | null;
  readonly source: string;
  readonly target: string | null;
  readonly mode: RestoreMode;
  readonly dryRun: boolean;
  readonly files: number;
  readonly bytes: number;
  readonly dirs: number;
  readonly symlinks: number;
  readonly archivesRead: readonly string[];
  /** True when every restored file's sha256 was checked against a manifest. */
  readonly verified: boolean;
  /** `--replace`: where the tree that was live before the restore now is. */
  readonly previousTree: string | null;
  /**
   * Folders earlier restores left beside the target (killed mid-way, or `--replace` copies), found
   * before this restore started; each is also named in `notes`.
   */
  readonly leftovers: readonly RestoreLeftover[];
  readonly notes: readonly string[];
  readonly durationMs: number;
}

export class TargetNotEmptyError extends UsageError {
  override readonly name = 'TargetNotEmptyError';
}

/** What to restore: files grouped by the archive holding their bytes, plus folders and links. */
interface RestorePlan {
  readonly label: string;
  readonly backupId: string | null;
  /** archive key (or file) -> path -> expected entry (null: accept, no manifest to check against). */
  readonly filesByArchive: Map<string, Map<string, FileEntry | null>>;
  readonly dirs: DirEntry[];
  readonly symlinks: SymlinkEntry[];
  /** The backed-up folder's own mode and mtime, given to the target (absent in older manifests). */
  readonly root?: { readonly mode: number; readonly mtimeMs: number };
  readonly verified: boolean;
  /** With no manifest, folders and links come from the archive itself. */
  readonly takeTreeFromArchive: boolean;
  /** With no manifest: `--path` selection applied to the archive's entries. */
  readonly select?: (path: string) => boolean;
  readonly notes: string[];
}

/**
 * Restores a backup into a new folder, or in place (`replace`), or only verifies it (`dryRun`).
 * Everything is extracted into a staging folder beside the target and checked against the manifest
 * before anything live is touched; any error removes the staging folder and leaves the target as it
 * was. Paths from archives and manifests are never trusted: see `readTarGz` and `decodeManifest`.
 */
export async function runRestore(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  // A dry run writes nothing; every other restore holds the target's lock until it is done.
  if (options.dryRun || !options.target) return restoreUnlocked(deps, options);
  const target = path.resolve(options.target);
  const lock = await acquireRestoreLock(target, deps.owner ?? `${hostname()}:${process.pid}`).catch((error) =>
    Promise.reject(targetError(error, target, 'creating the restore lock', restoreLockPath(target))),
  );
  try {
    return await restoreUnlocked(deps, options);
  } finally {
    await lock
      .release()
      .catch((error) =>
        deps.logger.warn('could not release the restore lock', { error: errorMessage(error) }),
      );
  }
}

async function restoreUnlocked(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  const started = deps.clock.now();
  const mode = options.mode ?? 'new-folder';
  const dryRun = options.dryRun ?? false;
  if (!dryRun && !options.target) throw new UsageError('a restore needs --target DIR (or --dry-run)');
  if (options.paths?.length && mode === 'replace') {
    throw new UsageError(
      '--path cannot be combined with --replace: replacing the live folder with a few paths would drop the rest. Restore the paths into a new folder and copy them over.',
    );
  }
  const local = options.backup ? await localArchive(options.backup) : undefined;
  if (local && options.at)
    throw new UsageError('--at picks a backup from the store; it cannot apply to a downloaded archive');
  const plan = local ? await planFromLocalArchive(local, options) : await planFromStore(deps.store, options);
  const openArchive = local
    ? async () => createReadStream(local, { highWaterMark: 1024 * 1024 }) as Readable
    : (key: string) => deps.store.getStream(key);

  const target = options.target ? path.resolve(options.target) : null;
  if (target && !dryRun && mode === 'new-folder') await assertEmptyOrMissing(target);
  const staging = target && !dryRun ? `${target}.restore-staging-${randomBytes(4).toString('hex')}` : null;
  const progress = progressTracker(plan, options.onProgress);
  const writer = new TreeWriter(staging, plan.label, target, {
    onBytes: progress.bytes,
    signal: options.signal,
  });
  deps.logger.info('restore started', { backup: plan.label, target, mode, dryRun, staging });
  const leftovers = staging ? await findRestoreLeftovers(target!, deps.clock.now()) : [];
  for (const l of leftovers) {
    deps.logger.warn('an earlier restore left a folder beside the target', {
      path: l.path,
      kind: l.kind,
      createdAt: l.createdAt.toISOString(),
      bytes: l.bytes,
      files: l.files,
      advice: l.advice,
    });
  }
  const leftoverNotes = leftovers.map(
    (l) =>
      `left by an earlier restore: ${l.path} (${l.files ?? '?'} files, ${l.bytes ?? '?'} bytes, ${Math.round(l.ageMs / 3_600_000)} h old): ${l.advice}`,
  );

  let previousTree: string | null = null;
  try {
    if (staging) {
      try {
        await mkdir(path.dirname(staging), { recursive: true });
        await mkdir(staging, { recursive: false, mode: 0o700 });
      } catch (error) {
        throw targetError(error, target!, 'creating the staging folder', staging);
      }
      writer.writeConcurrency =
        options.ioConcurrency === undefined
          ? defaultIoConcurrency(staging)
          : parseIoConcurrency(options.ioConcurrency, 'ioConcurrency');
    }
    const extracted = await extractAll(plan, openArchive, writer, progress.file, options.signal);
    // Concurrent writes still in flight must land (or fail) before the tree is finished.
    await writer.drain();
    if (staging) {
      await writer.finish(
        plan.takeTreeFromArchive ? extracted.dirs : plan.dirs,
        plan.takeTreeFromArchive ? extracted.symlinks : plan.symlinks,
        plan.root,
      );
      options.signal?.throwIfAborted();
      previousTree = await swapInto(
        staging,
        target!,
        mode,
        backupIdFor(deps.clock.now()).slice('backup_'.length),
      ).catch((error) =>
        Promise.reject(targetError(error, target!, 'moving the restored tree into', target!)),
      );
    }
    const files = [...extracted.files.values()];
    const result: RestoreResult = {
      status: 'SUCCEEDED',
      backupId: plan.backupId,
      source: local ?? deps.store.url,
      target,
      mode,
      dryRun,
      files: files.length,
      bytes: files.reduce((sum, f) => sum + f.size, 0),
      dirs: (plan.takeTreeFromArchive ? extracted.dirs : plan.dirs).length,
      symlinks: (plan.takeTreeFromArchive ? extracted.symlinks : plan.symlinks).length,
      archivesRead: [...plan.filesByArchive.keys()],
      verified: plan.verified,
      previousTree,
      leftovers,
      notes: [...plan.notes, ...leftoverNotes],
      durationMs: deps.clock.now().getTime() - started.getTime(),
    };
    deps.logger.info('restore finished', { ...result, notes: undefined });
    return result;
  } catch (error) {
    // Automatic rollback: the live tree was not touched yet; drop what we extracted, once no
    // concurrent write is still creating files in it.
    await writer.settle();
    if (staging) await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    deps.logger.error('restore failed; the target was left as it was', {
      error: errorMessage(error),
      target,
    });
    throw error;
  }
}

async function planFromStore(store: ObjectStore, options: RestoreOptions): Promise<RestorePlan> {
  const entry = await resolveRestorePoint(store, { backup: options.backup, at: options.at });
  const manifest = await readManifest(store, entry);
  const label = `backup ${entry.backupId}`;
  const selected = selectEntries(manifest, options.paths, label);
  const filesByArchive = groupByArchive(selected.files);
  // Fail before writing anything if an archive the restore needs is gone.
  for (const key of filesByArchive.keys()) {
    if (!(await store.head(key))) {
      throw new BackupStateError(
        `${label} needs archive ${key}, which is missing from ${store.url}; this backup cannot be restored completely. Try an older or newer backup (media-backup list).`,
      );
    }
  }
  return {
    label,
    backupId: entry.backupId,
    filesByArchive,
    ...selected,
    root: manifest.header.root,
    verified: true,
    takeTreeFromArchive: false,
    notes: [],
  };
}

async function planFromLocalArchive(file: string, options: RestoreOptions): Promise<RestorePlan> {
  const manifestFile = file.replace(/\.tar\.gz$/, '.manifest.jsonl.gz');
  const manifestData = await readFile(manifestFile).catch(() => undefined);
  const label = `archive ${file}`;
  if (!manifestData) {
    return {
      label,
      backupId: null,
      filesByArchive: new Map([[file, new Map()]]),
      dirs: [],
      symlinks: [],
      verified: false,
      takeTreeFromArchive: true,
      select: options.paths?.length ? pathSelector(options.paths) : undefined,
      notes: [
        `no manifest beside ${file} (expected ${manifestFile}): files were extracted under the safety rules but their hashes could not be verified`,
      ],
    };
  }
  const manifest = await decodeManifest(manifestData, manifestFile);
  const selected = selectEntries(manifest, options.paths, label);
  const base = path.basename(file);
  const here = selected.files.filter((f) => path.posix.basename(f.archive) === base);
  const elsewhere = selected.files.length - here.length;
  return {
    label: `backup ${manifest.header.backupId} (${label})`,
    backupId: manifest.header.backupId,
    filesByArchive: new Map([[file, new Map(here.map((f) => [f.path, f]))]]),
    dirs: selected.dirs,
    symlinks: selected.symlinks,
    root: manifest.header.root,
    verified: true,
    takeTreeFromArchive: false,
    notes:
      elsewhere > 0
        ? [
            `${elsewhere} file(s) of this backup are stored in earlier archives and were not restored: restore the full backup and the incrementals before this one first, or restore from the store`,
          ]
        : [],
  };
}

function selectEntries(
  manifest: Manifest,
  paths: readonly string[] | undefined,
  label: string,
): { files: FileEntry[]; dirs: DirEntry[]; symlinks: SymlinkEntry[] } {
  const files: FileEntry[] = [];
  const symlinks: SymlinkEntry[] = [];
  const dirs: DirEntry[] = [];
  if (!paths?.length) {
    for (const e of manifest.entries) {
      if (e.type === 'file') files.push(e);
      else if (e.type === 'symlink') symlinks.push(e);
      else dirs.push(e);
    }
    return { files, dirs, symlinks };
  }
  const selected = pathSelector(paths);
  const neededDirs = new Set<string>();
  for (const e of manifest.entries) {
    if (e.type === 'dir' || !selected(e.path)) continue;
    if (e.type === 'file') files.push(e);
    else symlinks.push(e);
    for (let i = e.path.indexOf('/'); i > 0; i = e.path.indexOf('/', i + 1))
      neededDirs.add(e.path.slice(0, i));
  }
  for (const e of manifest.entries)
    if (e.type === 'dir' && (neededDirs.has(e.path) || selected(e.path))) dirs.push(e);
  if (files.length + symlinks.length + dirs.length === 0) {
    throw new UsageError(
      `--path ${paths.map((p) => JSON.stringify(p)).join(' ')} matches nothing in ${label}`,
    );
  }
  return { files, dirs, symlinks };
}

/** `--path` globs: a path is selected when it or one of its folders matches. */
function pathSelector(paths: readonly string[]): (p: string) => boolean {
  const matches = picomatch([...paths], { dot: true });
  return (p: string) => {
    for (let at = p.length; at > 0; at = p.lastIndexOf('/', at - 1)) {
      if (matches(p.slice(0, at))) return true;
    }
    return false;
  };
}

/** Folders that hold any of `paths` (for a partial restore's skeleton). */
function parentFolders(paths: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const p of paths)
    for (let i = p.indexOf('/'); i > 0; i = p.indexOf('/', i + 1)) out.add(p.slice(0, i));
  return out;
}

function groupByArchive(files: readonly FileEntry[]): Map<string, Map<string, FileEntry>> {
  const out = new Map<string, Map<string, FileEntry>>();
  for (const f of files) {
    const group = out.get(f.archive) ?? new Map<string, FileEntry>();
    out.set(f.archive, group);
    group.set(f.path, f);
  }
  return new Map([...out.entries()].sort(([a], [b]) => comparePaths(a, b)));
}

interface RestoredFile {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
  readonly mode: number;
  readonly mtimeMs: number;
}

/** Counts restored bytes and files against the plan's totals and reports them to `onProgress`. */
function progressTracker(plan: RestorePlan, onProgress: RestoreOptions['onProgress']) {
  let totalBytes = 0;
  let totalFiles = 0;
  for (const group of plan.filesByArchive.values()) {
    for (const f of group.values()) {
      if (!f) continue;
      totalBytes += f.size;
      totalFiles += 1;
    }
  }
  const state = { bytes: 0, totalBytes, files: 0, totalFiles };
  const report = () => onProgress?.({ ...state });
  return {
    bytes: onProgress
      ? (n: number) => {
          state.bytes += n;
          report();
        }
      : undefined,
    file: () => {
      state.files += 1;
      report();
    },
  };
}

async function extractAll(
  plan: RestorePlan,
  openArchive: (key: string) => Promise<Readable>,
  writer: TreeWriter,
  fileDone: () => void,
  signal?: AbortSignal,
): Promise<{ files: Map<string, RestoredFile>; dirs: DirEntry[]; symlinks: SymlinkEntry[] }> {
  const files = new Map<string, RestoredFile>();
  const dirs: DirEntry[] = [];
  const symlinks: SymlinkEntry[] = [];
  for (const [key, wanted] of plan.filesByArchive) {
    const label = `${plan.label} archive ${key}`;
    const seen = new Set<string>();
    signal?.throwIfAborted();
    await readTarGz(await openArchive(key), label, async (entry: TarEntry) => {
      signal?.throwIfAborted();
      if (plan.takeTreeFromArchive) {
        if (seen.has(entry.path)) {
          throw new ArchiveIntegrityError(`${label}: entry ${JSON.stringify(entry.path)} appears twice`);
        }
        seen.add(entry.path);
        // Folders are kept for now and pruned to the selection's skeleton after the archive is read.
        if (plan.select && entry.type !== 'directory' && !plan.select(entry.path)) return;
        if (entry.type === 'directory')
          dirs.push({
            path: entry.path,
            type: 'dir',
            mode: entry.mode & 0o7777,
            mtimeMs: entry.mtime.getTime(),
          });
        else if (entry.type === 'symlink')
          symlinks.push({
            path: entry.path,
            type: 'symlink',
            target: entry.linkname ?? '',
            mtimeMs: entry.mtime.getTime(),
          });
        else {
          const meta = { mode: entry.mode & 0o7777, mtimeMs: entry.mtime.getTime() };
          const written = await writer.writeFile(entry.path, entry.body, meta);
          files.set(entry.path, { ...written, ...meta });
          fileDone();
        }
        return;
      }
      // Entries the manifest does not ask for from this archive (deleted or replaced since, or
      // folders and links, which come from the manifest) are skipped, never written.
      const expected = wanted.get(entry.path);
      if (!expected || entry.type !== 'file') return;
      if (seen.has(entry.path)) {
        throw new ArchiveIntegrityError(
          `${label}: file ${JSON.stringify(entry.path)} appears twice in the archive; refusing to guess which copy is right`,
        );
      }
      seen.add(entry.path);
      // A tampered archive could hold a huge entry under a small file's name: refuse it before
      // reading its body, so it never fills the target's file system (the live volume for --replace).
      if (entry.size !== expected.size) throw sizeMismatch(label, entry.path, entry.size, expected.size);
      const written = await writer.writeFile(entry.path, entry.body, expected, expected.size);
      if (written.size !== expected.size || written.sha256 !== expected.sha256) {
        throw new ArchiveIntegrityError(
          `${label}: file ${JSON.stringify(entry.path)} does not match the manifest (${written.size} bytes, sha256 ${written.sha256.slice(0, 12)}…; expected ${expected.size} bytes, ${expected.sha256.slice(0, 12)}…). The archive or the manifest is corrupt; nothing was restored.`,
        );
      }
      files.set(entry.path, { ...written, mode: expected.mode, mtimeMs: expected.mtimeMs });
      fileDone();
    });
    if (plan.select) {
      if (files.size + symlinks.length === 0) throw new UsageError(`--path matches nothing in ${plan.label}`);
      const needed = parentFolders([...files.keys(), ...symlinks.map((l) => l.path)]);
      const keep = dirs.filter((d) => needed.has(d.path) || plan.select?.(d.path));
      dirs.length = 0; // then refill by a loop: splice(..., ...keep) overflows the stack past ~120k folders
      for (const d of keep) dirs.push(d);
    }
    const missing = [...wanted.keys()].filter((p) => !seen.has(p));
    if (missing.length > 0) {
      throw new ArchiveIntegrityError(
        `${label}: ${missing.length} file(s) listed in the manifest are not in the archive, e.g. ${JSON.stringify(missing[0])}; nothing was restored.`,
      );
    }
  }
  return { files, dirs, symlinks };
}

function sizeMismatch(
  label: string,
  rel: string,
  actual: number,
  declared: number,
  /** Counted while streaming: the entry holds at least `actual` bytes. */
  atLeast = false,
): ArchiveIntegrityError {
  return new ArchiveIntegrityError(
    `${label}: file ${JSON.stringify(rel)} is ${atLeast ? 'at least ' : ''}${actual} bytes in the archive but the manifest declares ${declared} bytes; stopped before writing past the declared size. The archive or the manifest is corrupt or was altered; nothing was restored. Try another backup.`,
  );
}

const TARGET_FAILURES: Record<string, string> = {
  ENOSPC: 'no space left on the device (the disk is full)',
  EDQUOT: 'the disk quota is exceeded',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied (the target is not writable)',
  EPERM: 'operation not permitted (the target is not writable)',
  EIO: "an I/O error on the target's disk",
};

/**
 * Turns the error of a file system call on the restore target into a {@link RestoreTargetError}
 * that names the target and says the backup is not at fault. Other errors are returned as they are.
 */
function targetError(error: unknown, target: string, action: string, where: string): unknown {
  const errno = error as NodeJS.ErrnoException;
  if (error instanceof MediaBackupError || typeof errno?.code !== 'string' || !errno.syscall) return error;
  const what = TARGET_FAILURES[errno.code] ?? `${errno.code} (${errno.message})`;
  return new RestoreTargetError(
    `restore target ${target}: ${action} ${where} failed: ${what}. The backup is not at fault and stays good: free space (or fix the permissions) at the target, or restore into a folder on another disk. Nothing was restored; the target was left as it was.`,
    { cause: error },
  );
}

/** Files up to this declared size are written concurrently (in memory whole); larger ones stream. */
const CONCURRENT_WRITE_MAX_FILE = 1024 * 1024;
/** Bytes held by concurrent writes at most. */
const CONCURRENT_WRITE_BYTES = 64 * 1024 * 1024;

/** Writes a tree under `root`, or only hashes when `root` is null (dry run). */
class TreeWriter {
  /** Folders below root that we created or checked: real folders, not links. */
  private readonly folders = new Set<string>(['']);
  /** Files written at once (issue 13); 1 = one at a time, synchronously. Set once staging exists. */
  writeConcurrency = 1;
  private readonly inFlight = new Set<Promise<void>>();
  private inFlightBytes = 0;
  private writeError: unknown;

  constructor(
    private readonly root: string | null,
    private readonly label: string,
    /** The restore target the operator named (the root is a staging folder beside it). */
    private readonly target: string | null = root,
    private readonly hooks: { onBytes?: (n: number) => void; signal?: AbortSignal } = {},
  ) {}

  /** A failed file system call on the target: the target's fault, never the archive's. */
  private failed(error: unknown, action: string, rel: string): unknown {
    return targetError(error, this.target ?? '', action, rel ? `${this.target}/${rel}` : (this.target ?? ''));
  }

  private pathOf(rel: string): string | Buffer {
    // Paths were validated (no `..`, not absolute); join keeps them under root. A name that is not
    // valid UTF-8 is escaped in the string and goes to the file system as its original bytes.
    return fsPath(path.join(this.root!, ...rel.split('/')));
  }

  /**
   * Creates a folder and its parents one by one, refusing any component that is a link or a file:
   * nothing is ever written through a link, even one the restore itself created.
   */
  private async ensureFolder(rel: string): Promise<void> {
    if (this.folders.has(rel)) return;
    const slash = rel.lastIndexOf('/');
    await this.ensureFolder(slash < 0 ? '' : rel.slice(0, slash));
    const abs = this.pathOf(rel);
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(abs, { throwIfNoEntry: false });
      if (!st) mkdirSync(abs, { mode: 0o700 });
    } catch (error) {
      throw this.failed(error, 'creating folder', rel);
    }
    if (st && !st.isDirectory()) {
      throw new ArchiveIntegrityError(
        `${this.label}: ${JSON.stringify(rel)} must be a folder but is a ${st.isSymbolicLink() ? 'symlink' : 'file'}; refusing to write below it`,
      );
    }
    this.folders.add(rel);
  }

  private parentOf(rel: string): string {
    const slash = rel.lastIndexOf('/');
    return slash < 0 ? '' : rel.slice(0, slash);
  }

  /**
   * Writes (or, in a dry run, only hashes) one file from the archive. Synchronous file calls on
   * purpose: async ones cost ~1 ms per file in thread-pool hand-offs here, which made a restore of
   * many small files 10x slower than GNU tar. Mode and mtime are set on the open descriptor.
   */
  async writeFile(
    rel: string,
    body: Readable,
    meta?: { mode: number; mtimeMs: number },
    /** The declared size: never hash or write a byte past it. */
    maxBytes = Number.POSITIVE_INFINITY,
  ): Promise<{ path: string; size: number; sha256: string }> {
    const hash = createHash('sha256');
    let size = 0;
    if (this.root === null) {
      for await (const chunk of body) {
        if (size + (chunk as Buffer).length > maxBytes) {
          throw sizeMismatch(this.label, rel, size + (chunk as Buffer).length, maxBytes, true);
        }
        this.hooks.signal?.throwIfAborted();
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
        this.hooks.onBytes?.((chunk as Buffer).length);
      }
      return { path: rel, size, sha256: hash.digest('hex') };
    }
    if (this.writeConcurrency > 1 && maxBytes <= CONCURRENT_WRITE_MAX_FILE) {
      return this.writeConcurrently(rel, body, meta, maxBytes);
    }
    await this.ensureFolder(this.parentOf(rel));
    let fd: number;
    try {
      // O_EXCL: never opens an existing file or follows a link at the path.
      fd = openSync(this.pathOf(rel), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ArchiveIntegrityError(`${this.label}: ${JSON.stringify(rel)} would be written twice`);
      }
      throw this.failed(error, 'creating file', rel);
    }
    try {
      for await (const chunk of body) {
        const buffer = chunk as Buffer;
        if (size + buffer.length > maxBytes)
          throw sizeMismatch(this.label, rel, size + buffer.length, maxBytes, true);
        this.hooks.signal?.throwIfAborted();
        hash.update(buffer);
        size += buffer.length;
        try {
          for (let at = 0; at < buffer.length; ) at += writeSync(fd, buffer, at);
        } catch (error) {
          throw this.failed(error, 'writing', rel);
        }
        this.hooks.onBytes?.(buffer.length);
      }
      if (meta) {
        try {
          fchmodSync(fd, meta.mode);
          futimesSync(fd, meta.mtimeMs / 1000, meta.mtimeMs / 1000);
        } catch (error) {
          throw this.failed(error, 'setting mode and time of', rel);
        }
      }
    } finally {
      closeSync(fd);
    }
    return { path: rel, size, sha256: hash.digest('hex') };
  }

  /**
   * A small file (declared size <= 1 MiB) is taken from the archive and hashed in memory, then
   * written by async calls while the next entries are read: up to `writeConcurrency` files and
   * 64 MiB in flight. Same rules as writeFile: the declared size is enforced while reading, O_EXCL
   * (never an existing file or a link), the folder chain checked first, mode and time on the
   * descriptor. A write's failure surfaces at the next file or at drain().
   */
  private async writeConcurrently(
    rel: string,
    body: Readable,
    meta: { mode: number; mtimeMs: number } | undefined,
    maxBytes: number,
  ): Promise<{ path: string; size: number; sha256: string }> {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      const buffer = chunk as Buffer;
      if (size + buffer.length > maxBytes)
        throw sizeMismatch(this.label, rel, size + buffer.length, maxBytes, true);
      this.hooks.signal?.throwIfAborted();
      hash.update(buffer);
      chunks.push(buffer);
      size += buffer.length;
      this.hooks.onBytes?.(buffer.length);
    }
    if (this.writeError !== undefined) throw this.writeError;
    await this.ensureFolder(this.parentOf(rel));
    while (
      this.inFlight.size > 0 &&
      (this.inFlight.size >= this.writeConcurrency || this.inFlightBytes + size > CONCURRENT_WRITE_BYTES)
    ) {
      await Promise.race(this.inFlight);
      if (this.writeError !== undefined) throw this.writeError;
    }
    const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
    this.inFlightBytes += size;
    const task = this.writeWhole(rel, data, meta)
      .catch((error) => {
        this.writeError ??= error;
      })
      .finally(() => {
        this.inFlight.delete(task);
        this.inFlightBytes -= size;
      });
    this.inFlight.add(task);
    return { path: rel, size, sha256: hash.digest('hex') };
  }

  private async writeWhole(
    rel: string,
    data: Buffer,
    meta?: { mode: number; mtimeMs: number },
  ): Promise<void> {
    let handle: FileHandle;
    try {
      // O_EXCL: never opens an existing file or follows a link at the path.
      handle = await open(
        this.pathOf(rel),
        fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL,
        0o600,
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ArchiveIntegrityError(`${this.label}: ${JSON.stringify(rel)} would be written twice`);
      }
      throw this.failed(error, 'creating file', rel);
    }
    try {
      try {
        // write(2) may write less than asked without an error (a disk filling part-way, NFS):
        // write the rest, or the file would be short in a restore reported as verified.
        for (let at = 0; at < data.length; ) {
          at += (await handle.write(data, at, data.length - at, at)).bytesWritten;
        }
      } catch (error) {
        throw this.failed(error, 'writing', rel);
      }
      if (meta) {
        try {
          await handle.chmod(meta.mode);
          await handle.utimes(meta.mtimeMs / 1000, meta.mtimeMs / 1000);
        } catch (error) {
          throw this.failed(error, 'setting mode and time of', rel);
        }
      }
    } finally {
      await handle.close();
    }
  }

  /** Waits for every concurrent write; throws the first failure. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.writeError !== undefined) throw this.writeError;
  }

  /** Waits for every concurrent write, ignoring failures (before the staging folder is removed). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
  }

  /** Folders, then modes and times, then links last (so no file is ever written through one). */
  async finish(
    dirs: readonly DirEntry[],
    symlinks: readonly SymlinkEntry[],
    root?: { readonly mode: number; readonly mtimeMs: number },
  ) {
    for (const d of dirs) await this.ensureFolder(d.path);
    for (const l of symlinks) {
      await this.ensureFolder(this.parentOf(l.path));
      try {
        await symlink(fsPath(l.target), this.pathOf(l.path));
        if (l.mtimeMs !== undefined) await lutimes(this.pathOf(l.path), l.mtimeMs / 1000, l.mtimeMs / 1000);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
          throw this.failed(error, 'creating symlink', l.path);
        throw new ArchiveIntegrityError(
          `${this.label}: symlink ${JSON.stringify(l.path)} cannot be created (${(error as NodeJS.ErrnoException).code}): a file or folder already has that path`,
          { cause: error },
        );
      }
    }
    // Deepest first, so restoring a read-only folder's mode does not block its children.
    for (const d of [...dirs].sort((a, b) => comparePaths(b.path, a.path))) {
      const p = this.pathOf(d.path);
      try {
        await chmod(p, d.mode);
        if (d.mtimeMs !== undefined) await utimes(p, d.mtimeMs / 1000, d.mtimeMs / 1000);
      } catch (error) {
        throw this.failed(error, 'setting mode and time of', d.path);
      }
    }
    // The root last: creating anything inside it changes its mtime.
    if (this.root) {
      try {
        await chmod(this.root, root?.mode ?? 0o755);
        if (root) await utimes(this.root, root.mtimeMs / 1000, root.mtimeMs / 1000);
      } catch (error) {
        throw this.failed(error, 'setting mode and time of', '');
      }
    }
  }
}

/** A restore into a new folder never mixes with existing files. */
async function assertEmptyOrMissing(target: string): Promise<void> {
  let entries: string[];
  try {
    const st = await lstat(target);
    if (!st.isDirectory())
      throw new TargetNotEmptyError(`restore target ${target} exists and is not a folder`);
    entries = await readdir(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (entries.length > 0) {
    throw new TargetNotEmptyError(
      `restore target ${target} is not empty (${entries.length} entries). Choose a new folder, or use --replace to replace it (the current content is kept as a .pre-restore copy).`,
    );
  }
}

/** Moves the verified staging tree into place; with `replace` keeps the live tree beside it. */
async function swapInto(
  staging: string,
  target: string,
  mode: RestoreMode,
  stamp: string,
): Promise<string | null> {
  const exists = await stat(target).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await rename(staging, target);
    return null;
  }
  if (mode === 'new-folder') {
    await rmdir(target); // checked empty before the restore started
    await rename(staging, target);
    return null;
  }
  const previous = `${target}.pre-restore-${stamp}`;
  await rename(target, previous);
  try {
    await rename(staging, target);
  } catch (error) {
    await rename(previous, target);
    throw error;
  }
  return previous;
}

/** A BACKUP argument that is a `.tar.gz` on the local disk (downloaded with `aws s3 cp`). */
async function localArchive(spec: string): Promise<string | undefined> {
  if (!spec.endsWith('.tar.gz')) return undefined;
  const st = await stat(spec).catch(() => undefined);
  return st?.isFile() ? path.resolve(spec) : undefined;
}
