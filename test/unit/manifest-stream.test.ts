import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createGunzip, gunzipSync, gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManifestError, UnsafePathError } from '../../lambda/core/errors.js';
import {
  comparePaths,
  decodeManifest,
  encodeManifest,
  type Manifest,
  type ManifestEntry,
  type ManifestHeader,
  totalsOf,
} from '../../lambda/core/repository/manifest.js';
import {
  encodeEntriesMember,
  encodeHeaderMember,
  entriesMemberStream,
  MAX_MANIFEST_LINE_BYTES,
  ManifestMemberWriter,
  NonFolderAncestry,
  openManifestStream,
} from '../../lambda/core/repository/manifest-stream.js';
import { FsObjectStore } from '../../lambda/store/fs.js';

const SHA = 'a'.repeat(64);
const ARCHIVE = 'full/backup_20251227_020000.tar.gz';
const HEADER: ManifestHeader = {
  format: 'media-backup/manifest',
  version: 1,
  backupId: 'backup_20251227_020000',
  type: 'full',
  createdAt: '2025-12-27T02:00:00.000Z',
  baseBackupId: null,
  source: { path: '/mnt/media' },
  root: { mode: 0o755, mtimeMs: 1735264800000 },
  totals: { files: 0, bytes: 0 },
};

function manifestOf(entries: ManifestEntry[]): Manifest {
  return { header: { ...HEADER, totals: totalsOf(entries) }, entries };
}

const file = (p: string, size = 1, archive = ARCHIVE): ManifestEntry => ({
  path: p,
  type: 'file',
  size,
  mtimeMs: 1735264800000.5,
  mode: 0o644,
  sha256: SHA,
  archive,
});

/** Names with multi-byte UTF-8, a Latin-1 byte as its surrogate escape, and ASCII below '/'. */
const sample: ManifestEntry[] = [
  { path: 'a', type: 'dir', mode: 0o755, mtimeMs: 1 },
  file('a b.jpg', 10),
  { path: 'a!', type: 'symlink', target: '../outside', mtimeMs: 2 },
  file('a/ü 日本.jpg', 20, 'full/backup_20251227_020000.part-0001.tar.gz'),
  file('a/\udce9t\udce9.mp4', 30, 'full/backup_20251227_020000.part-0002.tar.gz'),
  { path: 'b', type: 'dir', mode: 0o700 },
  file('b/x', 0),
];

