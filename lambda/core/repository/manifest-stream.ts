/**
 * Manifests read and written as streams, so that nothing holds a whole manifest: a 1 M-file manifest
 * is ~250 MB of JSON text and ~1 GB as objects in memory, while the sharded planner only needs to
 * merge-join it with the sorted scan, and the commit only needs to write rows as they are produced.
 *
 * Format (the same bytes as manifest.ts): gzip of JSON lines, the header first, then one entry per line,
 * sorted by `comparePaths`, unique. A manifest may be several gzip members concatenated (a sharded
 * backup's is: member 0 = the header line, then one member per part); gunzip reads them as one text.
 */
import { once } from 'node:events';
import { pipeline, type Readable, Transform } from 'node:stream';
import { createGunzip, createGzip, gzipSync } from 'node:zlib';
import { ManifestError, UnsafePathError } from '../errors.js';
import {
  assertTotalsMatch,
  comparePaths,
  type ManifestEntry,
  type ManifestHeader,
  parseLine,
  validateEntry,
  validateHeader,
} from './manifest.js';

/** Level 1, as encodeManifest: a manifest is written on every backup, speed beats ~10% of its bytes. */
const MANIFEST_GZIP_LEVEL = 1;

/**
 * The longest line the reader accepts. A manifest line holds one path (at most a few KiB, six bytes
 * per escaped Latin-1 byte) or one symlink target: 16 MiB is far beyond any line we write, and keeps
 * a damaged manifest without newlines from being read whole into memory.
 */
export const MAX_MANIFEST_LINE_BYTES = 16 * 1024 * 1024;

export interface ManifestStream {
  readonly header: ManifestHeader;
  /**
   * The entries in manifest order, each validated as decodeManifest validates it (fields, order,
   * uniqueness, nothing below a file or symlink). Rejections surface when the offending line is
   * reached, and the header-totals check after the last entry: an entry yielded is not proof that the
   * manifest is sound, only the generator finishing without an error is. Iterate to the end, or call
   * `entries.return()` to stop early; either closes the source.
   */
  readonly entries: AsyncGenerator<ManifestEntry, void, undefined>;
}

/**
 * Reads a manifest (a gzip stream, possibly several concatenated gzip members) line by line, with the
 * same checks, error classes and messages as decodeManifest (line numbers count non-empty lines, as
 * decodeManifest's do). Resolves once the header line is read and checked.
 *
 * Memory: one gunzip window, the line being parsed (at most MAX_MANIFEST_LINE_BYTES) and a stack of
 * the current path's file/symlink ancestors-to-be (see NonFolderAncestry): independent of the number
 * of entries. The source is owned from here on: it is destroyed when the entries stop early or fail.
 * `label` names the manifest in errors (e.g. the store key).
 */
export async function openManifestStream(source: Readable, label: string): Promise<ManifestStream> {
  const batches = manifestLineBatches(source, label);
  let header: ManifestHeader;
  let rest: string[];
  try {
    let batch: IteratorResult<string[], void>;
    do batch = await batches.next();
    while (!batch.done && batch.value.length === 0);
    if (batch.done) throw new ManifestError(`manifest ${label} is empty`);
    header = validateHeader(parseLine(batch.value[0], label, 1), label);
    rest = batch.value.slice(1);
  } catch (error) {
    await batches.return();
    throw error;
  }
  const entries = manifestEntries(rest, batches, header, label);
  // A generator that never started ignores return() without running its finally: close the lines
  // (and so the source) here too, for a consumer that reads the header and stops.
  const returnEntries = entries.return.bind(entries);
  entries.return = async (value) => {
    await batches.return();
    return returnEntries(value);
  };
  return { header, entries };
}

