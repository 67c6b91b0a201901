import { describe, expect, it } from 'vitest';
import { locateFolderOrLink } from '../../lambda/core/archiver/plan.js';
import {
  type DirEntry,
  decodeManifest,
  encodeManifest,
  type Manifest,
  type ManifestEntry,
  type SymlinkEntry,
} from '../../lambda/core/repository/manifest.js';

const FULL = 'full/backup_20251227_020000.tar.gz';
const INCR = 'incremental/backup_20251228_020000.tar.gz';
const RANGE = { offset: 0, length: 120, crc64nvme: 'AAAAAAAAAAA=' };

function manifestOf(entries: ManifestEntry[]): Manifest {
  return {
    header: {
      format: 'media-backup/manifest',
      version: 1,
      backupId: 'backup_20251228_020000',
      type: 'incremental',
      createdAt: '2025-12-28T02:00:00.000Z',
      baseBackupId: 'backup_20251227_020000',
      source: { path: '/media' },
      totals: { files: 0, bytes: 0 },
    },
    entries,
  };
}

const roundTrip = async (entries: ManifestEntry[]) =>
  decodeManifest(await encodeManifest(manifestOf(entries)), 'test');

describe('folder and link locations in the manifest (synthetic fulls copy them)', () => {
  it('accepts a folder or link with an archive and range, or with neither (older manifests)', async () => {
    const entries: ManifestEntry[] = [
      { path: 'a', type: 'dir', mode: 0o755, mtimeMs: 1, archive: FULL, range: RANGE },
      { path: 'b', type: 'dir', mode: 0o755 },
      { path: 'c', type: 'symlink', target: 'a', mtimeMs: 2, archive: INCR, range: RANGE },
      { path: 'd', type: 'symlink', target: 'a' },
    ];
    expect((await roundTrip(entries)).entries).toEqual(entries);
  });

  it('refuses a range without an archive, a key outside the layout and a bad range, naming the entry', async () => {
    await expect(
      roundTrip([{ path: 'a', type: 'dir', mode: 0o755, range: RANGE } as unknown as DirEntry]),
    ).rejects.toThrow(/dir "a" has `archive` = missing, expected an archive key alongside `range`/);
    await expect(
      roundTrip([{ path: 'l', type: 'symlink', target: 'x', archive: '../../etc/passwd', range: RANGE }]),
    ).rejects.toThrow(
      /symlink entry "l" names archive "..\/..\/etc\/passwd", which is not a media-backup archive key/,
    );
    await expect(
      roundTrip([{ path: 'a', type: 'dir', mode: 0o755, archive: FULL, range: { ...RANGE, length: 0 } }]),
    ).rejects.toThrow(/dir "a" has `range`/);
  });

  it('locateFolderOrLink keeps the base location while the entry is identical, else takes this archive', () => {
    const dir: DirEntry = { path: 'a', type: 'dir', mode: 0o755, mtimeMs: 1 };
    const own = { archive: INCR, range: { ...RANGE, offset: 512 } };
    const baseDir: DirEntry = { ...dir, archive: FULL, range: RANGE };
    expect(locateFolderOrLink(dir, baseDir, own)).toEqual({ ...dir, archive: FULL, range: RANGE });
    // mtime or mode changed (a file added or removed, chmod): the tar header differs.
    expect(locateFolderOrLink({ ...dir, mtimeMs: 2 }, baseDir, own)).toEqual({ ...dir, mtimeMs: 2, ...own });
    expect(locateFolderOrLink({ ...dir, mode: 0o700 }, baseDir, own)).toEqual({
      ...dir,
      mode: 0o700,
      ...own,
    });
    // A base written before locations were recorded, or of another type.
    expect(locateFolderOrLink(dir, { ...dir }, own)).toEqual({ ...dir, ...own });
    const link: SymlinkEntry = { path: 'a', type: 'symlink', target: 'x', mtimeMs: 1 };
    expect(locateFolderOrLink(link, baseDir, own)).toEqual({ ...link, ...own });
    const baseLink: SymlinkEntry = { ...link, archive: FULL, range: RANGE };
    expect(locateFolderOrLink(link, baseLink, own)).toEqual(baseLink);
    expect(locateFolderOrLink({ ...link, target: 'y' }, baseLink, own)).toEqual({
      ...link,
      target: 'y',
      ...own,
    });
    // No own entry either (not archived): no location.
    expect(locateFolderOrLink({ ...dir, mtimeMs: 3 }, baseDir, { archive: INCR, range: undefined })).toEqual({
      ...dir,
      mtimeMs: 3,
    });
  });
});
