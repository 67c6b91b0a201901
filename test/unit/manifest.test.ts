import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  assertSafeRelativePath,
  decodeManifest,
  encodeManifest,
  type Manifest,
  type ManifestEntry,
  totalsOf,
} from '../../lambda/core/repository/manifest.js';

const SHA = 'a'.repeat(64);

function manifestOf(entries: ManifestEntry[]): Manifest {
  return {
    header: {
      format: 'media-backup/manifest',
      version: 1,
      backupId: 'backup_20251227_020000',
      type: 'full',
      createdAt: '2025-12-27T02:00:00.000Z',
      baseBackupId: null,
      source: { path: '/mnt/media' },
      totals: totalsOf(entries),
    },
    entries,
  };
}

const sample: ManifestEntry[] = [
  { path: 'avatars', type: 'dir', mode: 0o755 },
  {
    path: 'avatars/u1.jpg',
    type: 'file',
    size: 1234,
    mtimeMs: 1735264800000.5,
    mode: 0o644,
    sha256: SHA,
    archive: 'full/backup_20251227_020000.tar.gz',
  },
  { path: 'latest', type: 'symlink', target: '../outside/x' },
  {
    path: 'reports/r ü 1.pdf',
    type: 'file',
    size: 0,
    mtimeMs: 1,
    mode: 0o600,
    sha256: SHA,
    archive: 'full/backup_20251227_020000.tar.gz',
  },
];

