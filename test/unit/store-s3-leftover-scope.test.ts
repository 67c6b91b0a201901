import {
  AbortMultipartUploadCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../lambda/store/s3.js';

// The leftover sweep aborts multipart uploads older than the lock TTL. Only our archive uploads are
// ours to abort: a store at the bucket root shares the bucket with whatever else writes there.

const s3Mock = mockClient(S3Client);
const NOW = new Date('2026-01-01T12:00:00Z');
const HOUR_AGO = new Date(NOW.getTime() - 3_600_000);

function makeStore(prefix: string): S3ObjectStore {
  return new S3ObjectStore({
    bucket: 'shared-bucket',
    prefix,
    client: new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 't', secretAccessKey: 't' } }),
  });
}

beforeEach(() => {
  s3Mock.reset();
  s3Mock.on(ListPartsCommand).resolves({ Parts: [{ PartNumber: 1, Size: 100 }] });
  s3Mock.on(AbortMultipartUploadCommand).resolves({});
});

describe('S3 leftover sweep: only our own archive uploads', () => {
  it('a store at the bucket root leaves another application’s upload alone', async () => {
    s3Mock.on(ListMultipartUploadsCommand).resolves({
      Uploads: [
        { Key: 'full/backup_20251227_020000.tar.gz', UploadId: 'ours', Initiated: HOUR_AGO },
        { Key: 'videos/holiday.mp4', UploadId: 'theirs', Initiated: HOUR_AGO },
      ],
    });

    const removed = await makeStore('').removeLeftovers({ olderThanMs: 600_000, now: NOW });

    expect(removed.map((l) => l.id)).toEqual(['ours']);
    const aborted = s3Mock.commandCalls(AbortMultipartUploadCommand).map((c) => c.args[0].input.UploadId);
    expect(aborted).toEqual(['ours']);
  });

  it('under a prefix, incremental archives are swept as before', async () => {
    s3Mock.on(ListMultipartUploadsCommand).resolves({
      Uploads: [
        {
          Key: 'media-backups/incremental/backup_20251228_020000.tar.gz',
          UploadId: 'ours',
          Initiated: HOUR_AGO,
        },
      ],
    });

    const removed = await makeStore('media-backups/').removeLeftovers({ olderThanMs: 600_000, now: NOW });

    expect(removed.map((l) => [l.key, l.bytes])).toEqual([
      ['incremental/backup_20251228_020000.tar.gz', 100],
    ]);
  });
});