async function* manifestEntries(
  first: readonly string[],
  batches: AsyncGenerator<string[], void, undefined>,
  header: ManifestHeader,
  label: string,
): AsyncGenerator<ManifestEntry, void, undefined> {
  let lineNo = 1;
  let previous: string | undefined;
  const ancestry = new NonFolderAncestry();
  // Summed in manifest order, as totalsOf does, so the float sum of bytes is the same.
  let files = 0;
  let bytes = 0;
  try {
    for (
      let batch: IteratorResult<readonly string[], void> = { value: first };
      !batch.done;
      batch = await batches.next()
    ) {
      for (const line of batch.value) {
        lineNo += 1;
        const where = `manifest ${label} line ${lineNo}`;
        const entry = validateEntry(parseLine(line, label, lineNo), where, header.backupId);
        if (previous !== undefined && comparePaths(previous, entry.path) >= 0) {
          throw new ManifestError(
            `${where}: path ${JSON.stringify(entry.path)} is out of order or duplicated`,
          );
        }
        ancestry.admit(entry.path, entry.type, where);
        previous = entry.path;
        if (entry.type === 'file') {
          files += 1;
          bytes += entry.size;
        }
        yield entry;
      }
    }
  } finally {
    await batches.return();
  }
  assertTotalsMatch(header, { files, bytes }, label);
}

/**
 * The non-empty lines of the gunzipped source, one batch per gunzip chunk (64 KiB of text at most,
 * plus a line carried over from the chunk before; batches spare the per-line await of an async
 * generator, a third of the reading time). Lines are split on `\n` only (as decodeManifest's
 * `text.split('\n')`), each decoded as UTF-8 on its own: `\n` is never part of a multi-byte sequence,
 * so this gives the same strings as decoding the whole text first. Gzip errors (not gzip, truncated,
 * corrupt) become ManifestError; the source's own errors (a network failure) pass through unchanged.
 */
async function* manifestLineBatches(
  source: Readable,
  label: string,
): AsyncGenerator<string[], void, undefined> {
  const gunzip = createGunzip({ chunkSize: 64 * 1024 });
  // Errors of either stream surface through the iteration of gunzip below; pipeline destroys the
  // source when gunzip is destroyed (an early return of the consumer, or an error).
  pipeline(source, gunzip, () => {});
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const iterator = gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  try {
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await iterator.next();
      } catch (error) {
        throw asGzipError(error, label);
      }
      if (next.done) break;
      const chunk = next.value;
      const lines: string[] = [];
      let start = 0;
      for (let nl = chunk.indexOf(0x0a, start); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
        let line: string;
        if (pending.length === 0) {
          line = chunk.toString('utf8', start, nl);
        } else {
          assertLineFits(pendingBytes + (nl - start), label);
          pending.push(chunk.subarray(start, nl));
          line = Buffer.concat(pending).toString('utf8');
          pending = [];
          pendingBytes = 0;
        }
        start = nl + 1;
        if (line.length > 0) lines.push(line);
      }
      if (start < chunk.length) {
        pendingBytes += chunk.length - start;
        assertLineFits(pendingBytes, label);
        pending.push(chunk.subarray(start));
      }
      yield lines;
    }
  } finally {
    await iterator.return?.();
  }
  if (pending.length > 0) {
    const last = Buffer.concat(pending).toString('utf8');
    if (last.length > 0) yield [last];
  }
}

function assertLineFits(bytes: number, label: string): void {
  if (bytes > MAX_MANIFEST_LINE_BYTES) {
    throw new ManifestError(
      `manifest ${label} has a line longer than ${MAX_MANIFEST_LINE_BYTES} bytes; no manifest media-backup writes has one. The manifest is damaged or is not a media-backup manifest.`,
    );
  }
}

function asGzipError(error: unknown, label: string): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !code.startsWith('Z_')) return error;
  return new ManifestError(`manifest ${label} is not a valid gzip file (${(error as Error).message})`, {
    cause: error,
  });
}

/**
 * decodeManifest's "nothing below a file or symlink" rule in memory bounded by the path length, not the
 * entry count (decodeManifest keeps every non-folder path).
 *
 * In sorted order the paths below X are exactly those in [`X/`, `X0`) (`0` follows `/`), one contiguous
 * run that starts after X. So a file or symlink X matters only until a path at or past `X0` arrives.
 * Kept: the files and symlinks whose run the current path has not passed. Each one kept is a prefix of
 * the next one kept (a path after X and before `X0` starts with X), so they are stored as prefix
 * lengths of the deepest one, and there are at most as many as the deepest path has characters
 * (usually none or one: a file is passed by its next sibling).
 */
