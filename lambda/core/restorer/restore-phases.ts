import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzip as gunzipCb, gzip as gzipCb } from 'node:zlib';
import type { Clock, Logger } from '../deps.js';
import { errorMessage, MediaBackupError, UsageError } from '../errors.js';
import { fsPath } from '../fs-names.js';
import { defaultIoConcurrency, parseIoConcurrency } from '../io-concurrency.js';
import { backupIdFor } from '../repository/layout.js';
import type { DirEntry, FileEntry, SymlinkEntry } from '../repository/manifest.js';
import {
  assertEmptyOrMissing,
  assertPathsFitMode,
  createStaging,
  extractArchive,
  findRestoreLeftovers,
  planFromStore,
  type RestoreDeps,
  type RestoreMode,
  type RestoreProgress,
  type RestoreResult,
  stagingPathFor,
  swapInto,
} from './restore.js';
import {
  acquireRestoreLock,
  RESTORE_JOB_LOCK_TTL_MS,
  releaseHandedOverRestoreLock,
  restoreLockPath,
} from './restore-lock.js';
import { TreeWriter, targetError } from './tree-writer.js';

const gzip = promisify(gzipCb);
const gunzip = promisify(gunzipCb);

/*
 * A restore cut into steps that separate processes run (a restore state machine: prepare, one
 * Distributed Map child per archive, finish; abandon in its Catch). Every step reads the job from
 * the staging folder on the target's file system (EFS), so the steps share nothing but that folder:
 *
 *   DIR.restore-staging-<jobId>/                 the tree being restored (as runRestore's staging)
 *   DIR.restore-staging-<jobId>/.media-backup-restore-job-<jobId>/
 *       job.json                                 the RestoreJob
 *       tree.json.gz                             folders, links and the root's mode/mtime to restore
 *       archive-<n>.files.jsonl.gz               the manifest rows of the files archive n holds
 *       archive-<n>.started / archive-<n>.done.json
 *
 * The job folder is removed before the tree is finished and swapped in. The live target is touched
 * only by finish's swap, exactly as in runRestore: a failed or abandoned job leaves it as it was.
 */

/** One archive a restore job reads: a Distributed Map item. */
export interface RestoreJobArchive {
  /** Store key, e.g. `full/backup_20251227_020000.part-0003.tar.gz`. */
  readonly key: string;
  /** Files and bytes this restore takes from it. */
  readonly files: number;
  readonly bytes: number;
}

/** What prepareRestore set up; the input of every later step (JSON-safe). */
export interface RestoreJob {
  /** 16 hex digits; names the staging folder. */
  readonly jobId: string;
  readonly backupId: string;
  /** Absolute path of the folder restored into. */
  readonly target: string;
  /** `<target>.restore-staging-<jobId>` */
  readonly stagingDir: string;
  readonly mode: RestoreMode;
  /** Releases the target's restore lock, which the job holds until finish or abandon. */
  readonly lockToken: string;
  /** ISO time prepare started. */
  readonly createdAt: string;
  readonly files: number;
  readonly bytes: number;
  /** In store key order; each is extracted by one restoreArchivePhase. */
  readonly archives: readonly RestoreJobArchive[];
  /** Notes for the result (folders earlier restores left beside the target). */
  readonly notes: readonly string[];
}

/**
 * What the later steps need to find a job: its id and target (the rest is read from the staging
 * folder). A whole RestoreJob is one, so a state machine can pass either.
 */
export interface RestoreJobRef {
  readonly jobId: string;
  readonly target: string;
  /** Only abandonRestore uses it, when the job file is gone (finish failed after removing it). */
  readonly lockToken?: string;
}

export interface PrepareRestoreOptions {
  /** `latest`, a backup id, an archive name or key (a downloaded `.tar.gz` is runRestore's). */
  readonly backup?: string;
  readonly at?: Date;
  readonly paths?: readonly string[];
  readonly target: string;
  /** @default 'new-folder' */
  readonly mode?: RestoreMode;
  /**
   * How long the target's restore lock stays held without renewal: longer than the state machine
   * may run. @default RESTORE_JOB_LOCK_TTL_MS (12 h)
   */
  readonly lockTtlMs?: number;
}

export interface RestoreArchivePhaseOptions {
  readonly job: RestoreJobRef;
  readonly archiveKey: string;
  /** Files written at once (see RestoreOptions.ioConcurrency). @default 32 on EFS/NFS, else 1 */
  readonly ioConcurrency?: number;
  readonly signal?: AbortSignal;
  /** This archive's progress (totals are the archive's). */
  readonly onProgress?: (progress: RestoreProgress) => void;
}

