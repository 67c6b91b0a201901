import { combineBase64 } from '../archiver/crc64nvme.js';
import { describeRange, SyntheticFallbackError } from './errors.js';

/**
 * One byte range of the synthetic full, in archive order: the gzip members of one entry (or of the
 * end-of-archive), held by an archive of the chain or by this run's staging object of fresh members.
 * Members are independent gzip streams, so the ranges are concatenated as they are.
 */
export interface SyntheticSegment {
  /** Key of the object holding the bytes. */
  readonly source: string;
  /** Offset of the range in the source object's bytes. */
  readonly offset: number;
  readonly length: number;
  /** CRC64NVME of exactly these bytes, base64 of 8 big-endian bytes (as S3 writes it). */
  readonly crc64nvme: string;
  /** Size of the whole source object as pinned: S3 copies ranges only from objects larger than 5 MB. */
  readonly sourceBytes: number;
}

/** The store's multipart rules the plan obeys (S3's by default: {@link S3_PART_LIMITS}). */
export interface SyntheticPartLimits {
  /** Every part but the last holds at least this many bytes. S3: 5 MiB; folder store: 0. */
  readonly minPartBytes: number;
  /** No part holds more. S3: 5 GiB. */
  readonly maxPartBytes: number;
  /** S3: 10,000 parts per object. */
  readonly maxParts: number;
  /** Ranges are copied only from sources larger than this. S3: 5,000,000 (UploadPartCopy needs a source > 5 MB). */
  readonly minCopySourceBytes: number;
  /**
   * A run of contiguous segments of one source shorter than this is fetched and uploaded rather than
   * copied. Default `minPartBytes` (at least 1): with the folder store's 0, every run is copied.
   * The planner raises it when the plan would need more than `maxParts` parts.
   */
  readonly minCopyRunBytes: number;
  /**
   * Size of the parts built from fetched bytes. Default 8 MiB, at least `minPartBytes` and the
   * archive size / `maxParts`; the planner raises it when the plan would need more than `maxParts` parts.
   */
  readonly targetUploadPartBytes: number;
}

const MiB = 1024 * 1024;

/** S3's limits for multipart uploads and UploadPartCopy. */
export const S3_PART_LIMITS = {
  minPartBytes: 5 * MiB,
  maxPartBytes: 5 * 1024 * MiB,
  maxParts: 10_000,
  minCopySourceBytes: 5_000_000,
} as const;

/** Default size of a part built from fetched bytes: a few ranged reads' worth, well above S3's 5 MiB. */
export const DEFAULT_TARGET_UPLOAD_PART_BYTES = 8 * MiB;

/** A range fetched with a ranged read, to be uploaded as (a piece of) a part. */
export type UploadPiece =
  | {
      readonly source: string;
      readonly offset: number;
      readonly length: number;
      /** The piece is exactly one or more whole, contiguous segments, so its checksum is known. */
      readonly wholeSegments: true;
      /** Expected CRC64NVME of the fetched bytes: a mismatch means the source is not what the manifest says. */
      readonly crc64nvme: string;
    }
  | {
      readonly source: string;
      readonly offset: number;
      readonly length: number;
      /** Part of a segment (a segment cut across parts): checked only by the full object's CRC. */
      readonly wholeSegments: false;
    };

/** One part of the synthetic full, in order; its offset in the new object is the sum of the lengths before it. */
export type SyntheticPart =
  | {
      /** A server-side copy of `length` bytes at `offset` of `source` (S3 UploadPartCopy). */
      readonly kind: 'copy';
      readonly source: string;
      readonly offset: number;
      readonly length: number;
    }
  | {
      /** Bytes fetched with ranged reads, concatenated in order and uploaded. */
      readonly kind: 'upload';
      readonly length: number;
      readonly pieces: readonly UploadPiece[];
    };

export interface SyntheticPartPlan {
  readonly parts: readonly SyntheticPart[];
  /** Size of the synthetic full. */
  readonly bytes: number;
  /** Expected CRC64NVME of the synthetic full, combined from the segments' checksums. */
  readonly crc64nvme: string;
  readonly bytesCopied: number;
  readonly bytesFetched: number;
  readonly copyParts: number;
  readonly uploadParts: number;
  /** The thresholds the plan was built with (raised from the limits when the part count required it). */
  readonly minCopyRunBytes: number;
  readonly targetUploadPartBytes: number;
}

