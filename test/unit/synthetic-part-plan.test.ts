import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import { describe, expect, it } from 'vitest';
import { crc64nvme, crc64nvmeToBase64 } from '../../lambda/core/archiver/crc64nvme.js';
import { SyntheticFallbackError } from '../../lambda/core/synthetic/errors.js';
import {
  planSyntheticParts,
  S3_PART_LIMITS,
  type SyntheticPart,
  type SyntheticPartLimits,
  type SyntheticPartPlan,
  type SyntheticSegment,
} from '../../lambda/core/synthetic/part-plan.js';
import { randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const STAGING = 'staging/backup_20261201_020000/fresh.tar.gz';

/** A valid-looking checksum for plans over bytes that are never materialised (TB-sized cases). */
const FAKE_CRC = 'AAAAAAAAAAA=';

interface Interval {
  source: string;
  start: number;
  end: number;
}

/** Byte ranges in order, neighbours of one source with contiguous ranges merged. */
function normalise(intervals: Iterable<Interval>): Interval[] {
  const out: Interval[] = [];
  for (const i of intervals) {
    const last = out.at(-1);
    if (last && last.source === i.source && last.end === i.start) last.end = i.end;
    else out.push({ ...i });
  }
  return out;
}

function* segmentIntervals(segments: readonly SyntheticSegment[]): Generator<Interval> {
  for (const s of segments) yield { source: s.source, start: s.offset, end: s.offset + s.length };
}

function* partIntervals(parts: readonly SyntheticPart[]): Generator<Interval> {
  for (const p of parts) {
    if (p.kind === 'copy') yield { source: p.source, start: p.offset, end: p.offset + p.length };
    else for (const q of p.pieces) yield { source: q.source, start: q.offset, end: q.offset + q.length };
  }
}

function fullLimits(limits: Partial<SyntheticPartLimits>): SyntheticPartLimits {
  const minPartBytes = limits.minPartBytes ?? S3_PART_LIMITS.minPartBytes;
  return {
    minPartBytes,
    maxPartBytes: limits.maxPartBytes ?? S3_PART_LIMITS.maxPartBytes,
    maxParts: limits.maxParts ?? S3_PART_LIMITS.maxParts,
    minCopySourceBytes: limits.minCopySourceBytes ?? S3_PART_LIMITS.minCopySourceBytes,
    minCopyRunBytes: limits.minCopyRunBytes ?? Math.max(1, minPartBytes),
    targetUploadPartBytes: limits.targetUploadPartBytes ?? 8 * MiB,
  };
}

/**
 * The planner's invariants, checked against the input alone (never against the planner's own
 * helpers). Returns nothing; throws with a description of the first broken rule.
 */
function checkPlan(
  segments: readonly SyntheticSegment[],
  given: Partial<SyntheticPartLimits>,
  plan: SyntheticPartPlan,
): void {
  const limits = fullLimits(given);
  const fail = (why: string) => {
    throw new Error(`plan breaks a rule: ${why}`);
  };
  // Coverage: the parts' ranges, concatenated, are the segments' ranges, in order, each once.
  const expected = normalise(segmentIntervals(segments));
  const actual = normalise(partIntervals(plan.parts));
  if (expected.length !== actual.length) fail(`${actual.length} ranges for ${expected.length} expected`);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    const a = actual[i];
    if (e.source !== a.source || e.start !== a.start || e.end !== a.end) {
      fail(`range ${i} is ${a.source} ${a.start}..${a.end}, expected ${e.source} ${e.start}..${e.end}`);
    }
  }
  const total = segments.reduce((n, s) => n + s.length, 0);
  if (plan.bytes !== total) fail(`bytes ${plan.bytes} != ${total}`);
  if (plan.parts.length > limits.maxParts) fail(`${plan.parts.length} parts > ${limits.maxParts}`);

  let copied = 0;
  let copyParts = 0;
  const sizes = new Map(segments.map((s) => [s.source, s.sourceBytes]));
  // Maximal runs of the input: a copied range must lie inside one run of at least the copy threshold.
  const runs = expected;
  let runIndex = 0;
  let group: Interval | undefined;
  const closeGroup = () => {
    if (group && group.end - group.start < plan.minCopyRunBytes) {
      fail(`copied run ${group.source} ${group.start}..${group.end} is shorter than ${plan.minCopyRunBytes}`);
    }
    group = undefined;
  };
  plan.parts.forEach((p, i) => {
    if (p.length <= 0) fail(`part ${i} is empty`);
    if (p.length > limits.maxPartBytes) fail(`part ${i} has ${p.length} bytes > max ${limits.maxPartBytes}`);
    if (i < plan.parts.length - 1 && p.length < limits.minPartBytes) {
      fail(`part ${i} of ${plan.parts.length} has ${p.length} bytes < min ${limits.minPartBytes}`);
    }
    if (p.kind === 'upload') {
      closeGroup();
      const sum = p.pieces.reduce((n, q) => n + q.length, 0);
      if (sum !== p.length) fail(`upload part ${i} says ${p.length} bytes, its pieces hold ${sum}`);
      return;
    }
    copied += p.length;
    copyParts += 1;
    if (!((sizes.get(p.source) ?? 0) > limits.minCopySourceBytes)) {
      fail(
        `part ${i} copies from ${p.source} of ${sizes.get(p.source)} bytes (needs > ${limits.minCopySourceBytes})`,
      );
    }
    // Parts are in order (coverage checked above), so the run holding each copy only moves forward.
    while (
      runIndex < runs.length &&
      !(
        runs[runIndex].source === p.source &&
        runs[runIndex].start <= p.offset &&
        p.offset + p.length <= runs[runIndex].end
      )
    ) {
      runIndex += 1;
    }
    if (runIndex === runs.length) fail(`copy part ${i} is not inside one run`);
    if (group && group.source === p.source && group.end === p.offset) group.end += p.length;
    else {
      closeGroup();
      group = { source: p.source, start: p.offset, end: p.offset + p.length };
    }
  });
  closeGroup();
  if (plan.minCopyRunBytes < limits.minCopyRunBytes) fail('copy threshold lowered');
  if (plan.bytesCopied !== copied) fail(`bytesCopied ${plan.bytesCopied} != ${copied}`);
  if (plan.bytesFetched !== total - copied) fail(`bytesFetched ${plan.bytesFetched} != ${total - copied}`);
  if (plan.copyParts !== copyParts) fail(`copyParts ${plan.copyParts} != ${copyParts}`);
  if (plan.uploadParts !== plan.parts.length - copyParts) fail('uploadParts miscounted');
  // The end-of-archive (the input's last segment) ends the last part.
  const lastSegment = segments.at(-1)!;
  const lastRange = [...partIntervals(plan.parts.slice(-1))].at(-1)!;
  if (lastRange.source !== lastSegment.source || lastRange.end !== lastSegment.offset + lastSegment.length) {
    fail('the last segment (end-of-archive) does not end the last part');
  }
}

