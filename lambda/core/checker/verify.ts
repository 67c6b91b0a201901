import { createHash, type Hash } from 'node:crypto';
import { type Readable, Transform } from 'node:stream';
import type { ObjectStore } from '../../store/types.js';
import type { Clock, Logger } from '../deps.js';
import { errorMessage } from '../errors.js';
import {
  archiveRecordOf,
  archivesReferenced,
  type BackupMetadata,
  type CatalogEntry,
  listCommittedBackups,
  readManifest,
  readMetadata,
} from '../repository/catalog.js';
import { VERIFY_STATUS_KEY } from '../repository/layout.js';
import { readTarGz } from '../restorer/archive-reader.js';
import { resolveRestorePoint } from '../restorer/resolve.js';
import { type RestoreOptions, runRestore } from '../restorer/restore.js';

export interface VerifyOptions {
  /** `latest` (default), a backup id or archive name; ignored with `all`. */
  readonly backup?: string;
  /** Every committed backup. */
  readonly all?: boolean;
  /** Also download, decompress and re-hash every file against the manifest (a restore drill). */
  readonly deep?: boolean;
  /** Deep only: the dry-run restore's progress, per backup (the CLI's progress bar). */
  readonly onProgress?: RestoreOptions['onProgress'];
  /**
   * Record the outcome in `status/last-verify.json` (best effort: a read-only store only logs a
   * warning). Checks that merely look (health) pass `false`. @default true
   */
  readonly record?: boolean;
  /**
   * Rotating deep verify (the scheduled drill; with `deep`, not `all`): the restore drill of the
   * latest backup (which reads its chain's archives), then archive checks (one download each: the
   * archive's sha256 and every file it holds against its backup's manifest) of the archives no run
   * deep-verified yet, oldest first, then of those deep-verified longest ago, up to `deepSlice`.
   * Each run thus covers everything written since the last one, and older archives in turn.
   * @default false
   */
  readonly rotate?: boolean;
  /** Rotating only: archives checked beyond the latest backup's drill. @default 8 */
  readonly deepSlice?: number;
}

/** Rotating verify's default slice: a week of daily backups plus one older archive re-checked. */
export const DEFAULT_DEEP_SLICE = 8;

export interface BackupVerification {
  readonly backupId: string;
  readonly type: 'full' | 'incremental';
  readonly ok: boolean;
  /** One sentence per problem, naming the object. Empty when ok. */
  readonly problems: readonly string[];
  readonly archivesChecked: number;
  /** Files re-hashed against the manifest (deep only). */
  readonly filesVerified: number | null;
  /**
   * The check itself failed (the store could not be read: a timeout, a reset, access denied), so
   * nothing is known about the backup's content; `problems` says why. False when it was checked.
   */
  readonly inconclusive: boolean;
  /**
   * Archives deep-verified by this check: downloaded whole with the recorded sha256, and every file
   * read from them matched a manifest. Empty for a quick check.
   */
  readonly archivesDeepVerified: readonly string[];
  /** How the archive was checked: `checksum` (S3's stored CRC64NVME, no download), `sha256` (downloaded and hashed), `drill` (deep: restore drill), `archive` (deep: archive check of a rotating verify). */
  readonly method?: 'checksum' | 'sha256' | 'drill' | 'archive';
}

/** Body of `status/last-verify.json` ({@link VERIFY_STATUS_KEY}). */
export interface VerifyRecord {
  readonly status: 'SUCCEEDED' | 'FAILED';
  /** When the latest verify run finished. */
  readonly checkedAt: string;
  /** Whether the latest run was deep. */
  readonly deep: boolean;
  /**
   * One entry per backup ever checked that still exists: the latest run's entries, plus earlier
   * entries for backups it did not check (so a damaged chain stays known until checked again).
   */
  readonly backups: readonly VerifyRecordEntry[];
  /** The same entries as `{ backupId, ok, error? }`. */
  readonly results: readonly { readonly backupId: string; readonly ok: boolean; readonly error?: string }[];
  /**
   * Archive key -> when a verify last deep-verified it (whole download, sha256 and files checked),
   * merged over runs, for archives that still exist. An archive missing here was never deep-verified.
   */
  readonly deepVerified?: Readonly<Record<string, string>>;
  /** What the latest run covered. */
  readonly covered?: {
    readonly backups: readonly string[];
    readonly archivesDeepVerified: readonly string[];
    readonly rotating: boolean;
  };
}

