import { Worker } from 'node:worker_threads';
import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import { describe, expect, it } from 'vitest';
import {
  CRC64NVME_WORKER_SOURCE,
  Crc64NvmeHasher,
  combineBase64,
  crc64nvme,
  crc64nvmeCombine,
  crc64nvmeFromBase64,
  crc64nvmeToBase64,
} from '../../lambda/core/archiver/crc64nvme.js';
import { randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';

/** The SDK's CRC64NVME (what S3 clients send and S3 checks), as 8 big-endian bytes. */
async function sdkDigest(data: Uint8Array): Promise<Buffer> {
  const hash = new Crc64Nvme();
  hash.update(data);
  return Buffer.from(await hash.digest());
}

async function sdkCrc(data: Uint8Array): Promise<bigint> {
  return (await sdkDigest(data)).readBigUInt64BE(0);
}

const POLY = 0x9a6c9329ac4bc9b5n;
const MASK64 = (1n << 64n) - 1n;

/** Bit-at-a-time BigInt CRC-64/NVME straight from the definition: no tables shared with the module. */
function referenceCrc(data: Uint8Array): bigint {
  let crc = MASK64;
  for (const byte of data) {
    crc ^= BigInt(byte);
    for (let bit = 0; bit < 8; bit++) crc = crc & 1n ? (crc >> 1n) ^ POLY : crc >> 1n;
  }
  return crc ^ MASK64;
}

/** Reflected GF(2) product mod P, written independently of the module (bit 63 = x^0). */
function referenceMultiply(a: bigint, b: bigint): bigint {
  let product = 0n;
  for (let bit = 63n; bit >= 0n; bit--) {
    if ((a >> bit) & 1n) product ^= b;
    b = b & 1n ? (b >> 1n) ^ POLY : b >> 1n;
  }
  return product;
}

/** crc(A || B) from the algebra: crcA * x^(8 * lengthB) + crcB, x^n by square and multiply. */
function referenceCombine(crcA: bigint, crcB: bigint, lengthB: bigint): bigint {
  let power = 1n << 63n; // x^0
  let square = 1n << 62n; // x^1
  for (let n = 8n * lengthB; n > 0n; n >>= 1n) {
    if (n & 1n) power = referenceMultiply(power, square);
    square = referenceMultiply(square, square);
  }
  return referenceMultiply(power, crcA) ^ crcB;
}

/** Cuts [0, length) at `pieces - 1` random points (pieces may be empty). */
function randomCuts(rand: () => number, length: number, pieces: number): number[] {
  const cuts = [0, length];
  for (let i = 1; i < pieces; i++) cuts.push(Math.floor(rand() * (length + 1)));
  return cuts.sort((a, b) => a - b);
}

const EDGE_SIZES = [
  0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 67, 127, 128, 129, 1000, 4099,
];

describe('crc64nvme', () => {
  it('gives the catalogued CRC-64/NVME check value for "123456789"', () => {
    expect(crc64nvme(Buffer.from('123456789'))).toBe(0xae8b14860a799888n);
  });

  it('equals the bit-at-a-time definition on short inputs of every alignment', () => {
    const rand = seededRandom(11);
    const backing = randomBytesFrom(rand, 300);
    for (const size of EDGE_SIZES.filter((s) => s <= 200)) {
      for (let offset = 0; offset < 4; offset++) {
        const data = backing.subarray(offset, offset + size);
        expect(crc64nvme(data), `size ${size} offset ${offset}`).toBe(referenceCrc(data));
      }
    }
  });

  it('equals the SDK on random buffers of 0..200 KB, aligned and unaligned subarrays', async () => {
    const rand = seededRandom(15);
    const sizes = [...EDGE_SIZES, 65_536, 200_000];
    for (let i = 0; i < 40; i++) sizes.push(Math.floor(rand() * 200_001));
    for (const size of sizes) {
      const backing = randomBytesFrom(rand, size + 8);
      for (const offset of [0, 1, 2, 3, 5]) {
        const data = backing.subarray(offset, offset + size);
        expect(crc64nvme(data), `size ${size} offset ${offset}`).toBe(await sdkCrc(data));
      }
    }
  });

  it('reads a view of a larger buffer, not the bytes around it', async () => {
    const rand = seededRandom(16);
    const backing = randomBytesFrom(rand, 10_000);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 1001, 7000);
    const copy = Uint8Array.from(view);
    expect(crc64nvme(view)).toBe(await sdkCrc(copy));
  });

  it('reads views of a SharedArrayBuffer (the gzip workers hash slots of one)', async () => {
    const rand = seededRandom(18);
    const shared = new SharedArrayBuffer(70_000);
    const view = Buffer.from(shared, 3, 65_000);
    randomBytesFrom(rand, 65_000).copy(view);
    const worker = new Function(`${CRC64NVME_WORKER_SOURCE}\nreturn crc64nvmeBase64;`)() as (
      b: Uint8Array,
    ) => string;
    const expected = await sdkDigest(Uint8Array.from(view));
    expect(crc64nvme(view)).toBe(expected.readBigUInt64BE(0));
    expect(worker(view)).toBe(expected.toString('base64'));
  });

  it('continues from `previous`: crc64nvme(b, crc64nvme(a)) is the CRC of a then b', async () => {
    const rand = seededRandom(17);
    const data = randomBytesFrom(rand, 50_000);
    for (let i = 0; i < 20; i++) {
      const cut = Math.floor(rand() * (data.length + 1));
      expect(crc64nvme(data.subarray(cut), crc64nvme(data.subarray(0, cut)))).toBe(await sdkCrc(data));
    }
  });

  it.each([-1n, 1n << 64n])('rejects `previous` outside 64 bits (%s)', (previous) => {
    expect(() => crc64nvme(Buffer.alloc(1), previous)).toThrow(/`previous` must be a CRC64NVME value/);
  });
});

