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
import { beforeEach, describe, expect, it } from 'vitest';
import { keysFor } from '../../lambda/core/repository/layout.js';
import { S3ObjectStore } from '../../lambda/store/s3.js';

// A 412 on a create after a lost answer is accepted only when the stored object is provably ours.
// When the read-back that would prove it fails, the error must say so, not blame "another run".

const MiB = 1024 * 1024;
const KEYS = keysFor('full', 'backup_20251227_020000');
const s3Mock = mockClient(S3Client);

function awsError(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
    message: `${name} from the mock`,
  });
}

function makeStore(): S3ObjectStore {
  return new S3ObjectStore({
    bucket: 'backup-bucket',
    client: new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 't', secretAccessKey: 't' } }),
  });
}

beforeEach(() => {
  s3Mock.reset();
});

describe('S3 store: a 412 whose read-back fails', () => {
  it('put: a StoreRequestError naming the failed read-back, not ObjectExistsError', async () => {
    s3Mock.on(PutObjectCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(GetObjectCommand).rejects(awsError('ServiceUnavailable', 503));

    const error = await makeStore()
      .put(KEYS.metadata, '{"ours":true}')
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );

    expect(error?.name).toBe('StoreRequestError');
    expect(error?.message).toMatch(/PutObject failed for s3:\/\/backup-bucket\/media-backups\/full\//);
    expect(error?.message).toMatch(/reading it back .* failed: ServiceUnavailable/);
  });

  it('multipart upload: a StoreRequestError naming the failed read-back, not ObjectExistsError', async () => {
    s3Mock.on(CreateMultipartUploadCommand).resolves({ UploadId: 'upload-1' });
    s3Mock.on(UploadPartCommand).resolves({ ETag: '"part"' });
    s3Mock.on(CompleteMultipartUploadCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(AbortMultipartUploadCommand).resolves({});
    s3Mock.on(HeadObjectCommand).rejects(awsError('ServiceUnavailable', 503));
    s3Mock.on(GetObjectCommand).rejects(awsError('ServiceUnavailable', 503));

    const error = await makeStore()
      .upload(KEYS.archive, Readable.from([Buffer.alloc(17 * MiB)]), { tier: 'archive', maxBytes: 17 * MiB })
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );

    expect(error?.name).toBe('StoreRequestError');
    expect(error?.message).toMatch(/CompleteMultipartUpload failed for s3:\/\/backup-bucket\/.*\.tar\.gz/);
    expect(error?.message).toMatch(/reading it back .* failed: ServiceUnavailable/);
  });

  it('a readable object holding other bytes is still ObjectExistsError', async () => {
    s3Mock.on(PutObjectCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(GetObjectCommand).resolves({
      ETag: '"x"',
      Body: Object.assign(Readable.from([Buffer.from('other')]), {
        transformToByteArray: async () => new Uint8Array(Buffer.from('other')),
      }),
    } as never);

    await expect(makeStore().put(KEYS.metadata, '{"ours":true}')).rejects.toMatchObject({
      name: 'ObjectExistsError',
    });
  });
});

describe('S3 store: the last request of an archive upload failed on every attempt', () => {
  const small = Buffer.from('small archive');

  it('counts as written when the object holds exactly our bytes (its answers were lost), like put', async () => {
    s3Mock.on(PutObjectCommand).rejects(awsError('InternalError', 500));
    s3Mock
      .on(GetObjectCommand)
      .resolves({ ContentLength: small.length, Body: Readable.from([small]) } as never);
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: small.length });

    const result = await makeStore().upload(KEYS.archive, Readable.from([small]), { tier: 'archive' });

    expect(result.bytes).toBe(small.length);
  });

  it('says nothing was stored only when nothing is there', async () => {
    s3Mock.on(PutObjectCommand).rejects(awsError('InternalError', 500));
    s3Mock.on(GetObjectCommand).rejects(awsError('NoSuchKey', 404));

    await expect(
      makeStore().upload(KEYS.archive, Readable.from([small]), { tier: 'archive' }),
    ).rejects.toThrow(/PutObject failed for .*InternalError.*nothing was stored under this key/);
  });

  it('does not claim nothing was stored when the object could not be read back', async () => {
    s3Mock.on(PutObjectCommand).rejects(awsError('InternalError', 500));
    s3Mock.on(GetObjectCommand).rejects(awsError('ServiceUnavailable', 503));

    const error = await makeStore()
      .upload(KEYS.archive, Readable.from([small]), { tier: 'archive' })
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );

    expect(error?.name).toBe('StoreRequestError');
    expect(error?.message).not.toMatch(/nothing was stored/);
    expect(error?.message).toMatch(/may have been stored.*reading it back failed: ServiceUnavailable/);
  });
});
