import { PassThrough, Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  choosePartSize,
  DEFAULT_PART_SIZE,
  MIN_PART_SIZE,
  S3_MAX_OBJECT_SIZE,
  S3_MAX_PART_SIZE,
  S3_MAX_PARTS,
  S3_MIN_PART_SIZE,
  S3ObjectStore,
} from '../../lambda/store/s3.js';
import {
  LockHeldError,
  ObjectNotFoundError,
  StoreConfigError,
  StoreRequestError,
} from '../../lambda/store/types.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
const BUCKET = 'backup-bucket';

const s3Mock = mockClient(S3Client);

function awsError(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
    message: `${name} from the mock`,
  });
}

/** A GetObject body with the SDK's stream helpers. */
function bodyOf(content: string): GetObjectCommandOutput['Body'] {
  const bytes = Buffer.from(content);
  return Object.assign(Readable.from([bytes]), {
    transformToString: async () => content,
    transformToByteArray: async () => new Uint8Array(bytes),
    transformToWebStream: () => {
      throw new Error('not used');
    },
  });
}

function makeStore(options: { prefix?: string; kmsKeyId?: string; queueSize?: number } = {}): S3ObjectStore {
  return new S3ObjectStore({
    bucket: BUCKET,
    client: new S3Client({
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    }),
    ...options,
  });
}

/** Stubs a multipart upload that succeeds; returns nothing, inspect `s3Mock.commandCalls`. */
function stubMultipart(contentLength: number): void {
  s3Mock.on(CreateMultipartUploadCommand).resolves({ UploadId: 'upload-1' });
  s3Mock.on(UploadPartCommand).resolves({ ETag: '"part"' });
  s3Mock.on(CompleteMultipartUploadCommand).resolves({});
  s3Mock.on(AbortMultipartUploadCommand).resolves({});
  s3Mock.on(HeadObjectCommand).resolves({ ContentLength: contentLength, LastModified: new Date() });
}