describe('Crc64NvmeHasher', () => {
  it('gives the one-shot CRC for updates on random splits (including empty pieces)', async () => {
    const rand = seededRandom(21);
    for (let round = 0; round < 30; round++) {
      const data = randomBytesFrom(rand, Math.floor(rand() * 200_001));
      const cuts = randomCuts(rand, data.length, 2 + Math.floor(rand() * 12));
      const hasher = new Crc64NvmeHasher();
      for (let i = 0; i + 1 < cuts.length; i++) hasher.update(data.subarray(cuts[i], cuts[i + 1]));
      const expected = await sdkCrc(data);
      expect(hasher.digest()).toBe(expected);
      expect(crc64nvme(data)).toBe(expected);
    }
  });

  it('digests the bytes so far, and again after more updates', async () => {
    const rand = seededRandom(22);
    const data = randomBytesFrom(rand, 3001);
    const hasher = new Crc64NvmeHasher();
    expect(hasher.digest()).toBe(await sdkCrc(new Uint8Array(0)));
    hasher.update(data.subarray(0, 1000));
    expect(hasher.digest()).toBe(await sdkCrc(data.subarray(0, 1000)));
    expect(hasher.update(data.subarray(1000)).digest()).toBe(await sdkCrc(data));
  });

  it('keeps separate state per instance', async () => {
    const a = new Crc64NvmeHasher().update(Buffer.from('first'));
    const b = new Crc64NvmeHasher().update(Buffer.from('second'));
    expect(a.digest()).toBe(await sdkCrc(Buffer.from('first')));
    expect(b.digest()).toBe(await sdkCrc(Buffer.from('second')));
  });
});

