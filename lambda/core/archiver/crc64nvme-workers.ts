import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { CRC64NVME_WORKER_SOURCE, crc64nvmeFromBase64 } from './crc64nvme.js';

/**
 * Worker threads that compute CRC64NVME of buffers handed to them (transferred, not copied), so a
 * caller that moves bytes (the folder store's range copies of a synthetic full) keeps its own thread
 * for I/O while the checksum, the CPU-bound part, runs beside it. Eval'd source for the same reason
 * as the gzip workers: the CLI and the functions are single esbuild bundles.
 */
const SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
${CRC64NVME_WORKER_SOURCE}
parentPort.on('message', (job) => {
  try {
    const crc = crc64nvmeBase64(Buffer.from(job.buffer, 0, job.length));
    // The memory goes back to the caller, who reuses it: no buffer waits for this thread's GC.
    parentPort.postMessage({ id: job.id, crc, buffer: job.buffer }, [job.buffer]);
  } catch (error) {
    parentPort.postMessage({ id: job.id, error: String((error && error.stack) || error) });
  }
});
`;

/** A chunk's CRC64NVME and its memory, handed back. */
export interface CrcResult {
  readonly crc: bigint;
  readonly buffer: Buffer;
}

type Reply = { id: number; crc: string; buffer: ArrayBuffer } | { id: number; error: string };

export class Crc64NvmeWorkers {
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly waiting = new Map<
    number,
    { worker: number; resolve(result: CrcResult): void; reject(error: Error): void }
  >();
  private nextId = 0;
  private failure: Error | undefined;
  private closed = false;

  /** @param count threads; default: the CPUs this process may use, at most 4. */
  constructor(count = Math.min(4, availableParallelism())) {
    for (let i = 0; i < Math.max(1, count); i++) {
      const worker = new Worker(SOURCE, { eval: true });
      worker.on('message', (reply: Reply) => this.onReply(reply));
      worker.on('error', (error) => this.fail(new Error(`CRC64NVME worker ${i} crashed: ${error.message}`)));
      worker.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`CRC64NVME worker ${i} exited unexpectedly (code ${code})`));
      });
      // Idle workers must not keep the process alive.
      worker.unref();
      this.workers.push(worker);
      this.load.push(0);
    }
  }

  /**
   * CRC64NVME of `buffer[0, length)`. The buffer's memory is transferred to the worker and comes back
   * with the result (`buffer`, to reuse): the caller must not use the one it passed, and it must own
   * its whole ArrayBuffer (Buffer.allocUnsafeSlow).
   */
  crc(buffer: Buffer, length: number): Promise<CrcResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (buffer.byteOffset !== 0 || buffer.buffer.byteLength !== buffer.length) {
      return Promise.reject(new RangeError('Crc64NvmeWorkers.crc needs a buffer that owns its memory'));
    }
    let worker = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i] < this.load[worker]) worker = i;
    this.load[worker] += 1;
    // A worker with work keeps the process alive (the caller awaits its answer); idle, it does not.
    this.workers[worker].ref();
    const id = this.nextId++;
    const result = new Promise<CrcResult>((resolve, reject) =>
      this.waiting.set(id, { worker, resolve, reject }),
    );
    const memory = buffer.buffer as ArrayBuffer;
    this.workers[worker].postMessage({ id, buffer: memory, length }, [memory]);
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fail(new Error('CRC64NVME workers closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private onReply(reply: Reply): void {
    const waiter = this.waiting.get(reply.id);
    if (!waiter) return;
    this.waiting.delete(reply.id);
    this.load[waiter.worker] -= 1;
    if (this.load[waiter.worker] === 0) this.workers[waiter.worker].unref();
    if ('error' in reply) waiter.reject(new Error(`CRC64NVME worker failed: ${reply.error}`));
    else waiter.resolve({ crc: crc64nvmeFromBase64(reply.crc), buffer: Buffer.from(reply.buffer) });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const [id, waiter] of this.waiting) {
      this.waiting.delete(id);
      waiter.reject(this.failure);
    }
  }
}
