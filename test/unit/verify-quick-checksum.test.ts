import { Readable } from 'node:stream';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { runVerify } from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { keysFor } from '../../lambda/core/repository/layout.js';
import { encodeManifest, MANIFEST_FORMAT, MANIFEST_VERSION } from '../../lambda/core/repository/manifest.js';
import { S3ObjectStore } from '../../lambda/store/s3.js';

// Issue 12 section 2: quick verify on S3 compares the stored full-object CRC64NVME and size with the
// metadata; the archive body is never downloaded. (s3rver keeps no checksums: mocked responses.)

const ID = 'backup_20251227_020000';
const KEYS = keysFor('full', ID);
const P = 'media-backups/';
const CRC = 'rosUhgp5mIg=';
const s3Mock = mockClient(S3Client);
const clock = { now: () => new Date('2025-12-28T00:00:00Z') };

function body(bytes: Buffer) {
  return Object.assign(Readable.from([bytes]), {
    transformToByteArray: async () => new Uint8Array(bytes),
    transformToString: async () => bytes.toString('utf8'),
    transformToWebStream: () => {
      throw new Error('not used');
    },
  }) as never;
}

async function stubBackup(metadataCrc: string | undefined): Promise<void> {
  const manifest = await encodeManifest({
    header: {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      backupId: ID,
      type: 'full',
      createdAt: '2025-12-27T02:00:00.000Z',
      baseBackupId: null,
      source: { path: '/media' },
      totals: { files: 1, bytes: 5 },
    },
    entries: [
      {
        path: 'a.jpg',
        type: 'file',
        size: 5,
        mtimeMs: 0,
        mode: 0o644,
        sha256: 'f'.repeat(64),
        archive: KEYS.archive,
      },
    ],
  });
  const metadata = {
    backupId: ID,
    type: 'full',
    archive: {
      key: KEYS.archive,
      bytes: 1000,
      sha256: 'a'.repeat(64),
      ...(metadataCrc ? { crc64nvme: metadataCrc } : {}),
    },
  };
  const listed = [KEYS.archive, KEYS.metadata, KEYS.manifest].map((k) => ({
    Key: P + k,
    Size: 1,
    LastModified: new Date('2025-12-27T02:05:00Z'),
  }));
  s3Mock.on(ListObjectsV2Command, { Prefix: `${P}full/` }).resolves({ Contents: listed, IsTruncated: false });
  s3Mock
    .on(ListObjectsV2Command, { Prefix: `${P}incremental/` })
    .resolves({ Contents: [], IsTruncated: false });
  s3Mock.on(GetObjectCommand, { Key: P + KEYS.manifest }).resolves({ Body: body(manifest) });
  s3Mock
    .on(GetObjectCommand, { Key: P + KEYS.metadata })
    .resolves({ Body: body(Buffer.from(JSON.stringify(metadata))) });
  s3Mock
    .on(GetObjectCommand, { Key: `${P}status/last-verify.json` })
    .rejects(
      Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } }),
    );
  s3Mock.on(PutObjectCommand).resolves({ ETag: '"v"' });
}

function makeStore(): S3ObjectStore {
  return new S3ObjectStore({
    bucket: 'backup-bucket',
    client: new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 't', secretAccessKey: 't' } }),
  });
}

const callList = () =>
  s3Mock.calls().map((c) => {
    const command = c.args[0] as {
      constructor: { name: string };
      input: { Key?: string; Prefix?: string; ChecksumMode?: string };
    };
    const where = command.input.Key ?? command.input.Prefix ?? '';
    return `${command.constructor.name.replace(/Command$/, '')} ${where.slice(P.length)}${command.input.ChecksumMode ? ` ChecksumMode=${command.input.ChecksumMode}` : ''}`;
  });

beforeEach(() => {
  s3Mock.reset();
});

describe('quick verify on S3', () => {
  it('checks the archive by one HeadObject with checksum mode: no download', async () => {
    await stubBackup(CRC);
    s3Mock
      .on(HeadObjectCommand)
      .resolves({ ContentLength: 1000, ChecksumCRC64NVME: CRC, ChecksumType: 'FULL_OBJECT' });

    const result = await runVerify({ store: makeStore(), clock, logger: silentLogger }, {});

    expect(result.status).toBe('SUCCEEDED');
    expect(result.backups[0]).toMatchObject({ ok: true, method: 'checksum', archivesChecked: 1 });
    expect(callList()).toEqual([
      'ListObjectsV2 full/',
      'ListObjectsV2 incremental/',
      `GetObject ${KEYS.manifest}`,
      `GetObject ${KEYS.metadata}`,
      `HeadObject ${KEYS.archive} ChecksumMode=ENABLED`,
      'ListObjectsV2 full/',
      'ListObjectsV2 incremental/',
      'GetObject status/last-verify.json',
      'PutObject status/last-verify.json',
    ]);
  });

  it('a stored checksum other than the recorded one is a problem naming both', async () => {
    await stubBackup(CRC);
    s3Mock
      .on(HeadObjectCommand)
      .resolves({ ContentLength: 1000, ChecksumCRC64NVME: 'AAAAAAAAAAA=', ChecksumType: 'FULL_OBJECT' });

    const result = await runVerify({ store: makeStore(), clock, logger: silentLogger }, { record: false });

    expect(result.status).toBe('FAILED');
    expect(result.backups[0].problems).toEqual([
      `backup ${ID}: archive ${KEYS.archive} has CRC64NVME AAAAAAAAAAA= in the store; the metadata recorded ${CRC} (the object changed or is corrupt)`,
    ]);
    expect(callList()).not.toContain(`GetObject ${KEYS.archive}`);
  });

  it('a size other than the recorded one is a problem', async () => {
    await stubBackup(CRC);
    s3Mock
      .on(HeadObjectCommand)
      .resolves({ ContentLength: 999, ChecksumCRC64NVME: CRC, ChecksumType: 'FULL_OBJECT' });

    const result = await runVerify({ store: makeStore(), clock, logger: silentLogger }, { record: false });

    expect(result.backups[0].problems[0]).toMatch(/is 999 bytes; the metadata recorded 1000/);
  });

  it('an archive stored without a checksum is downloaded and hashed instead', async () => {
    await stubBackup(CRC);
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 1000 });
    s3Mock.on(GetObjectCommand, { Key: P + KEYS.archive }).resolves({ Body: body(Buffer.alloc(1000)) });

    const result = await runVerify({ store: makeStore(), clock, logger: silentLogger }, { record: false });

    expect(result.backups[0]).toMatchObject({ ok: false, method: 'sha256' });
    expect(callList()).toContain(`GetObject ${KEYS.archive}`);
  });

  it('a backup recorded without a checksum (older metadata) is downloaded and hashed', async () => {
    await stubBackup(undefined);
    s3Mock.on(HeadObjectCommand).resolves({ ContentLength: 1000 });
    s3Mock.on(GetObjectCommand, { Key: P + KEYS.archive }).resolves({ Body: body(Buffer.alloc(1000)) });

    const result = await runVerify({ store: makeStore(), clock, logger: silentLogger }, { record: false });

    expect(result.backups[0].method).toBe('sha256');
    expect(callList().filter((c) => c.includes('ChecksumMode'))).toEqual([]);
  });
});
