import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { openStore } from '../../lambda/store/open-store.js';
import { S3ObjectStore } from '../../lambda/store/s3.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';

const MiB = 1024 * 1024;

/** `chunks` MiB of random bytes; `hash` holds their sha256 once the stream has been read. */
function randomStream(chunks: number, failAfter?: number): { body: Readable; hash: () => string } {
  const digest = createHash('sha256');
  async function* generate() {
    for (let index = 0; index < chunks; index += 1) {
      if (index === failAfter) throw new Error('source disk went away');
      const chunk = randomBytes(MiB);
      digest.update(chunk);
      yield chunk;
    }
  }
  return { body: Readable.from(generate()), hash: () => digest.digest('hex') };
}

async function sha256(stream: Readable): Promise<string> {
  const digest = createHash('sha256');
  await pipeline(stream, digest);
  return digest.digest('hex');
}

describe('S3ObjectStore against s3rver', () => {
  let s3rver: S3rverFixture;

  beforeAll(async () => {
    s3rver = await startS3rver();
  });

  afterAll(async () => {
    await s3rver?.stop();
  });

  it('uploads a 20 MiB stream in several parts and streams the same bytes back', async () => {
    const store = s3rver.makeStore();
    const source = randomStream(20);

    const result = await store.upload('full/backup_20251227_020000.tar.gz', source.body, {
      tier: 'archive',
      // 8 MiB parts: three parts.
      maxBytes: 20 * MiB,
    });

    expect(result).toEqual({ key: 'full/backup_20251227_020000.tar.gz', bytes: 20 * MiB });
    await expect(sha256(await store.getStream('full/backup_20251227_020000.tar.gz'))).resolves.toBe(
      source.hash(),
    );
  });

  it('round-trips put, get, head and list under a prefix', async () => {
    const store = s3rver.makeStore('team-a');
    const other = s3rver.makeStore('team-b');
    await other.put('status/last-run.json', '{"other":true}');

    await store.put('status/last-run.json', '{"status":"SUCCEEDED"}', { contentType: 'application/json' });
    await store.put('full/b.metadata.json', Buffer.from('{"b":1}'));
    await store.put('full/a.metadata.json', '{"a":1}');

    await expect(store.get('status/last-run.json')).resolves.toEqual(Buffer.from('{"status":"SUCCEEDED"}'));
    await expect(store.get('status/missing.json')).resolves.toBeUndefined();
    await expect(store.head('full/a.metadata.json')).resolves.toMatchObject({
      key: 'full/a.metadata.json',
      size: 7,
    });
    await expect(store.head('full/missing.json')).resolves.toBeUndefined();
    await expect(store.getStream('full/missing.json')).rejects.toThrow(
      /does not exist in s3:\/\/.*\/team-a\//,
    );
    expect((await store.list('')).map((object) => object.key)).toEqual([
      'full/a.metadata.json',
      'full/b.metadata.json',
      'status/last-run.json',
    ]);
    expect((await store.list('full/')).map((object) => object.key)).toEqual([
      'full/a.metadata.json',
      'full/b.metadata.json',
    ]);
    await expect(other.get('status/last-run.json')).resolves.toEqual(Buffer.from('{"other":true}'));
  });

  it('leaves nothing behind when the body fails midway through a multipart upload', async () => {
    const store = s3rver.makeStore('failing');
    const source = randomStream(20, 12);

    await expect(
      store.upload('full/broken.tar.gz', source.body, { tier: 'archive', maxBytes: 20 * MiB }),
    ).rejects.toThrow('source disk went away');

    await expect(store.head('full/broken.tar.gz')).resolves.toBeUndefined();
    expect((await store.list('')).map((object) => object.key)).not.toContain('full/broken.tar.gz');
    // The parts already sent were aborted, not left billed.
    await expect(store.listLeftovers()).resolves.toEqual([]);
  });

  it('lists a killed run multipart upload with its age and size, and removes it once old enough', async () => {
    const store = s3rver.makeStore('killed');
    const key = 'full/backup_20251227_020000.tar.gz';
    const { UploadId } = await store.client.send(
      new CreateMultipartUploadCommand({ Bucket: s3rver.bucket, Key: `killed/${key}` }),
    );
    await store.client.send(
      new UploadPartCommand({
        Bucket: s3rver.bucket,
        Key: `killed/${key}`,
        UploadId,
        PartNumber: 1,
        Body: randomBytes(5 * MiB),
      }),
    );

    const [leftover, ...more] = await store.listLeftovers();
    expect(more).toEqual([]);
    expect(leftover).toMatchObject({ key, kind: 'multipart-upload', bytes: 5 * MiB, id: UploadId });
    expect(Math.abs(leftover.since.getTime() - Date.now())).toBeLessThan(60_000);

    // Younger than the limit: kept (a run may still be writing it).
    await expect(store.removeLeftovers({ olderThanMs: 3_600_000 })).resolves.toEqual([]);
    await expect(store.listLeftovers()).resolves.toHaveLength(1);
    const later = new Date(Date.now() + 2 * 3_600_000);
    await expect(store.removeLeftovers({ olderThanMs: 3_600_000, now: later })).resolves.toEqual([leftover]);
    await expect(store.listLeftovers()).resolves.toEqual([]);
  });

  it('leaves nothing behind when the upload is aborted', async () => {
    const store = s3rver.makeStore('aborted');
    const controller = new AbortController();
    async function* slowSource() {
      for (let index = 0; index < 20; index += 1) {
        // Abort once a part has been cut, while the stream is still being read.
        if (index === 10) controller.abort();
        yield randomBytes(MiB);
      }
    }

    await expect(
      store.upload('full/aborted.tar.gz', Readable.from(slowSource()), {
        maxBytes: 20 * MiB,
        signal: controller.signal,
      }),
    ).rejects.toMatchObject({ name: 'AbortError' });

    await expect(store.head('full/aborted.tar.gz')).resolves.toBeUndefined();
  });

  it('reports a missing bucket as an error, not as a missing object', async () => {
    const store = new S3ObjectStore({
      bucket: 'no-such-bucket',
      endpoint: s3rver.endpoint,
      forcePathStyle: true,
      checksums: 'off',
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });

    await expect(store.get('status/last-run.json')).rejects.toThrow(
      /S3 GetObject failed for s3:\/\/no-such-bucket\/media-backups\/status\/last-run\.json: NoSuchBucket/,
    );
    store.client.destroy();
  });
});

