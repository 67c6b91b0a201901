import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import picomatch from 'picomatch';
import type { ObjectStore } from '../../store/types.js';
import type { Clock, Logger } from '../deps.js';
import { BackupStateError, errorMessage, UsageError } from '../errors.js';
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
import { sizeMismatch, TreeWriter, targetError } from './tree-writer.js';

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
  /**
   * Archives extracted at once into the staging folder (a sharded backup has many parts; an
   * incremental needs its full's archive too). Their files are disjoint, so they stream side by side;
   * the first failure stops the others and the restore rolls back as with one archive.
   * @default 1
   */
  readonly parallel?: number;
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

/** @internal `--path` restores a selection, which must never replace a whole live tree. */
export function assertPathsFitMode(paths: readonly string[] | undefined, mode: RestoreMode): void {
  if (paths?.length && mode === 'replace') {
    throw new UsageError(
      '--path cannot be combined with --replace: replacing the live folder with a few paths would drop the rest. Restore the paths into a new folder and copy them over.',
    );
  }
}

/** @internal What to restore: files grouped by the archive holding their bytes, plus folders and links. */
export interface RestorePlan {
  readonly label: string;
  readonly backupId: string | null;
  /** archive key (or file) -> path -> expected entry; one empty group for an archive without a manifest. */
  readonly filesByArchive: Map<string, Map<string, FileEntry>>;
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
  assertPathsFitMode(options.paths, mode);
  const local = options.backup ? await localArchive(options.backup) : undefined;
  if (local && options.at)
    throw new UsageError('--at picks a backup from the store; it cannot apply to a downloaded archive');
  const plan = local ? await planFromLocalArchive(local, options) : await planFromStore(deps.store, options);
  const openArchive = local
    ? async () => createReadStream(local, { highWaterMark: 1024 * 1024 }) as Readable
    : (key: string) => deps.store.getStream(key);

  const target = options.target ? path.resolve(options.target) : null;
  if (target && !dryRun && mode === 'new-folder') await assertEmptyOrMissing(target);
  const parallel = parseParallel(options.parallel);
  const staging = target && !dryRun ? stagingPathFor(target, randomBytes(4).toString('hex')) : null;
  const progress = progressTracker(plan, options.onProgress);
  // One stop for every archive in flight: Ctrl-C, or the first archive that fails.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const writer = new TreeWriter(staging, plan.label, target, { onBytes: progress.bytes, signal });
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
      await createStaging(target!, staging);
      writer.writeConcurrency =
        options.ioConcurrency === undefined
          ? defaultIoConcurrency(staging)
          : parseIoConcurrency(options.ioConcurrency, 'ioConcurrency');
    }
    const extracted = await extractAll(plan, openArchive, writer, progress.file, { stop, signal, parallel });
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

