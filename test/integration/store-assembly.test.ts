import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../lambda/store/fs.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import {
  type Assembly,
  ObjectExistsError,
  ObjectNotFoundError,
  type ObjectStore,
  SourceChangedError,
} from '../../lambda/store/types.js';
import { type S3CopyServer, startS3CopyServer } from '../fixtures/s3-copy-server.js';

// Issue 15, stores: objects assembled from in-store range copies and uploaded parts, on real bytes,
// against the folder store and against S3 (@20minutes/s3rver behind the strict fake that enforces
// the S3 rules s3rver ignores).

const MiB = 1024 * 1024;
const TARGET = 'full/backup_20261201_020000.tar.gz';

/** CRC64NVME with the SDK's implementation (independent of the stores' code). */
async function crcOf(...buffers: Buffer[]): Promise<string> {
  const crc = new Crc64Nvme();
  for (const b of buffers) crc.update(b);
  return Buffer.from(await crc.digest()).toString('base64');
}

type Store = Required<Pick<ObjectStore, 'getRange' | 'pinSource' | 'assemble' | 'listLeftovers'>> &
  ObjectStore;

interface Harness {
  readonly name: string;
  readonly store: Store;
  /** Writes (or overwrites) an object without the store's create-only rule. */
  replace(key: string, bytes: Buffer): Promise<void>;
  remove(key: string): Promise<void>;
  /** S3: the strict fake's refusals of requests about `key`. */
  refusalsOf?(key: string): { operation: string; status: number; code: string }[];
}

let server: S3CopyServer;
let folder: string;
let nextPrefix = 0;

beforeAll(async () => {
  server = await startS3CopyServer();
  folder = await mkdtemp(path.join(tmpdir(), 'store-assembly-'));
});

afterAll(async () => {
  await server?.stop();
  await rm(folder, { recursive: true, force: true });
});

function folderHarness(): Harness {
  const root = path.join(folder, `store-${nextPrefix++}`);
  const store = new FsObjectStore(root);
  const fileOf = (key: string) => path.join(root, ...key.split('/'));
  return {
    name: 'folder',
    store: store as Store,
    // Written beside and renamed over, as any tool that replaces files safely does: a new inode.
    replace: async (key, bytes) => {
      await writeFile(`${fileOf(key)}.new`, bytes);
      await rename(`${fileOf(key)}.new`, fileOf(key));
    },
    remove: (key) => rm(fileOf(key)),
  };
}

function s3Harness(): Harness {
  const prefix = `case-${nextPrefix++}/`;
  const store: S3ObjectStore = server.makeStore(prefix);
  return {
    name: 's3',
    store: store as Store,
    replace: async (key, bytes) => {
      await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: prefix + key, Body: bytes }));
    },
    remove: async (key) => {
      await store.client.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: prefix + key }));
    },
    refusalsOf: (key) => server.refusals.filter((r) => r.key === prefix + key),
  };
}

/** Three sources of random bytes, all above S3's 5 MB ranged-copy minimum. */
async function putSources(h: Harness): Promise<Record<'a' | 'b' | 'c', Buffer>> {
  const sources = { a: randomBytes(12 * MiB), b: randomBytes(8 * MiB), c: randomBytes(6 * MiB) };
  for (const [name, bytes] of Object.entries(sources)) await h.store.put(`full/src_${name}.tar.gz`, bytes);
  return sources;
}

async function pin(h: Harness, key: string) {
  const pinned = await h.store.pinSource(key);
  if (!pinned) throw new Error(`${key} is missing`);
  return pinned;
}

