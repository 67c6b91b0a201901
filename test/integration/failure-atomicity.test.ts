import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { listCommittedBackups } from '../../lambda/core/repository/catalog.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { S3ObjectStore } from '../../lambda/store/s3.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { faultyStore } from '../fixtures/faulty-store.js';
import { makeMediaTree, randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';

const dirs = tempDirs();
let source: string;
let storeDir: string;

beforeEach(async () => {
  source = await dirs.make('src-');
  storeDir = await dirs.make('store-');
  await makeMediaTree(source, { files: 20, seed: 2 });
  // One big incompressible file, so the archive spans several gzip members and S3 parts.
  await writeFile(path.join(source, 'video.mp4'), randomBytesFrom(seededRandom(9), 12 * 1024 * 1024));
});
afterEach(() => dirs.cleanup());

async function allFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe('a failed backup leaves nothing committed (folder store)', () => {
  it('upload failing midway: no backup listed, no partial file, failure recorded, next run succeeds', async () => {
    const real = new FsObjectStore(storeDir);
    const clock = tickingClock();
    const broken = faultyStore(real, { uploadFailsAfterBytes: 3 * 1024 * 1024 });

    await expect(runBackup({ store: broken, clock, logger: silentLogger }, { source })).rejects.toThrow(
      /injected upload failure/,
    );

    expect(await listCommittedBackups(real)).toEqual([]);
    expect(await allFiles(storeDir)).toEqual(['status/last-run.json']);
    const status = JSON.parse((await real.get('status/last-run.json'))!.toString());
    expect(status).toMatchObject({ status: 'FAILED', error: { message: expect.stringMatching(/injected/) } });

    const next = await runBackup({ store: real, clock, logger: silentLogger }, { source });
    expect(next).toMatchObject({ status: 'SUCCEEDED', type: 'full', files: 21 });
    expect(await listCommittedBackups(real)).toHaveLength(1);
  });

  it('manifest write failing: the uploaded archive is never offered as a backup', async () => {
    const real = new FsObjectStore(storeDir);
    const broken = faultyStore(real, { putFails: /\.manifest\.jsonl\.gz$/ });
    await expect(
      runBackup({ store: broken, clock: tickingClock(), logger: silentLogger }, { source }),
    ).rejects.toThrow(/injected put failure/);
    expect(await listCommittedBackups(real)).toEqual([]);
  });

  it('status write failing after the commit: the good backup is reported as committed with a warning, not FAILED', async () => {
    const real = new FsObjectStore(storeDir);
    const broken = faultyStore(real, { putFails: /^status\/last-run\.json$/ });

    const result = await runBackup(
      { store: broken, clock: tickingClock(), logger: silentLogger },
      { source },
    );

    expect(result.status).toBe('SUCCEEDED');
    expect(result.warnings).toEqual([
      {
        code: 'STATUS_NOT_RECORDED',
        message: expect.stringMatching(/is committed, but status\/last-run\.json/),
      },
    ]);
    expect((await listCommittedBackups(real)).map((b) => b.backupId)).toEqual([result.backupId]);
  });

  it('an abort signal stops the run before commit', async () => {
    const real = new FsObjectStore(storeDir);
    const controller = new AbortController();
    const slow = faultyStore(real, {
      onUploadBytes: { after: 1, run: async () => controller.abort(new Error('deadline near: stopping')) },
    });
    await expect(
      runBackup(
        { store: slow, clock: tickingClock(), logger: silentLogger },
        { source, signal: controller.signal },
      ),
    ).rejects.toThrow(/deadline near/);
    expect(await listCommittedBackups(real)).toEqual([]);
    expect((await allFiles(storeDir)).filter((f) => f.includes('.partial-'))).toEqual([]);
  });

  it.each(['throw', 'exit'] as const)(
    'a gzip worker that fails (%s) fails the backup cleanly: no partial file, lock released, next run succeeds',
    async (kind) => {
      const real = new FsObjectStore(storeDir);
      const clock = tickingClock();
      await expect(
        runBackup(
          { store: real, clock, logger: silentLogger },
          { source, gzip: { workers: 2, fault: { after: 4, kind } } },
        ),
      ).rejects.toThrow(kind === 'throw' ? /gzip worker \d failed/ : /gzip worker \d exited unexpectedly/);
      expect(await listCommittedBackups(real)).toEqual([]);
      expect(await allFiles(storeDir)).toEqual(['status/last-run.json']);
      const status = JSON.parse((await real.get('status/last-run.json'))!.toString());
      expect(status).toMatchObject({
        status: 'FAILED',
        error: { message: expect.stringMatching(/gzip worker/) },
      });

      const next = await runBackup({ store: real, clock, logger: silentLogger }, { source });
      expect(next).toMatchObject({ status: 'SUCCEEDED', type: 'full', files: 21 });
    },
  );
});

describe('a failed backup leaves nothing committed (S3, mocked)', () => {
  const s3 = mockClient(S3Client);
  beforeEach(() => {
    s3.reset();
    s3.on(ListObjectsV2Command).resolves({ Contents: [], IsTruncated: false });
    s3.on(HeadObjectCommand).rejects(
      Object.assign(new Error('NotFound'), { name: 'NotFound', $metadata: { httpStatusCode: 404 } }),
    );
    s3.on(GetObjectCommand).rejects(
      Object.assign(new Error('NoSuchKey'), { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } }),
    );
    s3.on(PutObjectCommand).resolves({ ETag: '"etag-1"' });
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'upload-1' });
    s3.on(AbortMultipartUploadCommand).resolves({});
  });

  it('a part upload error aborts the multipart upload and writes no manifest', async () => {
    s3.on(UploadPartCommand).rejects(
      Object.assign(new Error('We encountered an internal error'), { name: 'InternalError' }),
    );
    const store = new S3ObjectStore({
      bucket: 'bucket-b',
      prefix: 'media-backups/',
      client: new S3Client({ region: 'us-east-1' }),
    });

    await expect(
      runBackup({ store, clock: tickingClock(), logger: silentLogger }, { source }),
    ).rejects.toThrow();

    const aborts = s3.commandCalls(AbortMultipartUploadCommand);
    expect(aborts.length).toBeGreaterThanOrEqual(1);
    expect(aborts[0].args[0].input).toMatchObject({ Bucket: 'bucket-b', UploadId: 'upload-1' });
    expect(aborts[0].args[0].input.Key).toMatch(/^media-backups\/full\/backup_\d{8}_\d{6}\.tar\.gz$/);
    expect(s3.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
    const putKeys = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input.Key);
    expect(putKeys.some((k) => k?.endsWith('.manifest.jsonl.gz'))).toBe(false);
    expect(putKeys.some((k) => k?.endsWith('.metadata.json'))).toBe(false);
    expect(putKeys).toContain('media-backups/status/last-run.json');
  });

  it('a gzip worker dying mid-upload aborts the multipart upload and writes no manifest', async () => {
    s3.on(UploadPartCommand).resolves({ ETag: '"part"' });
    const store = new S3ObjectStore({
      bucket: 'bucket-b',
      prefix: 'media-backups/',
      client: new S3Client({ region: 'us-east-1' }),
    });
    await expect(
      runBackup(
        { store, clock: tickingClock(), logger: silentLogger },
        // The archive is ~13 MB in 5 MiB parts: after 9 members at least one part has been sent.
        { source, gzip: { workers: 1, fault: { after: 9, kind: 'exit' } } },
      ),
    ).rejects.toThrow(/gzip worker \d exited unexpectedly/);
    expect(s3.commandCalls(UploadPartCommand).length).toBeGreaterThanOrEqual(1);
    expect(s3.commandCalls(AbortMultipartUploadCommand).length).toBeGreaterThanOrEqual(1);
    expect(s3.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
    const putKeys = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input.Key);
    expect(putKeys.some((k) => k?.endsWith('.manifest.jsonl.gz'))).toBe(false);
  });

  it('sends the archive as STANDARD_IA and the small objects as STANDARD', async () => {
    s3.on(UploadPartCommand).resolves({ ETag: '"part"' });
    s3.on(CompleteMultipartUploadCommand).resolves({});
    // After upload the engine re-reads the size; report what was sent.
    let sent = 0;
    s3.on(UploadPartCommand).callsFake((input: { Body: Buffer | Uint8Array }) => {
      sent += input.Body.length;
      return { ETag: '"part"' };
    });
    s3.on(HeadObjectCommand).callsFake((input: { Key: string }) => {
      if (input.Key.endsWith('.tar.gz') && sent > 0) return { ContentLength: sent, LastModified: new Date() };
      throw Object.assign(new Error('NotFound'), { name: 'NotFound', $metadata: { httpStatusCode: 404 } });
    });
    const store = new S3ObjectStore({ bucket: 'bucket-b', client: new S3Client({ region: 'us-east-1' }) });

    const result = await runBackup({ store, clock: tickingClock(), logger: silentLogger }, { source });

    expect(result.archiveBytes).toBe(sent);
    const create = s3.commandCalls(CreateMultipartUploadCommand)[0].args[0].input;
    expect(create).toMatchObject({
      Bucket: 'bucket-b',
      Key: `media-backups/${result.archiveKey}`,
      StorageClass: 'STANDARD_IA',
    });
    const puts = s3.commandCalls(PutObjectCommand).map((c) => c.args[0].input);
    const manifestPut = puts.find((p) => p.Key?.endsWith('.manifest.jsonl.gz'));
    const metadataPut = puts.find((p) => p.Key?.endsWith('.metadata.json'));
    expect(manifestPut?.StorageClass ?? 'STANDARD').toBe('STANDARD');
    expect(metadataPut?.StorageClass ?? 'STANDARD').toBe('STANDARD');
    // Commit order: metadata before manifest.
    expect(puts.indexOf(metadataPut!)).toBeLessThan(puts.indexOf(manifestPut!));
  });
});
