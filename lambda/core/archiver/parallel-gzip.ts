import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { DEFAULT_LEVEL } from '../defaults.js';
import { GZIP_WORKER_SOURCE } from './gzip-worker-source.js';

// The default level lives in a module without imports so the CDK app can read it (lib/config.ts).
export { DEFAULT_LEVEL };

export interface ParallelGzipOptions {
  /** zlib level for compressible chunks, 0-9. @default DEFAULT_LEVEL */
  readonly level?: number;
  /**
   * Input bytes per gzip member. @default 1 MiB: adaptive storing decides per member, so smaller
   * members store more of a tree that mixes media and documents; 1 MiB costs +0.03% size over 4 MiB.
   */
  readonly chunkBytes?: number;
  /**
   * Compression worker threads. @default os.availableParallelism(): the CPUs this process may use,
   * which on Lambda follows the memory setting (1 vCPU at 1,769 MB up to 6 at 10,240 MB).
   */
  readonly workers?: number;
  /** Store (level 0) chunks whose samples do not shrink: JPEG/MP4 gain nothing from deflate. @default true */
  readonly adaptive?: boolean;
  /**
   * Called with each input chunk once its bytes are copied into a slot: the writer may reuse the
   * chunk's memory from then on (the archive writer recycles its 1 MiB read buffers this way).
   */
  readonly onConsumed?: (chunk: Buffer) => void;
  /**
   * Called with each member in output order, just before its bytes are pushed: where it starts in
   * the input and the output, its sizes and its CRC64NVME (computed by the worker that built it).
   */
  readonly onMember?: (member: GzipMember) => void;
  /** Tests only: make each worker fail after `after` members of its own, by throwing or by ending its thread. */
  readonly fault?: { readonly after: number; readonly kind: 'throw' | 'exit' };
}

/** One gzip member of the output. */
export interface GzipMember {
  /** Offset of its first input byte. */
  readonly inputOffset: number;
  readonly inputBytes: number;
  /** Offset of its first byte in the output (gzip) stream. */
  readonly outputOffset: number;
  readonly outputBytes: number;
  /** CRC64NVME of its gzip bytes: base64 of the 8-byte big-endian value, as S3 writes it. */
  readonly crc64nvme: string;
}

export interface ParallelGzipStats {
  members: number;
  storedMembers: number;
  inputBytes: number;
  outputBytes: number;
  workers: number;
}

/** How long close() waits for a worker to end itself before terminating it. */
const STOP_TIMEOUT_MS = 10_000;

/** A compression worker threw or died: the archive is incomplete and must not be committed. */
export class GzipWorkerError extends Error {
  override readonly name = 'GzipWorkerError';
}

/** What a worker made of one slot: its members laid end to end. */
interface JobResult {
  readonly output: Buffer;
  readonly sizes: readonly number[];
  readonly stored: number;
  readonly crcs: readonly string[];
}

/** A job handed to the pool: where its input starts and the input size of each of its members. */
interface Job {
  readonly inputOffset: number;
  readonly inputSizes: readonly number[];
  readonly result: Promise<JobResult>;
}

interface Waiter {
  readonly worker: number;
  readonly slot: number;
  resolve(result: JobResult): void;
  reject(error: Error): void;
}

type WorkerReply =
  | { id: number; output: Uint8Array; sizes: number[]; stored: number; crcs: string[] }
  | { id: number; error: string };

/**
 * Worker threads that turn chunks of a SharedArrayBuffer into gzip members. Input is never copied
 * between threads: main writes a chunk into a free slot of the shared buffer, a worker reads it there
 * and transfers the finished member back. A slot is free again when its reply arrives.
 */
class GzipPool {
  readonly slots: Buffer[];
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly freeSlots: number[] = [];
  private readonly waiters = new Map<number, Waiter>();
  private slotWaiter: (() => void) | undefined;
  private failure: Error | undefined;
  private closing = false;
  private nextId = 0;
  /** Set to 1 on close: a worker skips the jobs still queued and ends itself. */
  private readonly stopFlag: Int32Array;
  private readonly exited = new Set<Worker>();

