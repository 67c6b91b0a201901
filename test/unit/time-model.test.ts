import { describe, expect, it } from 'vitest';
import {
  assertFitsInTime,
  DEFAULT_BYTES_PER_SECOND,
  DEFAULT_COMMIT_MS,
  estimateBackup,
  InsufficientTimeError,
  MIN_PER_FILE_MS,
  perFileMsFromScan,
  READ_COST_PER_SCAN_ENTRY,
} from '../../lambda/core/archiver/time-model.js';

describe('time model (issue 13)', () => {
  it('derives the per-file cost from the scan: its cost per entry times the read/stat ratio', () => {
    expect(perFileMsFromScan({ entries: 1000, elapsedMs: 2000 })).toBe(2 * READ_COST_PER_SCAN_ENTRY);
    // An empty or instant scan still costs the CPU floor per file.
    expect(perFileMsFromScan({ entries: 0, elapsedMs: 0 })).toBe(MIN_PER_FILE_MS);
    expect(perFileMsFromScan({ entries: 10, elapsedMs: 0 })).toBe(MIN_PER_FILE_MS);
  });

  it('adds the files, the bytes and the commit', () => {
    const e = estimateBackup({ files: 5000, bytes: 100e6 }, { entries: 5050, elapsedMs: 5050 });
    expect(e.perFileMs).toBe(READ_COST_PER_SCAN_ENTRY);
    expect(e.filesMs).toBe(5000 * READ_COST_PER_SCAN_ENTRY);
    expect(e.bytesMs).toBeCloseTo((100e6 / DEFAULT_BYTES_PER_SECOND) * 1000);
    expect(e.totalMs).toBeCloseTo(e.filesMs + e.bytesMs + DEFAULT_COMMIT_MS);
  });

  it('takes configured rates over the measured ones', () => {
    const e = estimateBackup(
      { files: 10, bytes: 1e6 },
      { entries: 10, elapsedMs: 1e6 },
      { perFileMs: 1, bytesPerSecond: 1e6, commitMs: 0 },
    );
    expect(e.totalMs).toBe(10 + 1000);
  });

  it.each([{ perFileMs: -1 }, { bytesPerSecond: 0 }, { commitMs: Number.NaN }])(
    'rejects bad rates %o',
    (rates) => {
      expect(() => estimateBackup({ files: 1, bytes: 1 }, { entries: 1, elapsedMs: 1 }, rates)).toThrow(
        RangeError,
      );
    },
  );

  it('fails a run that does not fit, with the figures and the ways out; passes one that does', () => {
    const e = estimateBackup({ files: 200_000, bytes: 2e9 }, { entries: 200_000, elapsedMs: 400_000 });
    expect(() => assertFitsInTime(e, e.totalMs + 1, '/mnt/efs')).not.toThrow();
    expect(() => assertFitsInTime(e, 600_000, '/mnt/efs')).toThrow(InsufficientTimeError);
    expect(() => assertFitsInTime(e, 600_000, '/mnt/efs')).toThrow(
      /backup of \/mnt\/efs would not finish in time: 200000 files \(2000\.0 MB\) to read need about 669 s .* only 600 s remain .*Nothing was written/,
    );
  });
});