function rawManifest(lines: object[]): Buffer {
  return gzipSync(`${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
}

describe('manifest', () => {
  it('round-trips header and entries exactly, as gzip JSON lines with the header first', async () => {
    const manifest = manifestOf(sample);
    const encoded = await encodeManifest(manifest);
    expect(encoded.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    const decoded = await decodeManifest(encoded, 'test');
    expect(decoded).toEqual(manifest);
    expect(decoded.header.totals).toEqual({ files: 2, bytes: 1234 });
  });

  it.each([
    ['../etc/passwd', /contains '\.\.'/],
    ['a/../../b', /contains '\.\.'/],
    ['/etc/passwd', /absolute/],
    ['a\0b', /NUL/],
    ['a//b', /empty or '\.' segment/],
    ['./a', /empty or '\.' segment/],
    ['', /non-empty/],
  ])('rejects the unsafe path %j', async (badPath, message) => {
    expect(() => assertSafeRelativePath(badPath, 'here')).toThrow(message);
    const header = manifestOf([]).header;
    const data = rawManifest([
      { ...header, totals: { files: 1, bytes: 1 } },
      { path: badPath, type: 'file', size: 1, mtimeMs: 1, mode: 420, sha256: SHA, archive: 'a' },
    ]);
    await expect(decodeManifest(data, 'm1')).rejects.toThrow(message);
  });

  it('accepts names with spaces, unicode and dots inside segments', () => {
    expect(() => assertSafeRelativePath('a b/ü..x/.hidden', 'here')).not.toThrow();
  });

  it('rejects duplicate and out-of-order entries', async () => {
    const header = manifestOf([]).header;
    const dir = { path: 'a', type: 'dir', mode: 493 };
    await expect(decodeManifest(rawManifest([header, dir, dir]), 'dup')).rejects.toThrow(
      /manifest dup line 3: path "a" is out of order or duplicated/,
    );
    await expect(decodeManifest(rawManifest([header, { ...dir, path: 'b' }, dir]), 'order')).rejects.toThrow(
      /out of order/,
    );
  });

  it.each([
    [
      [
        { path: 'link', type: 'symlink', target: '/etc' },
        { path: 'link/x', type: 'dir', mode: 493 },
      ],
      /"link\/x" lies below "link", which is a symlink/,
    ],
    [
      [
        {
          path: 'a.jpg',
          type: 'file',
          size: 0,
          mtimeMs: 1,
          mode: 420,
          sha256: SHA,
          archive: 'full/backup_20251227_020000.tar.gz',
        },
        { path: 'a.jpg/b', type: 'symlink', target: 'x' },
      ],
      /lies below "a\.jpg", which is a file/,
    ],
  ])(
    'rejects entries below a symlink or a file (a restore would write through them)',
    async (entries, message) => {
      const files = entries.filter((e) => e.type === 'file').length;
      const data = rawManifest([{ ...manifestOf([]).header, totals: { files, bytes: 0 } }, ...entries]);
      await expect(decodeManifest(data, 'nested')).rejects.toThrow(message);
    },
  );

  it.each(['../../etc/evil.tar.gz', 'full/other.tar.gz', '/abs/full/backup_20251227_020000.tar.gz'])(
    'rejects a file entry whose archive key %j is not one of ours',
    async (archive) => {
      const data = rawManifest([
        { ...manifestOf([]).header, totals: { files: 1, bytes: 1 } },
        { path: 'x', type: 'file', size: 1, mtimeMs: 1, mode: 420, sha256: SHA, archive },
      ]);
      await expect(decodeManifest(data, 'keys')).rejects.toThrow(
        /names archive .* which is not a media-backup archive key/,
      );
    },
  );

  it.each([
    ['file', 'mode', 0o10000, 'a permission mode from 0 to 0o7777'],
    ['file', 'mode', 1.5, 'a permission mode'],
    ['file', 'mtimeMs', 1e20, 'a time in milliseconds since 1970'],
    ['file', 'mtimeMs', null, 'a time in milliseconds'],
    ['file', 'size', 2 ** 53, 'a byte count'],
    ['dir', 'mode', -1, 'a permission mode'],
    ['dir', 'mtimeMs', '1', 'a time in milliseconds'],
    ['symlink', 'mtimeMs', -1e16, 'a time in milliseconds'],
  ])(
    'names the backup, path and field of a %s entry with an invalid %s (%j)',
    async (type, field, value, expected) => {
      const base =
        type === 'file'
          ? {
              path: 'p',
              type,
              size: 1,
              mtimeMs: 1,
              mode: 420,
              sha256: SHA,
              archive: 'full/backup_20251227_020000.tar.gz',
            }
          : type === 'dir'
            ? { path: 'p', type, mode: 493, mtimeMs: 1 }
            : { path: 'p', type, target: 'x', mtimeMs: 1 };
      const files = type === 'file' ? 1 : 0;
      const data = rawManifest([
        { ...manifestOf([]).header, totals: { files, bytes: files } },
        { ...base, [field]: value },
      ]);
      await expect(decodeManifest(data, 'fields')).rejects.toThrow(
        `manifest fields line 2: manifest field invalid in backup backup_20251227_020000: ${type} "p" has \`${field}\` = ${JSON.stringify(value)}, expected ${expected}`,
      );
    },
  );

  it('accepts negative (pre-1970) times, a missing folder or link time, and fractional milliseconds', async () => {
    const entries: ManifestEntry[] = [
      { path: 'a', type: 'dir', mode: 0o7777, mtimeMs: -86_400_000.25 },
      { path: 'b', type: 'dir', mode: 0 },
      { path: 'c', type: 'symlink', target: 'a', mtimeMs: 1735264800000.5 },
    ];
    const decoded = await decodeManifest(await encodeManifest(manifestOf(entries)), 'ok');
    expect(decoded.entries).toEqual(entries);
  });

  it('rejects header totals that disagree with the entries', async () => {
    const header = { ...manifestOf([]).header, totals: { files: 5, bytes: 10 } };
    await expect(decodeManifest(rawManifest([header]), 'tot')).rejects.toThrow(/totals .* do not match/);
  });

  it.each([
    ['not gzip', Buffer.from('hello'), /not a valid gzip file/],
    ['empty', gzipSync(''), /is empty/],
    [
      'wrong format',
      rawManifest([{ format: 'other', version: 1 }]),
      /expected media-backup\/manifest version 1/,
    ],
    [
      'junk line',
      gzipSync(`${JSON.stringify(manifestOf([]).header)}\n{nope\n`),
      /line 2 is not a JSON object/,
    ],
    [
      'bad sha',
      rawManifest([
        { ...manifestOf([]).header, totals: { files: 1, bytes: 1 } },
        { path: 'x', type: 'file', size: 1, mtimeMs: 1, mode: 420, sha256: 'zz', archive: 'a' },
      ]),
      /line 2: manifest field invalid in backup backup_20251227_020000: file "x" has `sha256` = "zz", expected 64 lowercase hex digits/,
    ],
    [
      'unknown type',
      rawManifest([manifestOf([]).header, { path: 'x', type: 'fifo' }]),
      /unknown entry type "fifo"/,
    ],
  ])('rejects a corrupt manifest (%s) with a message naming it', async (_name, data, message) => {
    await expect(decodeManifest(data, 'full/backup_x.manifest.jsonl.gz')).rejects.toThrow(message);
  });
});