/** Concatenates the bytes the parts name, as the executor would. */
function assembleBytes(parts: readonly SyntheticPart[], objects: Map<string, Buffer>): Buffer {
  return Buffer.concat([...partIntervals(parts)].map((r) => objects.get(r.source)!.subarray(r.start, r.end)));
}

function pieceChecksumsMatch(parts: readonly SyntheticPart[], objects: Map<string, Buffer>): number {
  let checked = 0;
  for (const p of parts) {
    if (p.kind !== 'upload') continue;
    for (const q of p.pieces) {
      if (!q.wholeSegments) continue;
      const bytes = objects.get(q.source)!.subarray(q.offset, q.offset + q.length);
      const actual = crc64nvmeToBase64(crc64nvme(bytes));
      if (actual !== q.crc64nvme) {
        throw new Error(
          `piece ${q.source} ${q.offset}+${q.length}: crc ${q.crc64nvme}, bytes have ${actual}`,
        );
      }
      checked += 1;
    }
  }
  return checked;
}

/**
 * A backup world in bytes: a few old archives made of entries, and a new full that keeps each entry
 * with probability `keep` (unchanged) and otherwise writes a fresh entry into the staging object,
 * which ends with the end-of-archive member.
 */
function randomWorld(
  rand: () => number,
  scale: { archives: number; entries: number; maxEntry: number; keep: number },
) {
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const objects = new Map<string, Buffer>();
  const archives: { key: string; entries: { offset: number; length: number }[] }[] = [];
  for (let a = 0; a < scale.archives; a++) {
    const entries: { offset: number; length: number }[] = [];
    let size = 0;
    const n = int(1, scale.entries);
    for (let e = 0; e < n; e++) {
      const length = int(1, scale.maxEntry);
      entries.push({ offset: size, length });
      size += length;
    }
    const key = `full/backup_2026110${a}_020000.tar.gz`;
    objects.set(key, randomBytesFrom(rand, size));
    archives.push({ key, entries });
  }
  // Entries of the new full: walk the archives in order (as a tree is), sometimes jumping between them.
  const picks: { source: string; offset: number; length: number }[] = [];
  let staging = 0;
  for (const archive of archives) {
    for (const entry of archive.entries) {
      if (rand() < scale.keep) picks.push({ source: archive.key, ...entry });
      else if (rand() < 0.8) {
        const length = int(1, scale.maxEntry);
        picks.push({ source: STAGING, offset: staging, length });
        staging += length;
      }
    }
  }
  const eoaLength = int(1, 40);
  picks.push({ source: STAGING, offset: staging, length: eoaLength });
  staging += eoaLength;
  objects.set(STAGING, randomBytesFrom(rand, staging));
  const segments: SyntheticSegment[] = picks.map((p) => ({
    ...p,
    sourceBytes: objects.get(p.source)!.length,
    crc64nvme: crc64nvmeToBase64(crc64nvme(objects.get(p.source)!.subarray(p.offset, p.offset + p.length))),
  }));
  return { objects, segments };
}