export interface RestoreArchiveOutcome {
  readonly archiveKey: string;
  readonly files: number;
  readonly bytes: number;
  /** True when an earlier attempt had already finished this archive (nothing was extracted again). */
  readonly alreadyDone: boolean;
}

/** A restore job's steps do not fit together (an unknown job or archive, an archive not extracted). */
export class RestoreJobError extends MediaBackupError {
  override readonly name = 'RestoreJobError';
}

type PhaseDeps = Pick<RestoreDeps, 'store' | 'logger'> & { readonly clock?: Clock };

/**
 * Step 1: resolves the backup and checks every archive it needs exists, checks the target (empty or
 * missing unless `replace`), takes the target's restore lock and hands it over with a long TTL,
 * creates the staging folder and writes the job into it. Nothing live is touched. On failure
 * nothing is left behind (staging removed, lock released).
 */
export async function prepareRestore(deps: RestoreDeps, options: PrepareRestoreOptions): Promise<RestoreJob> {
  const started = deps.clock.now();
  if (!options.target) throw new UsageError('a restore job needs a target folder');
  const mode = options.mode ?? 'new-folder';
  if (mode !== 'new-folder' && mode !== 'replace') {
    throw new UsageError(`mode must be 'new-folder' or 'replace' (got ${JSON.stringify(mode)})`);
  }
  assertPathsFitMode(options.paths, mode);
  const ttlMs = options.lockTtlMs ?? RESTORE_JOB_LOCK_TTL_MS;
  if (!Number.isFinite(ttlMs) || ttlMs < 60_000) {
    throw new UsageError(`lockTtlMs must be at least 60000 (one minute), got ${ttlMs}`);
  }
  const target = path.resolve(options.target);
  const lock = await acquireRestoreLock(target, deps.owner ?? `${hostname()}:${process.pid}`).catch((error) =>
    Promise.reject(targetError(error, target, 'creating the restore lock', restoreLockPath(target))),
  );
  let staging: string | undefined;
  try {
    if (mode === 'new-folder') await assertEmptyOrMissing(target);
    const plan = await planFromStore(deps.store, options);
    const jobId = randomBytes(8).toString('hex');
    const jobDir = jobDirName(jobId);
    // The job folder sits in the staging tree until finish: no restored path may share its name.
    const topLevel = (p: string) => p.split('/', 1)[0] === jobDir;
    const clash =
      [...plan.dirs, ...plan.symlinks].some((e) => topLevel(e.path)) ||
      [...plan.filesByArchive.values()].some((group) => [...group.keys()].some(topLevel));
    if (clash)
      throw new RestoreJobError(
        `backup ${plan.backupId} holds a path named ${jobDir}; prepare the job again`,
      );
    const leftovers = await findRestoreLeftovers(target, deps.clock.now());
    staging = stagingPathFor(target, jobId);
    await createStaging(target, staging);
    const files = jobFiles(staging, jobId);
    await mkdir(files.dir, { mode: 0o700 }).catch((error) =>
      Promise.reject(targetError(error, target, 'creating the job folder', files.dir)),
    );
    const archives: RestoreJobArchive[] = [];
    let index = 0;
    for (const [key, wanted] of plan.filesByArchive) {
      index += 1;
      const rows = [...wanted.values()];
      await writeJobFile(target, files.archiveFiles(index), await gzipLines(rows));
      archives.push({ key, files: rows.length, bytes: rows.reduce((sum, f) => sum + f.size, 0) });
    }
    const tree: JobTree = { root: plan.root, dirs: plan.dirs, symlinks: plan.symlinks };
    await writeJobFile(target, files.tree, await gzip(JSON.stringify(tree)));
    if (!lock.handOver) throw new RestoreJobError('the restore lock cannot be handed over to later steps');
    const lockToken = await lock.handOver(ttlMs);
    const job: RestoreJob = {
      jobId,
      backupId: plan.backupId!,
      target,
      stagingDir: staging,
      mode,
      lockToken,
      createdAt: started.toISOString(),
      files: archives.reduce((sum, a) => sum + a.files, 0),
      bytes: archives.reduce((sum, a) => sum + a.bytes, 0),
      archives,
      notes: leftovers.map(
        (l) =>
          `left by an earlier restore: ${l.path} (${l.files ?? '?'} files, ${l.bytes ?? '?'} bytes, ${Math.round(l.ageMs / 3_600_000)} h old): ${l.advice}`,
      ),
    };
    await writeJobFile(target, files.job, JSON.stringify(job, null, 2));
    deps.logger.info('restore job prepared', {
      jobId,
      backupId: job.backupId,
      target,
      mode,
      archives: archives.length,
      files: job.files,
      bytes: job.bytes,
    });
    return job;
  } catch (error) {
    if (staging) await removeStaging(staging);
    await lock.release().catch(() => undefined);
    throw error;
  }
}