export class NonFolderAncestry {
  /** The path of the last kept entry; every kept entry is a prefix of it. */
  private deepest = '';
  private readonly kept: { readonly length: number; readonly kind: string }[] = [];

  /**
   * Checks the next entry in manifest order (after the order check) and remembers it if it is a file
   * or symlink. Throws the UnsafePathError assertNotBelowNonFolder throws.
   */
  admit(path: string, type: ManifestEntry['type'], where: string): void {
    while (this.kept.length > 0 && !this.runHolds(this.kept[this.kept.length - 1].length, path)) {
      this.kept.pop();
    }
    // What remains are prefixes of `path` followed by a character at or before '/': those followed by
    // '/' are its ancestors (at most one: a non-folder below another was rejected when it came).
    for (const { length, kind } of this.kept) {
      if (path.charCodeAt(length) === 0x2f) {
        const ancestor = path.slice(0, length);
        throw new UnsafePathError(
          `${where}: path ${JSON.stringify(path)} lies below ${JSON.stringify(ancestor)}, which is a ${kind}, not a folder`,
        );
      }
    }
    if (type !== 'dir') {
      this.kept.push({ length: path.length, kind: type });
      this.deepest = path;
    }
  }

  /** Entries kept now (for tests of the bound). */
  get size(): number {
    return this.kept.length;
  }

  /** Whether `path` (later than the kept entry of this length) still lies before that entry's `X0`. */
  private runHolds(length: number, path: string): boolean {
    if (path.length <= length) return false;
    if (path.charCodeAt(length) > 0x2f) return false;
    return path.startsWith(length === this.deepest.length ? this.deepest : this.deepest.slice(0, length));
  }
}

/** What a member writer wrote: the part's range and counts the commit records. */
export interface ManifestMemberSummary {
  /** Entries (lines) in the member. */
  readonly entries: number;
  /** File entries and their bytes, summed as totalsOf sums them (for the header's totals). */
  readonly files: number;
  readonly bytes: number;
  /** First and last entry paths; absent for an empty member. */
  readonly firstPath?: string;
  readonly lastPath?: string;
  /** Length of the gzip member: its `manifestRange.length` in the concatenated manifest. */
  readonly gzipBytes: number;
}

/** One gzip member holding the header line: member 0 of a concatenated manifest. */
export function encodeHeaderMember(header: ManifestHeader): Buffer {
  return gzipSync(`${JSON.stringify(header)}\n`, { level: MANIFEST_GZIP_LEVEL });
}

/**
 * One gzip member holding `entries`, one line each, in the order given (checked: sorted, unique).
 * Builds the batch's whole text in memory and compresses on the calling thread: for small batches;
 * a part's rows (100k+) go through ManifestMemberWriter.
 */
export function encodeEntriesMember(entries: Iterable<ManifestEntry>): Buffer {
  const order = new EntryOrder();
  let text = '';
  for (const entry of entries) {
    order.check(entry);
    text += `${JSON.stringify(entry)}\n`;
  }
  return gzipSync(text, { level: MANIFEST_GZIP_LEVEL });
}

/**
 * Writes one gzip member of manifest rows as they are produced. `member` is the member's bytes as a
 * Readable, to be consumed while writing (e.g. `store.upload(key, writer.member)` started before the
 * first write): `write` waits when the consumer is behind, so memory stays at one batch of lines
 * (64 KiB) plus zlib's and the consumer's buffers, whatever the number of rows.
 *
 *   const writer = new ManifestMemberWriter();
 *   const uploaded = store.upload(key, writer.member);
 *   for (const row of rows) await writer.write(row);
 *   const [summary] = await Promise.all([writer.end(), uploaded]);
 */