beforeEach(() => {
  s3Mock.reset();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('choosePartSize', () => {
  it.each([
    ['unknown size', undefined],
    ['empty', 0],
    ['1 byte', 1],
    ['1 GiB', GiB],
    ['70 GiB', 70 * GiB],
    ['1 TiB', TiB],
    ['5 TiB', S3_MAX_OBJECT_SIZE],
  ])('keeps %s within S3 part limits and 10,000 parts', (_label, maxBytes) => {
    const partSize = choosePartSize(maxBytes);

    expect(partSize).toBeGreaterThanOrEqual(S3_MIN_PART_SIZE);
    expect(partSize).toBeLessThanOrEqual(S3_MAX_PART_SIZE);
    expect(Math.ceil((maxBytes ?? S3_MAX_OBJECT_SIZE) / partSize)).toBeLessThanOrEqual(S3_MAX_PARTS);
  });

  it.each([
    [0, MIN_PART_SIZE],
    [GiB, 8 * MiB],
    [100 * GiB, Math.ceil((100 * GiB * 1.02) / 9000)],
    [S3_MAX_OBJECT_SIZE, Math.ceil((S3_MAX_OBJECT_SIZE * 1.02) / 9000)],
  ])('sizes parts for %d bytes as %d', (maxBytes, expected) => {
    expect(choosePartSize(maxBytes)).toBe(expected);
  });

  it('lets a 5 TiB stream of unknown size fit, with the same parts as an announced 5 TiB', () => {
    expect(choosePartSize()).toBe(DEFAULT_PART_SIZE);
    expect(DEFAULT_PART_SIZE * S3_MAX_PARTS).toBeGreaterThanOrEqual(5 * TiB);
    expect(DEFAULT_PART_SIZE).toBe(choosePartSize(5 * TiB));
  });

  it('never exceeds the 5 GiB part limit', () => {
    expect(choosePartSize(100 * TiB)).toBe(S3_MAX_PART_SIZE);
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('rejects maxBytes %d', (maxBytes) => {
    expect(() => choosePartSize(maxBytes)).toThrow(/`maxBytes` must be a non-negative number/);
  });
});

describe('S3ObjectStore configuration', () => {
  it.each([
    [undefined, `s3://${BUCKET}/media-backups/`],
    ['', `s3://${BUCKET}/`],
    ['team', `s3://${BUCKET}/team/`],
    ['team/media/', `s3://${BUCKET}/team/media/`],
    ['/team/', `s3://${BUCKET}/team/`],
  ])('normalises prefix %j to url %s', (prefix, url) => {
    expect(makeStore({ prefix }).url).toBe(url);
  });

  it.each(['../up', 'a//b', 'a/./b', 'a\\b'])('rejects prefix %j', (prefix) => {
    expect(() => makeStore({ prefix })).toThrow(/`prefix`/);
  });

  it.each(['', 'UPPER', 'a', 'has_underscore', 'bucket/with/slash'])('rejects bucket %j', (bucket) => {
    expect(() => new S3ObjectStore({ bucket })).toThrow(/`bucket`/);
  });

  it.each([0, -1, 1.5])('rejects queueSize %d', (queueSize) => {
    expect(() => makeStore({ queueSize })).toThrow(/`queueSize` must be a positive integer/);
  });

  it.each([
    ['off', 'WHEN_REQUIRED'],
    ['on', 'WHEN_SUPPORTED'],
    [undefined, 'WHEN_SUPPORTED'],
  ] as const)('checksums %s builds a client calculating checksums %s', async (checksums, expected) => {
    const store = new S3ObjectStore({ bucket: BUCKET, region: 'eu-west-1', checksums });

    await expect(store.client.config.requestChecksumCalculation()).resolves.toBe(expected);
    await expect(store.client.config.responseChecksumValidation()).resolves.toBe(expected);
  });
});

describe('S3ObjectStore.upload', () => {
  it('puts a small archive in one PutObject with STANDARD_IA under the prefix and reports the stored size', async () => {
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"x"' });
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 1234 });
    const store = makeStore({ prefix: 'team' });

    const result = await store.upload('full/a.tar.gz', Readable.from([Buffer.from('small')]), {
      tier: 'archive',
      contentType: 'application/gzip',
    });

    expect(result).toEqual({ key: 'full/a.tar.gz', bytes: 1234 });
    expect(s3Mock.commandCalls(PutObjectCommand)[0]?.args[0].input).toMatchObject({
      Bucket: BUCKET,
      Key: 'team/full/a.tar.gz',
      StorageClass: 'STANDARD_IA',
      ContentType: 'application/gzip',
    });
    expect(s3Mock.commandCalls(HeadObjectCommand)[0]?.args[0].input).toEqual({
      Bucket: BUCKET,
      Key: 'team/full/a.tar.gz',
      ChecksumMode: 'ENABLED',
    });
  });

  it('uses STANDARD when no tier is given', async () => {
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"x"' });
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 5 });

    await makeStore().upload('status/x.json', Readable.from([Buffer.from('small')]));

    expect(s3Mock.commandCalls(PutObjectCommand)[0]?.args[0].input.StorageClass).toBe('STANDARD');
  });

  it('streams a large archive as a multipart upload with STANDARD_IA and SSE-KMS', async () => {
    stubMultipart(17 * MiB);
    const store = makeStore({ kmsKeyId: 'arn:aws:kms:eu-west-1:111122223333:key/k1' });

    const result = await store.upload('full/a.tar.gz', Readable.from([Buffer.alloc(17 * MiB)]), {
      tier: 'archive',
      maxBytes: 17 * MiB,
    });

    expect(result.bytes).toBe(17 * MiB);
    expect(s3Mock.commandCalls(CreateMultipartUploadCommand)[0]?.args[0].input).toMatchObject({
      Bucket: BUCKET,
      Key: 'media-backups/full/a.tar.gz',
      StorageClass: 'STANDARD_IA',
      ServerSideEncryption: 'aws:kms',
      SSEKMSKeyId: 'arn:aws:kms:eu-west-1:111122223333:key/k1',
    });
    expect(s3Mock.commandCalls(UploadPartCommand)).toHaveLength(3);
    expect(s3Mock.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(1);
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(0);
  });

  it('derives the part size from maxBytes', async () => {
    stubMultipart(30 * MiB);
    const maxBytes = 100 * GiB;

    await makeStore().upload('full/a.tar.gz', Readable.from([Buffer.alloc(30 * MiB)]), { maxBytes });

    const partSizes = s3Mock
      .commandCalls(UploadPartCommand)
      .map((call) => (call.args[0].input.Body as Buffer).byteLength);
    expect(partSizes.sort((a, b) => b - a)[0]).toBe(choosePartSize(maxBytes));
  });

  it('aborts the multipart upload and names the key when a part fails', async () => {
    stubMultipart(0);
    const partError = awsError('InternalError', 500);
    s3Mock.on(UploadPartCommand, { PartNumber: 2 }).rejects(partError);

    const upload = makeStore().upload('full/a.tar.gz', Readable.from([Buffer.alloc(17 * MiB)]), {
      tier: 'archive',
      maxBytes: 17 * MiB,
    });

    await expect(upload).rejects.toThrow(
      /S3 UploadPart failed for s3:\/\/backup-bucket\/media-backups\/full\/a\.tar\.gz: InternalError/,
    );
    await expect(upload).rejects.toMatchObject({ name: 'StoreRequestError', cause: partError });
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)[0]?.args[0].input).toEqual({
      Bucket: BUCKET,
      Key: 'media-backups/full/a.tar.gz',
      UploadId: 'upload-1',
    });
    expect(s3Mock.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
    expect(s3Mock.commandCalls(HeadObjectCommand)).toHaveLength(0);
  });

  it('stops reading the body when a part fails instead of draining it', { timeout: 10_000 }, async () => {
    stubMultipart(0);
    s3Mock.on(UploadPartCommand, { PartNumber: 2 }).rejects(awsError('InternalError', 500));
    // Never ended: lib-storage alone would wait for more data for ever.
    const body = new PassThrough();
    body.write(Buffer.alloc(17 * MiB));

    await expect(makeStore().upload('full/a.tar.gz', body, { maxBytes: 20 * MiB })).rejects.toBeInstanceOf(
      StoreRequestError,
    );
    expect(body.destroyed).toBe(true);
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
  });

  it('rethrows the body error itself and aborts the multipart upload', async () => {
    stubMultipart(0);
    const bodyError = new Error('tar writer failed');
    async function* failingBody() {
      yield Buffer.alloc(9 * MiB);
      throw bodyError;
    }

    await expect(
      makeStore().upload('full/a.tar.gz', Readable.from(failingBody()), { maxBytes: 20 * MiB }),
    ).rejects.toBe(bodyError);
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
    expect(s3Mock.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
  });

  it('keeps the body error when aborting the multipart upload fails too', async () => {
    stubMultipart(0);
    s3Mock.on(AbortMultipartUploadCommand).rejects(awsError('MethodNotAllowed', 405));
    const bodyError = new Error('tar writer failed');
    async function* failingBody() {
      yield Buffer.alloc(9 * MiB);
      throw bodyError;
    }

    await expect(
      makeStore().upload('full/a.tar.gz', Readable.from(failingBody()), { maxBytes: 20 * MiB }),
    ).rejects.toBe(bodyError);
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
  });

  it('reports the failed part, not the failed abort, when both fail', async () => {
    stubMultipart(0);
    const partError = awsError('InternalError', 500);
    s3Mock.on(UploadPartCommand, { PartNumber: 2 }).rejects(partError);
    s3Mock.on(AbortMultipartUploadCommand).rejects(awsError('AccessDenied', 403));

    const upload = makeStore().upload('full/a.tar.gz', Readable.from([Buffer.alloc(17 * MiB)]), {
      maxBytes: 17 * MiB,
    });

    await expect(upload).rejects.toThrow(
      /S3 UploadPart failed for .*full\/a\.tar\.gz: InternalError.*aborting the multipart upload failed too \(AccessDenied/,
    );
    await expect(upload).rejects.toMatchObject({ cause: partError });
  });

  it('aborts the multipart upload when the signal aborts mid-stream', { timeout: 10_000 }, async () => {
    stubMultipart(0);
    let partStarted!: () => void;
    const started = new Promise<void>((resolve) => {
      partStarted = resolve;
    });
    s3Mock.on(UploadPartCommand).callsFake(async () => {
      partStarted();
      return { ETag: '"part"' };
    });
    const controller = new AbortController();
    const body = new PassThrough();
    body.write(Buffer.alloc(9 * MiB));

    const upload = makeStore().upload('full/a.tar.gz', body, {
      maxBytes: 20 * MiB,
      signal: controller.signal,
    });
    await started;
    controller.abort();

    await expect(upload).rejects.toMatchObject({ name: 'AbortError' });
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
    expect(s3Mock.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
    expect(body.destroyed).toBe(true);
  });

  it('sends nothing when the signal is already aborted', async () => {
    const body = Readable.from([Buffer.from('x')]);

    await expect(
      makeStore().upload('full/a.tar.gz', body, { signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(s3Mock.calls()).toHaveLength(0);
    expect(body.destroyed).toBe(true);
  });

  it('refuses an archive larger than S3 allows', async () => {
    await expect(
      makeStore().upload('full/a.tar.gz', Readable.from([]), { maxBytes: S3_MAX_OBJECT_SIZE + 1 }),
    ).rejects.toThrow(/more than the 5 TiB S3 allows per object/);
    expect(s3Mock.calls()).toHaveLength(0);
  });

  it.each(['../escape', '/abs', 'a//b'])('refuses unsafe key %j', async (key) => {
    await expect(makeStore().upload(key, Readable.from([]))).rejects.toBeInstanceOf(StoreConfigError);
    expect(s3Mock.calls()).toHaveLength(0);
  });
});

describe('S3ObjectStore.put', () => {
  it('writes STANDARD with the content type under the prefix', async () => {
    s3Mock.on(PutObjectCommand).resolves({});

    await makeStore().put('full/a.metadata.json', '{}', { contentType: 'application/json' });

    expect(s3Mock.commandCalls(PutObjectCommand)[0]?.args[0].input).toEqual({
      IfNoneMatch: '*',
      Bucket: BUCKET,
      Key: 'media-backups/full/a.metadata.json',
      StorageClass: 'STANDARD',
      ContentType: 'application/json',
      Body: '{}',
    });
  });

  it('writes STANDARD_IA for the archive tier and asks for SSE-KMS when a key is set', async () => {
    s3Mock.on(PutObjectCommand).resolves({});

    await makeStore({ kmsKeyId: 'alias/backups' }).put('full/a.tar.gz', Buffer.from('x'), {
      tier: 'archive',
    });

    expect(s3Mock.commandCalls(PutObjectCommand)[0]?.args[0].input).toMatchObject({
      StorageClass: 'STANDARD_IA',
      ServerSideEncryption: 'aws:kms',
      SSEKMSKeyId: 'alias/backups',
    });
  });

  it('wraps S3 errors with the bucket, key and original error', async () => {
    const denied = awsError('AccessDenied', 403);
    s3Mock.on(PutObjectCommand).rejects(denied);

    const put = makeStore().put('status/last-run.json', '{}');

    await expect(put).rejects.toThrow(
      /S3 PutObject failed for s3:\/\/backup-bucket\/media-backups\/status\/last-run\.json: AccessDenied.*HTTP 403.*IAM policy/,
    );
    await expect(put).rejects.toMatchObject({ cause: denied });
  });

  const networkError = (name: string, message: string, code?: string) =>
    Object.assign(new Error(message), { name, ...(code ? { code } : {}), $metadata: { attempts: 3 } });

  it.each([
    [
      'an idle timeout',
      networkError('TimeoutError', 'the request socket timed out after 60000 ms of inactivity'),
      /TimeoutError: .* \(after 3 attempts\); no data moved for 60000 ms: .*raise S3_IDLE_TIMEOUT_MS/,
    ],
    [
      'a connect timeout',
      networkError(
        'TimeoutError',
        'the request socket did not establish a connection with the server within 5000 ms',
      ),
      /no connection within 5000 ms: check the endpoint .*S3_CONNECT_TIMEOUT_MS/,
    ],
    [
      'a reset (which the SDK also names TimeoutError)',
      networkError('TimeoutError', 'socket hang up', 'ECONNRESET'),
      /socket hang up \(after 3 attempts\); the connection failed or was cut/,
    ],
    [
      'a server error after the retries',
      awsError('ServiceUnavailable', 503),
      /HTTP 503.*S3 kept failing after the retries/,
    ],
    ['a bare 403', awsError('Forbidden', 403), /HTTP 403.*IAM policy/],
  ])('names %s with a hint', async (_name, error, message) => {
    s3Mock.on(PutObjectCommand).rejects(error);

    const put = makeStore().put('full/backup_20251227_020000.manifest.jsonl.gz', 'x');

    await expect(put).rejects.toMatchObject({
      name: 'StoreRequestError',
      operation: 'PutObject',
      location: 's3://backup-bucket/media-backups/full/backup_20251227_020000.manifest.jsonl.gz',
    });
    await expect(put).rejects.toThrow(message);
  });

  it('a PUT that failed on every attempt but whose bytes are stored counts as written', async () => {
    s3Mock.on(PutObjectCommand).rejects(networkError('TimeoutError', 'socket hang up', 'ECONNRESET'));
    s3Mock.on(GetObjectCommand).resolves({ ETag: '"e"', Body: bodyOf('{"committed":true}') });

    await expect(makeStore().put('full/a.manifest.jsonl.gz', '{"committed":true}')).resolves.toBeUndefined();
  });

  it('a PUT that failed while other bytes are stored fails', async () => {
    s3Mock.on(PutObjectCommand).rejects(networkError('TimeoutError', 'socket hang up', 'ECONNRESET'));
    s3Mock.on(GetObjectCommand).resolves({ ETag: '"e"', Body: bodyOf('{"older":true}') });

    await expect(makeStore().put('status/last-run.json', '{"newer":true}')).rejects.toThrow(
      /S3 PutObject failed/,
    );
  });
});

describe('S3ObjectStore reads', () => {
  it('get returns the object bytes', async () => {
    s3Mock.on(GetObjectCommand, { Key: 'media-backups/a.json' }).resolves({ Body: bodyOf('{"a":1}') });

    await expect(makeStore().get('a.json')).resolves.toEqual(Buffer.from('{"a":1}'));
  });

  it.each([
    ['NoSuchKey', 404],
    ['NotFound', 404],
  ])('get returns undefined on %s', async (name, status) => {
    s3Mock.on(GetObjectCommand).rejects(awsError(name, status));

    await expect(makeStore().get('a.json')).resolves.toBeUndefined();
  });

  it('get fails on a missing bucket instead of reporting a missing object', async () => {
    s3Mock.on(GetObjectCommand).rejects(awsError('NoSuchBucket', 404));

    await expect(makeStore().get('a.json')).rejects.toThrow(/GetObject failed.*NoSuchBucket.*bucket name/);
  });

  it('getStream streams the body', async () => {
    s3Mock.on(GetObjectCommand).resolves({ Body: bodyOf('archive bytes') });

    const stream = await makeStore().getStream('full/a.tar.gz');

    await expect(text(stream)).resolves.toBe('archive bytes');
  });

  it('getStream throws ObjectNotFoundError for a missing object', async () => {
    s3Mock.on(GetObjectCommand).rejects(awsError('NoSuchKey', 404));

    const read = makeStore().getStream('full/a.tar.gz');

    await expect(read).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(read).rejects.toThrow(
      /full\/a\.tar\.gz does not exist in s3:\/\/backup-bucket\/media-backups\//,
    );
  });

  it('head returns size and date with the unprefixed key', async () => {
    const lastModified = new Date('2025-12-27T02:00:00Z');
    s3Mock
      .on(HeadObjectCommand, { Key: 'media-backups/full/a.tar.gz' })
      .resolves({ ContentLength: 42, LastModified: lastModified });

    await expect(makeStore().head('full/a.tar.gz')).resolves.toEqual({
      key: 'full/a.tar.gz',
      size: 42,
      lastModified,
    });
  });

  it('head returns undefined on NotFound', async () => {
    s3Mock.on(HeadObjectCommand).rejects(awsError('NotFound', 404));

    await expect(makeStore().head('full/a.tar.gz')).resolves.toBeUndefined();
  });

  it('head rethrows other errors with the key', async () => {
    s3Mock.on(HeadObjectCommand).rejects(awsError('Forbidden', 403));

    await expect(makeStore().head('full/a.tar.gz')).rejects.toThrow(
      /HeadObject failed for s3:\/\/backup-bucket\/media-backups\/full\/a\.tar\.gz: Forbidden/,
    );
  });

  it('list follows continuation tokens and returns sorted keys relative to the prefix', async () => {
    const date = new Date('2025-12-27T02:00:00Z');
    s3Mock.on(ListObjectsV2Command, { ContinuationToken: undefined }).resolves({
      IsTruncated: true,
      NextContinuationToken: 'page-2',
      Contents: [
        { Key: 'media-backups/full/b.tar.gz', Size: 2, LastModified: date },
        { Key: 'media-backups/full/', Size: 0, LastModified: date },
      ],
    });
    s3Mock.on(ListObjectsV2Command, { ContinuationToken: 'page-2' }).resolves({
      IsTruncated: false,
      Contents: [{ Key: 'media-backups/full/a.tar.gz', Size: 1, LastModified: date }],
    });

    const objects = await makeStore().list('full/');

    expect(objects).toEqual([
      { key: 'full/a.tar.gz', size: 1, lastModified: date },
      { key: 'full/b.tar.gz', size: 2, lastModified: date },
    ]);
    expect(s3Mock.commandCalls(ListObjectsV2Command).map((call) => call.args[0].input)).toEqual([
      { Bucket: BUCKET, Prefix: 'media-backups/full/', ContinuationToken: undefined },
      { Bucket: BUCKET, Prefix: 'media-backups/full/', ContinuationToken: 'page-2' },
    ]);
  });

  it('list rejects a prefix that escapes the store', async () => {
    await expect(makeStore().list('../other/')).rejects.toBeInstanceOf(StoreConfigError);
  });
});

describe('S3ObjectStore.acquireLock', () => {
  const LOCK_KEY = 'media-backups/locks/backup.lock';
  const NOW = new Date('2025-12-27T02:00:00Z');

  function lockBody(state: 'held' | 'released', expiresAt: string): GetObjectCommandOutput['Body'] {
    return bodyOf(
      JSON.stringify({ owner: 'lambda:req-1', acquiredAt: '2025-12-27T01:00:00.000Z', expiresAt, state }),
    );
  }

  function lockWrites() {
    return s3Mock.commandCalls(PutObjectCommand).map((call) => {
      const { IfMatch, IfNoneMatch, Key, Body } = call.args[0].input;
      return { IfMatch, IfNoneMatch, Key, record: JSON.parse(String(Body)) };
    });
  }

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] });
    vi.setSystemTime(NOW);
  });

  it('creates the lock with If-None-Match: *', async () => {
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"e1"' });

    await makeStore().acquireLock('backup', { owner: 'cli:me', ttlMs: 60_000 });

    expect(lockWrites()).toEqual([
      {
        IfMatch: undefined,
        IfNoneMatch: '*',
        Key: LOCK_KEY,
        record: {
          owner: 'cli:me',
          acquiredAt: NOW.toISOString(),
          expiresAt: new Date(NOW.getTime() + 60_000).toISOString(),
          state: 'held',
          nonce: expect.stringMatching(/^[0-9a-f]{16}$/),
        },
      },
    ]);
  });

  it('throws LockHeldError naming the holder when a live lock exists', async () => {
    s3Mock.on(PutObjectCommand, { IfNoneMatch: '*' }).rejects(awsError('PreconditionFailed', 412));
    s3Mock
      .on(GetObjectCommand)
      .resolves({ ETag: '"held"', Body: lockBody('held', '2025-12-27T02:05:00.000Z') });

    const acquire = makeStore().acquireLock('backup', { owner: 'cli:me', ttlMs: 60_000 });

    await expect(acquire).rejects.toBeInstanceOf(LockHeldError);
    await expect(acquire).rejects.toThrow(/a backup is already running.*lambda:req-1/);
    expect(s3Mock.commandCalls(PutObjectCommand, { IfMatch: '"held"' })).toHaveLength(0);
  });

  it.each([
    ['expired', lockBody('held', '2025-12-27T01:59:59.000Z')],
    ['released', lockBody('released', '2025-12-27T02:30:00.000Z')],
    ['unreadable', bodyOf('not json')],
  ])('takes over an %s lock with If-Match on its ETag', async (_state, body) => {
    s3Mock.on(PutObjectCommand, { IfNoneMatch: '*' }).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(GetObjectCommand).resolves({ ETag: '"old"', Body: body });
    s3Mock.on(PutObjectCommand, { IfMatch: '"old"' }).resolves({ ETag: '"mine"' });

    await makeStore().acquireLock('backup', { owner: 'cli:me', ttlMs: 60_000 });

    expect(lockWrites()[1]).toMatchObject({ IfMatch: '"old"', Key: LOCK_KEY, record: { owner: 'cli:me' } });
  });

  it('an unreadable lock written less than a TTL ago is held, not taken over', async () => {
    s3Mock.on(PutObjectCommand, { IfNoneMatch: '*' }).rejects(awsError('PreconditionFailed', 412));
    s3Mock
      .on(GetObjectCommand)
      .resolves({ ETag: '"old"', Body: bodyOf(''), LastModified: new Date(NOW.getTime() - 1000) });

    await expect(
      makeStore().acquireLock('backup', { owner: 'cli:me', ttlMs: 60_000 }),
    ).rejects.toBeInstanceOf(LockHeldError);
    expect(s3Mock.commandCalls(PutObjectCommand, { IfMatch: '"old"' })).toHaveLength(0);
  });

  it('throws LockHeldError when another run wins the takeover', async () => {
    s3Mock.on(PutObjectCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(GetObjectCommand).resolves({ ETag: '"old"', Body: lockBody('released', NOW.toISOString()) });

    await expect(makeStore().acquireLock('backup', { owner: 'cli:me', ttlMs: 60_000 })).rejects.toThrow(
      /a backup is already running/,
    );
  });

  it('rethrows other S3 errors with the lock key', async () => {
    s3Mock.on(PutObjectCommand).rejects(awsError('AccessDenied', 403));

    await expect(makeStore().acquireLock('backup', { owner: 'cli:me', ttlMs: 60_000 })).rejects.toThrow(
      /PutObject failed for s3:\/\/backup-bucket\/media-backups\/locks\/backup\.lock: AccessDenied/,
    );
  });

  it('releases by overwriting with state released and If-Match, never deleting', async () => {
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"e1"' });
    const lock = await makeStore().acquireLock('backup', { owner: 'cli:me', ttlMs: 60_000 });

    await lock.release();
    await lock.release();

    const writes = lockWrites();
    expect(writes).toHaveLength(2);
    expect(writes[1]).toMatchObject({ IfMatch: '"e1"', Key: LOCK_KEY, record: { state: 'released' } });
    expect(s3Mock.commandCalls(DeleteObjectCommand)).toHaveLength(0);
  });

  it('renews with If-Match on the last ETag and releases with the renewed one', async () => {
    s3Mock.on(PutObjectCommand, { IfNoneMatch: '*' }).resolves({ ETag: '"e1"' });
    s3Mock.on(PutObjectCommand, { IfMatch: '"e1"' }).resolves({ ETag: '"e2"' });
    s3Mock.on(PutObjectCommand, { IfMatch: '"e2"' }).resolves({ ETag: '"e3"' });
    const lock = await makeStore().acquireLock('backup', { owner: 'cli:me', ttlMs: 60_000 });

    await vi.advanceTimersByTimeAsync(20_000);
    await lock.release();

    const writes = lockWrites();
    expect(writes.map((write) => [write.IfMatch, write.record.state])).toEqual([
      [undefined, 'held'],
      ['"e1"', 'held'],
      ['"e2"', 'released'],
    ]);
    expect(writes[1]?.record.expiresAt).toBe(new Date(NOW.getTime() + 20_000 + 60_000).toISOString());
  });

  it('does not release a lock that was taken over while renewing failed', async () => {
    s3Mock.on(PutObjectCommand, { IfNoneMatch: '*' }).resolves({ ETag: '"e1"' });
    s3Mock.on(PutObjectCommand, { IfMatch: '"e1"' }).rejects(awsError('PreconditionFailed', 412));
    const lock = await makeStore().acquireLock('backup', { owner: 'cli:me', ttlMs: 60_000 });

    await vi.advanceTimersByTimeAsync(40_000);
    await lock.release();

    expect(lockWrites().map((write) => write.IfMatch)).toEqual([undefined, '"e1"']);
  });
});