  constructor(
    workerCount: number,
    slotCount: number,
    slotBytes: number,
    fault: ParallelGzipOptions['fault'],
  ) {
    const input = new SharedArrayBuffer(slotCount * slotBytes);
    this.stopFlag = new Int32Array(new SharedArrayBuffer(4));
    this.slots = Array.from({ length: slotCount }, (_, i) => Buffer.from(input, i * slotBytes, slotBytes));
    for (let i = 0; i < slotCount; i++) this.freeSlots.push(i);
    for (let i = 0; i < workerCount; i++) {
      const worker = new Worker(GZIP_WORKER_SOURCE, {
        eval: true,
        workerData: { input, slotBytes, fault, stopFlag: this.stopFlag },
        resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 48 },
      });
      worker.on('message', (reply: WorkerReply) => this.onReply(reply));
      worker.on('error', (error) =>
        this.fail(new GzipWorkerError(`gzip worker ${i} crashed: ${error.message}`)),
      );
      worker.on('messageerror', (error) =>
        this.fail(new GzipWorkerError(`gzip worker ${i}: ${error.message}`)),
      );
      worker.on('exit', (code) => {
        this.exited.add(worker);
        if (!this.closing)
          this.fail(new GzipWorkerError(`gzip worker ${i} exited unexpectedly (code ${code})`));
      });
      this.workers.push(worker);
      this.load.push(0);
    }
  }

  /** A free slot's index; waits while every slot holds a chunk being compressed. */
  async takeSlot(): Promise<number> {
    for (;;) {
      if (this.failure) throw this.failure;
      const slot = this.freeSlots.pop();
      if (slot !== undefined) return slot;
      await new Promise<void>((resolve) => {
        this.slotWaiter = resolve;
      });
    }
  }

  /**
   * Compresses the first `length` bytes of `slot` into members ending at `ends` (the last is
   * `length`; `heads[k]`: member k starts a record); the slot is released on reply.
   */
  compress(
    slot: number,
    length: number,
    ends: readonly number[],
    heads: readonly boolean[],
    level: number,
    adaptive: boolean,
  ): Promise<JobResult> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    // The least busy worker; ties go to the lowest index.
    let worker = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i] < this.load[worker]) worker = i;
    this.load[worker] += 1;
    const result = new Promise<JobResult>((resolve, reject) => {
      this.waiters.set(id, { worker, slot, resolve, reject });
    });
    this.workers[worker].postMessage({ id, slot, length, ends, heads, level, adaptive });
    return result;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.fail(new GzipWorkerError('gzip stage closed before the member was compressed'));
    // Workers end themselves between jobs, never terminated mid-job: worker.terminate() while a
    // zlib call is setting up its stream crashed the whole process in Node's cleanup ("close before
    // init", a native assertion), found by the deadline sweep once members became one per entry.
    Atomics.store(this.stopFlag, 0, 1);
    await Promise.all(this.workers.map((w) => this.stopWorker(w)));
  }

  private stopWorker(worker: Worker): Promise<void> {
    if (this.exited.has(worker)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      // A worker stuck in one job longer than this (it never should be: a job is <= 1 MiB) is
      // terminated after all.
      const timer = setTimeout(() => {
        worker.terminate().then(
          () => resolve(),
          () => resolve(),
        );
      }, STOP_TIMEOUT_MS);
      timer.unref();
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      worker.postMessage({ stop: true });
    });
  }

  private onReply(reply: WorkerReply): void {
    const waiter = this.waiters.get(reply.id);
    if (!waiter) return;
    this.waiters.delete(reply.id);
    this.load[waiter.worker] -= 1;
    this.release(waiter.slot);
    if ('error' in reply) {
      waiter.reject(new GzipWorkerError(`gzip worker ${waiter.worker} failed: ${reply.error}`));
    } else {
      const o = reply.output;
      waiter.resolve({
        output: Buffer.from(o.buffer, o.byteOffset, o.byteLength),
        sizes: reply.sizes,
        stored: reply.stored,
        crcs: reply.crcs,
      });
    }
  }

  private release(slot: number): void {
    this.freeSlots.push(slot);
    const wake = this.slotWaiter;
    this.slotWaiter = undefined;
    wake?.();
  }

  /** Every job still waiting fails with `error`; later calls fail with it too. */
  private fail(error: Error): void {
    this.failure ??= error;
    for (const [id, waiter] of this.waiters) {
      this.waiters.delete(id);
      waiter.reject(this.failure);
    }
    const wake = this.slotWaiter;
    this.slotWaiter = undefined;
    wake?.();
  }
}