export interface VerifyRecordEntry {
  readonly backupId: string;
  readonly ok: boolean;
  readonly problems: readonly string[];
  /** The problems in one line, when not ok. */
  readonly error?: string;
  /** Not ok because the store could not be read, not because the content is damaged. */
  readonly inconclusive?: boolean;
  readonly deep: boolean;
  readonly checkedAt: string;
}

export interface VerifyResult {
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly store: string;
  readonly deep: boolean;
  readonly backups: readonly BackupVerification[];
  /** Whether `status/last-verify.json` was written. */
  readonly recorded: boolean;
}

/**
 * Checks that backups can be restored. Quick: the manifest parses, the metadata is there, the
 * archive exists with the recorded size and sha256 (read in full: S3's multipart checksums are not a
 * whole-object sha256), and every archive the manifest references exists. Deep: a dry-run restore.
 */
export async function runVerify(
  deps: { store: ObjectStore; clock: Clock; logger: Logger },
  options: VerifyOptions,
): Promise<VerifyResult> {
  const targets = options.all
    ? await listCommittedBackups(deps.store)
    : [await resolveRestorePoint(deps.store, { backup: options.backup })];
  const deep = options.deep ?? false;
  const rotating = deep && !options.all && (options.rotate ?? false);
  const backups: BackupVerification[] = [];
  // One backup's failure (even a network error) never stops the others from being checked.
  const checkEach = async (
    entries: readonly CatalogEntry[],
    check: (entry: CatalogEntry) => Promise<BackupVerification>,
  ) => {
    for (const entry of entries) {
      try {
        backups.push(await check(entry));
      } catch (error) {
        backups.push({
          backupId: entry.backupId,
          type: entry.type,
          ok: false,
          problems: [`backup ${entry.backupId}: could not be checked: ${errorMessage(error)}`],
          archivesChecked: 0,
          filesVerified: null,
          inconclusive: isStoreFailure(error),
          archivesDeepVerified: [],
        });
      }
    }
  };
  await checkEach(targets, (entry) => verifyOne(deps, entry, deep, options.onProgress));
  if (rotating) {
    const covered = new Set(backups.flatMap((b) => b.archivesDeepVerified));
    const earlier = parseVerifyRecord(await deps.store.get(VERIFY_STATUS_KEY).catch(() => undefined));
    const slice = rotationSlice(
      await listCommittedBackups(deps.store),
      earlier?.deepVerified,
      covered,
      options.deepSlice ?? DEFAULT_DEEP_SLICE,
    );
    await checkEach(slice, (entry) => deepCheckArchive(deps.store, entry));
  }
  const ok = backups.every((b) => b.ok);
  const recorded = options.record === false ? false : await recordOutcome(deps, backups, deep, rotating);
  const result: VerifyResult = {
    status: ok ? 'SUCCEEDED' : 'FAILED',
    store: deps.store.url,
    deep,
    backups,
    recorded,
  };
  if (ok) deps.logger.info('verify passed', { backups: backups.length, deep: result.deep });
  else deps.logger.error('verify found problems', { problems: backups.flatMap((b) => b.problems) });
  return result;
}

/**
 * Writes `status/last-verify.json`, merged with the earlier record's entries for backups this run
 * did not check and that still exist. Best effort: false (and a warning) when the store refuses.
 */
