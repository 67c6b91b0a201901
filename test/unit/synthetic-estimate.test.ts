import { describe, expect, it } from 'vitest';
import type { ScannedEntry } from '../../lambda/core/archiver/scan.js';
import type { Manifest, ManifestEntry } from '../../lambda/core/repository/manifest.js';
import { carriedEntries, estimateSyntheticWork } from '../../lambda/core/synthetic/synthetic-full.js';

const FULL = 'full/backup_20251227_020000.tar.gz';
const INCR = 'incremental/backup_20251228_020000.tar.gz';
const MiB = 1024 * 1024;
const CRC = 'AAAAAAAAAAA=';

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
    entries.push({
      path: p,
      type: 'file',
      size,
      mtimeMs: 1,
      mode: 0o644,
      sha256: 'a'.repeat(64),
      archive: FULL,
      range: { offset: at, length: size + 1024, crc64nvme: CRC },
    });
    scan.push({ path: p, type: 'file', size, mtimeMs: 1, mode: 0o644 } as ScannedEntry);
    at += size + 1024;
  });
  const base: Manifest = {
    header: {
      format: 'media-backup/manifest',
      version: 1,
      backupId: 'backup_20251228_020000',
      type: 'incremental',
      createdAt: '',
      baseBackupId: null,
      source: { path: '/m' },
      totals: { files: sizesMiB.length, bytes: 0 },
    },
    entries,
  };
  return { base, scan };
}

describe('what a synthetic full would read, copy and fetch (the time check before it starts)', () => {
  it('an unchanged tree is one run: all copied, nothing read', () => {
    const { base, scan } = world([1, 2, 3]);
    const work = estimateSyntheticWork(scan, base);
    expect(work.files).toEqual([]);
    expect(work.bytesToRead).toBe(0);
    expect(work.bytesToFetch).toBe(0);
    expect(work.bytesToCopy).toBe(512 + 6 * MiB + 3 * 1024);
  });

  it('a changed file splits the run: it is read, and a run under 5 MiB on either side is fetched', () => {
    const { base, scan } = world([1, 2, 3, 6]);
    // f001 changed (mtime): read it; [d, f000] = 1 MiB + headers is too short to copy; [f002, f003] is 9 MiB.
    scan[2] = { ...(scan[2] as ScannedEntry & { mtimeMs: number }), mtimeMs: 2 } as ScannedEntry;
    const work = estimateSyntheticWork(scan, base);
    expect(work.files.map((f) => f.path)).toEqual(['d/f001']);
    expect(work.bytesToRead).toBe(2 * MiB);
    expect(work.bytesToFetch).toBe(512 + MiB + 1024);
    expect(work.bytesToCopy).toBe(9 * MiB + 2 * 1024);
  });

  it('ranges from two archives, or not contiguous, are separate runs; mode changes and missing ranges are read', () => {
    const { base, scan } = world([6, 6, 6]);
    const rows = base.entries as ManifestEntry[];
    rows[2] = { ...(rows[2] as Extract<ManifestEntry, { type: 'file' }>), archive: INCR };
    rows[3] = { ...(rows[3] as Extract<ManifestEntry, { type: 'file' }>), mode: 0o600 };
    const carried = carriedEntries(scan, base);
    expect([...carried.keys()]).toEqual(['d', 'd/f000', 'd/f001']);
    const work = estimateSyntheticWork(scan, base);
    expect(work.files.map((f) => f.path)).toEqual(['d/f002']);
    // [d, f000] from FULL and [f001] from INCR: two runs of >= 5 MiB.
    expect(work.bytesToCopy).toBe(512 + 12 * MiB + 2 * 1024);
    expect(work.bytesToFetch).toBe(0);
  });
});
