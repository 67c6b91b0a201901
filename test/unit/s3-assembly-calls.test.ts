import { Readable } from 'node:stream';
import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../lambda/store/s3.js';
import {
  ObjectExistsError,
  ObjectNotFoundError,
  SourceChangedError,
  type SourcePin,
  StoreRequestError,
} from '../../lambda/store/types.js';

// Issue 15, S3 assembly: the requests a synthetic full sends, as S3 needs them.

const MiB = 1024 * 1024;
const s3Mock = mockClient(S3Client);
const TARGET = 'full/backup_20261201_020000.tar.gz';
const SOURCE: SourcePin = {
  key: 'full/backup 2026_11_24.tar.gz',
  etag: '"etag-of-source"',
  versionId: 'v1+/=',
  size: 40 * MiB,
};

function makeStore(options: { checksums?: 'on' | 'off'; kmsKeyId?: string } = {}): S3ObjectStore {
  return new S3ObjectStore({
    bucket: 'backup-bucket',
    prefix: 'media-backups/',
    checksums: options.checksums ?? 'on',
    kmsKeyId: options.kmsKeyId,
    client: new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 't', secretAccessKey: 't' } }),
  });
}

function awsError(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
    message: `${name} from the mock`,
  });
}

function bodyOf(bytes: Buffer): GetObjectCommandOutput['Body'] {
  return Object.assign(Readable.from([bytes]), {
    transformToString: async () => bytes.toString(),
    transformToByteArray: async () => new Uint8Array(bytes),
    transformToWebStream: () => {
      throw new Error('not used');
    },
  });
}

async function crcOf(bytes: Buffer): Promise<string> {
  const crc = new Crc64Nvme();
  crc.update(bytes);
  return Buffer.from(await crc.digest()).toString('base64');
}

/** A working multipart upload: the part copy reports its CRC64NVME as S3 does. */
function mockUpload(): void {
  s3Mock.on(CreateMultipartUploadCommand).resolves({ UploadId: 'upload-1' });
  s3Mock.on(UploadPartCommand).resolves({ ETag: '"part-etag"' });
  s3Mock
    .on(UploadPartCopyCommand)
    .resolves({ CopyPartResult: { ETag: '"copy-etag"', ChecksumCRC64NVME: 'AAAAAAAAAAE=' } });
  s3Mock.on(CompleteMultipartUploadCommand).resolves({});
  s3Mock.on(AbortMultipartUploadCommand).resolves({});
}

beforeEach(() => {
  s3Mock.reset();
});

