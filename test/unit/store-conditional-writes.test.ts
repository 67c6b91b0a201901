import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { keysFor } from '../../lambda/core/repository/layout.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { S3ObjectStore } from '../../lambda/store/s3.js';
import { isReplaceableKey, ObjectExistsError } from '../../lambda/store/types.js';

// Issue 12 section 1: backup history is created, never replaced; only locks/ and status/ are.

const MiB = 1024 * 1024;
const BUCKET = 'backup-bucket';
const KEYS = keysFor('full', 'backup_20251227_020000');
const s3Mock = mockClient(S3Client);

function awsError(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: 'client',
    $metadata: { httpStatusCode: status },
    message: `${name} from the mock`,
  });
}

function getObjectOf(bytes: Buffer) {
  return {
    ContentLength: bytes.length,
    ETag: '"stored"',
    Body: Object.assign(Readable.from([bytes]), {
      transformToByteArray: async () => new Uint8Array(bytes),
      transformToString: async () => bytes.toString('utf8'),
      transformToWebStream: () => {
        throw new Error('not used');
      },
    }),
  } as never;
}

function makeStore(): S3ObjectStore {
  return new S3ObjectStore({
    bucket: BUCKET,
    client: new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 't', secretAccessKey: 't' } }),
  });
}

function stubMultipart(): void {
  s3Mock.on(CreateMultipartUploadCommand).resolves({ UploadId: 'upload-1' });
  s3Mock.on(UploadPartCommand).resolves({ ETag: '"part"' });
  s3Mock.on(CompleteMultipartUploadCommand).resolves({});
  s3Mock.on(AbortMultipartUploadCommand).resolves({});
  s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 17 * MiB, LastModified: new Date() });
}

beforeEach(() => {
  s3Mock.reset();
});

describe('which keys may be replaced', () => {
  it.each([
    ['locks/backup.lock', true],
    ['status/last-run.json', true],
    ['status/last-verify.json', true],
    [KEYS.archive, false],
    [KEYS.metadata, false],
    [KEYS.manifest, false],
    ['statusx/a', false],
  ])('%s: %s', (key, replaceable) => {
    expect(isReplaceableKey(key)).toBe(replaceable);
  });
});

describe('S3 store: creates carry If-None-Match: *', () => {
  it.each([KEYS.metadata, KEYS.manifest])('put %s sends IfNoneMatch', async (key) => {
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"x"' });

    await makeStore().put(key, '{}');

    expect(s3Mock.commandCalls(PutObjectCommand)[0]?.args[0].input).toMatchObject({
      Key: `media-backups/${key}`,
      IfNoneMatch: '*',
    });
  });

  it('a status record is replaced without a condition', async () => {
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"x"' });

    await makeStore().put('status/last-run.json', '{}');

    const input = s3Mock.commandCalls(PutObjectCommand)[0]?.args[0].input;
    expect(input?.IfNoneMatch).toBeUndefined();
    expect(input?.IfMatch).toBeUndefined();
  });

  it('a small archive (one PutObject) sends IfNoneMatch', async () => {
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"x"' });
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 5 });

    await makeStore().upload(KEYS.archive, Readable.from([Buffer.from('small')]), { tier: 'archive' });

    expect(s3Mock.commandCalls(PutObjectCommand)[0]?.args[0].input.IfNoneMatch).toBe('*');
  });

  it('a multipart archive sends IfNoneMatch on CompleteMultipartUpload', async () => {
    stubMultipart();

    await makeStore().upload(KEYS.archive, Readable.from([Buffer.alloc(17 * MiB)]), {
      tier: 'archive',
      maxBytes: 17 * MiB,
    });

    expect(s3Mock.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(1);
    expect(s3Mock.commandCalls(CompleteMultipartUploadCommand)[0]?.args[0].input.IfNoneMatch).toBe('*');
  });
});