describe('openStore', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it.each([
    ['s3://my-bucket', 's3://my-bucket/media-backups/'],
    ['s3://my-bucket/', 's3://my-bucket/'],
    ['s3://my-bucket/media-backups/', 's3://my-bucket/media-backups/'],
    ['s3://my-bucket/team/media', 's3://my-bucket/team/media/'],
    ['s3://my-bucket/with%20space/', 's3://my-bucket/with space/'],
  ])('opens %s as an S3 store at %s', async (url, expected) => {
    const store = await openStore(url, { region: 'eu-west-1' });

    expect(store).toBeInstanceOf(S3ObjectStore);
    expect(store.url).toBe(expected);
  });

  it('opens the store its own url names', async () => {
    const first = await openStore('s3://my-bucket/team', { region: 'eu-west-1' });

    expect((await openStore(first.url, { region: 'eu-west-1' })).url).toBe(first.url);
  });

  it.each([
    ['file:///srv/backups', 'file:///srv/backups'],
    ['/srv/backups', 'file:///srv/backups'],
    ['/srv/backups/../other', 'file:///srv/other'],
    ['relative/backups', `file://${path.resolve('relative/backups')}`],
  ])('opens %s as a folder store at %s', async (url, expected) => {
    const store = await openStore(url);

    expect(store).toBeInstanceOf(FsObjectStore);
    expect(store.url).toBe(expected);
  });

  it.each([
    ['http://x', /unsupported store URL "http:\/\/x"/],
    ['ftp://host/path', /unsupported store URL "ftp:\/\/host\/path"/],
    ['s3://', /invalid S3 store URL "s3:\/\/": expected s3:\/\/bucket\/prefix/],
    ['s3:bucket', /invalid S3 store URL "s3:bucket"/],
    ['s3://Bad_Bucket/x', /invalid S3 store URL "s3:\/\/Bad_Bucket\/x": `bucket`/],
    ['s3://my-bucket:9000/x', /invalid S3 store URL "s3:\/\/my-bucket:9000\/x"/],
    ['s3://my-bucket/a/../b', /invalid S3 store URL "s3:\/\/my-bucket\/a\/..\/b": `prefix`/],
    ['s3://my-bucket/%E0%A4%A', /bad %-escape/],
    ['file://remote-host/srv', /invalid file store URL "file:\/\/remote-host\/srv"/],
    ['', /empty store URL/],
  ])('rejects %j', async (url, message) => {
    await expect(openStore(url)).rejects.toThrow(message);
  });

  it('takes S3 settings from the environment when no options are given', async () => {
    vi.stubEnv('S3_ENDPOINT', 'http://127.0.0.1:4568');
    vi.stubEnv('S3_FORCE_PATH_STYLE', 'true');
    vi.stubEnv('S3_CHECKSUMS', 'off');
    vi.stubEnv('AWS_REGION', 'eu-central-1');

    const store = (await openStore('s3://my-bucket/x')) as S3ObjectStore;

    await expect(store.client.config.region()).resolves.toBe('eu-central-1');
    expect(store.client.config.forcePathStyle).toBe(true);
    await expect(store.client.config.requestChecksumCalculation()).resolves.toBe('WHEN_REQUIRED');
    const endpoint = await store.client.config.endpoint?.();
    expect(endpoint?.hostname).toBe('127.0.0.1');
    expect(endpoint?.port).toBe(4568);
  });

  it('prefers explicit options over the environment', async () => {
    vi.stubEnv('S3_CHECKSUMS', 'off');
    vi.stubEnv('AWS_REGION', 'eu-central-1');

    const store = (await openStore('s3://my-bucket/x', {
      checksums: 'on',
      region: 'us-west-2',
    })) as S3ObjectStore;

    await expect(store.client.config.region()).resolves.toBe('us-west-2');
    await expect(store.client.config.requestChecksumCalculation()).resolves.toBe('WHEN_SUPPORTED');
  });

  it('bounds every request with a connect and an idle timeout, from the environment or options', async () => {
    const defaults = (await openStore('s3://my-bucket/x')) as S3ObjectStore;
    expect(defaults.timeouts).toEqual({ connectMs: 5_000, idleMs: 60_000 });
    await expect(defaults.client.config.maxAttempts()).resolves.toBe(3);

    vi.stubEnv('S3_CONNECT_TIMEOUT_MS', '1500');
    vi.stubEnv('S3_IDLE_TIMEOUT_MS', '20000');
    expect(((await openStore('s3://my-bucket/x')) as S3ObjectStore).timeouts).toEqual({
      connectMs: 1_500,
      idleMs: 20_000,
    });
    const explicit = (await openStore('s3://my-bucket/x', { idleTimeoutMs: 700 })) as S3ObjectStore;
    expect(explicit.timeouts).toEqual({ connectMs: 1_500, idleMs: 700 });
  });

  it.each([
    ['S3_CHECKSUMS', 'maybe', /S3_CHECKSUMS must be 'on' or 'off', got "maybe"/],
    ['S3_FORCE_PATH_STYLE', 'yes', /S3_FORCE_PATH_STYLE must be 'true' or 'false', got "yes"/],
    [
      'S3_IDLE_TIMEOUT_MS',
      '60s',
      /S3_IDLE_TIMEOUT_MS must be a positive whole number of milliseconds, got "60s"/,
    ],
    ['S3_CONNECT_TIMEOUT_MS', '0', /S3_CONNECT_TIMEOUT_MS must be a positive whole number/],
  ])('rejects %s=%s', async (name, value, message) => {
    vi.stubEnv(name, value);

    await expect(openStore('s3://my-bucket/x')).rejects.toThrow(message);
  });
});
