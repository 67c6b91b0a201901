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
import { resolveRestorePoint } from './resolve.js';
import { runRestore } from './restore.js';

export interface VerifyOptions {
  /** `latest` (default), a backup id or archive name; ignored with `all`. */
  readonly backup?: string;
  /** Every committed backup. */
  readonly all?: boolean;
  /** Also download, decompress and re-hash every file against the manifest (a restore drill). */
  readonly deep?: boolean;
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
}

export interface VerifyResult {
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly store: string;
  readonly deep: boolean;
  readonly backups: readonly BackupVerification[];
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
  const backups: BackupVerification[] = [];
  for (const entry of targets) backups.push(await verifyOne(deps, entry, options.deep ?? false));
  const ok = backups.every((b) => b.ok);
  const result: VerifyResult = {
    status: ok ? 'SUCCEEDED' : 'FAILED',
    store: deps.store.url,
    deep: options.deep ?? false,
    backups,
  };
  if (ok) deps.logger.info('verify passed', { backups: backups.length, deep: result.deep });
  else deps.logger.error('verify found problems', { problems: backups.flatMap((b) => b.problems) });
  return result;
}

async function verifyOne(
  deps: { store: ObjectStore; clock: Clock; logger: Logger },
  entry: CatalogEntry,
  deep: boolean,
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
  });

  let referenced: string[] = [];
  try {
    referenced = archivesReferenced(await readManifest(store, entry));
  } catch (error) {
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
      const drill = await runRestore(deps, { backup: entry.backupId, dryRun: true });
      filesVerified = drill.files;
    } catch (error) {
      problems.push(`${label}: deep check failed: ${errorMessage(error)}`);
    }
  }
  return done();
}

async function hashObject(store: ObjectStore, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of await store.getStream(key)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