describe.each([
  { name: 'folder store', make: folderHarness },
  { name: 'S3 (strict fake)', make: s3Harness },
])('$name: assembly', ({ make }) => {
  it('copies, uploads and ranged reads, written out of order, assemble exactly their concatenation', async () => {
    const h = make();
    const src = await putSources(h);
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => pin(h, `full/src_${n}.tar.gz`)));
    expect(a.size).toBe(src.a.length);
    // Part 2 is fetched with ranged reads and uploaded; 1 and 3 are range copies; 4 is a small tail.
    const fetched = Buffer.concat([
      await h.store.getRange(b.key, 0, 3 * MiB, b),
      await h.store.getRange(c.key, 100, 3 * MiB, c),
    ]);
    const tail = randomBytes(1000);
    const expected = Buffer.concat([
      src.a.subarray(MiB, 7 * MiB),
      src.b.subarray(0, 3 * MiB),
      src.c.subarray(100, 100 + 3 * MiB),
      src.b.subarray(2 * MiB, 7 * MiB),
      tail,
    ]);
    const assembly: Assembly = await h.store.assemble(TARGET, { tier: 'archive' });
    await Promise.all([
      assembly.copyPart(3, 12 * MiB, b, 2 * MiB, 5 * MiB),
      assembly.uploadPart(4, 17 * MiB, tail),
      assembly.uploadPart(2, 6 * MiB, fetched),
      assembly.copyPart(1, 0, a, MiB, 6 * MiB),
    ]);
    expect(await h.store.head(TARGET)).toBeUndefined();

    const result = await assembly.complete({ bytes: expected.length, crc64nvme: await crcOf(expected) });

    expect(result.bytes).toBe(expected.length);
    expect(result.crc64nvme).toBe(await crcOf(expected));
    const stored = await h.store.get(TARGET);
    expect(stored?.equals(expected)).toBe(true);
    expect((await h.store.list('full/')).map((o) => o.key)).toContain(TARGET);
    if (h.name === 'folder') expect(result.sha256).toBe(createHash('sha256').update(expected).digest('hex'));
    expect(await h.store.listLeftovers()).toEqual([]);
  });

  it('an assembly in progress is a leftover for the sweep (a killed run), and abort removes it', async () => {
    const h = make();
    const src = await putSources(h);
    const assembly = await h.store.assemble(TARGET);
    await assembly.uploadPart(1, 0, src.a.subarray(0, 6 * MiB));

    expect(await h.store.listLeftovers()).toEqual([
      expect.objectContaining({
        key: TARGET,
        kind: h.name === 'folder' ? 'partial-file' : 'multipart-upload',
        bytes: 6 * MiB,
      }),
    ]);
    expect(await h.store.head(TARGET)).toBeUndefined();
    await assembly.abort();
    expect(await h.store.listLeftovers()).toEqual([]);
  });

  it('a copy or read pinned to a source that was replaced since fails naming it; nothing is visible', async () => {
    const h = make();
    await putSources(h);
    const a = await pin(h, 'full/src_a.tar.gz');
    await h.replace(a.key, randomBytes(12 * MiB));
    const assembly = await h.store.assemble(TARGET);

    await expect(assembly.copyPart(1, 0, a, 0, 6 * MiB)).rejects.toThrow(SourceChangedError);
    await expect(h.store.getRange(a.key, 0, MiB, a)).rejects.toThrow(
      /src_a\.tar\.gz changed since it was pinned/,
    );
    await assembly.abort();
    // On S3 it is the server that refuses (x-amz-copy-source-if-match, If-Match), not our code.
    if (h.refusalsOf) {
      expect(h.refusalsOf(TARGET)).toContainEqual(
        expect.objectContaining({ operation: 'UploadPartCopy', status: 412, code: 'PreconditionFailed' }),
      );
      expect(h.refusalsOf(a.key)).toContainEqual(
        expect.objectContaining({ operation: 'GetObject', status: 412, code: 'PreconditionFailed' }),
      );
    }

    expect(await h.store.head(TARGET)).toBeUndefined();
    expect(await h.store.listLeftovers()).toEqual([]);
  });

  it('a source deleted mid-assembly: the copy fails naming it, nothing is visible, no leftover after abort', async () => {
    const h = make();
    await putSources(h);
    const a = await pin(h, 'full/src_a.tar.gz');
    const b = await pin(h, 'full/src_b.tar.gz');
    const assembly = await h.store.assemble(TARGET);
    await assembly.copyPart(1, 0, a, 0, 6 * MiB);
    await h.remove(b.key);

    const failed = assembly.copyPart(2, 6 * MiB, b, 0, 6 * MiB);
    await expect(failed).rejects.toThrow(ObjectNotFoundError);
    await expect(failed).rejects.toThrow(/src_b\.tar\.gz/);
    await expect(h.store.getRange(b.key, 0, 10, b)).rejects.toThrow(ObjectNotFoundError);
    await assembly.abort();

    expect(await h.store.head(TARGET)).toBeUndefined();
    expect(await h.store.listLeftovers()).toEqual([]);
  });

  it('complete on a key that exists: ObjectExistsError, the existing object unchanged', async () => {
    const h = make();
    const src = await putSources(h);
    const existing = randomBytes(4096);
    await h.store.put(TARGET, existing);
    const a = await pin(h, 'full/src_a.tar.gz');
    const assembly = await h.store.assemble(TARGET);
    await assembly.copyPart(1, 0, a, 0, 6 * MiB);

    await expect(
      assembly.complete({ bytes: 6 * MiB, crc64nvme: await crcOf(src.a.subarray(0, 6 * MiB)) }),
    ).rejects.toThrow(ObjectExistsError);
    await assembly.abort();
    if (h.refusalsOf) {
      expect(h.refusalsOf(TARGET)).toContainEqual(
        expect.objectContaining({ operation: 'CompleteMultipartUpload', status: 412 }),
      );
    }

    expect((await h.store.get(TARGET))?.equals(existing)).toBe(true);
    expect(await h.store.listLeftovers()).toEqual([]);
  });

  it('a wrong expected CRC64NVME is refused before anything is visible', async () => {
    const h = make();
    const src = await putSources(h);
    const a = await pin(h, 'full/src_a.tar.gz');
    const assembly = await h.store.assemble(TARGET);
    await assembly.copyPart(1, 0, a, 0, 6 * MiB);
    await assembly.uploadPart(2, 6 * MiB, src.b.subarray(0, 1000));

    // The CRC of other bytes of the same length: one flipped byte.
    const other = Buffer.concat([src.a.subarray(0, 6 * MiB), src.b.subarray(0, 1000)]);
    other[123] ^= 1;
    await expect(assembly.complete({ bytes: other.length, crc64nvme: await crcOf(other) })).rejects.toThrow(
      /CRC64NVME/,
    );
    await assembly.abort();
    if (h.refusalsOf) {
      expect(h.refusalsOf(TARGET)).toContainEqual(
        expect.objectContaining({ operation: 'CompleteMultipartUpload', code: 'BadDigest' }),
      );
    }

    expect(await h.store.head(TARGET)).toBeUndefined();
    expect(await h.store.listLeftovers()).toEqual([]);
  });

  it('parts that leave a gap are refused at complete, naming the part', async () => {
    const h = make();
    const src = await putSources(h);
    const a = await pin(h, 'full/src_a.tar.gz');
    const assembly = await h.store.assemble(TARGET);
    await assembly.copyPart(1, 0, a, 0, 6 * MiB);
    await assembly.uploadPart(2, 6 * MiB + 1, src.b.subarray(0, 10));

    await expect(
      assembly.complete({ bytes: 6 * MiB + 11, crc64nvme: await crcOf(src.a.subarray(0, 6 * MiB)) }),
    ).rejects.toThrow(/part 2 starts at byte 6291457, but the parts before it end at byte 6291456/);
    await assembly.abort();
    expect(await h.store.head(TARGET)).toBeUndefined();
    expect(await h.store.listLeftovers()).toEqual([]);
  });

  it('a range past the end of an object is an error naming the key and the range', async () => {
    const h = make();
    const src = await putSources(h);
    const c = await pin(h, 'full/src_c.tar.gz');
    await expect(h.store.getRange(c.key, src.c.length - 10, 100, c)).rejects.toThrow(
      /src_c\.tar\.gz.*(6291446\.\.6291545|bytes=6291446-6291545)/,
    );
    expect((await h.store.getRange(c.key, src.c.length - 10, 10)).equals(src.c.subarray(-10))).toBe(true);
  });

  it('the abort signal stops the assembly: later parts fail with its reason, nothing is left', async () => {
    const h = make();
    const src = await putSources(h);
    const controller = new AbortController();
    const assembly = await h.store.assemble(TARGET, { signal: controller.signal });
    await assembly.uploadPart(1, 0, src.a.subarray(0, 6 * MiB));
    controller.abort(new Error('run cancelled'));

    await expect(assembly.uploadPart(2, 6 * MiB, src.b.subarray(0, 10))).rejects.toThrow('run cancelled');
    await assembly.abort();
    expect(await h.store.head(TARGET)).toBeUndefined();
    expect(await h.store.listLeftovers()).toEqual([]);
  });
});

