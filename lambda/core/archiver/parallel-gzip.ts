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
  /** Tests only: make each worker fail after `after` members of its own, by throwing or by ending its thread. */
  readonly fault?: { readonly after: number; readonly kind: 'throw' | 'exit' };
}

export interface ParallelGzipStats {
  members: number;
  storedMembers: number;
  inputBytes: number;
  outputBytes: number;
  workers: number;
}

/** A compression worker threw or died: the archive is incomplete and must not be committed. */
export class GzipWorkerError extends Error {
  override readonly name = 'GzipWorkerError';
}

interface MemberResult {
  readonly member: Buffer;
  readonly stored: boolean;
}

interface Waiter {
  readonly worker: number;
  readonly slot: number;
  resolve(result: MemberResult): void;
  reject(error: Error): void;
}

type WorkerReply = { id: number; member: Uint8Array; stored: boolean } | { id: number; error: string };

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

  constructor(
    workerCount: number,
    slotCount: number,
    slotBytes: number,
    fault: ParallelGzipOptions['fault'],
  ) {
    const input = new SharedArrayBuffer(slotCount * slotBytes);
    this.slots = Array.from({ length: slotCount }, (_, i) => Buffer.from(input, i * slotBytes, slotBytes));
    for (let i = 0; i < slotCount; i++) this.freeSlots.push(i);
    for (let i = 0; i < workerCount; i++) {
      const worker = new Worker(GZIP_WORKER_SOURCE, {
        eval: true,
        workerData: { input, slotBytes, fault },
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

  /** Compresses the first `length` bytes of `slot` into one member; the slot is released on reply. */
  compress(slot: number, length: number, level: number, adaptive: boolean): Promise<MemberResult> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    // The least busy worker; ties go to the lowest index.
    let worker = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i] < this.load[worker]) worker = i;
    this.load[worker] += 1;
    const result = new Promise<MemberResult>((resolve, reject) => {
      this.waiters.set(id, { worker, slot, resolve, reject });
    });
    this.workers[worker].postMessage({ id, slot, length, level, adaptive });
    return result;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.fail(new GzipWorkerError('gzip stage closed before the member was compressed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
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
      const m = reply.member;
      waiter.resolve({ member: Buffer.from(m.buffer, m.byteOffset, m.byteLength), stored: reply.stored });
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
 * emitted strictly in input order. A concatenation of gzip members is one valid gzip file (RFC 1952
 * section 2.2): GNU gzip/tar, pigz, Python and Node read it as one stream.
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
  private readonly pool: GzipPool;
  private readonly inFlight: Promise<MemberResult>[] = [];
  private slot: number | undefined;
  private filled = 0;

  constructor(options: ParallelGzipOptions = {}) {
    super();
    this.level = options.level ?? DEFAULT_LEVEL;
    this.chunkBytes = options.chunkBytes ?? 1024 * 1024;
    this.adaptive = options.adaptive ?? true;
    this.onConsumed = options.onConsumed;
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

  /** Copies `chunk` into slots, handing each full slot to the pool. */
  private async accept(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.slot === undefined) {
        this.slot = await this.pool.takeSlot();
        this.filled = 0;
      }
      const n = Math.min(chunk.length - offset, this.chunkBytes - this.filled);
      chunk.copy(this.pool.slots[this.slot], this.filled, offset, offset + n);
      this.filled += n;
      offset += n;
      if (this.filled === this.chunkBytes) {
        this.submit();
        // Keep output flowing in order, and stop taking input while every slot is busy.
        while (this.inFlight.length >= this.pool.slots.length - 1) await this.pushOldest();
      }
    }
    this.onConsumed?.(chunk);
  }

  private submit(): void {
    const job = this.pool.compress(this.slot as number, this.filled, this.level, this.adaptive);
    // Rejections are observed when the job is awaited in order; avoid an unhandled rejection meanwhile.
    job.catch(() => undefined);
    this.inFlight.push(job);
    this.slot = undefined;
    this.filled = 0;
  }

  private async pushOldest(): Promise<void> {
    const { member, stored } = await (this.inFlight.shift() as Promise<MemberResult>);
    this.stats.members += 1;
    if (stored) this.stats.storedMembers += 1;
    this.stats.outputBytes += member.length;
    this.push(member);
  }
}