describe('S3 store: a 412 on a create', () => {
  it('surfaces as ObjectExistsError naming the key, sent once, nothing written', async () => {
    s3Mock.on(PutObjectCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(GetObjectCommand).resolves(getObjectOf(Buffer.from('{"someone":"else"}')));

    const put = makeStore().put(KEYS.manifest, '{"ours":true}');

    await expect(put).rejects.toBeInstanceOf(ObjectExistsError);
    await expect(put).rejects.toThrow(
      `an object already exists at s3://backup-bucket/media-backups/${KEYS.manifest}: refusing to overwrite backup history`,
    );
    // One attempt each time put was awaited above: never retried as if transient.
    expect(s3Mock.commandCalls(PutObjectCommand)).toHaveLength(1);
  });

  it('after a lost answer, a 412 on an object holding exactly our bytes counts as written', async () => {
    s3Mock.on(PutObjectCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(GetObjectCommand).resolves(getObjectOf(Buffer.from('{"ours":true}')));

    await expect(makeStore().put(KEYS.metadata, '{"ours":true}')).resolves.toBeUndefined();
  });

  it('on CompleteMultipartUpload: ObjectExistsError, the upload aborted, nothing else written', async () => {
    stubMultipart();
    s3Mock.on(CompleteMultipartUploadCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(GetObjectCommand).resolves(getObjectOf(Buffer.alloc(3, 1)));

    const upload = makeStore().upload(KEYS.archive, Readable.from([Buffer.alloc(17 * MiB)]), {
      tier: 'archive',
      maxBytes: 17 * MiB,
    });

    await expect(upload).rejects.toThrow(ObjectExistsError);
    expect(s3Mock.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(1);
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
    expect(s3Mock.commandCalls(PutObjectCommand)).toHaveLength(0);
  });

  it('on CompleteMultipartUpload after a lost answer: our own object counts as written', async () => {
    stubMultipart();
    s3Mock.on(CompleteMultipartUploadCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(GetObjectCommand).resolves(getObjectOf(Buffer.alloc(17 * MiB)));

    const result = await makeStore().upload(KEYS.archive, Readable.from([Buffer.alloc(17 * MiB)]), {
      tier: 'archive',
      maxBytes: 17 * MiB,
    });

    expect(result.bytes).toBe(17 * MiB);
  });

  it('on a single-PutObject archive holding other bytes: ObjectExistsError', async () => {
    s3Mock.on(PutObjectCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(GetObjectCommand).resolves(getObjectOf(Buffer.from('other')));

    await expect(
      makeStore().upload(KEYS.archive, Readable.from([Buffer.from('small')]), { tier: 'archive' }),
    ).rejects.toThrow(/an object already exists at .*full\/backup_20251227_020000\.tar\.gz/);
  });
});

describe('folder store: committed files are created exclusively', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'conditional-writes-'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const files = async (dir: string) => (await readdir(dir)).sort();

  it.each([KEYS.manifest, KEYS.metadata])('put refuses to replace %s and keeps the original', async (key) => {
    const store = new FsObjectStore(root);
    await store.put(key, 'original');

    await expect(store.put(key, 'replacement')).rejects.toThrow(
      `an object already exists at file://${root}/${key}: refusing to overwrite backup history`,
    );

    expect(await readFile(path.join(root, key), 'utf8')).toBe('original');
    expect(await files(path.join(root, 'full'))).toEqual([path.basename(key)]);
  });

  it('upload refuses to replace an archive and keeps the original', async () => {
    const store = new FsObjectStore(root);
    await store.upload(KEYS.archive, Readable.from([Buffer.from('original')]));

    await expect(store.upload(KEYS.archive, Readable.from([Buffer.from('replacement')]))).rejects.toThrow(
      ObjectExistsError,
    );

    expect(await readFile(path.join(root, KEYS.archive), 'utf8')).toBe('original');
    expect(await files(path.join(root, 'full'))).toEqual([path.basename(KEYS.archive)]);
  });

  it('status records are replaced', async () => {
    const store = new FsObjectStore(root);
    await store.put('status/last-run.json', 'old');

    await store.put('status/last-run.json', 'new');

    expect(await readFile(path.join(root, 'status/last-run.json'), 'utf8')).toBe('new');
    expect(await files(path.join(root, 'status'))).toEqual(['last-run.json']);
  });
});