/**
 * Step 2, once per archive (any order, several at once): extracts the archive's wanted files into
 * the staging folder, each checked against the manifest (size, sha256). Safe to retry: a retried
 * archive first removes the files of its own earlier attempt from the staging folder (files are
 * disjoint between archives, so no other archive's are touched); an archive already finished is not
 * read again. Never touches the live target.
 */
export async function restoreArchivePhase(
  deps: PhaseDeps,
  options: RestoreArchivePhaseOptions,
): Promise<RestoreArchiveOutcome> {
  const job = await loadJob(options.job);
  const index = job.archives.findIndex((a) => a.key === options.archiveKey);
  if (index < 0) {
    throw new RestoreJobError(
      `restore job ${job.jobId} (backup ${job.backupId} into ${job.target}) does not read archive ${JSON.stringify(options.archiveKey)}; it reads ${job.archives.length} archive(s), e.g. ${job.archives[0]?.key}`,
    );
  }
  const files = jobFiles(job.stagingDir, job.jobId);
  const done = await readDone(files.archiveDone(index + 1));
  if (done) return { archiveKey: options.archiveKey, ...done, alreadyDone: true };
  const wanted = await readFileList(files.archiveFiles(index + 1));
  const retried = await writeFile(files.archiveStarted(index + 1), new Date().toISOString(), {
    flag: 'wx',
  }).then(
    () => false,
    (error) => {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return true;
      throw targetError(error, job.target, 'writing the job folder', files.dir);
    },
  );
  if (retried) {
    // An earlier attempt died part-way: its files (and only its files) go, then extract again.
    let removed = 0;
    for (const f of wanted.values()) {
      const p = stagedPath(job.stagingDir, f.path);
      const st = lstatSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (!st.isFile()) {
        throw new RestoreJobError(
          `restore job ${job.jobId}: ${path.join(job.stagingDir, f.path)} should be a file of archive ${options.archiveKey} but is not; abandon the job`,
        );
      }
      await rm(p).catch((error) =>
        Promise.reject(targetError(error, job.target, 'removing', path.join(job.stagingDir, f.path))),
      );
      removed += 1;
    }
    deps.logger.warn('archive retried: removed the files of its earlier attempt', {
      jobId: job.jobId,
      archiveKey: options.archiveKey,
      removed,
    });
  }
  const totals = job.archives[index];
  const state = { bytes: 0, totalBytes: totals.bytes, files: 0, totalFiles: totals.files };
  const writer = new TreeWriter(job.stagingDir, `backup ${job.backupId}`, job.target, {
    onBytes: options.onProgress
      ? (n) => {
          state.bytes += n;
          options.onProgress?.({ ...state });
        }
      : undefined,
    signal: options.signal,
  });
  writer.writeConcurrency =
    options.ioConcurrency === undefined
      ? defaultIoConcurrency(job.stagingDir)
      : parseIoConcurrency(options.ioConcurrency, 'ioConcurrency');
  let restored: Awaited<ReturnType<typeof extractArchive>>;
  try {
    restored = await extractArchive({
      label: `backup ${job.backupId} archive ${options.archiveKey}`,
      open: () => deps.store.getStream(options.archiveKey),
      wanted,
      writer,
      fileDone: () => {
        state.files += 1;
        options.onProgress?.({ ...state });
      },
      signal: options.signal,
    });
    await writer.drain();
  } catch (error) {
    // Partial files stay for the retry (it removes them) or for abandon (it removes everything).
    await writer.settle();
    deps.logger.error('restoring an archive of a restore job failed', {
      jobId: job.jobId,
      archiveKey: options.archiveKey,
      error: errorMessage(error),
    });
    throw error;
  }
  const outcome = { files: restored.size, bytes: [...restored.values()].reduce((sum, f) => sum + f.size, 0) };
  await writeJobFile(job.target, files.archiveDone(index + 1), JSON.stringify(outcome));
  deps.logger.info('archive of a restore job restored', {
    jobId: job.jobId,
    archiveKey: options.archiveKey,
    ...outcome,
  });
  return { archiveKey: options.archiveKey, ...outcome, alreadyDone: false };
}