describe('S3 assembly: request shapes', () => {
  it('CreateMultipartUpload asks for the tier, a FULL_OBJECT CRC64NVME and SSE-KMS', async () => {
    mockUpload();
    await makeStore({ kmsKeyId: 'alias/backups' }).assemble(TARGET, {
      tier: 'archive',
      contentType: 'application/gzip',
    });

    expect(s3Mock.commandCalls(CreateMultipartUploadCommand)[0].args[0].input).toEqual({
      Bucket: 'backup-bucket',
      Key: `media-backups/${TARGET}`,
      StorageClass: 'STANDARD_IA',
      ContentType: 'application/gzip',
      ServerSideEncryption: 'aws:kms',
      SSEKMSKeyId: 'alias/backups',
      ChecksumAlgorithm: 'CRC64NVME',
      ChecksumType: 'FULL_OBJECT',
    });
  });

  it('with checksums off (S3-compatible servers) no checksum is asked for or sent', async () => {
    mockUpload();
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 10 });
    const assembly = await makeStore({ checksums: 'off' }).assemble(TARGET);
    await assembly.uploadPart(1, 0, Buffer.alloc(10, 1));
    await assembly.complete({ bytes: 10, crc64nvme: await crcOf(Buffer.alloc(10, 1)) });

    expect(s3Mock.commandCalls(CreateMultipartUploadCommand)[0].args[0].input).not.toHaveProperty(
      'ChecksumAlgorithm',
    );
    expect(s3Mock.commandCalls(UploadPartCommand)[0].args[0].input).not.toHaveProperty('ChecksumCRC64NVME');
    const complete = s3Mock.commandCalls(CompleteMultipartUploadCommand)[0].args[0].input;
    expect(complete).not.toHaveProperty('ChecksumCRC64NVME');
    expect(complete.IfNoneMatch).toBe('*');
  });

  it('parts: UploadPart with its CRC64NVME, UploadPartCopy pinned by version and ETag with the range; Complete lists both in order with their checksums', async () => {
    mockUpload();
    const head = randomish(5 * MiB);
    const expectedCrc = 'q83vEjRWeJA=';
    s3Mock.on(HeadObjectCommand).resolves({
      ContentLength: 11 * MiB,
      ChecksumCRC64NVME: expectedCrc,
      ChecksumType: 'FULL_OBJECT',
    });
    const assembly = await makeStore().assemble(TARGET, { tier: 'archive' });
    // Written out of order, as the executor's concurrency does.
    await assembly.copyPart(2, 5 * MiB, SOURCE, 3 * MiB, 6 * MiB);
    await assembly.uploadPart(1, 0, head);

    const result = await assembly.complete({ bytes: 11 * MiB, crc64nvme: expectedCrc });

    const upload = s3Mock.commandCalls(UploadPartCommand)[0].args[0].input;
    expect(upload).toMatchObject({
      Bucket: 'backup-bucket',
      Key: `media-backups/${TARGET}`,
      UploadId: 'upload-1',
      PartNumber: 1,
      ChecksumAlgorithm: 'CRC64NVME',
      ChecksumCRC64NVME: await crcOf(head),
    });
    expect(s3Mock.commandCalls(UploadPartCopyCommand)[0].args[0].input).toEqual({
      Bucket: 'backup-bucket',
      Key: `media-backups/${TARGET}`,
      UploadId: 'upload-1',
      PartNumber: 2,
      CopySource: 'backup-bucket/media-backups/full/backup%202026_11_24.tar.gz?versionId=v1%2B%2F%3D',
      CopySourceRange: `bytes=${3 * MiB}-${9 * MiB - 1}`,
      CopySourceIfMatch: '"etag-of-source"',
    });
    expect(s3Mock.commandCalls(CompleteMultipartUploadCommand)[0].args[0].input).toEqual({
      Bucket: 'backup-bucket',
      Key: `media-backups/${TARGET}`,
      UploadId: 'upload-1',
      IfNoneMatch: '*',
      ChecksumCRC64NVME: expectedCrc,
      ChecksumType: 'FULL_OBJECT',
      MultipartUpload: {
        Parts: [
          { PartNumber: 1, ETag: '"part-etag"', ChecksumCRC64NVME: await crcOf(head) },
          { PartNumber: 2, ETag: '"copy-etag"', ChecksumCRC64NVME: 'AAAAAAAAAAE=' },
        ],
      },
    });
    expect(s3Mock.commandCalls(HeadObjectCommand)[0].args[0].input).toMatchObject({
      ChecksumMode: 'ENABLED',
    });
    expect(result).toEqual({ key: TARGET, bytes: 11 * MiB, crc64nvme: expectedCrc });
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(0);
  });
});

