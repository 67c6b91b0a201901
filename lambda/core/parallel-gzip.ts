import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import { deflateRawSync, gzip as gzipCb } from 'node:zlib';

const gzip = promisify(gzipCb);

export interface ParallelGzipOptions {
  /** zlib level for compressible chunks. @default 6 (the size GNU `tar -czf` gives) */
  readonly level?: number;
  /**
   * Input bytes per gzip member. @default 1 MiB: 4 MiB members made peak RSS of a 1 GiB backup 251 MB
   * (freed buffers wait for V8's external-memory GC), 1 MiB ones 188 MB, for +0.03% output size.
   */
  readonly chunkBytes?: number;
  /** Members compressed at once. @default min(available cores, 4) */
  readonly concurrency?: number;
  /** Store (level 0) chunks whose samples do not shrink: JPEG/MP4 gain nothing from deflate. @default true */
  readonly adaptive?: boolean;
}

export interface ParallelGzipStats {
  members: number;
  storedMembers: number;
  inputBytes: number;
  outputBytes: number;
}

const OUTPUT_CHUNK = 1024 * 1024;
const SAMPLE_BYTES = 8 * 1024;
const SAMPLES = 4;
/** A chunk is stored unless its samples shrink by at least 3% at level 1 (PERFORMANCE-NOTES.md). */
const MIN_GAIN = 0.03;

/**
 * Compresses a byte stream as a series of independent gzip members, several at once on libuv's
 * thread pool, emitted strictly in input order. A concatenation of gzip members is one valid gzip
 * file (RFC 1952 section 2.2): GNU gzip/tar, pigz, Python and Node read it as one stream.
 * Memory is bounded: at most `concurrency` chunks are in flight, and the readable side applies
 * backpressure before more input is accepted.
 */
export class ParallelGzip extends Transform {
  readonly stats: ParallelGzipStats = { members: 0, storedMembers: 0, inputBytes: 0, outputBytes: 0 };
  private readonly level: number;
  private readonly chunkBytes: number;
  private readonly concurrency: number;
  private readonly adaptive: boolean;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly inFlight: Promise<Buffer>[] = [];

  constructor(options: ParallelGzipOptions = {}) {
    super();
    this.level = options.level ?? 6;
    this.chunkBytes = options.chunkBytes ?? 1024 * 1024;
    this.concurrency = Math.max(1, options.concurrency ?? Math.min(availableParallelism(), 4));
    this.adaptive = options.adaptive ?? true;
    if (!Number.isInteger(this.level) || this.level < 0 || this.level > 9) {
      throw new RangeError(`compression level must be 0-9 (got ${options.level})`);
    }
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.stats.inputBytes += chunk.length;
    this.drainFullChunks().then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    const finish = async () => {
      await this.drainFullChunks();
      // An empty input still yields one (empty) member, so the output is always a valid gzip file.
      if (this.pendingBytes > 0 || this.stats.members + this.inFlight.length === 0) {
        await this.submit(this.takeBytes(this.pendingBytes));
      }
      while (this.inFlight.length > 0) this.pushMember(await this.inFlight.shift()!);
    };
    finish().then(() => callback(), callback);
  }

  private async drainFullChunks(): Promise<void> {
    while (this.pendingBytes >= this.chunkBytes) await this.submit(this.takeBytes(this.chunkBytes));
  }

  private takeBytes(n: number): Buffer {
    const all = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes);
    const head = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    return head;
  }

  private async submit(block: Buffer): Promise<void> {
    const level = this.adaptive && this.level > 0 && !worthCompressing(block) ? 0 : this.level;
    if (level === 0) this.stats.storedMembers += 1;
    // zlib's default 16 KiB output chunk made a stored 4 MiB member take ~4x the CPU (measured).
    const job = gzip(block, { level, chunkSize: OUTPUT_CHUNK });
    // Rejections are observed when the job is awaited in order; avoid an unhandled rejection meanwhile.
    job.catch(() => undefined);
    this.inFlight.push(job);
    while (this.inFlight.length >= this.concurrency) this.pushMember(await this.inFlight.shift()!);
  }

  private pushMember(member: Buffer): void {
    this.stats.members += 1;
    this.stats.outputBytes += member.length;
    this.push(member);
  }
}

/** Test-compresses a few samples at level 1; media (JPEG, MP4) shrinks by well under 3%. */
export function worthCompressing(block: Buffer): boolean {
  if (block.length <= SAMPLE_BYTES * SAMPLES) {
    return deflateRawSync(block, { level: 1 }).length < block.length * (1 - MIN_GAIN);
  }
  let sampled = 0;
  let compressed = 0;
  const stride = Math.floor((block.length - SAMPLE_BYTES) / (SAMPLES - 1));
  for (let i = 0; i < SAMPLES; i++) {
    const sample = block.subarray(i * stride, i * stride + SAMPLE_BYTES);
    sampled += sample.length;
    compressed += deflateRawSync(sample, { level: 1 }).length;
  }
  return compressed < sampled * (1 - MIN_GAIN);
}