async function sdkCrc(bytes: Buffer): Promise<string> {
  const hash = new Crc64Nvme();
  hash.update(bytes);
  return Buffer.from(await hash.digest()).toString('base64');
}

describe('planSyntheticParts on real bytes', () => {
  it('a small archive under S3 limits: the parts concatenate to the segments and the expected CRC is the SDK one', async () => {
    const rand = seededRandom(15);
    const big = randomBytesFrom(rand, 24 * MiB); // > 5 MB: copyable
    const small = randomBytesFrom(rand, 4_000_000); // <= 5 MB: never copied
    const staging = randomBytesFrom(rand, 3 * MiB + 1024);
    const objects = new Map([
      ['full/a.tar.gz', big],
      ['full/b.tar.gz', small],
      [STAGING, staging],
    ]);
    const seg = (source: string, offset: number, length: number): SyntheticSegment => {
      const bytes = objects.get(source)!;
      return {
        source,
        offset,
        length,
        sourceBytes: bytes.length,
        crc64nvme: crc64nvmeToBase64(crc64nvme(bytes.subarray(offset, offset + length))),
      };
    };
    const segments = [
      seg(STAGING, 0, 100_000), // fresh folder entries
      seg('full/a.tar.gz', 0, 3 * MiB), // run of 10 MiB in three segments
      seg('full/a.tar.gz', 3 * MiB, 3 * MiB),
      seg('full/a.tar.gz', 6 * MiB, 4 * MiB),
      seg(STAGING, 100_000, 2 * MiB), // a changed file
      seg('full/b.tar.gz', 0, 3_900_000), // unchanged, but its archive is too small to copy from
      seg('full/a.tar.gz', 11 * MiB, 13 * MiB), // a 13 MiB run after a gap
      seg(STAGING, 100_000 + 2 * MiB, MiB - 100_000 + 1024), // end of fresh bytes + end-of-archive
    ];

    const plan = planSyntheticParts(segments);

    checkPlan(segments, {}, plan);
    const assembled = assembleBytes(plan.parts, objects);
    const concatenated = Buffer.concat(
      segments.map((s) => objects.get(s.source)!.subarray(s.offset, s.offset + s.length)),
    );
    expect(assembled.equals(concatenated)).toBe(true);
    expect(plan.crc64nvme).toBe(await sdkCrc(concatenated));
    expect(pieceChecksumsMatch(plan.parts, objects)).toBeGreaterThan(0);
    // Small archive never copied; both runs of a.tar.gz copied (minus the borrowed heads).
    expect(plan.parts.some((p) => p.kind === 'copy' && p.source === 'full/b.tar.gz')).toBe(false);
    expect(plan.parts.filter((p) => p.kind === 'copy').map((p) => p.kind === 'copy' && p.source)).toEqual([
      'full/a.tar.gz',
      'full/a.tar.gz',
    ]);
    // The first copy follows 100,000 fresh bytes: the upload part borrows the run's head up to 5 MiB.
    expect(plan.parts[0]).toMatchObject({ kind: 'upload', length: 5 * MiB });
    expect(plan.parts[1]).toMatchObject({
      kind: 'copy',
      offset: 5 * MiB - 100_000,
      length: 5 * MiB + 100_000,
    });
    expect(plan.bytesCopied + plan.bytesFetched).toBe(concatenated.length);
  });

  it('holds its invariants on 3,000 random worlds with scaled-down limits, and the CRC is that of the bytes', () => {
    const rand = seededRandom(20261201);
    const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
    let planned = 0;
    let fellBack = 0;
    let copies = 0;
    let checkedPieces = 0;
    for (let c = 0; c < 3000; c++) {
      const folder = rand() < 0.15;
      const minPartBytes = folder ? 0 : int(1, 300);
      const limits: Partial<SyntheticPartLimits> = {
        minPartBytes,
        maxPartBytes:
          folder && rand() < 0.5 ? Number.POSITIVE_INFINITY : Math.max(2 * minPartBytes, int(1, 2000)),
        maxParts: rand() < 0.2 ? int(1, 6) : rand() < 0.5 ? Number.POSITIVE_INFINITY : int(1, 200),
        minCopySourceBytes: folder ? 0 : int(0, 3000),
        ...(rand() < 0.3 ? { minCopyRunBytes: Math.max(1, minPartBytes) + int(0, 500) } : {}),
        ...(rand() < 0.5 ? { targetUploadPartBytes: int(1, 1500) } : {}),
      };
      const { objects, segments } = randomWorld(rand, {
        archives: int(1, 4),
        entries: int(1, 60),
        maxEntry: int(1, 400),
        keep: rand(),
      });
      let plan: SyntheticPartPlan;
      try {
        plan = planSyntheticParts(segments, limits);
      } catch (error) {
        // Only a part count the limits cannot meet may stop it, and it must say so.
        expect(error).toBeInstanceOf(SyntheticFallbackError);
        expect((error as SyntheticFallbackError).reason).toMatch(
          /would need [\d,]+ parts .* allows [\d,]+ parts per object/,
        );
        expect((error as SyntheticFallbackError).reason).toContain(`allows ${limits.maxParts} parts`);
        fellBack += 1;
        continue;
      }
      checkPlan(segments, limits, plan);
      const concatenated = Buffer.concat(
        segments.map((s) => objects.get(s.source)!.subarray(s.offset, s.offset + s.length)),
      );
      expect(assembleBytes(plan.parts, objects).equals(concatenated)).toBe(true);
      expect(plan.crc64nvme).toBe(crc64nvmeToBase64(crc64nvme(concatenated)));
      checkedPieces += pieceChecksumsMatch(plan.parts, objects);
      if (folder && limits.maxParts === Number.POSITIVE_INFINITY && limits.minCopyRunBytes === undefined) {
        // Folder store: every byte is copied.
        expect(plan.bytesFetched).toBe(0);
      }
      copies += plan.copyParts;
      planned += 1;
    }
    // The cases exercise both outcomes and both part kinds.
    expect(planned).toBeGreaterThan(2000);
    expect(fellBack).toBeGreaterThan(10);
    expect(copies).toBeGreaterThan(1000);
    expect(checkedPieces).toBeGreaterThan(1000);
  });
});

