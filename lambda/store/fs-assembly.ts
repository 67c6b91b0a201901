import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { type FileHandle, open, rm, stat } from 'node:fs/promises';
import { crc64nvme, crc64nvmeCombine, crc64nvmeToBase64 } from '../core/archiver/crc64nvme.js';
import { Crc64NvmeWorkers, type CrcResult } from '../core/archiver/crc64nvme-workers.js';
import { PartTrackedAssembly, type TrackedPart } from './assembly-parts.js';
import {
  type Assembly,
  type AssemblyExpectation,
  type AssemblyResult,
  checkByteRange,
  ObjectNotFoundError,
  SourceChangedError,
  type SourcePin,
  StoreConfigError,
  StoreRequestError,
} from './types.js';

/**
 * Range copies go through a user-space buffer of this size. Node has no binding for Linux's
 * copy_file_range(2) with offsets (fs.copyFile copies whole files only), and going through user
 * space is what lets the store compute the CRC64NVME and sha256 of every byte it copies anyway.
 */
export const COPY_CHUNK_BYTES = 8 * 1024 * 1024;

/**
 * A file's identity for a {@link SourcePin}: device, inode, size and modification time (ns). A file
 * replaced by another (written beside it and renamed over, or deleted and created again) has another
 * inode; one rewritten in place has another modification time.
 */
function fileIdentity(st: BigIntStats): string {
  return `${st.dev.toString(16)}:${st.ino.toString(16)}:${st.size}:${st.mtimeNs}`;
}

/** The pin of the file at `file` (store key `key`); undefined when it does not exist. */
export async function pinFile(file: string, key: string): Promise<SourcePin | undefined> {
  try {
    const st = await stat(file, { bigint: true });
    if (!st.isFile()) return undefined;
    return { key, size: Number(st.size), etag: fileIdentity(st) };
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** Where a store key lives and how errors name it. */
export interface FsSource {
  readonly file: string;
  readonly key: string;
  /** The store's URL, e.g. `file:///srv/backups`. */
  readonly storeUrl: string;
}

/**
 * Opens a source for reading; with `pin`, checks that the open file is the pinned one, so every byte
 * read through the handle is the pinned file's (a later rename over the name does not affect it).
 */
async function openSource(source: FsSource, pin: SourcePin | undefined): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    fh = await open(source.file, 'r');
  } catch (error) {
    if (isNotFound(error)) throw new ObjectNotFoundError(source.storeUrl, source.key);
    throw error;
  }
  try {
    if (pin) await checkPinned(fh, source, pin);
    return fh;
  } catch (error) {
    await fh.close().catch(() => undefined);
    throw error;
  }
}

async function checkPinned(fh: FileHandle, source: FsSource, pin: SourcePin): Promise<void> {
  const st = await fh.stat({ bigint: true });
  const size = Number(st.size);
  if ((pin.etag !== undefined && fileIdentity(st) !== pin.etag) || size !== pin.size) {
    throw new SourceChangedError(
      `${source.storeUrl}/${source.key}`,
      pin,
      `the file is now ${fileIdentity(st)} (device:inode:size:mtime), ${size} bytes`,
    );
  }
}

/** Reads up to `length` bytes at `position` into `buffer` (from 0); fewer only at the end of the file. */
async function readFully(fh: FileHandle, buffer: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function writeFully(fh: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await fh.write(buffer, done, length - done, position + done);
    done += bytesWritten;
  }
}

function shortRead(source: FsSource, offset: number, length: number, got: number): StoreRequestError {
  return new StoreRequestError(
    'read',
    `${source.storeUrl}/${source.key}`,
    `bytes ${offset}..${offset + length - 1} asked, the file ends after ${got} of them`,
    { note: 'it is shorter than the range: not the object the range was recorded from' },
  );
}

