import { createHash } from 'node:crypto';
import type { ObjectStore } from '../store/types.js';
import {
  archivesReferenced,
  type CatalogEntry,
  listCommittedBackups,
  readManifest,
  readMetadata,
} from './catalog.js';
import type { Clock, Logger } from './deps.js';
import { errorMessage } from './errors.js';
import { VERIFY_STATUS_KEY } from './layout.js';
import { resolveRestorePoint } from './resolve.js';
import { type RestoreOptions, runRestore } from './restore.js';

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
}

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
  const backups: BackupVerification[] = [];
  // One backup's failure (even a network error) never stops the others from being checked.
  for (const entry of targets) {
    try {
      backups.push(await verifyOne(deps, entry, deep, options.onProgress));
    } catch (error) {
      backups.push({
        backupId: entry.backupId,
        type: entry.type,
        ok: false,
        problems: [`backup ${entry.backupId}: could not be checked: ${errorMessage(error)}`],
        archivesChecked: 0,
        filesVerified: null,
        inconclusive: isStoreFailure(error),
      });
    }
  }
  const ok = backups.every((b) => b.ok);
  const recorded = options.record === false ? false : await recordOutcome(deps, backups, deep);
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
): Promise<boolean> {
  try {
    const checkedAt = deps.clock.now().toISOString();
    const checked = new Set(backups.map((b) => b.backupId));
    const existing = new Set((await listCommittedBackups(deps.store)).map((e) => e.backupId));
    const earlier = parseVerifyRecord(await deps.store.get(VERIFY_STATUS_KEY))?.backups ?? [];
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
  const done = () => ({
    backupId: entry.backupId,
    type: entry.type,
    ok: problems.length === 0,
    problems,
    archivesChecked,
    filesVerified,
    inconclusive: false,
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

  const stored = await store.head(entry.archiveKey);
  if (!stored) {
    // An incremental with no changes still has an archive; only a missing object is a problem.
    problems.push(`${label}: archive ${entry.archiveKey} is missing`);
  } else if (metadata) {
    if (stored.size !== metadata.archive.bytes) {
      problems.push(
        `${label}: archive ${entry.archiveKey} is ${stored.size} bytes; the metadata recorded ${metadata.archive.bytes}`,
      );
    } else {
      const sha256 = await hashObject(store, entry.archiveKey);
      archivesChecked += 1;
      if (sha256 !== metadata.archive.sha256) {
        problems.push(
          `${label}: archive ${entry.archiveKey} has sha256 ${sha256}; the metadata recorded ${metadata.archive.sha256} (the object changed or is corrupt)`,
        );
      }
    }
  }
  for (const key of referenced) {
    if (key !== entry.archiveKey && !(await store.head(key))) {
      problems.push(`${label}: archive ${key}, which holds files of this backup, is missing (chain broken)`);
    }
  }
  if (deep && problems.length === 0) {
    try {
      const drill = await runRestore(deps, { backup: entry.backupId, dryRun: true, onProgress });
      filesVerified = drill.files;
    } catch (error) {
      if (isStoreFailure(error)) throw error;
      problems.push(`${label}: deep check failed: ${errorMessage(error)}`);
    }
  }
  return done();
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