/** A maximal run of segments of one source whose ranges follow each other. */
interface Run {
  readonly source: string;
  readonly offset: number;
  length: number;
  readonly sourceBytes: number;
  readonly segments: SyntheticSegment[];
}

/**
 * Plans the parts of a synthetic full: runs of unchanged entries large enough are copied server-side,
 * everything else is fetched with ranged reads and uploaded in parts of about
 * `targetUploadPartBytes`; a part too small to precede a copy borrows the head of that copy's run.
 * Pure: no I/O.
 *
 * Throws {@link SyntheticFallbackError} when a segment does not fit its source (the manifest and the
 * stored object disagree) or the plan needs more parts than the store allows even with the largest
 * parts; RangeError for inconsistent limits (a programming error).
 */
export function planSyntheticParts(
  segments: readonly SyntheticSegment[],
  limits: Partial<SyntheticPartLimits> = {},
): SyntheticPartPlan {
  const resolved = resolveLimits(limits);
  const runs = runsOf(segments);
  let bytes = 0;
  for (const run of runs) bytes += run.length;
  if (!Number.isSafeInteger(bytes)) {
    throw new SyntheticFallbackError(
      `the segments add up to ${bytes} bytes, beyond what can be counted exactly`,
    );
  }
  const crc64nvme = combineBase64(segments);

  const build = (minCopyRunBytes: number, target: number) => {
    const builder = new PartBuilder(resolved, minCopyRunBytes, target);
    for (const run of runs) builder.addRun(run);
    builder.flush();
    return builder;
  };
  // S3 takes at most 10,000 parts, so large or fragmented archives need bigger parts: first bigger
  // upload parts (from the archive size / maxParts up), then, when the copies alone leave no room,
  // a higher copy threshold (shorter runs fetched into the upload parts instead of copied). The
  // smallest threshold that fits copies the most; the smallest target for it keeps the parts held in
  // memory small.
  const baseTarget = clampTarget(
    Math.max(resolved.targetUploadPartBytes, Math.ceil(bytes / resolved.maxParts)),
    resolved,
  );
  let minCopyRunBytes = resolved.minCopyRunBytes;
  let fewest: PartBuilder | undefined;
  for (;;) {
    let target = smallestFittingTarget(runs, resolved, minCopyRunBytes, baseTarget);
    for (let attempt = 0; target !== undefined && attempt < 4; attempt++) {
      const builder = build(minCopyRunBytes, target);
      if (builder.parts.length <= resolved.maxParts) {
        return {
          parts: builder.finish(),
          bytes,
          crc64nvme,
          bytesCopied: builder.bytesCopied,
          bytesFetched: bytes - builder.bytesCopied,
          copyParts: builder.copyParts,
          uploadParts: builder.parts.length - builder.copyParts,
          minCopyRunBytes,
          targetUploadPartBytes: target,
        };
      }
      if (!fewest || builder.parts.length < fewest.parts.length) fewest = builder;
      // The estimate counts full-size parts; parts closed early before a whole segment add some.
      const next = clampTarget(Math.ceil(target * 1.25), resolved);
      target = next === target ? undefined : next;
    }
    const next = Math.max(minCopyRunBytes, Math.min(resolved.maxPartBytes, minCopyRunBytes * 2));
    if (next === minCopyRunBytes) break;
    minCopyRunBytes = next;
  }
  fewest ??= build(minCopyRunBytes, clampTarget(resolved.maxPartBytes, resolved));
  throw new SyntheticFallbackError(
    `the synthetic full (${count(bytes)} bytes from ${count(segments.length)} ranges) would need ` +
      `${count(fewest.parts.length)} parts (${count(fewest.copyParts)} copies, ` +
      `${count(fewest.parts.length - fewest.copyParts)} uploads) even with parts of up to ` +
      `${count(resolved.maxPartBytes)} bytes; ` +
      (resolved.maxParts === S3_PART_LIMITS.maxParts ? 'S3 allows' : 'the store allows') +
      ` ${count(resolved.maxParts)} parts per object`,
  );
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}