describe('S3 assembly: failures', () => {
  it('412 on a copy: SourceChangedError naming the source, and the upload is aborted', async () => {
    mockUpload();
    s3Mock.on(UploadPartCopyCommand).rejects(awsError('PreconditionFailed', 412));
    const assembly = await makeStore().assemble(TARGET);

    const copy = assembly.copyPart(1, 0, SOURCE, 0, 6 * MiB);
    await expect(copy).rejects.toThrow(SourceChangedError);
    await expect(copy).rejects.toThrow(
      /source s3:\/\/backup-bucket\/media-backups\/full\/backup 2026_11_24\.tar\.gz changed since it was pinned.*412/,
    );
    await assembly.abort();

    expect(s3Mock.commandCalls(AbortMultipartUploadCommand).map((c) => c.args[0].input)).toEqual([
      { Bucket: 'backup-bucket', Key: `media-backups/${TARGET}`, UploadId: 'upload-1' },
    ]);
    // Stopped: no later part is sent.
    await expect(assembly.uploadPart(2, 6 * MiB, Buffer.alloc(1))).rejects.toThrow(SourceChangedError);
    expect(s3Mock.commandCalls(UploadPartCommand)).toHaveLength(0);
  });

  it.each([
    ['NoSuchKey', 404],
    ['NoSuchVersion', 404],
  ])('%s on a copy: ObjectNotFoundError naming the source; aborted', async (name, status) => {
    mockUpload();
    s3Mock.on(UploadPartCopyCommand).rejects(awsError(name, status));
    const assembly = await makeStore().assemble(TARGET);

    const copy = assembly.copyPart(1, 0, SOURCE, 0, 6 * MiB);
    await expect(copy).rejects.toThrow(ObjectNotFoundError);
    await expect(copy).rejects.toThrow(/object full\/backup 2026_11_24\.tar\.gz does not exist/);
    await assembly.abort();
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
  });

  it('NoSuchUpload on a copy is the upload gone, not the source', async () => {
    mockUpload();
    s3Mock.on(UploadPartCopyCommand).rejects(awsError('NoSuchUpload', 404));
    const assembly = await makeStore().assemble(TARGET);

    await expect(assembly.copyPart(1, 0, SOURCE, 0, 6 * MiB)).rejects.toThrow(
      /S3 UploadPartCopy failed for s3:\/\/backup-bucket\/media-backups\/full\/backup_20261201_020000\.tar\.gz: NoSuchUpload.*aborted or completed by someone else/,
    );
  });

  it('a copy beyond the pinned size is refused before any request', async () => {
    mockUpload();
    const assembly = await makeStore().assemble(TARGET);
    await expect(assembly.copyPart(1, 0, SOURCE, 39 * MiB, 2 * MiB)).rejects.toThrow(
      /the pinned source has 41943040 bytes/,
    );
    expect(s3Mock.commandCalls(UploadPartCopyCommand)).toHaveLength(0);
  });

  it('412 on Complete (the key exists, not with our bytes): ObjectExistsError, aborted', async () => {
    mockUpload();
    s3Mock.on(CompleteMultipartUploadCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 999, ChecksumCRC64NVME: 'AAAAAAAAAAA=' });
    const assembly = await makeStore().assemble(TARGET);
    await assembly.uploadPart(1, 0, Buffer.alloc(10));

    await expect(assembly.complete({ bytes: 10, crc64nvme: await crcOf(Buffer.alloc(10)) })).rejects.toThrow(
      ObjectExistsError,
    );
    await assembly.abort();
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
  });

  it('a Complete whose answer was lost but whose object is ours (size and CRC) counts as written', async () => {
    mockUpload();
    const bytes = Buffer.alloc(10, 7);
    const crc = await crcOf(bytes);
    s3Mock.on(CompleteMultipartUploadCommand).rejects(awsError('PreconditionFailed', 412));
    s3Mock
      .on(HeadObjectCommand)
      .resolves({ ContentLength: 10, ChecksumCRC64NVME: crc, ChecksumType: 'FULL_OBJECT' });
    const assembly = await makeStore().assemble(TARGET);
    await assembly.uploadPart(1, 0, bytes);

    await expect(assembly.complete({ bytes: 10, crc64nvme: crc })).resolves.toEqual({
      key: TARGET,
      bytes: 10,
      crc64nvme: crc,
    });
    await assembly.abort();
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(0);
  });

  it('BadDigest on Complete: names the expected CRC, nothing stored, aborted', async () => {
    mockUpload();
    s3Mock.on(CompleteMultipartUploadCommand).rejects(awsError('BadDigest', 400));
    s3Mock.on(HeadObjectCommand).rejects(awsError('NotFound', 404));
    const assembly = await makeStore().assemble(TARGET);
    await assembly.uploadPart(1, 0, Buffer.alloc(10));

    await expect(assembly.complete({ bytes: 10, crc64nvme: 'AAAAAAAAAAE=' })).rejects.toThrow(
      /CompleteMultipartUpload failed.*BadDigest.*do not have the expected CRC64NVME AAAAAAAAAAE=: nothing was stored/,
    );
    await assembly.abort();
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
  });

  it('a HEAD after Complete with another CRC64NVME is an error (the object is not the assembled one)', async () => {
    mockUpload();
    s3Mock
      .on(HeadObjectCommand)
      .resolves({ ContentLength: 10, ChecksumCRC64NVME: 'AAAAAAAAAAE=', ChecksumType: 'FULL_OBJECT' });
    const assembly = await makeStore().assemble(TARGET);
    await assembly.uploadPart(1, 0, Buffer.alloc(10));

    await expect(assembly.complete({ bytes: 10, crc64nvme: await crcOf(Buffer.alloc(10)) })).rejects.toThrow(
      /CRC64NVME is AAAAAAAAAAE=.*not the assembled one/,
    );
  });

  it('the abort signal: AbortMultipartUpload once, later parts fail with its reason', async () => {
    mockUpload();
    const controller = new AbortController();
    const assembly = await makeStore().assemble(TARGET, { signal: controller.signal });
    controller.abort(new Error('run cancelled'));

    await expect(assembly.uploadPart(1, 0, Buffer.alloc(10))).rejects.toThrow('run cancelled');
    await assembly.abort();
    expect(s3Mock.commandCalls(AbortMultipartUploadCommand)).toHaveLength(1);
    expect(s3Mock.commandCalls(UploadPartCommand)).toHaveLength(0);
  });
});