/** Exactly `length` bytes at `offset` of a store file ({@link ObjectStore.getRange}). */
export async function readRange(
  source: FsSource,
  offset: number,
  length: number,
  pin?: SourcePin,
): Promise<Buffer> {
  checkByteRange(source.key, offset, length);
  const fh = await openSource(source, pin);
  try {
    const buffer = Buffer.allocUnsafe(length);
    const got = await readFully(fh, buffer, length, offset);
    if (got < length) throw shortRead(source, offset, length, got);
    // A file rewritten in place while it was read.
    if (pin) await checkPinned(fh, source, pin);
    return buffer;
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * sha256 of the assembled file in byte order, although parts are written in any order: a chunk
 * written where the hash has got to is hashed at once (from memory); the others are read back from
 * the temporary file (page cache) once everything before them is hashed.
 */
class OrderedSha256 {
  private readonly hash = createHash('sha256');
  private cursor = 0;
  /** Written chunks not hashed yet: start -> end. */
  private readonly pending = new Map<number, number>();
  private busy = false;
  private running: Promise<void> = Promise.resolve();
  private failure: { readonly error: unknown } | undefined;
  /** Bytes hashed by reading them back (for the figures in tests and benchmarks). */
  bytesReread = 0;

  constructor(private readonly fh: FileHandle) {}

  /** Called right after `length` bytes of `chunk` were written at `position`. */
  written(position: number, chunk: Buffer, length: number): void {
    if (!this.busy && position === this.cursor) {
      this.hash.update(chunk.subarray(0, length));
      this.cursor += length;
    } else {
      this.pending.set(position, position + length);
    }
    this.kick();
  }

  private kick(): void {
    if (this.busy || this.failure || !this.pending.has(this.cursor)) return;
    this.busy = true;
    this.running = this.catchUp().catch((error: unknown) => {
      this.failure ??= { error };
      this.busy = false;
    });
  }

  private async catchUp(): Promise<void> {
    const buffer = Buffer.allocUnsafe(COPY_CHUNK_BYTES);
    for (;;) {
      const end = this.pending.get(this.cursor);
      if (end === undefined) {
        this.busy = false;
        return;
      }
      this.pending.delete(this.cursor);
      while (this.cursor < end) {
        const length = Math.min(COPY_CHUNK_BYTES, end - this.cursor);
        const got = await readFully(this.fh, buffer, length, this.cursor);
        if (got !== length) {
          throw new Error(`the temporary file ended at byte ${this.cursor + got} while hashing it`);
        }
        this.hash.update(buffer.subarray(0, length));
        this.bytesReread += length;
        this.cursor += length;
      }
    }
  }

  /** The hex digest, once every byte up to `bytes` was written and hashed. */
  async digest(bytes: number): Promise<string> {
    await this.running;
    this.kick();
    await this.running;
    if (this.failure) throw this.failure.error;
    if (this.cursor !== bytes) {
      throw new Error(`sha256 reached byte ${this.cursor} of ${bytes}: a range was never written`);
    }
    return this.hash.digest('hex');
  }
}

export interface FsAssemblyOptions {
  readonly key: string;
  /** The temporary `*.partial-*` file next to the target (found by the leftover sweep if we die). */
  readonly temp: string;
  /** `file:///root/key`, for messages. */
  readonly location: string;
  /** Where a source key lives, as {@link FsSource}. */
  sourceOf(key: string): FsSource;
  /** Moves the finished temp file into place (link: EEXIST -> ObjectExistsError). */
  commit(): Promise<void>;
  readonly signal?: AbortSignal;
  /** Compute the sha256 of the assembled file too. @default true */
  readonly sha256?: boolean;
}

/** Chunks of one range copy whose CRC64NVME may be computing in the workers at once (memory bound). */
const CRC_CHUNKS_IN_FLIGHT = 4;

/**
 * An object assembled in a temporary file next to its key ({@link FsObjectStore.assemble}): parts are
 * written with positional writes at their offsets, range copies go through a buffer (see
 * {@link COPY_CHUNK_BYTES}) and every byte's CRC64NVME and sha256 are computed on the way, so complete
 * can refuse a result that is not what the plan expected before linking it into place.
 */
export class FsAssembly extends PartTrackedAssembly<bigint> implements Assembly {
  readonly minPartBytes = 0;
  readonly maxPartBytes = Number.MAX_SAFE_INTEGER;
  readonly maxParts = Number.MAX_SAFE_INTEGER;
  readonly minCopySourceBytes = 0;
  protected readonly location: string;
  private readonly sha256: OrderedSha256 | undefined;
  /** The CRC64NVME of copied bytes runs on worker threads, beside this thread's reads and writes. */
  private readonly crcWorkers = new Crc64NvmeWorkers();
  /**
   * Copy buffers back from the workers, shared by all copies of this assembly: a synthetic full's
   * copies are many and short (657 for the 819 MB bench archive), so a buffer per copy would be a
   * fresh 8 MiB allocation almost every time. At most parts in flight x CRC_CHUNKS_IN_FLIGHT exist.
   */
  private readonly copyBuffers: Buffer[] = [];
  private aborting: Promise<void> | undefined;
  /** Set once the assembly failed or was aborted: copies stop at their next chunk. */
  private stopped = false;

  private constructor(
    private readonly options: FsAssemblyOptions,
    private readonly fh: FileHandle,
  ) {
    super();
    this.location = options.location;
    this.sha256 = options.sha256 === false ? undefined : new OrderedSha256(fh);
    this.watch(options.signal);
  }

  static async start(options: FsAssemblyOptions): Promise<FsAssembly> {
    options.signal?.throwIfAborted();
    // Read and write: the sha256 of parts written out of order is computed by reading them back.
    const fh = await open(options.temp, 'wx+');
    return new FsAssembly(options, fh);
  }

  /** Bytes the sha256 had to read back from the temporary file (parts written ahead of the hash). */
  get bytesReread(): number {
    return this.sha256?.bytesReread ?? 0;
  }

  uploadPart(partNumber: number, offset: number, body: Buffer): Promise<void> {
    return this.track(partNumber, offset, body.length, async () => {
      await writeFully(this.fh, body, body.length, offset);
      this.sha256?.written(offset, body, body.length);
      return crc64nvme(body);
    });
  }

  copyPart(
    partNumber: number,
    offset: number,
    source: SourcePin,
    sourceOffset: number,
    length: number,
  ): Promise<void> {
    return this.track(partNumber, offset, length, async () => {
      checkByteRange(source.key, sourceOffset, length);
      const from = this.options.sourceOf(source.key);
      const input = await openSource(from, source);
      try {
        // Each chunk's CRC64NVME is computed by a worker (its buffer transferred there) while this
        // thread reads and writes the next ones; the chunks' CRCs are combined in order.
        const jobs: { crc: Promise<CrcResult>; length: number }[] = [];
        const free = this.copyBuffers;
        let crc = 0n;
        const settleOldest = async () => {
          const job = jobs.shift() as (typeof jobs)[number];
          const done = await job.crc;
          crc = crc64nvmeCombine(crc, done.crc, job.length);
          free.push(done.buffer);
        };
        for (let done = 0; done < length; ) {
          if (this.stopped) throw this.failure?.error;
          const n = Math.min(COPY_CHUNK_BYTES, length - done);
          const buffer = free.pop() ?? Buffer.allocUnsafeSlow(COPY_CHUNK_BYTES);
          const got = await readFully(input, buffer, n, sourceOffset + done);
          if (got < n) throw shortRead(from, sourceOffset, length, done + got);
          await writeFully(this.fh, buffer, n, offset + done);
          this.sha256?.written(offset + done, buffer, n);
          const job = { crc: this.crcWorkers.crc(buffer, n), length: n };
          // Observed in order below; a copy that fails first must not leave it unhandled.
          job.crc.catch(() => undefined);
          jobs.push(job);
          if (jobs.length >= CRC_CHUNKS_IN_FLIGHT) await settleOldest();
          done += n;
        }
        while (jobs.length > 0) await settleOldest();
        // Rewritten in place while it was copied: the copy may mix two versions.
        await checkPinned(input, from, source);
        return crc;
      } finally {
        await input.close().catch(() => undefined);
      }
    });
  }

  protected async completeParts(
    expected: AssemblyExpectation,
    parts: readonly TrackedPart<bigint>[],
  ): Promise<AssemblyResult> {
    const { location } = this;
    let crc = 0n;
    for (const part of parts) crc = crc64nvmeCombine(crc, part.value, part.length);
    const crc64nvme = crc64nvmeToBase64(crc);
    if (crc64nvme !== expected.crc64nvme) {
      throw new StoreRequestError(
        'complete',
        location,
        `the assembled bytes have CRC64NVME ${crc64nvme}; ${expected.crc64nvme} was expected`,
        { note: 'nothing was stored under this key' },
      );
    }
    const sha256 = await this.sha256?.digest(expected.bytes);
    await this.crcWorkers.close();
    await this.fh.sync();
    const size = (await this.fh.stat()).size;
    if (size !== expected.bytes) {
      throw new StoreRequestError(
        'complete',
        location,
        `the temporary file has ${size} bytes; ${expected.bytes} were assembled`,
        { note: 'nothing was stored under this key' },
      );
    }
    await this.fh.close();
    await this.options.commit();
    return { key: this.options.key, bytes: size, crc64nvme, ...(sha256 ? { sha256 } : {}) };
  }

  abort(): Promise<void> {
    this.aborting ??= this.abortOnce();
    return this.aborting;
  }

  private async abortOnce(): Promise<void> {
    this.unwatch();
    this.failure ??= { error: new StoreConfigError(`the assembly of ${this.options.location} was aborted`) };
    this.stopped = true;
    await Promise.allSettled([...this.inFlight]);
    if (this.completing) await this.completing.catch(() => undefined);
    await this.crcWorkers.close();
    if (this.completed) return;
    await this.fh.close().catch(() => undefined);
    await rm(this.options.temp, { force: true });
  }
}

function isNotFound(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
