import { describe, expect, it } from 'vitest';
import { crc64nvme, crc64nvmeCombine, crc64nvmeToBase64 } from '../../lambda/core/archiver/crc64nvme.js';
import { assembleSynthetic } from '../../lambda/core/synthetic/assemble.js';
import { SyntheticFallbackError } from '../../lambda/core/synthetic/errors.js';
import {
  planSyntheticParts,
  type SyntheticPartPlan,
  type SyntheticSegment,
} from '../../lambda/core/synthetic/part-plan.js';
import {
  type Assembly,
  type AssemblyExpectation,
  type AssemblyResult,
  ObjectNotFoundError,
  SourceChangedError,
  type SourcePin,
  StoreRequestError,
} from '../../lambda/store/types.js';
import { randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';

const STAGING = 'staging/backup_20261201_020000/fresh.tar.gz';
const TARGET = 'full/backup_20261201_020000.tar.gz';
const URL = 'mem://backups';

/** Scaled-down S3 rules, so that real bytes stay small: the executor does not depend on the numbers. */
const LIMITS = { minPartBytes: 256, maxPartBytes: 4096, maxParts: 1000, minCopySourceBytes: 2000 };

/** Lets other tasks run: parts overlap as they would on a network, without sleeping. */
const yieldTurns = async (n = 3) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

/**
 * A store whose objects are Buffers in a Map, with an assembly that keeps parts in memory and, like
 * S3, refuses small parts, sources changed since their pin, and a completion whose bytes do not have
 * the expected size and CRC64NVME. Counts calls and parts in flight.
 */
class MemoryStore {
  readonly url = URL;
  readonly objects = new Map<string, Buffer>();
  /** Bumped when an object is replaced: the ETag of a pin. */
  private readonly generations = new Map<string, number>();
  readonly calls = { getRange: 0, copyPart: 0, uploadPart: 0, complete: 0, abort: 0 };
  inFlight = 0;
  maxInFlight = 0;
  /** Runs before each part's work (to inject faults mid-run). */
  beforePart: (partNumber: number) => void = () => {};

  putObject(key: string, bytes: Buffer): void {
    this.objects.set(key, bytes);
    this.generations.set(key, (this.generations.get(key) ?? 0) + 1);
  }

  pin(key: string): SourcePin {
    return { key, etag: `"${this.generations.get(key)}"`, size: this.objects.get(key)!.length };
  }

  private read(key: string, offset: number, length: number, pin?: SourcePin): Buffer {
    const bytes = this.objects.get(key);
    if (!bytes) throw new ObjectNotFoundError(URL, key);
    if (pin && pin.etag !== `"${this.generations.get(key)}"`) {
      throw new SourceChangedError(`${URL}/${key}`, pin, 'ETag differs');
    }
    if (offset + length > bytes.length) throw new Error(`${key} has no bytes ${offset}+${length}`);
    return Buffer.from(bytes.subarray(offset, offset + length));
  }

  private async track<T>(work: () => T): Promise<T> {
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await yieldTurns();
      return work();
    } finally {
      this.inFlight -= 1;
    }
  }

  async getRange(key: string, offset: number, length: number, pin?: SourcePin): Promise<Buffer> {
    this.calls.getRange += 1;
    await yieldTurns(1);
    return this.read(key, offset, length, pin);
  }

  async assemble(key: string): Promise<Assembly> {
    const parts = new Map<number, { offset: number; bytes: Buffer }>();
    const store = this;
    let done = false;
    return {
      ...LIMITS,
      async uploadPart(partNumber, offset, body) {
        store.calls.uploadPart += 1;
        store.beforePart(partNumber);
        await store.track(() => parts.set(partNumber, { offset, bytes: Buffer.from(body) }));
      },
      async copyPart(partNumber, offset, source, sourceOffset, length) {
        store.calls.copyPart += 1;
        store.beforePart(partNumber);
        await store.track(() => {
          if (source.size <= LIMITS.minCopySourceBytes)
            throw new Error('InvalidRequest: source too small to copy');
          parts.set(partNumber, { offset, bytes: store.read(source.key, sourceOffset, length, source) });
        });
      },
      async complete(expected: AssemblyExpectation): Promise<AssemblyResult> {
        store.calls.complete += 1;
        if (done) throw new Error('assembly already finished');
        const ordered = [...parts.entries()].sort(([a], [b]) => a - b);
        ordered.forEach(([, p], i) => {
          if (i < ordered.length - 1 && p.bytes.length < LIMITS.minPartBytes)
            throw new Error('EntityTooSmall');
        });
        const bytes = Buffer.concat(ordered.map(([, p]) => p.bytes));
        let crc = 0n;
        for (const [, p] of ordered) crc = crc64nvmeCombine(crc, crc64nvme(p.bytes), p.bytes.length);
        if (bytes.length !== expected.bytes || crc64nvmeToBase64(crc) !== expected.crc64nvme) {
          throw new StoreRequestError('complete', `${URL}/${key}`, 'BadDigest: the CRC64NVME differs');
        }
        done = true;
        store.putObject(key, bytes);
        return { key, bytes: bytes.length, crc64nvme: expected.crc64nvme };
      },
      async abort() {
        store.calls.abort += 1;
        done = true;
      },
    };
  }
}