describe('S3 ranged reads and pins', () => {
  it('getRange sends Range, If-Match and VersionId and returns exactly the bytes', async () => {
    const bytes = randomish(100);
    s3Mock.on(GetObjectCommand).resolves({ Body: bodyOf(bytes) });

    await expect(makeStore().getRange(SOURCE.key, 1000, 100, SOURCE)).resolves.toEqual(bytes);
    expect(s3Mock.commandCalls(GetObjectCommand)[0].args[0].input).toEqual({
      Bucket: 'backup-bucket',
      Key: `media-backups/${SOURCE.key}`,
      Range: 'bytes=1000-1099',
      IfMatch: '"etag-of-source"',
      VersionId: 'v1+/=',
    });
  });

  it('a short body is an error naming the key and the range', async () => {
    s3Mock.on(GetObjectCommand).resolves({ Body: bodyOf(randomish(60)) });
    const read = makeStore().getRange(SOURCE.key, 1000, 100);
    await expect(read).rejects.toThrow(StoreRequestError);
    await expect(read).rejects.toThrow(
      /GetObject failed for s3:\/\/backup-bucket\/media-backups\/full\/backup 2026_11_24\.tar\.gz: Error: bytes=1000-1099 returned 60 bytes, not 100; the object is shorter/,
    );
  });

  it.each([
    ['PreconditionFailed', 412, SourceChangedError],
    ['NoSuchKey', 404, ObjectNotFoundError],
  ])('%s on a pinned read: %o', async (name, status, type) => {
    s3Mock.on(GetObjectCommand).rejects(awsError(name, status));
    await expect(makeStore().getRange(SOURCE.key, 0, 10, SOURCE)).rejects.toThrow(type);
  });

  it('pinSource: size, ETag and version from one HeadObject; undefined when missing', async () => {
    s3Mock
      .on(HeadObjectCommand, { Key: `media-backups/${SOURCE.key}` })
      .resolves({ ContentLength: 123, ETag: '"e1"', VersionId: 'v9' })
      .on(HeadObjectCommand, { Key: 'media-backups/full/gone.tar.gz' })
      .rejects(awsError('NotFound', 404));

    await expect(makeStore().pinSource(SOURCE.key)).resolves.toEqual({
      key: SOURCE.key,
      size: 123,
      etag: '"e1"',
      versionId: 'v9',
    });
    await expect(makeStore().pinSource('full/gone.tar.gz')).resolves.toBeUndefined();
  });
});

/** Distinct bytes, so a checksum over the wrong range cannot match by accident. */
function randomish(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1) bytes[i] = (i * 2654435761) >>> 24;
  return bytes;
}
