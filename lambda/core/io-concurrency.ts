/**
 * How many files the backup reads at once (issue 13). On a network file system (EFS is NFS) every
 * open, stat and first read is a round trip of 0.5-3 ms, and many can be in flight: reading ahead and
 * scanning concurrently hides them. On a local disk the same async calls cost more than they save
 * (thread-pool hand-offs; docs/ARCHITECTURE.md "File I/O"), so one file at a time, synchronously.
 */
import { statfsSync } from 'node:fs';
import { UsageError } from './errors.js';

/** Files in flight on a network file system; the bench (bench/efs.ts) measured the gain flat above. */
export const NETWORK_IO_CONCURRENCY = 32;
export const MAX_IO_CONCURRENCY = 256;

/** statfs f_type of file systems where each call is a network (or user-space) round trip. */
const NETWORK_FS_TYPES = new Map<number, string>([
  [0x6969, 'nfs'],
  [0x517b, 'smb'],
  [0xfe534d42, 'smb2'],
  [0xff534d42, 'cifs'],
  [0x65735546, 'fuse'],
  [0x00c36400, 'ceph'],
  [0x0bd00bd0, 'lustre'],
  [0x01021997, '9p'],
  [0x5346414f, 'afs'],
  [0x01161970, 'gfs2'],
]);

/** The file system type's name when `dir` is on a network file system, else undefined. */
export function networkFsType(dir: string): string | undefined {
  try {
    return NETWORK_FS_TYPES.get(Number(statfsSync(dir).type));
  } catch {
    return undefined; // the scan reports a missing source; the default is then irrelevant
  }
}

/** NETWORK_IO_CONCURRENCY on a network file system, 1 elsewhere. */
export function defaultIoConcurrency(dir: string): number {
  return networkFsType(dir) ? NETWORK_IO_CONCURRENCY : 1;
}

/** Validates a configured value (CLI --io-concurrency, IO_CONCURRENCY). */
export function parseIoConcurrency(raw: string | number, what = 'io concurrency'): number {
  const n = typeof raw === 'number' ? raw : Number(raw);
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_IO_CONCURRENCY) {
    throw new UsageError(
      `${what} must be a whole number from 1 to ${MAX_IO_CONCURRENCY} (got ${JSON.stringify(raw)}): 1 reads one file at a time (local disks), ${NETWORK_IO_CONCURRENCY} suits EFS`,
    );
  }
  return n;
}