describe('planSyntheticParts at S3 scale (no bytes)', () => {
  /**
   * Segments of a full of `totalBytes`: entries of `entryBytes()` taken in order from 25 GB archives
   * (a chain of fulls and incrementals), each changed with probability `churn` (then it comes from
   * the staging object, which ends with the end-of-archive).
   */
  function chainFull(totalBytes: number, churn: number, entryBytes: (rand: () => number) => number) {
    const rand = seededRandom(7);
    const archiveBytes = 25e9;
    const picks: { source: string; offset: number; length: number }[] = [];
    let archive = 0;
    let inArchive = 0;
    let staging = 0;
    let total = 0;
    while (total < totalBytes) {
      const length = Math.floor(entryBytes(rand));
      if (inArchive + length > archiveBytes) {
        archive += 1;
        inArchive = 0;
      }
      if (rand() < churn) {
        picks.push({ source: STAGING, offset: staging, length });
        staging += length;
      } else {
        picks.push({ source: `full/backup_${archive}.tar.gz`, offset: inArchive, length });
      }
      inArchive += length;
      total += length;
    }
    picks.push({ source: STAGING, offset: staging, length: 29 });
    staging += 29;
    return picks.map(
      (p): SyntheticSegment => ({
        ...p,
        crc64nvme: FAKE_CRC,
        sourceBytes: p.source === STAGING ? staging : archiveBytes,
      }),
    );
  }

  // Photos of 2-8 MB and one video in 50 of 100 MB-2 GB.
  const mediaEntry = (r: () => number) => (r() < 0.02 ? 1e8 + r() * 1.9e9 : 2e6 + r() * 6e6);
  // The worst case for part counts: small entries, changes spread evenly, so runs are short.
  const smallEntry = (r: () => number) => 2e5 + r() * 1.6e6;
  type Case = [string, number, number, number, (r: () => number) => number, number];
  it.each<Case>([
    ['1 TB of media files, 1% changed', 1e12, 10_000, 0.01, mediaEntry, 0.9],
    // The 1 TB case below scaled down 10x (parts too), so that it runs in seconds.
    ['100 GB of ~1 MB entries, 5% changed evenly (1,000 parts)', 1e11, 1_000, 0.05, smallEntry, 0.01],
    // ~1 M segments: ~30 s here (combining their checksums), so it runs with the scale tests.
    ...(process.env.MEDIA_BACKUP_SCALE_TEST === '1'
      ? [['1 TB of ~1 MB entries, 5% changed evenly', 1e12, 10_000, 0.05, smallEntry, 0.01] satisfies Case]
      : []),
  ])(
    '%s: within the part limit, parts of S3 sizes covering every entry once',
    (name, totalBytes, maxParts, churn, entryBytes, copiedAtLeast) => {
      const segments = chainFull(totalBytes, churn, entryBytes);

      const started = performance.now();
      const plan = planSyntheticParts(segments, { maxParts });
      const ms = performance.now() - started;

      checkPlan(segments, { maxParts }, plan);
      expect(plan.bytesCopied / plan.bytes).toBeGreaterThanOrEqual(copiedAtLeast);
      // Figures for the report: plan size, share copied, the thresholds the part limit forced, time.
      console.info(
        `plan of ${name}: ${segments.length} segments -> ${plan.parts.length} parts ` +
          `(${plan.copyParts} copies), ${((100 * plan.bytesCopied) / plan.bytes).toFixed(1)}% copied, ` +
          `upload parts ${plan.targetUploadPartBytes} B, copy runs >= ${plan.minCopyRunBytes} B, ${ms.toFixed(0)} ms`,
      );
    },
  );

  it('a single 20 GB segment is copied in 4 parts of 5 GB, each <= 5 GiB', () => {
    const segments = [
      {
        source: 'full/video.tar.gz',
        offset: 1000,
        length: 20e9,
        crc64nvme: FAKE_CRC,
        sourceBytes: 20e9 + 2000,
      },
      { source: STAGING, offset: 0, length: 29, crc64nvme: FAKE_CRC, sourceBytes: 29 },
    ];
    const plan = planSyntheticParts(segments);
    checkPlan(segments, {}, plan);
    expect(plan.parts.map((p) => p.kind)).toEqual(['copy', 'copy', 'copy', 'copy', 'upload']);
    expect(plan.parts.slice(0, 4).map((p) => p.length)).toEqual([5e9, 5e9, 5e9, 5e9]);
    expect(plan.bytesFetched).toBe(29);
  });

  it('a 20 GB segment after 1 MiB of fresh bytes: the first part borrows 4 MiB of it, the rest is copied', () => {
    const segments = [
      { source: STAGING, offset: 0, length: MiB, crc64nvme: FAKE_CRC, sourceBytes: MiB + 29 },
      { source: 'full/video.tar.gz', offset: 0, length: 20e9, crc64nvme: FAKE_CRC, sourceBytes: 20e9 },
      { source: STAGING, offset: MiB, length: 29, crc64nvme: FAKE_CRC, sourceBytes: MiB + 29 },
    ];
    const plan = planSyntheticParts(segments);
    checkPlan(segments, {}, plan);
    expect(plan.parts[0]).toMatchObject({ kind: 'upload', length: 5 * MiB });
    expect(plan.parts[1]).toMatchObject({ kind: 'copy', offset: 4 * MiB });
    expect(plan.bytesFetched).toBe(5 * MiB + 29);
  });

  it('a 1 TB full made only of fresh 4 MB segments raises the upload part size to stay within 10,000 parts', () => {
    const n = 250_000;
    const segments: SyntheticSegment[] = [];
    for (let i = 0; i < n; i++) {
      segments.push({ source: STAGING, offset: i * 4e6, length: 4e6, crc64nvme: FAKE_CRC, sourceBytes: 4 });
    }
    // Nothing copyable (a copy threshold above the object's size): every byte is fetched and uploaded.
    const sized = segments.map((s) => ({ ...s, sourceBytes: n * 4e6 }));
    const plan = planSyntheticParts(sized, { minCopySourceBytes: 2e12 });
    checkPlan(sized, { minCopySourceBytes: 2e12 }, plan);
    expect(plan.copyParts).toBe(0);
    expect(plan.parts.length).toBeLessThanOrEqual(10_000);
    expect(plan.targetUploadPartBytes).toBeGreaterThanOrEqual(1e12 / 10_000);
  });
});