export class ManifestMemberWriter {
  /** The gzip member, produced as rows are written. */
  readonly member: Readable;
  private readonly gzip = createGzip({ level: MANIFEST_GZIP_LEVEL });
  private readonly order = new EntryOrder();
  private batch = '';
  private gzipBytes = 0;
  private failure: Error | undefined;
  private ended = false;

  constructor() {
    const counted = new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.gzipBytes += chunk.length;
        done(null, chunk);
      },
    });
    this.member = counted;
    pipeline(this.gzip, counted, (error) => {
      if (error) this.failure ??= error;
    });
  }

  /** Adds one row; rows must come in manifest order (sorted by comparePaths, unique). */
  async write(entry: ManifestEntry): Promise<void> {
    if (this.ended) throw new Error('ManifestMemberWriter.write after end()');
    this.order.check(entry);
    this.batch += `${JSON.stringify(entry)}\n`;
    if (this.batch.length >= 64 * 1024) await this.flush();
  }

  /** Ends the member; resolves once the consumer has read all of it. */
  async end(): Promise<ManifestMemberSummary> {
    if (this.ended) throw new Error('ManifestMemberWriter.end called twice');
    await this.flush();
    this.ended = true;
    this.gzip.end();
    await waitFor(this.member, 'end', () => this.failure);
    return { ...this.order.summary(), gzipBytes: this.gzipBytes };
  }

  private async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.batch.length === 0) return;
    const text = this.batch;
    this.batch = '';
    if (!this.gzip.write(text)) await waitFor(this.gzip, 'drain', () => this.failure);
  }
}

/**
 * A member writer that collects the member into a Buffer (memory: the compressed member, ~1/5 of its
 * text, plus one batch): for a shard's rows object when no upload is running alongside.
 */
export function entriesMemberStream(): {
  write(entry: ManifestEntry): Promise<void>;
  end(): Promise<ManifestMemberSummary & { readonly data: Buffer }>;
} {
  const writer = new ManifestMemberWriter();
  const chunks: Buffer[] = [];
  writer.member.on('data', (chunk: Buffer) => chunks.push(chunk));
  return {
    write: (entry) => writer.write(entry),
    end: async () => {
      const summary = await writer.end();
      return { ...summary, data: Buffer.concat(chunks) };
    },
  };
}

/** Resolves on `event`; rejects with the stream's error if it fails or closes first. */
async function waitFor(
  stream: Readable,
  event: 'drain' | 'end',
  failure: () => Error | undefined,
): Promise<void> {
  if (event === 'end' && stream.readableEnded) return;
  const ac = new AbortController();
  try {
    await Promise.race([
      once(stream, event, { signal: ac.signal }),
      once(stream, 'close', { signal: ac.signal }).then(() => {
        if (event === 'end' && stream.readableEnded) return;
        throw (
          failure() ??
          stream.errored ??
          new Error(`the manifest member stream was closed before its ${event} (its consumer stopped)`)
        );
      }),
    ]);
  } finally {
    ac.abort();
  }
}

/** Enforces manifest order on written rows and keeps the member's summary. */
class EntryOrder {
  private entries = 0;
  private files = 0;
  private bytes = 0;
  private firstPath: string | undefined;
  private lastPath: string | undefined;

  check(entry: ManifestEntry): void {
    if (this.lastPath !== undefined && comparePaths(this.lastPath, entry.path) >= 0) {
      throw new Error(
        `manifest rows must be written in path order, unique: ${JSON.stringify(entry.path)} after ${JSON.stringify(this.lastPath)}`,
      );
    }
    this.firstPath ??= entry.path;
    this.lastPath = entry.path;
    this.entries += 1;
    if (entry.type === 'file') {
      this.files += 1;
      this.bytes += entry.size;
    }
  }

  summary(): Omit<ManifestMemberSummary, 'gzipBytes'> {
    const { entries, files, bytes, firstPath, lastPath } = this;
    return firstPath === undefined
      ? { entries, files, bytes }
      : { entries, files, bytes, firstPath, lastPath };
  }
}