function resolveLimits(limits: Partial<SyntheticPartLimits>): SyntheticPartLimits {
  const minPartBytes = limits.minPartBytes ?? S3_PART_LIMITS.minPartBytes;
  const maxPartBytes = limits.maxPartBytes ?? S3_PART_LIMITS.maxPartBytes;
  const maxParts = limits.maxParts ?? S3_PART_LIMITS.maxParts;
  const minCopySourceBytes = limits.minCopySourceBytes ?? S3_PART_LIMITS.minCopySourceBytes;
  const minCopyRunBytes = limits.minCopyRunBytes ?? Math.max(1, minPartBytes);
  const targetUploadPartBytes = limits.targetUploadPartBytes ?? DEFAULT_TARGET_UPLOAD_PART_BYTES;
  const wholeOrInfinite = (n: number) => Number.isSafeInteger(n) || n === Number.POSITIVE_INFINITY;
  if (!Number.isSafeInteger(minPartBytes) || minPartBytes < 0) {
    throw new RangeError(`\`minPartBytes\` must be a non-negative integer, got ${minPartBytes}`);
  }
  if (!wholeOrInfinite(maxPartBytes) || maxPartBytes < 1) {
    throw new RangeError(`\`maxPartBytes\` must be a positive integer, got ${maxPartBytes}`);
  }
  // A copy run longer than one part is split into parts of at least half the maximum, which must
  // still reach the minimum.
  if (maxPartBytes < 2 * minPartBytes) {
    throw new RangeError(
      `\`maxPartBytes\` (${maxPartBytes}) must be at least twice \`minPartBytes\` (${minPartBytes})`,
    );
  }
  if (!wholeOrInfinite(maxParts) || maxParts < 1) {
    throw new RangeError(`\`maxParts\` must be a positive integer, got ${maxParts}`);
  }
  if (!Number.isSafeInteger(minCopySourceBytes) || minCopySourceBytes < 0) {
    throw new RangeError(`\`minCopySourceBytes\` must be a non-negative integer, got ${minCopySourceBytes}`);
  }
  if (!Number.isSafeInteger(minCopyRunBytes) || minCopyRunBytes < Math.max(1, minPartBytes)) {
    throw new RangeError(
      `\`minCopyRunBytes\` must be an integer of at least \`minPartBytes\` and 1 (${Math.max(1, minPartBytes)}), got ${minCopyRunBytes}`,
    );
  }
  if (!Number.isSafeInteger(targetUploadPartBytes) || targetUploadPartBytes < 1) {
    throw new RangeError(
      `\`targetUploadPartBytes\` must be a positive integer, got ${targetUploadPartBytes}`,
    );
  }
  return { minPartBytes, maxPartBytes, maxParts, minCopySourceBytes, minCopyRunBytes, targetUploadPartBytes };
}

/**
 * The smallest upload part size from `from` up for which the plan with copy threshold
 * `minCopyRunBytes` is estimated to fit in `maxParts` parts (copies split at the maximum part size,
 * each stretch of fetched bytes between copies in parts of the target size); undefined when even
 * the largest parts do not fit.
 */
function smallestFittingTarget(
  runs: readonly Run[],
  limits: SyntheticPartLimits,
  minCopyRunBytes: number,
  from: number,
): number | undefined {
  let copyParts = 0;
  const stretches: number[] = [];
  let stretch = 0;
  for (const run of runs) {
    if (run.sourceBytes > limits.minCopySourceBytes && run.length >= minCopyRunBytes) {
      if (stretch > 0) stretches.push(stretch);
      stretch = 0;
      copyParts += Math.max(1, Math.ceil(run.length / limits.maxPartBytes));
    } else stretch += run.length;
  }
  if (stretch > 0) stretches.push(stretch);
  return smallestFittingPartSize(copyParts, stretches, limits, from);
}

/**
 * The smallest upload part size from `from` up for which `copyParts` copies plus the `stretches`
 * (bytes fetched between copies, each cut into parts of that size) fit in `limits.maxParts`;
 * undefined when even the largest parts do not. Also the cost model's (lib/cost-model.ts).
 */