async function recordOutcome(
  deps: { store: ObjectStore; clock: Clock; logger: Logger },
  backups: readonly BackupVerification[],
  deep: boolean,
  rotating: boolean,
): Promise<boolean> {
  try {
    const checkedAt = deps.clock.now().toISOString();
    const checked = new Set(backups.map((b) => b.backupId));
    const committed = await listCommittedBackups(deps.store);
    const existing = new Set(committed.map((e) => e.backupId));
    const existingArchives = new Set(committed.map((e) => e.archiveKey));
    const earlierRecord = parseVerifyRecord(await deps.store.get(VERIFY_STATUS_KEY));
    const earlier = earlierRecord?.backups ?? [];
    const deepVerified: Record<string, string> = {};
    for (const [key, at] of Object.entries(earlierRecord?.deepVerified ?? {})) {
      if (existingArchives.has(key)) deepVerified[key] = at;
    }
    const archivesDeepVerified = [...new Set(backups.flatMap((b) => b.archivesDeepVerified))].sort();
    for (const key of archivesDeepVerified) deepVerified[key] = checkedAt;
    const entries: VerifyRecordEntry[] = [
      ...earlier.filter((e) => !checked.has(e.backupId) && existing.has(e.backupId)),
      ...backups.map((b) => ({
        backupId: b.backupId,
        ok: b.ok,
        problems: b.problems,
        ...(b.ok ? {} : { error: b.problems.join('; ') }),
        ...(b.inconclusive ? { inconclusive: true } : {}),
        deep,
        checkedAt,
      })),
    ].sort((a, b) => (a.backupId < b.backupId ? -1 : a.backupId > b.backupId ? 1 : 0));
    const record: VerifyRecord = {
      status: entries.every((e) => e.ok) ? 'SUCCEEDED' : 'FAILED',
      checkedAt,
      deep,
      backups: entries,
      results: entries.map((e) => ({
        backupId: e.backupId,
        ok: e.ok,
        ...(e.error ? { error: e.error } : {}),
      })),
      deepVerified: Object.fromEntries(Object.entries(deepVerified).sort(([a], [b]) => (a < b ? -1 : 1))),
      covered: { backups: [...checked].sort(), archivesDeepVerified, rotating },
    };
    await deps.store.put(VERIFY_STATUS_KEY, JSON.stringify(record, null, 2), {
      contentType: 'application/json',
    });
    return true;
  } catch (error) {
    deps.logger.warn('could not record the verify outcome in the store', {
      key: VERIFY_STATUS_KEY,
      error: errorMessage(error),
    });
    return false;
  }
}

/** The recorded verify outcome, or undefined when there is none or it does not parse. */
export function parseVerifyRecord(raw: Buffer | undefined): VerifyRecord | undefined {
  if (!raw) return undefined;
  try {
    const value = JSON.parse(raw.toString('utf8')) as Partial<VerifyRecord>;
    if (!Array.isArray(value.backups)) return undefined;
    return value as VerifyRecord;
  } catch {
    return undefined;
  }
}

async function verifyOne(
  deps: { store: ObjectStore; clock: Clock; logger: Logger },
  entry: CatalogEntry,
  deep: boolean,
  onProgress?: RestoreOptions['onProgress'],
): Promise<BackupVerification> {
  const { store } = deps;
  const problems: string[] = [];
  const label = `backup ${entry.backupId}`;
  let archivesChecked = 0;
  let filesVerified: number | null = null;
  const archivesDeepVerified: string[] = [];
  let method: BackupVerification['method'];
  const done = (): BackupVerification => ({
    backupId: entry.backupId,
    type: entry.type,
    ok: problems.length === 0,
    problems,
    archivesChecked,
    filesVerified,
    inconclusive: false,
    archivesDeepVerified: problems.length === 0 ? archivesDeepVerified : [],
    ...(method ? { method } : {}),
  });

  let referenced: string[] = [];
  try {
    referenced = archivesReferenced(await readManifest(store, entry));
  } catch (error) {
    if (isStoreFailure(error)) throw error;
    problems.push(`${label}: ${errorMessage(error)}`);
    return done();
  }
  const metadata = await readMetadata(store, entry);
  if (!metadata) problems.push(`${label}: metadata ${entry.metadataKey} is missing or unreadable`);
  const record = metadata ? archiveRecordOf(metadata, entry.archiveKey) : undefined;

  // Quick: S3's stored full-object CRC64NVME against the metadata's (one HeadObject, no download)
  // when both exist; else download and hash. Deep: the drill below reads the archive once and
  // hashes it on the way, so it is not downloaded twice.
  const checksum =
    !deep && record?.crc64nvme && store.headChecksum ? await store.headChecksum(entry.archiveKey) : undefined;
  const stored = checksum ?? (await store.head(entry.archiveKey));
  let hashLater = false;
  if (!stored) {
    // An incremental with no changes still has an archive; only a missing object is a problem.
    problems.push(`${label}: archive ${entry.archiveKey} is missing`);
  } else if (record) {
    if (stored.size !== record.bytes) {
      problems.push(
        `${label}: archive ${entry.archiveKey} is ${stored.size} bytes; the metadata recorded ${record.bytes}`,
      );
    } else if (checksum?.crc64nvme) {
      archivesChecked += 1;
      method = 'checksum';
      if (checksum.crc64nvme !== record.crc64nvme) {
        problems.push(
          `${label}: archive ${entry.archiveKey} has CRC64NVME ${checksum.crc64nvme} in the store; the metadata recorded ${record.crc64nvme} (the object changed or is corrupt)`,
        );
      }
    } else if (deep) {
      hashLater = true;
    } else {
      // No stored checksum (a folder store, an S3-compatible server, an older backup, or an object
      // replaced without one): download and hash.
      method = 'sha256';
      const sha256 = await hashObject(store, entry.archiveKey);
      archivesChecked += 1;
      shaProblem(problems, label, entry.archiveKey, sha256, record.sha256);
    }
  }
  for (const key of referenced) {
    if (key !== entry.archiveKey && !(await store.head(key))) {
      problems.push(`${label}: archive ${key}, which holds files of this backup, is missing (chain broken)`);
    }
  }
  if (deep && problems.length === 0) {
    method = 'drill';
    const hashing = hashingReads(store);
    try {
      const drill = await runRestore(
        { ...deps, store: hashing.store },
        { backup: entry.backupId, dryRun: true, onProgress },
      );
      filesVerified = drill.files;
    } catch (error) {
      if (isStoreFailure(error)) throw error;
      problems.push(`${label}: deep check failed: ${errorMessage(error)}`);
    }
    if (hashLater && record) {
      // The drill's download of this archive, hashed on the way; hashed apart only when the drill
      // stopped before its end (or never opened it: a backup whose files are all elsewhere).
      const read = hashing.reads.get(entry.archiveKey);
      const sha256 = read?.complete ? read.sha256 : await hashObject(store, entry.archiveKey);
      archivesChecked += 1;
      shaProblem(problems, label, entry.archiveKey, sha256, record.sha256);
    }
    if (problems.length === 0) {
      // Every archive the drill read whole and whose sha256 matches its metadata is deep-verified.
      const byArchive = new Map((await listCommittedBackups(store)).map((c) => [c.archiveKey, c]));
      for (const [key, read] of hashing.reads) {
        const owner = byArchive.get(key);
        if (!read.complete || !owner) continue;
        const ownerMetadata = owner.backupId === entry.backupId ? metadata : await readMetadata(store, owner);
        if (ownerMetadata && archiveRecordOf(ownerMetadata, key)?.sha256 === read.sha256)
          archivesDeepVerified.push(key);
      }
      archivesDeepVerified.sort();
    }
  }
  return done();
}