/** @internal Shared with restore-phases.ts: what a restore from the store needs, checked before writing. */
export async function planFromStore(
  store: ObjectStore,
  options: Pick<RestoreOptions, 'backup' | 'at' | 'paths'>,
): Promise<RestorePlan> {
  const entry = await resolveRestorePoint(store, { backup: options.backup, at: options.at });
  const manifest = await readManifest(store, entry);
  const label = `backup ${entry.backupId}`;
  const selected = selectEntries(manifest, options.paths, label);
  const filesByArchive = groupByArchive(selected.files);
  // Fail before writing anything if an archive the restore needs is gone. A sharded backup has up
  // to 9,999 parts: ask about several at once.
  const keys = [...filesByArchive.keys()];
  const missing: string[] = [];
  await inParallel(keys, HEAD_CONCURRENCY, new AbortController(), async (key) => {
    if (!(await store.head(key))) missing.push(key);
  });
  if (missing.length > 0) {
    missing.sort(comparePaths);
    throw new BackupStateError(
      `${label} needs archive ${missing[0]}${missing.length > 1 ? ` (and ${missing.length - 1} more)` : ''}, which is missing from ${store.url}; this backup cannot be restored completely. Try an older or newer backup (media-backup list).`,
    );
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

/** Archives asked about at once while planning. */
const HEAD_CONCURRENCY = 16;

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

/** @internal */
export function selectEntries(
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

/** @internal */
export function groupByArchive(files: readonly FileEntry[]): Map<string, Map<string, FileEntry>> {
  const out = new Map<string, Map<string, FileEntry>>();
  for (const f of files) {
    const group = out.get(f.archive) ?? new Map<string, FileEntry>();
    out.set(f.archive, group);
    group.set(f.path, f);
  }
  return new Map([...out.entries()].sort(([a], [b]) => comparePaths(a, b)));
}

/** @internal A file written (or hashed) by a restore. */
export interface RestoredFile {
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

/** `parallel` (`--parallel` as typed on the CLI): archives extracted at once, a whole number from 1 to 64. */
export function parseParallel(value: number | string | undefined, option = 'parallel'): number {
  if (value === undefined) return 1;
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_PARALLEL) {
    throw new UsageError(
      `${option} must be a whole number from 1 to ${MAX_PARALLEL} (archives extracted at once), got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

const MAX_PARALLEL = 64;

/**
 * @internal Runs `task` for every item, at most `limit` at once. The first failure aborts `stop`
 * (tasks watch a signal built from it and close their streams) and is thrown once every task has
 * stopped, so nothing is still writing when the caller cleans up.
 */
export async function inParallel<T>(
  items: readonly T[],
  limit: number,
  stop: AbortController,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && failure === undefined && !stop.signal.aborted) {
      const item = items[next++];
      try {
        await task(item);
      } catch (error) {
        if (failure === undefined) {
          failure = { error };
          stop.abort(error);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
  if (stop.signal.aborted) throw stop.signal.reason;
}

async function extractAll(
  plan: RestorePlan,
  openArchive: (key: string) => Promise<Readable>,
  writer: TreeWriter,
  fileDone: () => void,
  run: { readonly stop: AbortController; readonly signal: AbortSignal; readonly parallel: number },
): Promise<{ files: Map<string, RestoredFile>; dirs: DirEntry[]; symlinks: SymlinkEntry[] }> {
  if (plan.takeTreeFromArchive) {
    const [key] = plan.filesByArchive.keys();
    return extractTreeFromArchive(plan, await openArchive(key), key, writer, fileDone, run.signal);
  }
  const files = new Map<string, RestoredFile>();
  await inParallel([...plan.filesByArchive], run.parallel, run.stop, async ([key, wanted]) => {
    const restored = await extractArchive({
      label: `${plan.label} archive ${key}`,
      open: () => openArchive(key),
      wanted,
      writer,
      fileDone,
      signal: run.signal,
    });
    for (const [p, f] of restored) files.set(p, f);
  });
  return { files, dirs: plan.dirs, symlinks: plan.symlinks };
}

/**
 * @internal Extracts the files `wanted` from one archive (checked against the manifest: size before
 * the body is read, sha256 after) through `writer`. Everything else in the archive (files deleted or
 * replaced since, folders and links, which come from the manifest) is skipped, never written.
 * `signal` stops it and closes the archive's stream.
 */
export async function extractArchive(args: {
  readonly label: string;
  readonly open: () => Promise<Readable>;
  readonly wanted: ReadonlyMap<string, FileEntry>;
  readonly writer: TreeWriter;
  readonly fileDone: () => void;
  readonly signal?: AbortSignal;
}): Promise<Map<string, RestoredFile>> {
  const { label, wanted, writer, fileDone, signal } = args;
  const files = new Map<string, RestoredFile>();
  signal?.throwIfAborted();
  const body = await args.open();
  if (signal?.aborted) {
    body.destroy();
    signal.throwIfAborted();
  }
  await readTarGz(
    body,
    label,
    async (entry: TarEntry) => {
      signal?.throwIfAborted();
      const expected = wanted.get(entry.path);
      if (!expected || entry.type !== 'file') return;
      if (files.has(entry.path)) {
        throw new ArchiveIntegrityError(
          `${label}: file ${JSON.stringify(entry.path)} appears twice in the archive; refusing to guess which copy is right`,
        );
      }
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
    },
    signal,
  );
  if (files.size < wanted.size) {
    const missing = [...wanted.keys()].filter((p) => !files.has(p));
    throw new ArchiveIntegrityError(
      `${label}: ${missing.length} file(s) listed in the manifest are not in the archive, e.g. ${JSON.stringify(missing[0])}; nothing was restored.`,
    );
  }
  return files;
}

/** An archive without a manifest: its own folders, links and files make the tree (one archive). */
async function extractTreeFromArchive(
  plan: RestorePlan,
  body: Readable,
  key: string,
  writer: TreeWriter,
  fileDone: () => void,
  signal?: AbortSignal,
): Promise<{ files: Map<string, RestoredFile>; dirs: DirEntry[]; symlinks: SymlinkEntry[] }> {
  const files = new Map<string, RestoredFile>();
  const dirs: DirEntry[] = [];
  const symlinks: SymlinkEntry[] = [];
  const label = `${plan.label} archive ${key}`;
  const seen = new Set<string>();
  await readTarGz(
    body,
    label,
    async (entry: TarEntry) => {
      signal?.throwIfAborted();
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
    },
    signal,
  );
  if (plan.select) {
    if (files.size + symlinks.length === 0) throw new UsageError(`--path matches nothing in ${plan.label}`);
    const needed = parentFolders([...files.keys(), ...symlinks.map((l) => l.path)]);
    const keep = dirs.filter((d) => needed.has(d.path) || plan.select?.(d.path));
    dirs.length = 0; // then refill by a loop: splice(..., ...keep) overflows the stack past ~120k folders
    for (const d of keep) dirs.push(d);
  }
  return { files, dirs, symlinks };
}

/** @internal `DIR.restore-staging-<id>`: beside the target, on its file system, so the swap is a rename. */
export function stagingPathFor(target: string, id: string): string {
  return `${path.resolve(target)}.restore-staging-${id}`;
}

/** @internal Creates the staging folder (private until the tree is finished). */
export async function createStaging(target: string, staging: string): Promise<void> {
  try {
    await mkdir(path.dirname(staging), { recursive: true });
    await mkdir(staging, { recursive: false, mode: 0o700 });
  } catch (error) {
    throw targetError(error, target, 'creating the staging folder', staging);
  }
}

/** @internal A restore into a new folder never mixes with existing files. */
export async function assertEmptyOrMissing(target: string): Promise<void> {
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

/** @internal Moves the verified staging tree into place; with `replace` keeps the live tree beside it. */
export async function swapInto(
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