export function smallestFittingPartSize(
  copyParts: number,
  stretches: readonly number[],
  limits: Pick<SyntheticPartLimits, 'maxParts' | 'maxPartBytes' | 'minPartBytes'>,
  from: number,
): number | undefined {
  const fits = (target: number) => {
    let parts = copyParts;
    for (const s of stretches) parts += Math.max(1, Math.ceil(s / target));
    return parts <= limits.maxParts;
  };
  // Parts as large as the longest stretch put each stretch in one part: no larger size helps.
  const longest = stretches.reduce((a, b) => Math.max(a, b), 0);
  let high = clampTarget(Math.min(limits.maxPartBytes, Math.max(from, longest)), limits);
  if (!fits(high)) return undefined;
  let low = from;
  if (fits(low)) return low;
  // fits(high), not fits(low): bisect to the smallest fitting size.
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (fits(middle)) high = middle;
    else low = middle;
  }
  return high;
}

function clampTarget(
  target: number,
  limits: Pick<SyntheticPartLimits, 'maxPartBytes' | 'minPartBytes'>,
): number {
  return Math.min(limits.maxPartBytes, Math.max(target, limits.minPartBytes, 1));
}

const CRC64NVME_BASE64 = /^[A-Za-z0-9+/]{11}=$/;

/** Validates the segments and merges neighbours of one source with contiguous ranges into runs. */
function runsOf(segments: readonly SyntheticSegment[]): Run[] {
  if (segments.length === 0) {
    throw new SyntheticFallbackError(
      'there is nothing to assemble: no segments (not even the end-of-archive)',
    );
  }
  const sizes = new Map<string, number>();
  const runs: Run[] = [];
  let last: Run | undefined;
  segments.forEach((s, i) => {
    const where = `segment ${i} (${describeRange(s.source, s.offset, s.length)})`;
    if (typeof s.source !== 'string' || s.source.length === 0) {
      throw new SyntheticFallbackError(`segment ${i} names no source object`);
    }
    if (!Number.isSafeInteger(s.offset) || s.offset < 0) {
      throw new SyntheticFallbackError(`${where} has an invalid offset ${s.offset}`);
    }
    if (!Number.isSafeInteger(s.length) || s.length <= 0) {
      throw new SyntheticFallbackError(
        `${where} has an invalid length ${s.length} (must be a positive integer)`,
      );
    }
    if (!Number.isSafeInteger(s.sourceBytes) || s.offset + s.length > s.sourceBytes) {
      throw new SyntheticFallbackError(
        `${where} lies beyond the end of ${s.source} (${s.sourceBytes} bytes): the manifest's range does not fit the stored object`,
      );
    }
    if (typeof s.crc64nvme !== 'string' || !CRC64NVME_BASE64.test(s.crc64nvme)) {
      throw new SyntheticFallbackError(
        `${where} has an invalid CRC64NVME ${JSON.stringify(s.crc64nvme)} (expected 12 base64 characters ending in '=')`,
      );
    }
    const known = sizes.get(s.source);
    if (known === undefined) sizes.set(s.source, s.sourceBytes);
    else if (known !== s.sourceBytes) {
      throw new SyntheticFallbackError(
        `${where} gives ${s.source} a size of ${s.sourceBytes} bytes, an earlier segment ${known} bytes`,
      );
    }
    if (last && last.source === s.source && last.offset + last.length === s.offset) {
      last.length += s.length;
      last.segments.push(s);
    } else {
      last = {
        source: s.source,
        offset: s.offset,
        length: s.length,
        sourceBytes: s.sourceBytes,
        segments: [s],
      };
      runs.push(last);
    }
  });
  return runs;
}

/** A piece of the upload part being built; `crcs` lists whole segments' checksums, undefined once cut. */
interface PendingPiece {
  readonly source: string;
  readonly offset: number;
  length: number;
  crcs: { crc64nvme: string; length: number }[] | undefined;
}

type PendingPart =
  | Extract<SyntheticPart, { kind: 'copy' }>
  | { kind: 'upload'; length: number; pieces: PendingPiece[] };

/** Builds the parts for one choice of thresholds. */
class PartBuilder {
  readonly parts: PendingPart[] = [];
  bytesCopied = 0;
  copyParts = 0;
  private pending: PendingPiece[] = [];
  private pendingBytes = 0;

  constructor(
    private readonly limits: SyntheticPartLimits,
    private readonly minCopyRunBytes: number,
    private readonly target: number,
  ) {}