describe('folder store: hashes in byte order whatever the write order', () => {
  it('60 parts of random sizes (copies and uploads) written 6 at a time in shuffled order: sha256 and CRC64NVME of the result', async () => {
    const h = folderHarness();
    const src = await putSources(h);
    const a = await pin(h, 'full/src_a.tar.gz');
    const parts: { offset: number; length: number; from?: number; bytes: Buffer }[] = [];
    const random = (n: number) => randomBytes(4).readUInt32LE(0) % n;
    let offset = 0;
    for (let i = 0; i < 60; i += 1) {
      // Up to 1.5 chunks of 8 MiB, so some copies span two chunks and most start mid-chunk.
      const length = 1 + random(12 * MiB);
      if (i % 3 === 0) {
        parts.push({ offset, length, bytes: randomBytes(length) });
      } else {
        const from = random(src.a.length - length);
        parts.push({ offset, length, from, bytes: src.a.subarray(from, from + length) });
      }
      offset += length;
    }
    const expected = Buffer.concat(parts.map((p) => p.bytes));
    const order = parts.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i -= 1) {
      const j = random(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const assembly = await h.store.assemble(TARGET);
    let next = 0;
    const worker = async () => {
      while (next < order.length) {
        const i = order[next++];
        const p = parts[i];
        if (p.from !== undefined) await assembly.copyPart(i + 1, p.offset, a, p.from, p.length);
        else await assembly.uploadPart(i + 1, p.offset, p.bytes);
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));

    const result = await assembly.complete({ bytes: expected.length, crc64nvme: await crcOf(expected) });

    expect(result.sha256).toBe(createHash('sha256').update(expected).digest('hex'));
    expect((await h.store.get(TARGET))?.equals(expected)).toBe(true);
  });
});

describe('the strict fake enforces what s3rver ignores', () => {
  it('a part under 5 MiB that is not the last: EntityTooSmall from the fake; s3rver alone accepts it', async () => {
    const prefix = `case-${nextPrefix++}/`;
    const parts = [randomBytes(MiB), randomBytes(MiB)];
    const strict = server.makeStore(prefix);
    const assembly = await strict.assemble(TARGET);
    await assembly.uploadPart(1, 0, parts[0]);
    await assembly.uploadPart(2, MiB, parts[1]);

    await expect(assembly.complete({ bytes: 2 * MiB, crc64nvme: await crcOf(...parts) })).rejects.toThrow(
      /EntityTooSmall: .*the part plan broke the minimum part size/,
    );
    await assembly.abort();
    expect(server.refusals).toContainEqual(
      expect.objectContaining({ code: 'EntityTooSmall', key: prefix + TARGET }),
    );
    expect(await strict.head(TARGET)).toBeUndefined();

    const lax = server.makeStore(`case-${nextPrefix++}/`, { endpoint: server.upstream });
    const accepted = await lax.assemble(TARGET);
    await accepted.uploadPart(1, 0, parts[0]);
    await accepted.uploadPart(2, MiB, parts[1]);
    await accepted.complete({ bytes: 2 * MiB, crc64nvme: await crcOf(...parts) });
    expect((await lax.get(TARGET))?.equals(Buffer.concat(parts))).toBe(true);
  });

  it('a ranged copy from a source of 5 MB or less: InvalidRequest from the fake', async () => {
    const prefix = `case-${nextPrefix++}/`;
    const store = server.makeStore(prefix);
    await store.put('full/small.tar.gz', randomBytes(5_000_000));
    const small = await store.pinSource('full/small.tar.gz');
    if (!small) throw new Error('missing');
    const assembly = await store.assemble(TARGET);

    await expect(assembly.copyPart(1, 0, small, 0, 4 * MiB)).rejects.toThrow(
      /small\.tar\.gz: InvalidRequest: The specified copy source is not supported as a byte-range copy source/,
    );
    await assembly.abort();
    expect(server.refusals).toContainEqual(
      expect.objectContaining({ operation: 'UploadPartCopy', code: 'InvalidRequest' }),
    );
  });
});