/**
 * Compresses a byte stream as a series of independent gzip members on a pool of worker threads,
 * emitted strictly in input order. A member ends every `chunkBytes` of input and at every offset
 * given to `cutAt` (the archive writer cuts at each tar entry, so a range of members is a
 * self-contained run of entries); the members of one slot share a worker message, so small entries
 * cost no message each. A concatenation of gzip members is one valid gzip file (RFC 1952 section
 * 2.2): GNU gzip/tar, pigz, Python and Node read it as one stream.
 * Memory is bounded: 2 chunks per worker + 1 live in shared slots, and the readable side's
 * backpressure holds back input (Transform does not take more while its output buffer is full).
 * A worker that throws or dies fails the stream with a GzipWorkerError.
 */
export class ParallelGzip extends Transform {
  readonly stats: ParallelGzipStats;
  private readonly level: number;
  private readonly chunkBytes: number;
  private readonly adaptive: boolean;
  private readonly onConsumed: ((chunk: Buffer) => void) | undefined;
  private readonly onMember: ((member: GzipMember) => void) | undefined;
  private readonly pool: GzipPool;
  private readonly inFlight: Job[] = [];
  private slot: number | undefined;
  private filled = 0;
  /** Input offset of the current slot's first byte. */
  private slotStart = 0;
  /** Ends (in the slot) of the members already closed in the current slot. */
  private ends: number[] = [];
  /** Whether each closed member of the slot starts at a cut; `openHeaded` for the open one. */
  private heads: boolean[] = [];
  private openHeaded = false;
  /** Input offsets where a member must start, ascending; `cutsHead` is the next one not yet reached. */
  private readonly cuts: number[] = [];
  private cutsHead = 0;
  private consumed = 0;
  private outputOffset = 0;

  constructor(options: ParallelGzipOptions = {}) {
    super();
    this.level = options.level ?? DEFAULT_LEVEL;
    this.chunkBytes = options.chunkBytes ?? 1024 * 1024;
    this.adaptive = options.adaptive ?? true;
    this.onConsumed = options.onConsumed;
    this.onMember = options.onMember;
    if (!Number.isInteger(this.level) || this.level < 0 || this.level > 9) {
      throw new RangeError(`compression level must be 0-9 (got ${options.level})`);
    }
    if (!Number.isInteger(this.chunkBytes) || this.chunkBytes < 1) {
      throw new RangeError(
        `gzip chunk size must be a positive whole number of bytes (got ${options.chunkBytes})`,
      );
    }
    const workers = options.workers ?? availableParallelism();
    if (!Number.isInteger(workers) || workers < 1) {
      throw new RangeError(`gzip workers must be a whole number >= 1 (got ${options.workers})`);
    }
    this.stats = { members: 0, storedMembers: 0, inputBytes: 0, outputBytes: 0, workers };
    this.pool = new GzipPool(workers, workers * 2 + 1, this.chunkBytes, options.fault);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.stats.inputBytes += chunk.length;
    this.accept(chunk).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    const finish = async () => {
      // An empty input still yields one (empty) member, so the output is always a valid gzip file.
      if (this.slot === undefined && this.stats.members + this.inFlight.length === 0) {
        this.slot = await this.pool.takeSlot();
        this.slotStart = this.consumed;
      }
      if (this.slot !== undefined) this.submit();
      while (this.inFlight.length > 0) await this.pushOldest();
      await this.pool.close();
    };
    finish().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.pool.close().then(
      () => callback(error),
      () => callback(error),
    );
  }