  addRun(run: Run): void {
    const copyable = run.sourceBytes > this.limits.minCopySourceBytes && run.length >= this.minCopyRunBytes;
    if (!copyable) {
      this.fetch(run, { segment: 0, within: 0 }, false);
      return;
    }
    let at = { segment: 0, within: 0 };
    let fetched = 0;
    if (this.pendingBytes > 0 && this.pendingBytes < this.limits.minPartBytes) {
      // The part before a copy must reach the minimum: borrow (fetch) the head of this run.
      at = this.fetch(run, at, true);
      for (let i = 0; i < at.segment; i++) fetched += run.segments[i].length;
      fetched += at.within;
      if (run.length - fetched < this.minCopyRunBytes) {
        // What would be left to copy is too small to copy: fetch the rest too.
        this.fetch(run, at, false);
        return;
      }
    }
    this.flush();
    const offset = run.offset + fetched;
    const length = run.length - fetched;
    // Parts of equal size (differing by at most a byte): each at least half the maximum when split.
    const n = Math.max(1, Math.ceil(length / this.limits.maxPartBytes));
    const base = Math.floor(length / n);
    const longer = length - base * n;
    let start = offset;
    for (let i = 0; i < n; i++) {
      const partLength = base + (i < longer ? 1 : 0);
      this.parts.push({ kind: 'copy', source: run.source, offset: start, length: partLength });
      start += partLength;
    }
    this.bytesCopied += length;
    this.copyParts += n;
  }

  /**
   * Adds the run's bytes from `at` to the upload part being built, closing parts at the target size.
   * Whole segments are kept whole (so their checksum can be checked) when the part already reaches the
   * minimum; otherwise a segment is cut. With `untilMinimum`, stops once the part reaches the minimum
   * and returns where it stopped.
   */
  private fetch(
    run: Run,
    from: { segment: number; within: number },
    untilMinimum: boolean,
  ): { segment: number; within: number } {
    let { segment, within } = from;
    while (segment < run.segments.length) {
      if (untilMinimum && this.pendingBytes >= this.limits.minPartBytes) break;
      const s = run.segments[segment];
      const remaining = s.length - within;
      // Borrowing fetches no more than the minimum, so that as much of the run as possible is copied.
      const room = untilMinimum
        ? this.limits.minPartBytes - this.pendingBytes
        : this.target - this.pendingBytes;
      if (remaining <= room) {
        this.addPiece(run.source, s.offset + within, remaining, within === 0 ? s.crc64nvme : undefined);
        segment += 1;
        within = 0;
      } else if (this.pendingBytes > 0 && this.pendingBytes >= this.limits.minPartBytes) {
        this.flush();
      } else {
        this.addPiece(run.source, s.offset + within, room, undefined);
        within += room;
        if (!untilMinimum && this.pendingBytes >= this.target) this.flush();
      }
    }
    return { segment, within };
  }

  private addPiece(source: string, offset: number, length: number, crc64nvme: string | undefined): void {
    const last = this.pending.at(-1);
    if (last && last.source === source && last.offset + last.length === offset) {
      last.length += length;
      if (last.crcs && crc64nvme !== undefined) last.crcs.push({ crc64nvme, length });
      else last.crcs = undefined;
    } else {
      this.pending.push({
        source,
        offset,
        length,
        crcs: crc64nvme === undefined ? undefined : [{ crc64nvme, length }],
      });
    }
    this.pendingBytes += length;
  }

  /** Closes the upload part being built, if any. */
  flush(): void {
    if (this.pendingBytes === 0) return;
    this.parts.push({ kind: 'upload', length: this.pendingBytes, pieces: this.pending });
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** The parts, with the pieces' checksums combined (only for the plan chosen: it is the costly step). */
  finish(): SyntheticPart[] {
    return this.parts.map((part): SyntheticPart => {
      if (part.kind === 'copy') return part;
      const pieces = part.pieces.map((p): UploadPiece => {
        const base = { source: p.source, offset: p.offset, length: p.length };
        if (!p.crcs) return { ...base, wholeSegments: false };
        const crc64nvme = p.crcs.length === 1 ? p.crcs[0].crc64nvme : combineBase64(p.crcs);
        return { ...base, wholeSegments: true, crc64nvme };
      });
      return { kind: 'upload', length: part.length, pieces };
    });
  }
}
