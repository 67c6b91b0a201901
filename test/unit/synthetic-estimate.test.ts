import { describe, expect, it } from 'vitest';
import type { ScannedEntry } from '../../lambda/core/archiver/scan.js';
import type { Manifest, ManifestEntry } from '../../lambda/core/repository/manifest.js';
import { carriedEntries, estimateSyntheticWork } from '../../lambda/core/synthetic/synthetic-full.js';

const FULL = 'full/backup_20251227_020000.tar.gz';
const INCR = 'incremental/backup_20251228_020000.tar.gz';
const MiB = 1024 * 1024;
const CRC = 'AAAAAAAAAAA=';
type FileRow = Extract<ManifestEntry, { type: 'file' }>;

/** A base manifest of files laid end to end in FULL (sizes in MiB), and the scan that finds them unchanged. */
function world(sizesMiB: number[]): { base: Manifest; scan: ScannedEntry[] } {
  const entries: ManifestEntry[] = [
    {
      path: 'd',
      type: 'dir',
      mode: 0o755,
      mtimeMs: 1,
      archive: FULL,
      range: { offset: 0, length: 512, crc64nvme: CRC },
    },
  ];
  const scan: ScannedEntry[] = [{ path: 'd', type: 'dir', mode: 0o755, mtimeMs: 1 }];
  let at = 512;
  sizesMiB.forEach((mib, i) => {
    const p = `d/f${String(i).padStart(3, '0')}`;
    const size = mib * MiB;
    const range = { offset: at, length: size + 1024, crc64nvme: CRC };
    entries.push({
      path: p,
      type: 'file',
      size,
      mtimeMs: 1,
      mode: 0o644,
      sha256: 'a'.repeat(64),
      archive: FULL,
      range,
    });
    scan.push({ path: p, type: 'file', size, mtimeMs: 1, mode: 0o644 } as ScannedEntry);
    at += size + 1024;
  });
  const header = {
    format: 'media-backup/manifest' as const,
    version: 1 as const,
    backupId: 'backup_20251228_020000',
    type: 'incremental' as const,
    createdAt: '',
    baseBackupId: null,
    source: { path: '/m' },
    totals: { files: sizesMiB.length, bytes: 0 },
  };
  return { base: { header, entries }, scan };
}

describe('what a synthetic full would read, copy and fetch (the time check before it starts)', () => {
  it('an unchanged tree is one copied run; only the end-of-archive is fetched', () => {
    const { base, scan } = world([2, 2, 3]);
    const work = estimateSyntheticWork(scan, base);
    expect(work.files).toEqual([]);
    expect(work.bytesToRead).toBe(0);
    expect(work.bytesToCopy).toBe(512 + 7 * MiB + 3 * 1024);
    expect(work.bytesToFetch).toBe(1024);
    expect(work.parts).toBe(2);
  });

  it('a changed file is read; the short run before it and the fresh bytes are fetched, with what they borrow from the next run', () => {
    const { base, scan } = world([1, 2, 3, 6]);
    scan[2] = { ...scan[2], mtimeMs: 2 } as ScannedEntry; // d/f001 changed
    const work = estimateSyntheticWork(scan, base);
    expect(work.files.map((f) => f.path)).toEqual(['d/f001']);
    expect(work.bytesToRead).toBe(2 * MiB);
    // d, f000, f002, f003 as recorded; f001 estimated stored (size + 3 blocks); the end-of-archive.
    const all = 512 + 3 * 1024 + 10 * MiB + (2 * MiB + 1536) + 1024;
    expect(work.bytesToCopy + work.bytesToFetch).toBe(all);
    // [d, f000] (1 MiB) + the fresh f001 (~2 MiB) are under 5 MiB: they borrow from [f002, f003].
    expect(work.bytesToFetch).toBeGreaterThanOrEqual(5 * MiB);
    expect(work.bytesToCopy).toBeGreaterThanOrEqual(5 * MiB);
  });

  it('runs from two archives are separate; mode changes are read; too many parts push copies into fetches', () => {
    const { base, scan } = world([6, 6, 6]);
    const rows = base.entries as ManifestEntry[];
    rows[2] = { ...(rows[2] as FileRow), archive: INCR };
    rows[3] = { ...(rows[3] as FileRow), mode: 0o600 };
    expect([...carriedEntries(scan, base).keys()]).toEqual(['d', 'd/f000', 'd/f001']);
    const work = estimateSyntheticWork(scan, base);
    expect(work.files.map((f) => f.path)).toEqual(['d/f002']);
    // [d, f000] from FULL, [f001] from INCR, and the staged f002 + end-of-archive (> 5 MiB, so S3
    // copies it from the staging object too): all copied.
    expect(work.bytesToCopy).toBe(512 + 12 * MiB + 2 * 1024 + (6 * MiB + 1536) + 1024);
    expect(work.bytesToFetch).toBe(0);

    // 12,000 runs of 6 MiB (every other file changed) would each be a copy part: more than S3's
    // 10,000. The planner raises the copy threshold and fetches instead of failing; the estimate
    // counts those bytes as fetched (what the time check must see).
    const big = world(Array.from({ length: 12_000 }, () => 6));
    const scan2 = big.scan.map((e, i) =>
      i % 2 === 0 && e.type === 'file' ? ({ ...e, mtimeMs: 5 } as ScannedEntry) : e,
    );
    const heavy = estimateSyntheticWork(scan2, big.base);
    expect(heavy.parts).toBeLessThanOrEqual(10_000);
    expect(heavy.bytesToFetch).toBeGreaterThan(0);
  });
});
