import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gunzipSync, inflateRawSync } from 'node:zlib';
import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ArchiveResult, type ByteRange, writeArchive } from '../../lambda/core/archiver/archive.js';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { type GzipMember, ParallelGzip } from '../../lambda/core/archiver/parallel-gzip.js';
import type { ScannedEntry } from '../../lambda/core/archiver/scan.js';
import { scanTree } from '../../lambda/core/archiver/scan.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { listCommittedBackups, readManifest } from '../../lambda/core/repository/catalog.js';
import {
  decodeManifest,
  encodeManifest,
  type FileEntry,
  type Manifest,
} from '../../lambda/core/repository/manifest.js';
import { readTarGz } from '../../lambda/core/restorer/archive-reader.js';
import { runShardedBackup } from '../../lambda/core/sharding/sharded-backup.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { documentBytes, makeMediaTree, randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const dirs = tempDirs();

/** The SDK's CRC64NVME (what S3 computes) of `bytes`, base64 as S3 writes it. */
async function sdkCrc(bytes: Uint8Array): Promise<string> {
  const crc = new Crc64Nvme();
  crc.update(bytes);
  return Buffer.from(await crc.digest()).toString('base64');
}

/** Header blocks of a tar stream walked by hand: typeflag, name field, size, offset. */
function tarHeaders(tar: Buffer): { typeflag: string; name: string; size: number; offset: number }[] {
  const out: { typeflag: string; name: string; size: number; offset: number }[] = [];
  let at = 0;
  while (at + 512 <= tar.length) {
    const block = tar.subarray(at, at + 512);
    if (block.every((b) => b === 0)) {
      at += 512;
      continue;
    }
    const field = block.subarray(124, 136);
    // GNU base-256 for sizes over 8 GiB (not in these trees); octal otherwise.
    const size =
      field[0] & 0x80
        ? Number(field.readBigUInt64BE(4))
        : Number.parseInt(field.toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    const typeflag = String.fromCharCode(block[156] || 0x30);
    out.push({
      typeflag,
      name: block.subarray(0, 100).toString('latin1').replace(/\0.*$/s, ''),
      size,
      offset: at,
    });
    at += 512 + Math.ceil(size / 512) * 512;
  }
  if (at !== tar.length) throw new Error(`tar walk ended at ${at}, not at the end (${tar.length})`);
  return out;
}

/** The single entry a gunzipped range holds, as our restore reads it. */
async function entriesIn(
  gzipBytes: Buffer,
): Promise<{ path: string; type: string; size: number; linkname: string | null }[]> {
  const seen: { path: string; type: string; size: number; linkname: string | null }[] = [];
  await readTarGz(Readable.from([gzipBytes]), 'range', async (e) => {
    seen.push({ path: e.path, type: e.type, size: e.size, linkname: e.linkname });
  });
  return seen;
}

/** The gunzipped bytes of each gzip member of `gz`, walked member by member (10-byte headers). */
function gzipMembers(gz: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < gz.length) {
    expect(gz.subarray(at, at + 3)).toEqual(Buffer.from([0x1f, 0x8b, 8]));
    const { buffer, engine } = inflateRawSync(gz.subarray(at + 10), { info: true }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    out.push(buffer);
    at += 10 + engine.bytesWritten + 8;
  }
  return out;
}

const bytesOf = (...parts: (string | number[])[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

describe('archive members: one entry per gzip member run (issue 15 format)', () => {
  let root: string;
  let archivePath: string;
  let archive: Buffer;
  let entries: readonly ScannedEntry[];
  let result: ArchiveResult;
  let vanished: string;

  beforeAll(async () => {
    const base = await dirs.make('members-');
    root = path.join(base, 'src');
    mkdirSync(root);
    await makeMediaTree(root, { seed: 5, files: 30, maxFileBytes: 48 * 1024 });
    const rand = seededRandom(9);
    mkdirSync(path.join(root, 'materials/big'), { recursive: true });
    // Incompressible (stored members) and compressible (deflated members), both spanning members.
    writeFileSync(path.join(root, 'materials/big/lecture.mp4'), randomBytesFrom(rand, 2 * MiB + 12345));
    writeFileSync(path.join(root, 'materials/big/handout.pdf'), documentBytes(rand, 3 * MiB + 777));
    writeFileSync(path.join(root, 'materials/big/exactly-one-chunk.bin'), randomBytesFrom(rand, MiB - 512));
    writeFileSync(path.join(root, 'empty.txt'), '');
    mkdirSync(path.join(root, 'empty-folder'));
    // Long name (PAX path record), non-ASCII UTF-8 (PAX), not UTF-8 (GNU 'L' and 'K' records).
    const longDir = path.join(root, `${'course-material-'.repeat(7)}x`);
    mkdirSync(longDir);
    writeFileSync(path.join(longDir, `${'very-long-file-name-'.repeat(6)}.txt`), 'long\n');
    writeFileSync(path.join(root, 'élève-résumé.txt'), 'utf-8 name\n');
    const latin1 = bytesOf('caf', [0xe9], '.jpg');
    writeFileSync(Buffer.concat([Buffer.from(`${root}/`), latin1]), 'latin-1 name\n');
    symlinkSync(latin1, Buffer.concat([Buffer.from(`${root}/`), bytesOf('lien-', [0xe9])]));
    symlinkSync('materials/big/lecture.mp4', path.join(root, 'latest-lecture'));
    vanished = 'reports/vanishes.txt';
    mkdirSync(path.join(root, 'reports'), { recursive: true });
    writeFileSync(path.join(root, vanished), 'gone before the archive reads it\n');

    entries = (await scanTree(root)).entries;
    await unlink(path.join(root, vanished));
    archivePath = path.join(base, 'archive.tar.gz');
    result = await writeArchive({
      root,
      entries,
      gzip: { workers: 2 },
      sink: async (body) => {
        const parts: Buffer[] = [];
        for await (const c of body) parts.push(c as Buffer);
        await writeFile(archivePath, Buffer.concat(parts));
      },
    });
    archive = await readFile(archivePath);
  }, 60_000);
  afterAll(() => dirs.cleanup());

  const cut = (r: ByteRange) => archive.subarray(r.offset, r.offset + r.length);

  it('has the tree the test means: dirs, links, an empty file, long and non-UTF-8 names, files over 2 MiB', () => {
    const types = new Set(entries.map((e) => e.type));
    expect(types).toEqual(new Set(['dir', 'symlink', 'file']));
    const sizes = entries.flatMap((e) => (e.type === 'file' ? [e.size] : []));
    expect(Math.max(...sizes)).toBeGreaterThan(2 * MiB);
    expect(sizes).toContain(0);
    expect(entries.some((e) => e.path.length > 100)).toBe(true);
    expect(entries.some((e) => /[\udc80-\udcff]/.test(e.path))).toBe(true);
    expect(result.skipped.map((s) => s.path)).toEqual([vanished]);
  });

  it('gives every written entry a range that gunzips on its own to exactly that entry', async () => {
    let checked = 0;
    for (const [i, entry] of entries.entries()) {
      const range = result.entryRanges[i];
      if (entry.path === vanished) {
        expect(range).toBeUndefined();
        continue;
      }
      expect(range, entry.path).toBeDefined();
      const r = range as ByteRange;
      const seen = await entriesIn(cut(r));
      expect(seen, entry.path).toEqual([
        {
          path: entry.path,
          type: entry.type === 'dir' ? 'directory' : entry.type,
          size: entry.type === 'file' ? entry.size : 0,
          linkname: entry.type === 'symlink' ? entry.target : null,
        },
      ]);
      // Exactly the entry's tar records: its long-name/PAX records, its header, data and padding.
      const headers = tarHeaders(gunzipSync(cut(r)));
      expect(
        headers.slice(0, -1).every((h) => 'LKx'.includes(h.typeflag)),
        entry.path,
      ).toBe(true);
      expect(headers.at(-1)?.typeflag, entry.path).toBe(
        entry.type === 'dir' ? '5' : entry.type === 'symlink' ? '2' : '0',
      );
      checked += 1;
    }
    expect(checked).toBe(entries.length - 1);
  });

  it('lays the ranges end to end over the whole archive, the end-of-archive member last', () => {
    const ranges = [
      ...result.entryRanges.filter((r): r is ByteRange => r !== undefined),
      result.endOfArchive,
    ];
    let at = 0;
    for (const r of ranges) {
      expect(r.offset).toBe(at);
      expect(r.length).toBeGreaterThan(0);
      at += r.length;
    }
    expect(at).toBe(archive.length);
    expect(result.bytes).toBe(archive.length);
    expect(gunzipSync(cut(result.endOfArchive)).equals(Buffer.alloc(1024))).toBe(true);
    // Nothing but the end-of-archive blocks is all zeros: every other range begins with a header.
    for (const r of ranges.slice(0, -1))
      expect(
        gunzipSync(cut(r))
          .subarray(0, 512)
          .some((b) => b !== 0),
      ).toBe(true);
  });

  it('splits a large entry into members of at most the chunk size', () => {
    for (const name of ['materials/big/handout.pdf', 'materials/big/lecture.mp4']) {
      const entry = entries.find((e) => e.path === name) as ScannedEntry & { size: number };
      const members = gzipMembers(cut(result.entryRanges[entries.indexOf(entry)] as ByteRange));
      expect(members.length, name).toBe(Math.ceil((512 + entry.size) / MiB));
      for (const m of members) expect(m.length).toBeLessThanOrEqual(MiB);
    }
  });

  it('stores an incompressible entry with its tar header still deflated', () => {
    const i = entries.findIndex((e) => e.path === 'materials/big/exactly-one-chunk.bin');
    const range = result.entryRanges[i] as ByteRange;
    // Stored as is, the member would be its header + data + 5 bytes per 64 KiB block + 18 of framing.
    const storedAsIs = MiB + Math.ceil(MiB / 65535) * 5 + 18;
    expect(range.length).toBeLessThan(storedAsIs - 300);
    expect(range.length).toBeGreaterThan(MiB - 512);
    expect(result.gzip.storedMembers).toBeGreaterThan(0);
  });

  it('records CRC64NVMEs equal to the SDK checksum of each range and of the whole archive', async () => {
    for (const r of result.entryRanges) if (r) expect(r.crc64nvme).toBe(await sdkCrc(cut(r)));
    expect(result.endOfArchive.crc64nvme).toBe(await sdkCrc(cut(result.endOfArchive)));
    expect(result.crc64nvme).toBe(await sdkCrc(archive));
    for (const f of result.files) {
      expect(f.range).toEqual(result.entryRanges[entries.findIndex((e) => e.path === f.path)]);
    }
  });

  it('writes no global PAX headers, and GNU tar, Python tarfile and gzip -t read every entry', async () => {
    const typeflags = new Set(tarHeaders(gunzipSync(archive)).map((h) => h.typeflag));
    expect(typeflags.has('g')).toBe(false);
    expect([...typeflags].sort()).toEqual(['0', '2', '5', 'K', 'L', 'x']);

    await execFileAsync('gzip', ['-t', archivePath]);
    const written = entries.filter((e) => e.path !== vanished);
    const gnu = await execFileAsync('tar', ['-tzvf', archivePath], { encoding: 'buffer' });
    expect(gnu.stdout.toString('latin1').trim().split('\n')).toHaveLength(written.length);
    const python = await execFileAsync('python3', [
      '-c',
      [
        'import json, sys, tarfile',
        "t = tarfile.open(sys.argv[1], 'r:gz', encoding='utf-8', errors='surrogateescape')",
        'print(json.dumps([[m.name, m.size] for m in t.getmembers()]))',
      ].join('\n'),
      archivePath,
    ]);
    const listed = JSON.parse(python.stdout) as [string, number][];
    expect(listed).toEqual(written.map((e) => [e.path, e.type === 'file' ? e.size : 0]));
  });
});

describe('archive members on many entries', () => {
  it('keeps every range right past thousands of entries', async () => {
    const root = await dirs.make('many-');
    for (let d = 0; d < 30; d++) {
      mkdirSync(path.join(root, `room-${d}`));
      for (let f = 0; f < 80; f++)
        writeFileSync(path.join(root, `room-${d}`, `msg-${f}.txt`), `message ${d}/${f}\n`);
    }
    const { entries } = await scanTree(root);
    const parts: Buffer[] = [];
    const result = await writeArchive({
      root,
      entries,
      gzip: { workers: 2 },
      sink: async (body) => {
        for await (const c of body) parts.push(c as Buffer);
      },
    });
    const archive = Buffer.concat(parts);
    expect(entries).toHaveLength(30 * 81);
    let at = 0;
    for (const [i, e] of entries.entries()) {
      const r = result.entryRanges[i] as ByteRange;
      expect(r.offset).toBe(at);
      const headers = tarHeaders(gunzipSync(archive.subarray(r.offset, r.offset + r.length)));
      expect(headers.map((h) => h.name)).toEqual([e.type === 'dir' ? `${e.path}/` : e.path]);
      at += r.length;
    }
    expect(result.endOfArchive.offset).toBe(at);
    expect(result.crc64nvme).toBe(await sdkCrc(archive));
  }, 60_000);
});

describe("backups record each stored file's range in the manifest", () => {
  /** Every file row of the newest backup: its range, cut from its archive, holds exactly that file. */
  async function checkRanges(store: FsObjectStore, storeDir: string): Promise<FileEntry[]> {
    const backups = await listCommittedBackups(store);
    const manifest = await readManifest(store, backups[backups.length - 1]);
    const files = manifest.entries.filter((e): e is FileEntry => e.type === 'file');
    for (const f of files) {
      expect(f.range, f.path).toBeDefined();
      const r = f.range as ByteRange;
      const archive = await readFile(path.join(storeDir, f.archive));
      const bytes = archive.subarray(r.offset, r.offset + r.length);
      expect(bytes.length).toBe(r.length);
      expect(r.crc64nvme).toBe(await sdkCrc(bytes));
      const seen: { path: string; size: number; sha256: string }[] = [];
      await readTarGz(Readable.from([bytes]), f.archive, async (e) => {
        const hash = createHash('sha256');
        for await (const c of e.body) hash.update(c as Buffer);
        seen.push({ path: e.path, size: e.size, sha256: hash.digest('hex') });
      });
      expect(seen).toEqual([{ path: f.path, size: f.size, sha256: f.sha256 }]);
    }
    return files;
  }

  it('in a single-archive full and incremental: new files in the new archive, unchanged ones kept', async () => {
    const source = await dirs.make('ranges-src-');
    const storeDir = await dirs.make('ranges-store-');
    const store = new FsObjectStore(storeDir);
    const deps = { store, clock: tickingClock(), logger: silentLogger };
    await makeMediaTree(source, { seed: 21, files: 25 });
    writeFileSync(path.join(source, 'big.pdf'), documentBytes(seededRandom(4), 2 * MiB + 5));

    const full = await runBackup(deps, { source, type: 'full' });
    expect((await checkRanges(store, storeDir)).every((f) => f.archive === full.archiveKey)).toBe(true);

    deps.clock.jump(3_600_000);
    writeFileSync(path.join(source, 'big.pdf'), documentBytes(seededRandom(5), MiB + 3));
    const incremental = await runBackup(deps, { source, type: 'incremental' });
    const files = await checkRanges(store, storeDir);
    expect(files.filter((f) => f.archive === incremental.archiveKey).map((f) => f.path)).toEqual(['big.pdf']);
    expect(files.filter((f) => f.archive === full.archiveKey)).toHaveLength(25);
  }, 60_000);

  it('in a sharded full: each file in its part', async () => {
    const source = await dirs.make('ranges-src-');
    const storeDir = await dirs.make('ranges-store-');
    const store = new FsObjectStore(storeDir);
    await makeMediaTree(source, { seed: 22, files: 30 });
    const result = await runShardedBackup(
      { store, clock: tickingClock(), logger: silentLogger },
      { source, shards: 3, parallel: 2 },
    );
    const files = await checkRanges(store, storeDir);
    expect(new Set(files.map((f) => f.archive))).toEqual(new Set(result.parts.map((p) => p.key)));
  }, 60_000);
});

describe('ParallelGzip member cuts', () => {
  it('starts a member at every cut and every slot end, and reports each in order with its CRC64NVME', async () => {
    const members: GzipMember[] = [];
    const gz = new ParallelGzip({ chunkBytes: 64 * 1024, workers: 2, onMember: (m) => members.push(m) });
    const input = documentBytes(seededRandom(3), 200 * 1024);
    const cuts = [0, 100, 5000, 70_000, 70_001, 150_000];
    for (const c of cuts) gz.cutAt(c);
    const out: Buffer[] = [];
    gz.on('data', (c: Buffer) => out.push(c));
    const done = new Promise((resolve, reject) => gz.on('end', resolve).on('error', reject));
    for (let i = 0; i < input.length; i += 7001) gz.write(input.subarray(i, i + 7001));
    gz.end();
    await done;
    const output = Buffer.concat(out);
    // Cuts and every 64 KiB slot end: members never straddle either.
    const starts = members.map((m) => m.inputOffset);
    expect(starts).toEqual([0, 100, 5000, 65536, 70_000, 70_001, 131_072, 150_000, 196_608]);
    let at = 0;
    for (const m of members) {
      expect(m.outputOffset).toBe(at);
      const bytes = output.subarray(m.outputOffset, m.outputOffset + m.outputBytes);
      expect(gunzipSync(bytes).equals(input.subarray(m.inputOffset, m.inputOffset + m.inputBytes))).toBe(
        true,
      );
      expect(m.crc64nvme).toBe(await sdkCrc(bytes));
      at += m.outputBytes;
    }
    expect(at).toBe(output.length);
    expect(gz.stats.members).toBe(members.length);
  });

  it('refuses a cut behind input it already has', async () => {
    const gz = new ParallelGzip({ workers: 1 });
    await new Promise<void>((resolve) => gz.write(Buffer.alloc(1000), () => resolve()));
    expect(() => gz.cutAt(500)).toThrow(
      /gzip member cut at input offset 500 comes too late: input or cuts already reach offset 1000/,
    );
    gz.destroy();
  });
});

describe('manifest file ranges', () => {
  const header = {
    format: 'media-backup/manifest',
    version: 1,
    backupId: '20251227_020000',
    type: 'full',
    createdAt: '2025-12-27T02:00:00.000Z',
    baseBackupId: null,
    source: { path: '/mnt/media' },
    totals: { files: 1, bytes: 5 },
  } as const;
  const file = {
    path: 'a.jpg',
    type: 'file',
    size: 5,
    mtimeMs: 1.7e12,
    mode: 0o644,
    sha256: 'a'.repeat(64),
    archive: 'full/backup_20251227_020000.tar.gz',
  } as const;
  const manifestWith = (range: unknown) =>
    encodeManifest({ header, entries: [{ ...file, range }] } as unknown as Manifest);

  it('keeps a valid range and still accepts entries without one', async () => {
    const range = { offset: 0, length: 42, crc64nvme: 'AAAAAAAAAAA=' };
    const decoded = await decodeManifest(await manifestWith(range), 'm');
    expect(decoded.entries[0]).toEqual({ ...file, range });
    const old = await decodeManifest(await encodeManifest({ header, entries: [file] } as Manifest), 'm');
    expect(old.entries[0]).toEqual(file);
  });

  it.each([
    ['a negative offset', { offset: -1, length: 42, crc64nvme: 'AAAAAAAAAAA=' }],
    ['a fractional length', { offset: 0, length: 4.5, crc64nvme: 'AAAAAAAAAAA=' }],
    ['an empty range', { offset: 0, length: 0, crc64nvme: 'AAAAAAAAAAA=' }],
    ['an offset past safe integers', { offset: 2 ** 53, length: 1, crc64nvme: 'AAAAAAAAAAA=' }],
    ['a checksum that is not base64 of 8 bytes', { offset: 0, length: 1, crc64nvme: 'AAAAAAAAAAB=' }],
    ['a hex checksum', { offset: 0, length: 1, crc64nvme: '0123456789abcdef' }],
    ['a missing checksum', { offset: 0, length: 1 }],
    ['not an object', 'bytes 0-41'],
  ])('rejects %s, naming the file and the field', async (_name, range) => {
    await expect(decodeManifest(await manifestWith(range), 'm')).rejects.toThrow(
      /line 2: manifest field invalid in backup 20251227_020000: file "a\.jpg" has `range` = .*expected \{ offset, length, crc64nvme \}/,
    );
  });
});