describe('crc64nvmeCombine', () => {
  it('combines 3-10 pieces of a random split into the SDK CRC of the whole', async () => {
    const rand = seededRandom(31);
    for (let round = 0; round < 40; round++) {
      const data = randomBytesFrom(rand, Math.floor(rand() * 200_001));
      const cuts = randomCuts(rand, data.length, 3 + Math.floor(rand() * 8));
      let combined = crc64nvme(new Uint8Array(0));
      for (let i = 0; i + 1 < cuts.length; i++) {
        const piece = data.subarray(cuts[i], cuts[i + 1]);
        combined = crc64nvmeCombine(combined, crc64nvme(piece), piece.length);
      }
      expect(combined, `round ${round}, cuts ${cuts.join(',')}`).toBe(await sdkCrc(data));
    }
  });

  it('with lengthB = 0 (B empty) returns crcA', () => {
    const rand = seededRandom(32);
    const a = crc64nvme(randomBytesFrom(rand, 777));
    expect(crc64nvmeCombine(a, crc64nvme(new Uint8Array(0)), 0)).toBe(a);
  });

  it('with A empty returns crcB', () => {
    const b = crc64nvme(Buffer.from('only b'));
    expect(crc64nvmeCombine(crc64nvme(new Uint8Array(0)), b, 6)).toBe(b);
  });

  it('equals the combine algebra for lengths up to 5 TiB', () => {
    const rand = seededRandom(33);
    const randomCrc = () => (BigInt((rand() * 2 ** 32) >>> 0) << 32n) | BigInt((rand() * 2 ** 32) >>> 0);
    const lengths = [1, 2, 3, 255, 256, 1 << 20, 5 * 2 ** 30, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 5 * 2 ** 40];
    for (let i = 0; i < 10; i++) lengths.push(Math.floor(rand() * 5 * 2 ** 40));
    for (const length of lengths) {
      const a = randomCrc();
      const b = randomCrc();
      expect(crc64nvmeCombine(a, b, length), `lengthB ${length}`).toBe(
        referenceCombine(a, b, BigInt(length)),
      );
    }
  });

  it('is associative across multi-TiB pieces', () => {
    const a = crc64nvme(Buffer.from('a'));
    const b = crc64nvme(Buffer.from('b'));
    const c = crc64nvme(Buffer.from('c'));
    const nb = 3 * 2 ** 40 + 12345;
    const nc = 2 * 2 ** 40 - 777;
    expect(crc64nvmeCombine(crc64nvmeCombine(a, b, nb), c, nc)).toBe(
      crc64nvmeCombine(a, crc64nvmeCombine(b, c, nc), nb + nc),
    );
  });

  it('matches a real run of zero bytes 1 MiB long', async () => {
    const zeros = new Uint8Array(1 << 20);
    const a = crc64nvme(Buffer.from('header'));
    const whole = Buffer.concat([Buffer.from('header'), zeros]);
    expect(crc64nvmeCombine(a, crc64nvme(zeros), zeros.length)).toBe(await sdkCrc(whole));
  });

  it('takes O(log n) steps: 20,000 combines at ~5 TiB lengths finish in seconds, not hours', () => {
    let crc = 0n;
    const started = performance.now();
    for (let i = 0; i < 20_000; i++) crc = crc64nvmeCombine(crc, BigInt(i), 5 * 2 ** 40 - i);
    const elapsed = performance.now() - started;
    expect(crc).not.toBe(0n);
    expect(elapsed).toBeLessThan(2000);
  });

  it.each([-1, 1.5, Number.NaN, 2 ** 53])('rejects lengthB %s', (length) => {
    expect(() => crc64nvmeCombine(0n, 0n, length)).toThrow(/`lengthB` must be a non-negative safe integer/);
  });

  it('rejects a crc outside 64 bits', () => {
    expect(() => crc64nvmeCombine(1n << 64n, 0n, 1)).toThrow(/`crcA` must be a CRC64NVME value/);
    expect(() => crc64nvmeCombine(0n, -5n, 1)).toThrow(/`crcB` must be a CRC64NVME value/);
  });
});

describe('base64 form', () => {
  it('is what the SDK digest gives in base64 (as S3 writes x-amz-checksum-crc64nvme)', async () => {
    const rand = seededRandom(41);
    for (const size of [0, 1, 9, 1000, 65_537]) {
      const data = randomBytesFrom(rand, size);
      const base64 = crc64nvmeToBase64(crc64nvme(data));
      expect(base64).toBe((await sdkDigest(data)).toString('base64'));
      expect(crc64nvmeFromBase64(base64)).toBe(crc64nvme(data));
    }
  });

  it('round-trips 0, 2^64-1 and random values', () => {
    const rand = seededRandom(42);
    const values = [0n, 1n, MASK64, 1n << 63n];
    for (let i = 0; i < 50; i++) {
      values.push((BigInt((rand() * 2 ** 32) >>> 0) << 32n) | BigInt((rand() * 2 ** 32) >>> 0));
    }
    for (const value of values) {
      const base64 = crc64nvmeToBase64(value);
      expect(base64).toMatch(/^[A-Za-z0-9+/]{11}=$/);
      expect(crc64nvmeFromBase64(base64)).toBe(value);
    }
  });

  it.each([
    ['empty', ''],
    ['11 characters', 'AAAAAAAAAAA'],
    ['7 bytes', 'AAAAAAAAAA=='],
    ['9 bytes', 'AAAAAAAAAAAA'],
    ['16 characters (12 bytes)', 'AAAAAAAAAAAAAAAA'],
    ['not base64', 'AAAAAAAAA!A='],
    ['non-zero padding bits', 'AAAAAAAAAAB='],
    ['hex', 'ae8b14860a799888'],
  ])('rejects %s, naming the value', (_what, value) => {
    expect(() => crc64nvmeFromBase64(value)).toThrow(`not a CRC64NVME checksum: ${JSON.stringify(value)}`);
  });

  it('rejects values outside 64 bits', () => {
    expect(() => crc64nvmeToBase64(-1n)).toThrow(/must be a CRC64NVME value/);
    expect(() => crc64nvmeToBase64(1n << 64n)).toThrow(/must be a CRC64NVME value/);
  });
});

