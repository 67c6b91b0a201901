/**
 * Gzipped JSON Lines for a sharded run's work objects (plan rows, shard rows): written and read one
 * line at a time, so neither side holds a whole list.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { PassThrough, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createGunzip, createGzip, gzipSync } from 'node:zlib';

/** Level 1, as manifests: these objects are written on every sharded run. */
const LEVEL = 1;

/** Reads gzipped JSON lines from a stream (one or several gzip members). */
export async function* readJsonLines<T>(source: Readable, label: string): AsyncGenerator<T> {
  const gunzip = createGunzip();
  source.on('error', (error) => gunzip.destroy(error));
  const lines = createInterface({ input: source.pipe(gunzip), crlfDelay: Number.POSITIVE_INFINITY });
  let lineNo = 0;
  try {
    for await (const line of lines) {
      lineNo += 1;
      if (line.length === 0) continue;
      try {
        yield JSON.parse(line) as T;
      } catch (error) {
        if (error instanceof SyntaxError) throw new Error(`${label} line ${lineNo} is not JSON`);
        throw error;
      }
    }
  } finally {
    lines.close();
    source.destroy();
  }
}

/** Reads a local gzipped JSON Lines file. */
export function readJsonLinesFile<T>(file: string): AsyncGenerator<T> {
  return readJsonLines<T>(createReadStream(file), file);
}

/** One gzip member holding `lines` (each already JSON), newline-terminated. */
export function gzipLines(lines: readonly string[]): Buffer {
  return gzipSync(Buffer.from(lines.length > 0 ? `${lines.join('\n')}\n` : '', 'utf8'), { level: LEVEL });
}

/** Lines are handed to zlib in batches this big: one zlib call per row made the planner 8x slower. */
const BATCH_BYTES = 64 * 1024;

/**
 * A gzip stream of JSON lines to feed `store.upload` (or a file): rows are batched into 64 KiB
 * writes; `write` waits when the consumer is slower (backpressure), `end` flushes and closes it.
 */
export class JsonLinesWriter {
  private readonly gzip = createGzip({ level: LEVEL });
  private batch: string[] = [];
  private batchBytes = 0;
  readonly stream: Readable;
  lines = 0;

  constructor() {
    const out = new PassThrough();
    this.gzip.on('error', (error) => out.destroy(error));
    this.stream = this.gzip.pipe(out);
  }

  async write(value: unknown): Promise<void> {
    this.lines += 1;
    const line = `${JSON.stringify(value)}\n`;
    this.batch.push(line);
    this.batchBytes += line.length;
    if (this.batchBytes >= BATCH_BYTES) await this.flushBatch();
  }

  private async flushBatch(): Promise<void> {
    if (this.batch.length === 0) return;
    const text = this.batch.join('');
    this.batch = [];
    this.batchBytes = 0;
    if (!this.gzip.write(text)) {
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error) => reject(error);
        this.gzip.once('error', onError);
        this.gzip.once('drain', () => {
          this.gzip.off('error', onError);
          resolve();
        });
      });
    }
  }

  end(): void {
    if (this.batch.length > 0) this.gzip.write(this.batch.join(''));
    this.batch = [];
    this.gzip.end();
  }

  destroy(error: Error): void {
    this.gzip.destroy(error);
  }
}

/** Writes a JSON Lines writer's stream to a local file; resolves when the file is complete. */
export async function pipeToFile(writer: JsonLinesWriter, file: string): Promise<void> {
  const out = createWriteStream(file);
  writer.stream.pipe(out);
  await finished(out);
}