/**
 * Step 3: checks every archive finished and every wanted file is in the staging folder with its
 * size, restores folders (modes and times last), links and the root's mode and time, then swaps the
 * tree in (`replace` keeps the live tree as `DIR.pre-restore-<time>`) or renames it into the new
 * folder, and releases the lock. A failure before the swap leaves the target as it was.
 */
export async function finishRestore(
  deps: RestoreDeps,
  options: { readonly job: RestoreJobRef; readonly signal?: AbortSignal },
): Promise<RestoreResult> {
  const job = await loadJob(options.job);
  const files = jobFiles(job.stagingDir, job.jobId);
  const unfinished: string[] = [];
  for (const [i, a] of job.archives.entries()) {
    if (!(await readDone(files.archiveDone(i + 1)))) unfinished.push(a.key);
  }
  if (unfinished.length > 0) {
    throw new RestoreJobError(
      `restore job ${job.jobId}: ${unfinished.length} of ${job.archives.length} archive(s) were not restored yet, e.g. ${unfinished[0]}; run their steps first (nothing was swapped in; the target is as it was)`,
    );
  }
  let restoredFiles = 0;
  let restoredBytes = 0;
  for (const [i, a] of job.archives.entries()) {
    for (const f of (await readFileList(files.archiveFiles(i + 1))).values()) {
      const p = stagedPath(job.stagingDir, f.path);
      const st = lstatSync(p, { throwIfNoEntry: false });
      if (!st?.isFile() || st.size !== f.size) {
        throw new RestoreJobError(
          `restore job ${job.jobId}: ${JSON.stringify(f.path)} (archive ${a.key}) is ${st ? (st.isFile() ? `${st.size} bytes instead of ${f.size}` : 'not a file') : 'missing'} in the staging folder ${job.stagingDir}; abandon the job and restore again (the target is as it was)`,
        );
      }
      restoredFiles += 1;
      restoredBytes += f.size;
    }
  }
  const tree = JSON.parse((await gunzip(await readFile(files.tree))).toString('utf8')) as JobTree;
  options.signal?.throwIfAborted();
  // Out of the tree before its root's mode and time are set.
  await rm(files.dir, { recursive: true, force: true });
  const writer = new TreeWriter(job.stagingDir, `backup ${job.backupId}`, job.target, {
    signal: options.signal,
  });
  await writer.finish(tree.dirs, tree.symlinks, tree.root);
  options.signal?.throwIfAborted();
  const previousTree = await swapInto(
    job.stagingDir,
    job.target,
    job.mode,
    backupIdFor(deps.clock.now()).slice('backup_'.length),
  ).catch((error) =>
    Promise.reject(targetError(error, job.target, 'moving the restored tree into', job.target)),
  );
  await releaseLock(deps.logger, job.target, job.lockToken);
  const result: RestoreResult = {
    status: 'SUCCEEDED',
    backupId: job.backupId,
    source: deps.store.url,
    target: job.target,
    mode: job.mode,
    dryRun: false,
    files: restoredFiles,
    bytes: restoredBytes,
    dirs: tree.dirs.length,
    symlinks: tree.symlinks.length,
    archivesRead: job.archives.map((a) => a.key),
    verified: true,
    previousTree,
    leftovers: [],
    notes: job.notes,
    durationMs: deps.clock.now().getTime() - Date.parse(job.createdAt),
  };
  deps.logger.info('restore job finished', { jobId: job.jobId, ...result, notes: undefined });
  return result;
}

/**
 * The Catch step: removes the staging folder and releases the lock. The live target is never
 * touched (a failed finish already put it back). Safe to run twice, and after finish succeeded.
 */
export async function abandonRestore(
  deps: Pick<RestoreDeps, 'logger'>,
  options: { readonly job: RestoreJobRef; readonly error?: unknown },
): Promise<void> {
  const { jobId, target } = checkRef(options.job);
  const staging = stagingPathFor(target, jobId);
  const fromFile = await readFile(jobFiles(staging, jobId).job, 'utf8')
    .then((text) => (JSON.parse(text) as RestoreJob).lockToken)
    .catch(() => undefined);
  await removeStaging(staging);
  const token = options.job.lockToken ?? fromFile;
  if (token) await releaseLock(deps.logger, target, token);
  else
    deps.logger.warn('restore job abandoned without its lock token: the lock expires by itself', {
      jobId,
      target,
    });
  deps.logger.error('restore job abandoned; the target was left as it was', {
    jobId,
    target,
    error: options.error === undefined ? undefined : describeFailure(options.error),
  });
}

interface JobTree {
  readonly root?: { readonly mode: number; readonly mtimeMs: number };
  readonly dirs: DirEntry[];
  readonly symlinks: SymlinkEntry[];
}