function shaProblem(problems: string[], label: string, key: string, sha256: string, recorded: string): void {
  if (sha256 !== recorded) {
    problems.push(
      `${label}: archive ${key} has sha256 ${sha256}; the metadata recorded ${recorded} (the object changed or is corrupt)`,
    );
  }
}

/**
 * The store with every `getStream` hashed as it is read, so a restore drill verifies each archive's
 * sha256 in the same download. `complete` only when the reader consumed the stream to its end.
 */
function hashingReads(store: ObjectStore): {
  store: ObjectStore;
  reads: Map<string, { sha256: string; complete: boolean }>;
} {
  const reads = new Map<string, { sha256: string; complete: boolean }>();
  const wrapped: ObjectStore = Object.create(store);
  wrapped.getStream = async (key: string): Promise<Readable> => {
    const source = await store.getStream(key);
    const hash: Hash = createHash('sha256');
    reads.set(key, { sha256: '', complete: false });
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        callback(null, chunk);
      },
      flush(callback) {
        reads.set(key, { sha256: hash.digest('hex'), complete: true });
        callback();
      },
    });
    source.on('error', (error) => tap.destroy(error));
    // A reader that stops early must not leave the download open.
    tap.on('close', () => source.destroy());
    return source.pipe(tap);
  };
  return { store: wrapped, reads };
}

/**
 * Rotating verify's archive checks: archives the latest drill did not cover, never deep-verified
 * first (oldest first: the nearest to expiry), then those deep-verified longest ago; `limit` of them.
 * Without a record of earlier runs (`deepVerified` undefined: none yet, or the verify role cannot
 * write one) nothing says what was checked before, so the newest come first: what was written since
 * the last run, rather than the same oldest archives every time.
 */
export function rotationSlice(
  committed: readonly CatalogEntry[],
  deepVerified: Readonly<Record<string, string>> | undefined,
  coveredNow: ReadonlySet<string>,
  limit: number,
): CatalogEntry[] {
  const candidates = committed.filter((c) => !coveredNow.has(c.archiveKey));
  if (deepVerified === undefined) return [...candidates].reverse().slice(0, Math.max(0, limit));
  const never = candidates.filter((c) => deepVerified[c.archiveKey] === undefined);
  const before = candidates
    .filter((c) => deepVerified[c.archiveKey] !== undefined)
    .sort((a, b) => Date.parse(deepVerified[a.archiveKey]) - Date.parse(deepVerified[b.archiveKey]));
  return [...never, ...before].slice(0, Math.max(0, limit));
}