function rawManifest(lines: object[]): Buffer {
  return gzipSync(`${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
}

/** Reads a whole manifest through the stream reader (the test holds it; the reader does not). */
async function readAll(source: Readable | Buffer, label: string): Promise<Manifest> {
  const { header, entries } = await openManifestStream(
    Buffer.isBuffer(source) ? Readable.from([source]) : source,
    label,
  );
  const all: ManifestEntry[] = [];
  for await (const entry of entries) all.push(entry);
  return { header, entries: all };
}

/** The rejection of `promise`, which must reject. */
async function rejectionOf(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(outcome).toBeInstanceOf(Error);
  return outcome as Error;
}

/** A seeded PRNG (mulberry32): the same cases on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Row `n` of a synthetic media tree: 500 files per folder, a folder row before each folder's files. */
function syntheticRow(n: number): ManifestEntry {
  const folder = `room-${String(Math.floor(n / 501)).padStart(5, '0')}`;
  const inFolder = n % 501;
  if (inFolder === 0) return { path: folder, type: 'dir', mode: 0o755, mtimeMs: 1735264800000 };
  return {
    path: `${folder}/avatar-${String(inFolder).padStart(4, '0')}.jpg`,
    type: 'file',
    size: 1000 + (n % 997),
    mtimeMs: 1735264800000 + n,
    mode: 0o644,
    sha256: createHash('sha256').update(String(n)).digest('hex'),
    archive: ARCHIVE,
  };
}

function* syntheticRows(count: number): Generator<ManifestEntry> {
  for (let n = 0; n < count; n++) yield syntheticRow(n);
}

function syntheticTotals(count: number): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const row of syntheticRows(count)) {
    if (row.type === 'file') {
      files += 1;
      bytes += row.size;
    }
  }
  return { files, bytes };
}

/** JavaScript heap plus Buffers (a Buffer's bytes are outside the heap: a queue of them counts too). */
function memoryInUse(): number {
  const { heapUsed, external } = process.memoryUsage();
  return heapUsed + external;
}

/** Exposes V8's gc at run time (vitest cannot pass --expose-gc to its forks), for honest heap figures. */
function gcFunction(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe('manifest stream: writer members concatenate into what encodeManifest writes', () => {
  it('header member + entries members (batch, streamed, empty, buffered) gunzip to the same text and decode equal', async () => {
    const manifest = manifestOf(sample);
    const streamed = new ManifestMemberWriter();
    const streamedChunks: Buffer[] = [];
    streamed.member.on('data', (chunk: Buffer) => streamedChunks.push(chunk));
    for (const entry of sample.slice(2, 5)) await streamed.write(entry);
    const streamedSummary = await streamed.end();
    const buffered = entriesMemberStream();
    for (const entry of sample.slice(5)) await buffered.write(entry);
    const bufferedResult = await buffered.end();

    const members = [
      encodeHeaderMember(manifest.header),
      encodeEntriesMember(sample.slice(0, 2)),
      Buffer.concat(streamedChunks),
      encodeEntriesMember([]),
      bufferedResult.data,
    ];
    const concatenated = Buffer.concat(members);

    expect(gunzipSync(concatenated).toString('utf8')).toBe(
      gunzipSync(await encodeManifest(manifest)).toString('utf8'),
    );
    expect(await decodeManifest(concatenated, 'members')).toEqual(manifest);
    expect(await readAll(concatenated, 'members')).toEqual(manifest);
    expect(streamedSummary).toEqual({
      entries: 3,
      files: 2,
      bytes: 50,
      firstPath: 'a!',
      lastPath: 'a/\udce9t\udce9.mp4',
      gzipBytes: members[2].length,
    });
    expect(bufferedResult).toMatchObject({ entries: 2, files: 1, bytes: 0, firstPath: 'b', lastPath: 'b/x' });
    expect(bufferedResult.gzipBytes).toBe(bufferedResult.data.length);
    // Each member is a gzip file of its own: the range a part records reads back as that part's rows.
    let offset = 0;
    const texts = members.map((member) => {
      const range = { offset, length: member.length };
      offset += member.length;
      return gunzipSync(concatenated.subarray(range.offset, range.offset + range.length)).toString('utf8');
    });
    expect(texts[2]).toBe(
      `${sample
        .slice(2, 5)
        .map((e) => JSON.stringify(e))
        .join('\n')}\n`,
    );
    expect(texts[3]).toBe('');
  });

  it('writers refuse rows out of path order or duplicated (a manifest must be sorted and unique)', async () => {
    expect(() => encodeEntriesMember([file('b'), file('a')])).toThrow(
      /rows must be written in path order, unique: "a" after "b"/,
    );
    const writer = entriesMemberStream();
    await writer.write(file('a'));
    await expect(writer.write(file('a'))).rejects.toThrow(/"a" after "a"/);
  });

  it('an empty writer yields an empty member that decodes as no rows', async () => {
    const { data, ...summary } = await entriesMemberStream().end();
    expect(summary).toEqual({ entries: 0, files: 0, bytes: 0, gzipBytes: data.length });
    const manifest = manifestOf([]);
    expect(await readAll(Buffer.concat([encodeHeaderMember(manifest.header), data]), 'e')).toEqual(manifest);
  });

  describe('through a folder store', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'manifest-stream-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('a member written while store.upload consumes it, read back by getStream + openManifestStream', async () => {
      const store = new FsObjectStore(dir);
      const count = 20_000;
      const header = { ...HEADER, totals: syntheticTotals(count) };
      const writer = new ManifestMemberWriter();
      const uploaded = store.upload('staging/backup_x/shard-0001.rows.1.jsonl.gz', writer.member);
      for (const row of syntheticRows(count)) await writer.write(row);
      const [summary] = await Promise.all([writer.end(), uploaded]);
      const rows = await store.get('staging/backup_x/shard-0001.rows.1.jsonl.gz');
      expect(rows?.length).toBe(summary.gzipBytes);
      expect(summary).toMatchObject({ entries: count, ...header.totals, firstPath: 'room-00000' });

      await store.upload(
        'full/backup_20251227_020000.manifest.jsonl.gz',
        Readable.from([encodeHeaderMember(header), rows as Buffer]),
      );
      const { header: read, entries } = await openManifestStream(
        await store.getStream('full/backup_20251227_020000.manifest.jsonl.gz'),
        'full/backup_20251227_020000.manifest.jsonl.gz',
      );
      expect(read).toEqual(header);
      let n = 0;
      for await (const entry of entries) {
        expect(entry).toEqual(syntheticRow(n));
        n += 1;
      }
      expect(n).toBe(count);
    });

    it('a consumer that stops (a failed upload) makes the pending write reject instead of hanging', async () => {
      // Nobody reads the member: writes soon wait for the consumer, which then fails.
      const writer = new ManifestMemberWriter();
      const writing = (async () => {
        for (const row of syntheticRows(200_000)) await writer.write(row);
      })();
      writer.member.destroy(new Error('upload failed: network down'));
      await expect(writing).rejects.toThrow(/upload failed: network down/);
    });
  });
});

describe('manifest stream: reader', () => {
  it('reads lines split anywhere across gunzip chunks (multi-byte UTF-8 cut in the middle)', async () => {
    const manifest = manifestOf(sample);
    // Stored (level 0) and fed one byte at a time: gunzip emits tiny chunks that cut every line and
    // the 2- and 3-byte characters of 'ü 日本'.
    const text = gunzipSync(await encodeManifest(manifest));
    const stored = gzipSync(text, { level: 0 });
    const bytes = [...stored].map((b) => Buffer.from([b]));
    expect(await readAll(Readable.from(bytes), 'bytewise')).toEqual(manifest);
  });

  it('skips empty lines and reads a last line without a newline, as decodeManifest does', async () => {
    const manifest = manifestOf(sample);
    const text = `\n${JSON.stringify(manifest.header)}\n\n${sample.map((e) => JSON.stringify(e)).join('\n\n')}`;
    const data = gzipSync(text);
    expect(await decodeManifest(data, 'gaps')).toEqual(manifest);
    expect(await readAll(data, 'gaps')).toEqual(manifest);
  });

  const header = HEADER;
  const h = (files: number, bytes: number) => ({ ...header, totals: { files, bytes } });
  const rejected: [string, Buffer][] = [
    ...['../etc/passwd', 'a/../../b', '/etc/passwd', 'a\0b', 'a//b', './a', ''].map((p): [string, Buffer] => [
      `unsafe path ${JSON.stringify(p)}`,
      rawManifest([h(1, 1), { ...file(p), archive: 'a' }]),
    ]),
    [
      'duplicate',
      rawManifest([header, { path: 'a', type: 'dir', mode: 493 }, { path: 'a', type: 'dir', mode: 493 }]),
    ],
    [
      'out of order',
      rawManifest([header, { path: 'b', type: 'dir', mode: 493 }, { path: 'a', type: 'dir', mode: 493 }]),
    ],
    [
      'below a symlink',
      rawManifest([
        header,
        { path: 'link', type: 'symlink', target: '/etc' },
        { path: 'link/x', type: 'dir', mode: 493 },
      ]),
    ],
    [
      'below a file',
      rawManifest([h(1, 0), file('a.jpg', 0), { path: 'a.jpg/b', type: 'symlink', target: 'x' }]),
    ],
    [
      'below a file, past siblings that sort between it and its slash',
      rawManifest([
        h(2, 2),
        file('a'),
        { path: 'a b', type: 'dir', mode: 493 },
        { path: 'a!x', type: 'symlink', target: 'y' },
        file('a.d/e'),
        { path: 'a/x', type: 'dir', mode: 493 },
      ]),
    ],
    ...['../../etc/evil.tar.gz', 'full/other.tar.gz', '/abs/full/backup_20251227_020000.tar.gz'].map(
      (archive): [string, Buffer] => [
        `archive key ${archive}`,
        rawManifest([h(1, 1), file('x', 1, archive)]),
      ],
    ),
    ...(
      [
        ['file', 'mode', 0o10000],
        ['file', 'mode', 1.5],
        ['file', 'mtimeMs', 1e20],
        ['file', 'mtimeMs', null],
        ['file', 'size', 2 ** 53],
        ['dir', 'mode', -1],
        ['dir', 'mtimeMs', '1'],
        ['symlink', 'mtimeMs', -1e16],
        ['symlink', 'target', ''],
      ] as const
    ).map(([type, field, value]): [string, Buffer] => {
      const base =
        type === 'file'
          ? file('p')
          : type === 'dir'
            ? { path: 'p', type, mode: 493, mtimeMs: 1 }
            : { path: 'p', type, target: 'x', mtimeMs: 1 };
      const files = type === 'file' ? 1 : 0;
      return [
        `${type} ${field} = ${JSON.stringify(value)}`,
        rawManifest([h(files, files), { ...base, [field]: value }]),
      ];
    }),
    ['totals disagree', rawManifest([h(5, 10)])],
    ['totals disagree after many rows', rawManifest([h(3, 3), file('a'), file('b'), file('c'), file('d')])],
    ['totals missing', rawManifest([{ ...header, totals: undefined }, file('a')])],
    ['not gzip', Buffer.from('hello')],
    ['empty', gzipSync('')],
    ['only newlines', gzipSync('\n\n')],
    ['wrong format', rawManifest([{ format: 'other', version: 1 }])],
    ['wrong version', rawManifest([{ ...header, version: 2 }])],
    ['header without backupId', rawManifest([{ ...header, backupId: 7 }])],
    ['header with a bad type', rawManifest([{ ...header, type: 'differential' }])],
    ['header with a bad root', rawManifest([{ ...header, root: { mode: 0o10000, mtimeMs: 1 } }])],
    ['header not an object', gzipSync('[1,2]\n')],
    ['junk line', gzipSync(`${JSON.stringify(header)}\n{nope\n`)],
    ['bad sha', rawManifest([h(1, 1), { ...file('x'), sha256: 'zz', archive: 'a' }])],
    ['unknown type', rawManifest([header, { path: 'x', type: 'fifo' }])],
    ['entry that is null', gzipSync(`${JSON.stringify(header)}\nnull\n`)],
  ];

  it.each(rejected)(
    'rejects what decodeManifest rejects, with the same error class and message: %s',
    async (_name, data) => {
      const label = 'full/backup_x.manifest.jsonl.gz';
      const expected = await rejectionOf(decodeManifest(data, label));
      const actual = await rejectionOf(readAll(data, label));
      expect(actual.constructor).toBe(expected.constructor);
      expect([ManifestError, UnsafePathError]).toContain(actual.constructor);
      expect(actual.message).toBe(expected.message);
      expect(actual.message).toContain(`manifest ${label}`);
    },
  );

  it('names the line of a bad entry (line numbers count from the header, line 1)', async () => {
    const data = rawManifest([h(1, 1), file('a'), { path: 'a/b', type: 'dir', mode: 493 }]);
    await expect(readAll(data, 'lines')).rejects.toThrow(
      'manifest lines line 3: path "a/b" lies below "a", which is a file, not a folder',
    );
  });

  it('yields the entries before a bad line, then throws at it; the totals check comes after the last entry', async () => {
    const data = rawManifest([h(9, 9), file('a'), file('b'), { ...file('c'), mode: -5 }]);
    const { entries } = await openManifestStream(Readable.from([data]), 'partial');
    const seen: string[] = [];
    const failure = await rejectionOf(
      (async () => {
        for await (const entry of entries) seen.push(entry.path);
      })(),
    );
    expect(seen).toEqual(['a', 'b']);
    expect(failure.message).toMatch(/^manifest partial line 4: manifest field invalid/);

    const wrongTotals = await openManifestStream(
      Readable.from([rawManifest([h(9, 9), file('a'), file('b')])]),
      't',
    );
    const paths: string[] = [];
    const totalsFailure = await rejectionOf(
      (async () => {
        for await (const entry of wrongTotals.entries) paths.push(entry.path);
      })(),
    );
    expect(paths).toEqual(['a', 'b']);
    expect(totalsFailure).toBeInstanceOf(ManifestError);
    expect(totalsFailure.message).toMatch(
      /header totals \(9 files, 9 bytes\) do not match its entries \(2 files, 2 bytes\)/,
    );
  });

  it('accepts and rejects exactly what decodeManifest does on 3,000 random manifests (nesting below files and symlinks)', async () => {
    // Names from characters around '/' in code unit order ('!' '-' '.' < '/' < '0' 'a'), so siblings
    // sort between a file X and X's slash and X0: the cases the bounded check must get right.
    const random = prng(14);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
    const segment = () =>
      Array.from({ length: 1 + Math.floor(random() * 2) }, () => pick(['a', '!', '-', '.', '0', 'b'])).join(
        '',
      );
    let rejections = 0;
    for (let run = 0; run < 3000; run++) {
      const paths = new Set<string>();
      const size = 1 + Math.floor(random() * 14);
      for (let i = 0; i < size; i++) {
        const depth = 1 + Math.floor(random() * 3);
        const parts = Array.from({ length: depth }, segment);
        if (parts.some((p) => p === '.' || p === '..')) continue;
        paths.add(parts.join('/'));
      }
      const entries = [...paths].sort(comparePaths).map((p): ManifestEntry => {
        const kind = random();
        return kind < 0.5
          ? { path: p, type: 'dir', mode: 493 }
          : kind < 0.8
            ? file(p)
            : { path: p, type: 'symlink', target: 't' };
      });
      const data = rawManifest([{ ...HEADER, totals: totalsOf(entries) }, ...entries]);
      const decoded = await decodeManifest(data, `r${run}`).then(
        (m) => ({ ok: m }),
        (error: Error) => ({ error: `${error.name}: ${error.message}` }),
      );
      const streamed = await readAll(data, `r${run}`).then(
        (m) => ({ ok: m }),
        (error: Error) => ({ error: `${error.name}: ${error.message}` }),
      );
      expect(streamed).toEqual(decoded);
      if ('error' in decoded) rejections += 1;
    }
    // Both outcomes are well represented, so the comparison means something.
    expect(rejections).toBeGreaterThan(300);
    expect(rejections).toBeLessThan(2700);
  });

  it('keeps at most a few non-folder ancestors-to-be: one in a flat folder, the path length in the worst case', () => {
    const flat = new NonFolderAncestry();
    let most = 0;
    for (const row of syntheticRows(50_000)) {
      flat.admit(row.path, row.type, 'flat');
      most = Math.max(most, flat.size);
    }
    expect(most).toBe(1);

    // 'a', 'a!', 'a!!', ...: each file sorts between the previous one and its slash, so all stay.
    const chain = new NonFolderAncestry();
    for (let n = 1; n <= 200; n++) chain.admit(`a${'!'.repeat(n - 1)}`, 'file', 'chain');
    expect(chain.size).toBe(200);
    expect(() => chain.admit('a!!!/x', 'dir', 'chain')).toThrow(
      /path "a!!!\/x" lies below "a!!!", which is a file, not a folder/,
    );
    chain.admit('b', 'dir', 'chain');
    expect(chain.size).toBe(0);
  });

  it('a truncated gzip stream is a ManifestError, before the header or among the entries', async () => {
    const manifest = manifestOf([...syntheticRows(3000)]);
    const data = await encodeManifest(manifest);
    const early = await rejectionOf(openManifestStream(Readable.from([data.subarray(0, 15)]), 'cut'));
    expect(early).toBeInstanceOf(ManifestError);
    expect(early.message).toBe('manifest cut is not a valid gzip file (unexpected end of file)');

    const { header, entries } = await openManifestStream(
      Readable.from([data.subarray(0, data.length - 200)]),
      'cut',
    );
    expect(header).toEqual(manifest.header);
    let yielded = 0;
    const late = await rejectionOf(
      (async () => {
        for await (const _ of entries) yielded += 1;
      })(),
    );
    expect(late).toBeInstanceOf(ManifestError);
    expect(late.message).toBe('manifest cut is not a valid gzip file (unexpected end of file)');
    expect(yielded).toBeGreaterThan(2000);
    expect(yielded).toBeLessThan(3000);
  });

  it('a failing source passes its own error through (a network error is not a damaged manifest)', async () => {
    const data = await encodeManifest(manifestOf([...syntheticRows(3000)]));
    const source = new Readable({
      read() {
        this.push(data.subarray(0, 4000));
        this.destroy(new Error('socket hang up'));
      },
    });
    const failure = await rejectionOf(readAll(source, 'net'));
    expect(failure).not.toBeInstanceOf(ManifestError);
    expect(failure.message).toBe('socket hang up');
  });

  it('a line longer than the limit is rejected without being read whole', async () => {
    const data = gzipSync(
      `${JSON.stringify(HEADER)}\n{"path":"${'x'.repeat(MAX_MANIFEST_LINE_BYTES + 10)}"}\n`,
    );
    const failure = await rejectionOf(readAll(data, 'long'));
    expect(failure).toBeInstanceOf(ManifestError);
    expect(failure.message).toMatch(/^manifest long has a line longer than 16777216 bytes/);
  });

  it.each([
    ['stopping after one entry', 1],
    ['stopping before the first entry (entries.return())', 0],
  ])('closes the source when the consumer stops early: %s', async (_name, take) => {
    const data = await encodeManifest(manifestOf([...syntheticRows(20_000)]));
    // Many small chunks: the source is still open when the consumer stops.
    const source = Readable.from(
      Array.from({ length: Math.ceil(data.length / 1024) }, (_, i) =>
        data.subarray(i * 1024, (i + 1) * 1024),
      ),
    );
    const { entries } = await openManifestStream(source, 'early');
    if (take === 0) {
      await entries.return();
    } else {
      for await (const _ of entries) break;
    }
    await new Promise((resolve) => setImmediate(resolve));
    expect(source.destroyed).toBe(true);
  });

  it('streams 300,000 entries with live memory that does not grow and a peak far below what decodeManifest holds', async () => {
    const gc = gcFunction();
    const count = 300_000;
    const header = { ...HEADER, totals: syntheticTotals(count) };
    const writer = entriesMemberStream();
    for (const row of syntheticRows(count)) await writer.write(row);
    const data = Buffer.concat([encodeHeaderMember(header), (await writer.end()).data]);

    gc();
    const before = memoryInUse();
    let peak = 0;
    let live = 0;
    let n = 0;
    const { entries } = await openManifestStream(Readable.from([data]), 'big');
    for await (const entry of entries) {
      if (entry.path.length === 0) throw new Error('unreachable');
      n += 1;
      if (n % 2000 === 0) peak = Math.max(peak, memoryInUse() - before);
      // What the reader keeps, without the garbage a collection would free: must not grow with n.
      if (n % 30_000 === 0) {
        gc();
        live = Math.max(live, memoryInUse() - before);
      }
    }
    expect(n).toBe(count);

    gc();
    const beforeDecode = memoryInUse();
    const decoded = await decodeManifest(data, 'big');
    gc();
    const decodeLive = memoryInUse() - beforeDecode;
    expect(decoded.entries.length).toBe(count);

    console.info(
      `300k entries (${(data.length / 1e6).toFixed(1)} MB gzip): stream live +${(live / 1e6).toFixed(1)} MB, peak +${(peak / 1e6).toFixed(1)} MB; decodeManifest holds +${(decodeLive / 1e6).toFixed(1)} MB`,
    );
    expect(decodeLive).toBeGreaterThan(100e6);
    expect(live).toBeLessThan(8e6);
    // The peak between collections is young-generation garbage, bounded by V8's heap sizing, not by n.
    expect(peak).toBeLessThan(decodeLive / 3);
  });

  it('writes 300,000 rows to a slow consumer with live memory that does not grow (write waits for the consumer)', async () => {
    const gc = gcFunction();
    const count = 300_000;
    const expected = createHash('sha256');
    gc();
    const before = memoryInUse();
    let live = 0;
    const received = createHash('sha256');
    // Takes a chunk per macrotask: far slower than the producer, which would otherwise queue the
    // whole member's text (~75 MB) in the gzip stream.
    const slow = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _encoding, done) {
        received.update(chunk);
        setImmediate(done);
      },
    });
    const writer = new ManifestMemberWriter();
    const consumed = pipeline(writer.member, createGunzip(), slow);
    let n = 0;
    for (const row of syntheticRows(count)) {
      expected.update(`${JSON.stringify(row)}\n`);
      await writer.write(row);
      n += 1;
      if (n % 30_000 === 0) {
        gc();
        live = Math.max(live, memoryInUse() - before);
      }
    }
    const [summary] = await Promise.all([writer.end(), consumed]);
    expect(summary.entries).toBe(count);
    expect(received.digest('hex')).toBe(expected.digest('hex'));
    console.info(
      `300k rows written: live +${(live / 1e6).toFixed(1)} MB, member ${(summary.gzipBytes / 1e6).toFixed(1)} MB`,
    );
    expect(live).toBeLessThan(8e6);
  });
});