/**
 * Old archives and a staging object in the store, and the segments of a new full taking most of
 * their entries in order plus fresh ones (seeded): copies and fetched pieces both occur.
 */
function world(seed: number) {
  const rand = seededRandom(seed);
  const store = new MemoryStore();
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const picks: { source: string; offset: number; length: number }[] = [];
  let staging = 0;
  for (const [a, size] of [
    ['full/backup_20261101_020000.tar.gz', 30_000],
    ['incr/backup_20261108_020000.tar.gz', 1_500], // too small to copy from
    ['full/backup_20261115_020000.tar.gz', 12_000],
  ] as const) {
    store.putObject(a, randomBytesFrom(rand, size));
    for (let offset = 0; offset < size; ) {
      const length = Math.min(size - offset, int(20, 700));
      if (rand() < 0.85) picks.push({ source: a, offset, length });
      else {
        const fresh = int(20, 400);
        picks.push({ source: STAGING, offset: staging, length: fresh });
        staging += fresh;
      }
      offset += length;
    }
  }
  picks.push({ source: STAGING, offset: staging, length: 29 }); // end-of-archive
  staging += 29;
  store.putObject(STAGING, randomBytesFrom(rand, staging));
  const segments: SyntheticSegment[] = picks.map((p) => {
    const bytes = store.objects.get(p.source)!;
    return {
      ...p,
      sourceBytes: bytes.length,
      crc64nvme: crc64nvmeToBase64(crc64nvme(bytes.subarray(p.offset, p.offset + p.length))),
    };
  });
  const expected = Buffer.concat(
    segments.map((s) => store.objects.get(s.source)!.subarray(s.offset, s.offset + s.length)),
  );
  const pins = new Map([...new Set(segments.map((s) => s.source))].map((k) => [k, store.pin(k)]));
  const plan = planSyntheticParts(segments, LIMITS);
  return { store, segments, expected, pins, plan };
}

/** The first fetched piece made of whole segments, with its part number. */
function firstCheckedPiece(plan: SyntheticPartPlan) {
  for (const [i, part] of plan.parts.entries()) {
    if (part.kind !== 'upload') continue;
    const piece = part.pieces.find((p) => p.wholeSegments);
    if (piece) return { partNumber: i + 1, piece };
  }
  throw new Error('the world has no checked piece: change the seed');
}