/**
 * The oldest committed backup whose archive no verify has deep-verified (per the verify record),
 * or undefined when every archive was. Health reports it.
 */
export function oldestNeverDeepVerified(
  committed: readonly CatalogEntry[],
  record: VerifyRecord | undefined,
): CatalogEntry | undefined {
  const deepVerified = record?.deepVerified ?? {};
  return committed.find((c) => deepVerified[c.archiveKey] === undefined);
}

/**
 * One archive, deep, in one download: its size and sha256 against the metadata, and every file its
 * backup's manifest says it holds read from it with the recorded size and sha256. Cheaper than a
 * restore drill of that backup, which would read its whole chain again.
 */
async function deepCheckArchive(store: ObjectStore, entry: CatalogEntry): Promise<BackupVerification> {
  const label = `backup ${entry.backupId}`;
  const problems: string[] = [];
  const result = (files: number | null, checked: number): BackupVerification => ({
    backupId: entry.backupId,
    type: entry.type,
    ok: problems.length === 0,
    problems,
    archivesChecked: checked,
    filesVerified: files,
    inconclusive: false,
    archivesDeepVerified: problems.length === 0 ? [entry.archiveKey] : [],
    method: 'archive',
  });
  let manifest: Awaited<ReturnType<typeof readManifest>>;
  try {
    manifest = await readManifest(store, entry);
  } catch (error) {
    if (isStoreFailure(error)) throw error;
    problems.push(`${label}: ${errorMessage(error)}`);
    return result(null, 0);
  }
  const metadata: BackupMetadata | undefined = await readMetadata(store, entry);
  if (!metadata) {
    problems.push(`${label}: metadata ${entry.metadataKey} is missing or unreadable`);
    return result(null, 0);
  }
  const expected = new Map<string, { size: number; sha256: string }>();
  for (const e of manifest.entries) {
    if (e.type === 'file' && e.archive === entry.archiveKey)
      expected.set(e.path, { size: e.size, sha256: e.sha256 });
  }
  const archiveHash = createHash('sha256');
  let archiveBytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      archiveHash.update(chunk);
      archiveBytes += chunk.length;
      callback(null, chunk);
    },
  });
  const source = await store.getStream(entry.archiveKey);
  source.on('error', (error) => tap.destroy(error));
  let files = 0;
  try {
    await readTarGz(source.pipe(tap), `${label}, archive ${entry.archiveKey}`, async (member) => {
      if (member.type !== 'file') {
        member.body.resume();
        return;
      }
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of member.body) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      const want = expected.get(member.path);
      if (!want) return; // skipped as changed while archived: in the archive, not in the manifest
      expected.delete(member.path);
      files += 1;
      const sha256 = hash.digest('hex');
      if (size !== want.size || sha256 !== want.sha256) {
        problems.push(
          `${label}: file ${JSON.stringify(member.path)} in archive ${entry.archiveKey} is ${size} bytes with sha256 ${sha256.slice(0, 12)}…; the manifest recorded ${want.size} bytes, ${want.sha256.slice(0, 12)}…`,
        );
      }
    });
  } catch (error) {
    if (isStoreFailure(error)) throw error;
    problems.push(`${label}: deep check of archive ${entry.archiveKey} failed: ${errorMessage(error)}`);
    return result(files, 1);
  } finally {
    source.destroy();
  }
  const record = archiveRecordOf(metadata, entry.archiveKey);
  if (!record) {
    problems.push(`${label}: metadata ${entry.metadataKey} records no archive ${entry.archiveKey}`);
  } else if (archiveBytes !== record.bytes) {
    problems.push(
      `${label}: archive ${entry.archiveKey} is ${archiveBytes} bytes; the metadata recorded ${record.bytes}`,
    );
  } else {
    shaProblem(problems, label, entry.archiveKey, archiveHash.digest('hex'), record.sha256);
  }
  for (const path of expected.keys()) {
    problems.push(`${label}: file ${JSON.stringify(path)} is missing from archive ${entry.archiveKey}`);
  }
  return result(files, 1);
}

/** The store could not be read (a `StoreRequestError` anywhere in the cause chain): says nothing about content. */
function isStoreFailure(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    if (e.name === 'StoreRequestError') return true;
  }
  return false;
}

async function hashObject(store: ObjectStore, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of await store.getStream(key)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
