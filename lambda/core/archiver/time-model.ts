/**
 * How long will this backup take? Estimated from the plan (files and bytes to read) and rates: the
 * per-file cost is derived from the scan just done (on EFS every call is a network round trip, and the
 * scan measured what one costs on this mount, at this concurrency), the byte cost from a throughput
 * assumption (gzip + upload). Used to log the estimate and to refuse a run that cannot finish inside
 * the Lambda invocation's remaining time, instead of dying at the deadline with nothing committed.
 */
import { MediaBackupError } from '../errors.js';

/**
 * Reading one file costs about this many scan entries: open, fstat before and after and the first
 * read, against the scan's lstat (+ its share of readdir), both at the same concurrency. Measured
 * with the latency fs (bench/efs.ts, 5,000 files, 1 ms per call, 32 files read ahead): the 1%
 * incremental (almost only the scan) took 3.9 s, ~0.77 ms per entry; the full 8.5 s, so ~0.92 ms
 * more per file read: a ratio of ~1.2. 1.5 leaves some margin without refusing runs that would fit
 * (an estimate too high fails a good run; too low only reaches the deadline abort, as without it).
 */
export const READ_COST_PER_SCAN_ENTRY = 1.5;
/** Compress + upload throughput assumed when none is given: well below this machine's ~90 MB/s. */
export const DEFAULT_BYTES_PER_SECOND = 30e6;
/** Manifest, metadata, status and lock release after the archive: a few requests. */
export const DEFAULT_COMMIT_MS = 2_000;
/** A file costs at least this much CPU (tar header, hash set-up, bookkeeping), even on a local disk. */
export const MIN_PER_FILE_MS = 0.05;

export interface TimeModelRates {
  /** Cost of reading one file's metadata and first bytes, ms. @default from the scan */
  readonly perFileMs?: number;
  /** @default DEFAULT_BYTES_PER_SECOND */
  readonly bytesPerSecond?: number;
  /** @default DEFAULT_COMMIT_MS */
  readonly commitMs?: number;
}

export interface ScanMeasurement {
  /** Entries the scan listed (files, folders, links). */
  readonly entries: number;
  /** Wall time of the scan, ms. */
  readonly elapsedMs: number;
}

export interface RunEstimate {
  readonly files: number;
  readonly bytes: number;
  readonly perFileMs: number;
  readonly bytesPerSecond: number;
  /** files x perFileMs */
  readonly filesMs: number;
  /** bytes / bytesPerSecond */
  readonly bytesMs: number;
  readonly commitMs: number;
  /** filesMs and bytesMs overlap only partly; their sum plus the commit, as an upper-side estimate. */
  readonly totalMs: number;
}

/** Per-file read cost implied by a scan: a scan entry's cost times READ_COST_PER_SCAN_ENTRY. */
export function perFileMsFromScan(scan: ScanMeasurement): number {
  if (scan.entries <= 0 || !(scan.elapsedMs >= 0)) return MIN_PER_FILE_MS;
  return Math.max(MIN_PER_FILE_MS, (scan.elapsedMs / scan.entries) * READ_COST_PER_SCAN_ENTRY);
}

/** Estimated time to archive `files` files of `bytes` bytes in total, then commit. */
export function estimateBackup(
  plan: { readonly files: number; readonly bytes: number },
  scan: ScanMeasurement,
  rates: TimeModelRates = {},
): RunEstimate {
  const perFileMs = rates.perFileMs ?? perFileMsFromScan(scan);
  const bytesPerSecond = rates.bytesPerSecond ?? DEFAULT_BYTES_PER_SECOND;
  const commitMs = rates.commitMs ?? DEFAULT_COMMIT_MS;
  if (!(perFileMs >= 0) || !(bytesPerSecond > 0) || !(commitMs >= 0)) {
    throw new RangeError(
      `time model rates must be positive numbers (perFileMs ${perFileMs}, bytesPerSecond ${bytesPerSecond}, commitMs ${commitMs})`,
    );
  }
  const filesMs = plan.files * perFileMs;
  const bytesMs = (plan.bytes / bytesPerSecond) * 1000;
  return {
    files: plan.files,
    bytes: plan.bytes,
    perFileMs,
    bytesPerSecond,
    filesMs,
    bytesMs,
    commitMs,
    totalMs: filesMs + bytesMs + commitMs,
  };
}

/** The run would not finish before the invocation's deadline: refused before the archive started. */
export class InsufficientTimeError extends MediaBackupError {
  override readonly name = 'InsufficientTimeError';
}

/**
 * Throws InsufficientTimeError when the estimate does not fit in `remainingMs`. The message gives
 * the figures and the ways out; nothing has been written to the store at this point.
 */
export function assertFitsInTime(estimate: RunEstimate, remainingMs: number, source: string): void {
  if (estimate.totalMs <= remainingMs) return;
  const s = (ms: number) => `${Math.round(ms / 1000)} s`;
  throw new InsufficientTimeError(
    `backup of ${source} would not finish in time: ${estimate.files} files (${(estimate.bytes / 1e6).toFixed(1)} MB) ` +
      `to read need about ${s(estimate.totalMs)} (${estimate.perFileMs.toFixed(2)} ms per file measured by the scan, ` +
      `${(estimate.bytesPerSecond / 1e6).toFixed(0)} MB/s, ${s(estimate.commitMs)} to commit) but only ${s(Math.max(0, remainingMs))} ` +
      `remain in this invocation. Nothing was written. Take this backup where time is not capped (the CLI on a host ` +
      `that mounts the file system), raise the function timeout (at most 900 s), or exclude part of the tree; ` +
      `later incrementals read only changed files and fit more easily.`,
  );
}
