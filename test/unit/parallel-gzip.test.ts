import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip, gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { GzipWorkerError, ParallelGzip } from '../../lambda/core/archiver/parallel-gzip.js';
import { documentBytes, randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';

const CHUNK = 64 * 1024;

async function compress(input: Buffer, options: ConstructorParameters<typeof ParallelGzip>[0] = {}) {
  const gz = new ParallelGzip({ chunkBytes: CHUNK, ...options });
  // Feed in odd-sized pieces so chunk boundaries never line up with writes.
  const pieces: Buffer[] = [];
  for (let i = 0; i < input.length; i += 7001) pieces.push(input.subarray(i, i + 7001));
  const out = buffer(gz);
  await pipeline(Readable.from(pieces), gz);
  return { output: await out, stats: gz.stats };
}

/** Counts gzip members by walking the member headers (each starts 1f 8b 08). */
function countMembers(gz: Buffer): number {
  let count = 0;
  for (let i = 0; i + 2 < gz.length; i++)
    if (gz[i] === 0x1f && gz[i + 1] === 0x8b && gz[i + 2] === 8) count++;
  return count;
}

describe('ParallelGzip', () => {
  const rand = seededRandom(7);
  const text = documentBytes(rand, 5 * CHUNK + 123);
  const noise = randomBytesFrom(rand, 3 * CHUNK);

  it.each([
    ['empty input', Buffer.alloc(0), 1],
    ['exactly one chunk', text.subarray(0, CHUNK), 1],
    ['one byte over a chunk', text.subarray(0, CHUNK + 1), 2],
    ['many chunks of text', text, 6],
    ['random bytes', noise, 3],
  ])('round-trips %s as one valid gzip stream of independent members', async (_name, input, members) => {
    const { output, stats } = await compress(input);
    expect(gunzipSync(output).equals(input)).toBe(true);
    expect(stats.members).toBe(members);
    expect(stats.inputBytes).toBe(input.length);
    expect(stats.outputBytes).toBe(output.length);
  });

  it('keeps members in input order with several compressing at once', async () => {
    const blocks = Array.from({ length: 12 }, (_, i) => Buffer.alloc(CHUNK, 65 + i));
    const input = Buffer.concat(blocks);
    const { output } = await compress(input, { workers: 4 });
    expect(gunzipSync(output).equals(input)).toBe(true);
  });

  it('stores incompressible chunks and compresses text', async () => {
    const { output, stats } = await compress(Buffer.concat([noise, text]));
    expect(stats.storedMembers).toBe(3);
    expect(stats.members).toBe(9);
    expect(countMembers(output)).toBeGreaterThanOrEqual(9);
    // Text shrinks a lot; stored noise grows only by framing.
    expect(output.length).toBeLessThan(noise.length + text.length / 2);
  });

  it('compresses everything when adaptive storing is off', async () => {
    const { stats } = await compress(noise, { adaptive: false });
    expect(stats.storedMembers).toBe(0);
  });

  it('rejects a level outside 0-9', () => {
    expect(() => new ParallelGzip({ level: 10 })).toThrow(/compression level must be 0-9/);
  });

  it('passes an upstream error on instead of finishing', async () => {
    const gz = new ParallelGzip({ chunkBytes: CHUNK });
    const source = new Readable({
      read() {
        this.destroy(new Error('disk on fire'));
      },
    });
    await expect(pipeline(source, gz, async (s) => buffer(s))).rejects.toThrow('disk on fire');
  });
});

describe('ParallelGzip output read by other tools', () => {
  const execFileAsync = promisify(execFile);
  const rand = seededRandom(21);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const PY_SHA = 'import gzip,hashlib,sys; print(hashlib.sha256(gzip.open(sys.argv[1]).read()).hexdigest())';

  it.each([
    ['empty input', Buffer.alloc(0)],
    ['exactly one chunk', documentBytes(rand, CHUNK)],
    [
      'one input spanning many chunks, mixed',
      Buffer.concat([randomBytesFrom(rand, 3 * CHUNK + 5), documentBytes(rand, 4 * CHUNK)]),
    ],
    ['all random bytes', randomBytesFrom(rand, 6 * CHUNK)],
    ['all text', documentBytes(rand, 6 * CHUNK + 1)],
  ])('%s: gzip -t, gzip -dc, Python gzip and Node createGunzip read the same bytes', async (_name, input) => {
    const { output } = await compress(input, { workers: 3 });
    const dir = await mkdtemp(path.join(tmpdir(), 'pgz-'));
    try {
      const file = path.join(dir, 'x.gz');
      await writeFile(file, output);
      await execFileAsync('gzip', ['-t', file]);
      const gzipOut = await execFileAsync('sh', ['-c', 'gzip -dc "$1" | sha256sum', 'sh', file]);
      expect(gzipOut.stdout.split(' ')[0]).toBe(sha(input));
      const py = await execFileAsync('python3', ['-c', PY_SHA, file]);
      expect(py.stdout.trim()).toBe(sha(input));
      const node = await buffer(Readable.from([output]).pipe(createGunzip()));
      expect(sha(node)).toBe(sha(input));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('ParallelGzip adaptive storing', () => {
  it('stores random bytes, compresses text and tiny inputs', async () => {
    const rand = seededRandom(3);
    const big = 1024 * 1024;
    expect((await compress(randomBytesFrom(rand, big), { chunkBytes: big })).stats.storedMembers).toBe(1);
    expect((await compress(documentBytes(rand, big), { chunkBytes: big })).stats.storedMembers).toBe(0);
    expect((await compress(Buffer.alloc(100), { chunkBytes: big })).stats.storedMembers).toBe(0);
  });
});

describe('ParallelGzip worker failures', () => {
  const input = documentBytes(seededRandom(11), 20 * CHUNK);

  it.each([
    ['throws', 'throw', /gzip worker \d failed: .*injected gzip worker fault/],
    ['ends its thread', 'exit', /gzip worker \d exited unexpectedly \(code 70\)/],
  ] as const)('fails the stream with a clear error when a worker %s', async (_name, kind, message) => {
    const gz = new ParallelGzip({ chunkBytes: CHUNK, workers: 2, fault: { after: 3, kind } });
    const pieces: Buffer[] = [];
    for (let i = 0; i < input.length; i += 7001) pieces.push(input.subarray(i, i + 7001));
    const error = await pipeline(Readable.from(pieces), gz, async (s) => buffer(s)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GzipWorkerError);
    expect((error as Error).message).toMatch(message);
    expect(gz.destroyed).toBe(true);
  });

  it('starts one worker per CPU this process may use unless told otherwise', async () => {
    const gz = new ParallelGzip();
    expect(gz.stats.workers).toBe(availableParallelism());
    gz.destroy();
    const two = await compress(Buffer.alloc(10), { workers: 2 });
    expect(two.stats.workers).toBe(2);
  });

  it('rejects bad settings with the setting named', () => {
    expect(() => new ParallelGzip({ workers: 0 })).toThrow(
      /gzip workers must be a whole number >= 1 \(got 0\)/,
    );
    expect(() => new ParallelGzip({ chunkBytes: 0.5 })).toThrow(/gzip chunk size must be a positive/);
  });
});
