import { randomBytes } from 'node:crypto';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';

const dirs = tempDirs();
const HOUR = 3_600_000;
let source: string;

beforeEach(async () => {
  source = await dirs.make('src-');
  await makeMediaTree(source, { files: 5, seed: 31 });
});
afterEach(() => dirs.cleanup());

async function writeAged(file: string, bytes: number, ageMs: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, Buffer.alloc(bytes));
  const when = new Date(Date.now() - ageMs);
  await utimes(file, when, when);
}

describe('leftovers of killed runs in a folder store', () => {
  it('are listed with key, age and size, and stay invisible to listings', async () => {
    const storeDir = await dirs.make('store-');
    const store = new FsObjectStore(storeDir);
    await writeAged(path.join(storeDir, 'full/backup_20251227_020000.tar.gz.partial-0a1b2c'), 1234, 2 * HOUR);

    expect(await store.listLeftovers()).toEqual([
      {
        key: 'full/backup_20251227_020000.tar.gz',
        kind: 'partial-file',
        since: expect.any(Date),
        bytes: 1234,
        id: 'full/backup_20251227_020000.tar.gz.partial-0a1b2c',
      },
    ]);
    expect(await store.list('')).toEqual([]);
  });

  it('the next backup removes those older than the lock TTL and keeps a young one', async () => {
    const storeDir = await dirs.make('store-');
    const store = new FsObjectStore(storeDir);
    const old = path.join(storeDir, 'full/backup_20251227_020000.tar.gz.partial-0a1b2c');
    const oldLockTemp = path.join(storeDir, 'locks/backup.lock.partial-new-d4e5f6');
    const young = path.join(storeDir, 'full/backup_20251228_020000.tar.gz.partial-778899');
    await writeAged(old, 4096, 2 * HOUR);
    await writeAged(oldLockTemp, 10, 2 * HOUR);
    await writeAged(young, 4096, 60_000);

    await runBackup({ store, clock: tickingClock('2026-01-01T00:00:00Z'), logger: silentLogger }, { source });

    expect((await store.listLeftovers()).map((l) => l.id)).toEqual([
      'full/backup_20251228_020000.tar.gz.partial-778899',
    ]);
    expect(await readdir(path.join(storeDir, 'locks'))).toEqual([]);
  });
});

describe('leftovers of killed runs in an S3 store', () => {
  let s3: S3rverFixture;
  beforeAll(async () => {
    s3 = await startS3rver();
  });
  afterAll(() => s3?.stop());

  it('the next backup aborts multipart uploads older than the lock TTL and keeps a young one', async () => {
    const store = s3.makeStore('killed/');
    const start = async (key: string, ageMs: number) => {
      const { UploadId } = await store.client.send(
        new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: `killed/${key}` }),
      );
      await store.client.send(
        new UploadPartCommand({
          Bucket: s3.bucket,
          Key: `killed/${key}`,
          UploadId,
          PartNumber: 1,
          Body: randomBytes(5 * 1024 * 1024),
        }),
      );
      // s3rver dates an upload by its folder's `key` file.
      const when = new Date(Date.now() - ageMs);
      await utimes(path.join(s3.directory, s3.bucket, '._S3rver_uploads', UploadId!, 'key'), when, when);
      return UploadId;
    };
    await start('full/backup_20251227_020000.tar.gz', 2 * HOUR);
    const youngId = await start('full/backup_20251228_020000.tar.gz', 60_000);

    await runBackup({ store, clock: tickingClock('2026-01-01T00:00:00Z'), logger: silentLogger }, { source });

    expect(await store.listLeftovers()).toEqual([
      expect.objectContaining({
        key: 'full/backup_20251228_020000.tar.gz',
        id: youngId,
        bytes: 5 * 1024 * 1024,
      }),
    ]);
  });
});
