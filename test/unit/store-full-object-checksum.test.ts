import { Readable } from 'node:stream';
import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../lambda/store/s3.js';

// Issue 12 section 2: archives carry S3's full-object CRC64NVME, computed while streaming.

const MiB = 1024 * 1024;
const s3Mock = mockClient(S3Client);

function makeStore(checksums: 'on' | 'off' = 'on'): S3ObjectStore {
  return new S3ObjectStore({
    bucket: 'backup-bucket',
    checksums,
    client: new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 't', secretAccessKey: 't' } }),
  });
}

async function crc64nvme(bytes: Buffer): Promise<string> {
  const crc = new Crc64Nvme();
  crc.update(bytes);
  return Buffer.from(await crc.digest()).toString('base64');
}

/** Distinct bytes, so a CRC over the wrong range cannot match by accident. */
function archiveBytes(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) bytes.writeUInt32LE(i, i);
  return bytes;
}

beforeEach(() => {
  s3Mock.reset();
});

describe('S3 upload: full-object CRC64NVME', () => {
  it('a multipart archive asks for FULL_OBJECT CRC64NVME and sends the whole archive CRC on Complete', async () => {
    const bytes = archiveBytes(17 * MiB);
    const expected = await crc64nvme(bytes);
    s3Mock.on(CreateMultipartUploadCommand).resolves({ UploadId: 'u1' });
    s3Mock.on(UploadPartCommand).resolves({ ETag: '"p"' });
    s3Mock.on(CompleteMultipartUploadCommand).resolves({});
    s3Mock.on(AbortMultipartUploadCommand).resolves({});
    s3Mock
      .on(HeadObjectCommand)
      .resolves({ ContentLength: bytes.length, ChecksumCRC64NVME: expected, ChecksumType: 'FULL_OBJECT' });

    const result = await makeStore().upload('full/backup_20251227_020000.tar.gz', Readable.from([bytes]), {
      tier: 'archive',
      maxBytes: bytes.length,
    });

    expect(s3Mock.commandCalls(CreateMultipartUploadCommand)[0]?.args[0].input).toMatchObject({
      ChecksumAlgorithm: 'CRC64NVME',
      ChecksumType: 'FULL_OBJECT',
    });
    expect(s3Mock.commandCalls(UploadPartCommand)[0]?.args[0].input.ChecksumAlgorithm).toBe('CRC64NVME');
    expect(s3Mock.commandCalls(CompleteMultipartUploadCommand)[0]?.args[0].input).toMatchObject({
      ChecksumCRC64NVME: expected,
      ChecksumType: 'FULL_OBJECT',
      IfNoneMatch: '*',
    });
    expect(s3Mock.commandCalls(HeadObjectCommand)[0]?.args[0].input.ChecksumMode).toBe('ENABLED');
    expect(result).toEqual({
      key: 'full/backup_20251227_020000.tar.gz',
      bytes: bytes.length,
      crc64nvme: expected,
    });
  });

  it('a single-PutObject archive sends its CRC64NVME', async () => {
    const bytes = Buffer.from('a small archive');
    const expected = await crc64nvme(bytes);
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"x"' });
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: bytes.length, ChecksumCRC64NVME: expected });

    const result = await makeStore().upload('full/a.tar.gz', Readable.from([bytes]));

    expect(s3Mock.commandCalls(PutObjectCommand)[0]?.args[0].input).toMatchObject({
      ChecksumAlgorithm: 'CRC64NVME',
      ChecksumCRC64NVME: expected,
    });
    expect(result.crc64nvme).toBe(expected);
  });

  it('a stored checksum that differs from the bytes sent fails the upload', async () => {
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"x"' });
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 3, ChecksumCRC64NVME: 'AAAAAAAAAAA=' });

    await expect(makeStore().upload('full/a.tar.gz', Readable.from([Buffer.from('abc')]))).rejects.toThrow(
      /CRC64NVME is AAAAAAAAAAA=; the bytes sent have .*the backup was not committed/,
    );
  });

  it('records no checksum when the server keeps none, or with checksums off', async () => {
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"x"' });
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 3 });

    const on = await makeStore('on').upload('full/a.tar.gz', Readable.from([Buffer.from('abc')]));
    const off = await makeStore('off').upload('full/b.tar.gz', Readable.from([Buffer.from('abc')]));

    expect(on).toEqual({ key: 'full/a.tar.gz', bytes: 3 });
    expect(off).toEqual({ key: 'full/b.tar.gz', bytes: 3 });
    const offPut = s3Mock.commandCalls(PutObjectCommand)[1]?.args[0].input;
    expect(offPut?.ChecksumAlgorithm).toBeUndefined();
    expect(offPut?.ChecksumCRC64NVME).toBeUndefined();
  });
});

describe('S3 headChecksum', () => {
  it('is one HeadObject with checksum mode: size and the full-object CRC', async () => {
    s3Mock
      .on(HeadObjectCommand)
      .resolves({ ContentLength: 9, ChecksumCRC64NVME: 'rosUhgp5mIg=', ChecksumType: 'FULL_OBJECT' });

    await expect(makeStore().headChecksum('full/a.tar.gz')).resolves.toEqual({
      size: 9,
      crc64nvme: 'rosUhgp5mIg=',
    });
    expect(s3Mock.calls()).toHaveLength(1);
    expect(s3Mock.commandCalls(HeadObjectCommand)[0]?.args[0].input).toEqual({
      Bucket: 'backup-bucket',
      Key: 'media-backups/full/a.tar.gz',
      ChecksumMode: 'ENABLED',
    });
  });

  it('ignores a composite checksum', async () => {
    s3Mock
      .on(HeadObjectCommand)
      .resolves({ ContentLength: 9, ChecksumCRC64NVME: 'abc-3', ChecksumType: 'COMPOSITE' });

    await expect(makeStore().headChecksum('full/a.tar.gz')).resolves.toEqual({ size: 9 });
  });

  it('the CRC64NVME check value is the standard one', async () => {
    expect(Buffer.from(await crc64nvme(Buffer.from('123456789')), 'base64').toString('hex')).toBe(
      'ae8b14860a799888',
    );
  });
});