  /**
   * Starts a new member at input offset `offset`, where a record (a tar entry) starts: its first
   * 512 bytes (the tar header) are deflated even when the rest of the member is stored. It must not
   * lie before input already received: call it before writing the bytes that start there. Offsets
   * must not decrease.
   */
  cutAt(offset: number): void {
    const last = this.cuts.length > this.cutsHead ? this.cuts[this.cuts.length - 1] : this.consumed;
    if (!Number.isSafeInteger(offset) || offset < last) {
      throw new RangeError(
        `gzip member cut at input offset ${offset} comes too late: input or cuts already reach offset ${last}`,
      );
    }
    this.cuts.push(offset);
  }

  /** Copies `chunk` into slots, handing each full slot to the pool and closing members at cuts. */
  private async accept(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.slot === undefined) {
        this.slot = await this.pool.takeSlot();
        this.filled = 0;
        this.slotStart = this.consumed;
      }
      this.closeMemberAtCut();
      let n = Math.min(chunk.length - offset, this.chunkBytes - this.filled);
      if (this.cutsHead < this.cuts.length) n = Math.min(n, this.cuts[this.cutsHead] - this.consumed);
      chunk.copy(this.pool.slots[this.slot], this.filled, offset, offset + n);
      this.filled += n;
      this.consumed += n;
      offset += n;
      if (this.filled === this.chunkBytes) {
        this.submit();
        // Keep output flowing in order, and stop taking input while every slot is busy.
        while (this.inFlight.length >= this.pool.slots.length - 1) await this.pushOldest();
      }
    }
    this.onConsumed?.(chunk);
  }

  /** Closes the slot's open member when the input has reached the next cut. */
  private closeMemberAtCut(): void {
    while (this.cutsHead < this.cuts.length && this.cuts[this.cutsHead] <= this.consumed) {
      this.cutsHead += 1;
      const openBytes = this.filled - (this.ends.length > 0 ? this.ends[this.ends.length - 1] : 0);
      if (openBytes > 0) {
        this.ends.push(this.filled);
        this.heads.push(this.openHeaded);
      }
      this.openHeaded = true;
    }
    // Drop the cuts already passed now and then, so the queue stays short.
    if (this.cutsHead > 1024 && this.cutsHead * 2 > this.cuts.length) {
      this.cuts.splice(0, this.cutsHead);
      this.cutsHead = 0;
    }
  }

  private submit(): void {
    this.closeMemberAtCut();
    const ends = this.ends;
    if (ends.length === 0 || ends[ends.length - 1] !== this.filled) {
      ends.push(this.filled);
      this.heads.push(this.openHeaded);
      // The entry goes on in the next slot: its next member does not start at a cut.
      this.openHeaded = false;
    }
    const inputSizes = ends.map((end, i) => end - (i === 0 ? 0 : ends[i - 1]));
    const result = this.pool.compress(
      this.slot as number,
      this.filled,
      ends,
      this.heads,
      this.level,
      this.adaptive,
    );
    // Rejections are observed when the job is awaited in order; avoid an unhandled rejection meanwhile.
    result.catch(() => undefined);
    this.inFlight.push({ inputOffset: this.slotStart, inputSizes, result });
    this.slot = undefined;
    this.filled = 0;
    this.ends = [];
    this.heads = [];
  }

  private async pushOldest(): Promise<void> {
    const job = this.inFlight.shift() as Job;
    const { output, sizes, stored, crcs } = await job.result;
    if (sizes.length !== job.inputSizes.length) {
      throw new GzipWorkerError(
        `gzip worker returned ${sizes.length} members for a job of ${job.inputSizes.length}`,
      );
    }
    let inputOffset = job.inputOffset;
    for (let k = 0; k < sizes.length; k++) {
      this.onMember?.({
        inputOffset,
        inputBytes: job.inputSizes[k],
        outputOffset: this.outputOffset,
        outputBytes: sizes[k],
        crc64nvme: crcs[k],
      });
      inputOffset += job.inputSizes[k];
      this.outputOffset += sizes[k];
    }
    this.stats.members += sizes.length;
    this.stats.storedMembers += stored;
    this.stats.outputBytes += output.length;
    this.push(output);
  }
}