describe('planSyntheticParts rules at the edges', () => {
  const seg = (source: string, offset: number, length: number, sourceBytes: number): SyntheticSegment => ({
    source,
    offset,
    length,
    sourceBytes,
    crc64nvme: FAKE_CRC,
  });

  it.each([
    [5_000_000, 0],
    [5_000_001, 1],
  ])('copies from a source of %d bytes in %d parts (S3: source larger than 5 MB)', (sourceBytes, copies) => {
    const segments = [seg('full/a.tar.gz', 0, 4_000_000, sourceBytes), seg(STAGING, 0, 29, 29)];
    const plan = planSyntheticParts(segments, { minCopyRunBytes: 4_000_000, minPartBytes: 0 });
    expect(plan.copyParts).toBe(copies);
  });

  it('fetches the whole run when the rest after borrowing would be too small to copy', () => {
    const segments = [
      seg(STAGING, 0, MiB, MiB + 29),
      seg('full/a.tar.gz', 0, 8 * MiB, 100 * MiB), // 4 MiB borrowed, 4 MiB left < 5 MiB
      seg(STAGING, MiB, 29, MiB + 29),
    ];
    const plan = planSyntheticParts(segments);
    checkPlan(segments, {}, plan);
    expect(plan.copyParts).toBe(0);
    expect(plan.bytesFetched).toBe(9 * MiB + 29);
  });

  it('folder store limits (minPartBytes 0): every run is copied, nothing fetched', () => {
    const segments = [seg(STAGING, 0, 10, 39), seg('full/a.tar.gz', 5, 7, 100), seg(STAGING, 10, 29, 39)];
    const limits = { minPartBytes: 0, minCopySourceBytes: 0, maxParts: Number.POSITIVE_INFINITY };
    const plan = planSyntheticParts(segments, limits);
    checkPlan(segments, limits, plan);
    expect(plan.parts).toEqual([
      { kind: 'copy', source: STAGING, offset: 0, length: 10 },
      { kind: 'copy', source: 'full/a.tar.gz', offset: 5, length: 7 },
      { kind: 'copy', source: STAGING, offset: 10, length: 29 },
    ]);
    expect(plan.bytesFetched).toBe(0);
  });

  it('falls back, saying why, when even 5 GiB parts exceed 10,000 parts', () => {
    // 10,001 runs of 5 GiB alternating between two archives: every one must be its own copy part.
    const segments: SyntheticSegment[] = [];
    for (let i = 0; i < 10_001; i++) {
      segments.push(
        seg(i % 2 ? 'full/a.tar.gz' : 'full/b.tar.gz', Math.floor(i / 2) * 5 * GiB, 5 * GiB, 6000 * 5 * GiB),
      );
    }
    expect(() => planSyntheticParts(segments)).toThrow(SyntheticFallbackError);
    expect(() => planSyntheticParts(segments)).toThrow(/would need 10,001 parts .* S3 allows 10,000/);
  });

  it.each<[string, SyntheticSegment[], RegExp]>([
    ['no segments', [], /no segments/],
    ['an empty segment', [seg('full/a.tar.gz', 0, 0, 10)], /segment 0 .* invalid length 0/],
    ['a negative offset', [seg('full/a.tar.gz', -1, 5, 10)], /invalid offset -1/],
    [
      'a range past the object',
      [seg('full/a.tar.gz', 8, 5, 10)],
      /full\/a.tar.gz bytes 8-12\) lies beyond the end of full\/a.tar.gz \(10 bytes\)/,
    ],
    ['a bad checksum', [{ ...seg('full/a.tar.gz', 0, 5, 10), crc64nvme: 'abc' }], /invalid CRC64NVME "abc"/],
    [
      'two sizes for one source',
      [seg('full/a.tar.gz', 0, 5, 10), seg('full/a.tar.gz', 5, 5, 11)],
      /size of 11 bytes, an earlier segment 10/,
    ],
  ])('rejects %s with a fallback naming it', (_name, segments, message) => {
    expect(() => planSyntheticParts(segments)).toThrow(SyntheticFallbackError);
    expect(() => planSyntheticParts(segments)).toThrow(message);
  });

  it.each([
    [{ minPartBytes: -1 }, /`minPartBytes`/],
    [{ minPartBytes: 10, maxPartBytes: 15 }, /`maxPartBytes` \(15\) must be at least twice/],
    [{ maxParts: 0 }, /`maxParts`/],
    [{ minCopyRunBytes: 0, minPartBytes: 0 }, /`minCopyRunBytes`/],
    [{ targetUploadPartBytes: 0 }, /`targetUploadPartBytes`/],
  ])('rejects limits %o', (limits, message) => {
    expect(() => planSyntheticParts([seg(STAGING, 0, 29, 29)], limits)).toThrow(RangeError);
    expect(() => planSyntheticParts([seg(STAGING, 0, 29, 29)], limits)).toThrow(message);
  });
});