describe('assembleSynthetic', () => {
  it('writes the concatenation of the segments, copying and fetching as planned, and completes with the plan CRC', async () => {
    const { store, expected, pins, plan } = world(1);
    expect(plan.copyParts).toBeGreaterThan(2);
    expect(plan.uploadParts).toBeGreaterThan(2);
    const progress: number[] = [];

    const out = await assembleSynthetic({
      store,
      key: TARGET,
      plan,
      pins,
      onProgress: (p) => progress.push(p.partsDone),
    });

    expect(store.objects.get(TARGET)!.equals(expected)).toBe(true);
    expect(out.result).toEqual({
      key: TARGET,
      bytes: expected.length,
      crc64nvme: crc64nvmeToBase64(crc64nvme(expected)),
    });
    expect(out).toMatchObject({
      bytesCopied: plan.bytesCopied,
      bytesFetched: plan.bytesFetched,
      copyParts: plan.copyParts,
      uploadParts: plan.uploadParts,
    });
    expect(store.calls.copyPart).toBe(plan.copyParts);
    expect(store.calls.uploadPart).toBe(plan.uploadParts);
    expect(store.calls.complete).toBe(1);
    expect(store.calls.abort).toBe(0);
    expect(progress).toEqual(plan.parts.map((_, i) => i + 1));
  });

  it.each([1, 2, 4, 7])('keeps at most %d parts in flight, and uses that many', async (concurrency) => {
    const { store, expected, pins, plan } = world(2);
    expect(plan.parts.length).toBeGreaterThan(concurrency * 2);

    await assembleSynthetic({ store, key: TARGET, plan, pins, concurrency });

    expect(store.maxInFlight).toBe(concurrency);
    expect(store.objects.get(TARGET)!.equals(expected)).toBe(true);
  });

  it('falls back when a source disappears mid-run, naming it and the range; aborts once, never completes', async () => {
    const { store, pins, plan } = world(3);
    const copy = plan.parts.findIndex((p, i) => i >= 3 && p.kind === 'copy');
    const part = plan.parts[copy];
    if (part.kind !== 'copy') throw new Error('the world has no late copy part: change the seed');
    const started: number[] = [];
    store.beforePart = (n) => {
      started.push(n);
      if (n === copy) store.objects.delete(part.source); // gone just before its copy starts
    };

    expect(plan.parts.length).toBeGreaterThan(copy + 6);
    const run = assembleSynthetic({ store, key: TARGET, plan, pins, concurrency: 3 });

    await expect(run).rejects.toThrow(SyntheticFallbackError);
    await expect(run).rejects.toThrow(
      // This part or another one of the same source in flight beside it: either names its range.
      new RegExp(`source missing: ${part.source} bytes \\d+-\\d+ cannot be read`),
    );
    // No part starts once the failing one (number copy + 1) has failed: at most the two others that
    // were in flight beside it.
    expect(Math.max(...started)).toBeLessThanOrEqual(copy + 3);
    expect(store.inFlight).toBe(0);
    expect(store.calls.abort).toBe(1);
    expect(store.calls.complete).toBe(0);
    expect(store.objects.has(TARGET)).toBe(false);
  });

  it('starts no part after one failed, lets the ones in flight settle, then aborts', async () => {
    const { store, pins, plan } = world(9);
    expect(plan.parts.length).toBeGreaterThan(10);
    const started: number[] = [];
    store.beforePart = (n) => {
      started.push(n);
      if (n === 3) throw new Error('connection reset');
    };

    const run = assembleSynthetic({ store, key: TARGET, plan, pins, concurrency: 3 });

    // Not a missing or changed source: the error is the store's, as it was.
    await expect(run).rejects.toThrow(/^connection reset$/);
    expect(Math.max(...started)).toBeLessThanOrEqual(5);
    expect(store.inFlight).toBe(0);
    expect(store.calls.abort).toBe(1);
    expect(store.calls.complete).toBe(0);
  });

  it('falls back when a fetched range has another byte than recorded: checksum mismatch naming the range', async () => {
    const { store, pins, plan } = world(4);
    const { piece } = firstCheckedPiece(plan);
    const source = store.objects.get(piece.source)!;
    source[piece.offset + Math.floor(piece.length / 2)] ^= 0x01; // bit rot, same object and pin

    const run = assembleSynthetic({ store, key: TARGET, plan, pins });

    await expect(run).rejects.toThrow(SyntheticFallbackError);
    await expect(run).rejects.toThrow(
      `checksum mismatch: ${piece.source} bytes ${piece.offset}-${piece.offset + piece.length - 1}`,
    );
    expect(store.calls.abort).toBe(1);
    expect(store.calls.complete).toBe(0);
  });

  it('falls back when a copied range has another byte: the store refuses the completion', async () => {
    const { store, pins, plan } = world(5);
    const copy = plan.parts.find((p) => p.kind === 'copy');
    if (copy?.kind !== 'copy') throw new Error('no copy part');
    store.objects.get(copy.source)![copy.offset] ^= 0x80;

    const run = assembleSynthetic({ store, key: TARGET, plan, pins });

    await expect(run).rejects.toThrow(SyntheticFallbackError);
    await expect(run).rejects.toThrow(/the store refused the assembled .*BadDigest/);
    expect(store.calls.complete).toBe(1);
    expect(store.calls.abort).toBe(1);
    expect(store.objects.has(TARGET)).toBe(false);
  });

  it('falls back when a source was replaced after it was pinned', async () => {
    const { store, pins, plan } = world(6);
    const copy = plan.parts.find((p) => p.kind === 'copy');
    if (copy?.kind !== 'copy') throw new Error('no copy part');
    store.putObject(copy.source, Buffer.from(store.objects.get(copy.source)!)); // same bytes, new ETag

    const run = assembleSynthetic({ store, key: TARGET, plan, pins });

    await expect(run).rejects.toThrow(new RegExp(`source changed since it was pinned: ${copy.source} bytes`));
    expect(store.calls.abort).toBe(1);
  });

  it('refuses a plan with an unpinned source before writing anything', async () => {
    const { store, pins, plan } = world(7);
    pins.delete(STAGING);

    await expect(assembleSynthetic({ store, key: TARGET, plan, pins })).rejects.toThrow(
      `source ${STAGING} was not pinned`,
    );
    expect(store.calls.uploadPart + store.calls.copyPart + store.calls.abort).toBe(0);
  });

  it('stops at the abort signal: no new part starts, the parts in flight settle, then it aborts once', async () => {
    const { store, pins, plan } = world(8);
    const controller = new AbortController();
    const started: number[] = [];
    store.beforePart = (n) => started.push(n);

    const run = assembleSynthetic({
      store,
      key: TARGET,
      plan,
      pins,
      concurrency: 2,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.partsDone === 3) controller.abort();
      },
    });

    await expect(run).rejects.toThrow(/abort/i);
    expect(started.length).toBeLessThanOrEqual(3 + 2);
    expect(started.length).toBeLessThan(plan.parts.length);
    expect(store.inFlight).toBe(0);
    expect(store.calls.abort).toBe(1);
    expect(store.calls.complete).toBe(0);
  });
});