describe('combineBase64', () => {
  it('of an empty list is the CRC of zero bytes', async () => {
    expect(combineBase64([])).toBe((await sdkDigest(new Uint8Array(0))).toString('base64'));
  });

  it('of ranges laid end to end is the SDK checksum of their concatenation', async () => {
    const rand = seededRandom(51);
    for (let round = 0; round < 20; round++) {
      const data = randomBytesFrom(rand, Math.floor(rand() * 150_001));
      const cuts = randomCuts(rand, data.length, 3 + Math.floor(rand() * 8));
      const parts = [];
      for (let i = 0; i + 1 < cuts.length; i++) {
        const piece = data.subarray(cuts[i], cuts[i + 1]);
        parts.push({ crc64nvme: (await sdkDigest(piece)).toString('base64'), length: piece.length });
      }
      expect(combineBase64(parts)).toBe((await sdkDigest(data)).toString('base64'));
    }
  });

  it('equals the combine algebra for multi-TiB ranges', () => {
    const rand = seededRandom(52);
    const parts = [];
    let expected = 0n;
    for (let i = 0; i < 12; i++) {
      const crc = (BigInt((rand() * 2 ** 32) >>> 0) << 32n) | BigInt((rand() * 2 ** 32) >>> 0);
      const length = i === 5 ? 0 : Math.floor(rand() * 5 * 2 ** 40);
      parts.push({ crc64nvme: crc64nvmeToBase64(crc), length });
      expected = referenceCombine(expected, crc, BigInt(length));
    }
    expect(combineBase64(parts)).toBe(crc64nvmeToBase64(expected));
  });

  it('names a bad length by its index', () => {
    expect(() =>
      combineBase64([
        { crc64nvme: 'AAAAAAAAAAA=', length: 0 },
        { crc64nvme: 'AAAAAAAAAAA=', length: -3 },
      ]),
    ).toThrow(/`parts\[1\]\.length` must be a non-negative safe integer byte count, got -3/);
  });

  it('names a bad checksum in the list', () => {
    expect(() =>
      combineBase64([
        { crc64nvme: 'AAAAAAAAAAA=', length: 0 },
        { crc64nvme: 'bogus', length: 5 },
      ]),
    ).toThrow(/"bogus"/);
  });
});

describe('CRC64NVME_WORKER_SOURCE', () => {
  it('evaluated on its own (strict mode), gives the SDK checksum in base64', async () => {
    const crc64nvmeBase64 = new Function(
      `'use strict';\n${CRC64NVME_WORKER_SOURCE}\nreturn crc64nvmeBase64;`,
    )() as (buffer: Uint8Array) => string;
    const rand = seededRandom(61);
    const sizes = [...EDGE_SIZES, 200_000];
    for (let i = 0; i < 20; i++) sizes.push(Math.floor(rand() * 200_001));
    for (const size of sizes) {
      const backing = randomBytesFrom(rand, size + 4);
      for (const offset of [0, 1, 3]) {
        const data = backing.subarray(offset, offset + size);
        expect(crc64nvmeBase64(data), `size ${size} offset ${offset}`).toBe(
          (await sdkDigest(data)).toString('base64'),
        );
      }
    }
  });

  it('runs in an eval worker thread as the gzip worker uses it', async () => {
    const rand = seededRandom(62);
    const data = randomBytesFrom(rand, 100_003);
    const source = `${CRC64NVME_WORKER_SOURCE}
const { parentPort, workerData } = require('node:worker_threads');
const input = Buffer.from(workerData);
parentPort.postMessage([crc64nvmeBase64(input), crc64nvmeBase64(input.subarray(1))]);`;
    const worker = new Worker(source, { eval: true, workerData: data });
    const result = await new Promise<string[]>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    expect(result).toEqual([
      (await sdkDigest(data)).toString('base64'),
      (await sdkDigest(data.subarray(1))).toString('base64'),
    ]);
  });
});