function jobDirName(jobId: string): string {
  return `.media-backup-restore-job-${jobId}`;
}

function jobFiles(staging: string, jobId: string) {
  const dir = path.join(staging, jobDirName(jobId));
  const n = (index: number) => String(index).padStart(4, '0');
  return {
    dir,
    job: path.join(dir, 'job.json'),
    tree: path.join(dir, 'tree.json.gz'),
    archiveFiles: (i: number) => path.join(dir, `archive-${n(i)}.files.jsonl.gz`),
    archiveStarted: (i: number) => path.join(dir, `archive-${n(i)}.started`),
    archiveDone: (i: number) => path.join(dir, `archive-${n(i)}.done.json`),
  };
}

/** The job reference comes from an event: it decides what is deleted, so only its exact shape. */
function checkRef(ref: RestoreJobRef): { jobId: string; target: string } {
  if (typeof ref?.jobId !== 'string' || !/^[0-9a-f]{16}$/.test(ref.jobId)) {
    throw new UsageError(
      `job.jobId must be the 16 hex digits prepareRestore returned (got ${JSON.stringify(ref?.jobId)})`,
    );
  }
  if (
    typeof ref.target !== 'string' ||
    !path.isAbsolute(ref.target) ||
    path.resolve(ref.target) !== ref.target
  ) {
    throw new UsageError(
      `job.target must be the absolute target path prepareRestore returned (got ${JSON.stringify(ref?.target)})`,
    );
  }
  return { jobId: ref.jobId, target: ref.target };
}

async function loadJob(ref: RestoreJobRef): Promise<RestoreJob> {
  const { jobId, target } = checkRef(ref);
  const file = jobFiles(stagingPathFor(target, jobId), jobId).job;
  const text = await readFile(file, 'utf8').catch((error) =>
    Promise.reject(
      new RestoreJobError(
        `restore job ${jobId} into ${target} is gone (${(error as NodeJS.ErrnoException).code ?? errorMessage(error)} reading ${file}): it was finished or abandoned, or never prepared`,
        { cause: error },
      ),
    ),
  );
  const job = JSON.parse(text) as RestoreJob;
  if (job.jobId !== jobId || job.target !== target) {
    throw new RestoreJobError(
      `${file} describes job ${job.jobId} into ${job.target}, not ${jobId} into ${target}`,
    );
  }
  return job;
}

/** A staged file's path (validated manifest path, not-UTF-8 names as their bytes). */
function stagedPath(staging: string, rel: string): string | Buffer {
  return fsPath(path.join(staging, ...rel.split('/')));
}

async function gzipLines(rows: readonly FileEntry[]): Promise<Buffer> {
  return gzip(Buffer.from(rows.map((r) => `${JSON.stringify(r)}\n`).join(''), 'utf8'), { level: 1 });
}

async function readFileList(file: string): Promise<Map<string, FileEntry>> {
  const text = (await gunzip(await readFile(file))).toString('utf8');
  const out = new Map<string, FileEntry>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const row = JSON.parse(line) as FileEntry;
    out.set(row.path, row);
  }
  return out;
}

async function readDone(file: string): Promise<{ files: number; bytes: number } | undefined> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as { files: number; bytes: number });
}

/** Written whole or not at all: a reader never sees half a job file. */
async function writeJobFile(target: string, file: string, data: Buffer | string): Promise<void> {
  const temp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, data, { flag: 'wx', mode: 0o600 });
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw targetError(error, target, 'writing the job file', file);
  }
}

/** Removes a staging folder, also after finish made some of its folders read-only. */
async function removeStaging(staging: string): Promise<void> {
  try {
    await rm(staging, { recursive: true, force: true });
  } catch {
    await makeWritable(staging);
    await rm(staging, { recursive: true, force: true });
  }
}

async function makeWritable(dir: string): Promise<void> {
  await chmod(dir, 0o700).catch(() => undefined);
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) await makeWritable(path.join(dir, e.name));
}

async function releaseLock(logger: Logger, target: string, token: string): Promise<void> {
  await releaseHandedOverRestoreLock(target, token).then(
    (released) => {
      if (!released)
        logger.warn("the restore lock was no longer this job's (expired and taken over?)", { target });
    },
    (error) => logger.warn('could not release the restore lock', { target, error: errorMessage(error) }),
  );
}

function describeFailure(error: unknown): string {
  if (error instanceof Error) return errorMessage(error);
  if (typeof error === 'string') return error;
  return JSON.stringify(error);
}
