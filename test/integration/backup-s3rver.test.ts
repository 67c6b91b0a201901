import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { listCommittedBackups, readManifest } from '../../lambda/core/repository/catalog.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { gnuTarExtract, gnuTarList, tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree, randomBytesFrom, seededRandom, snapshotTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';

const execFileAsync = promisify(execFile);
const dirs = tempDirs();
let s3: S3rverFixture;
let store: S3ObjectStore;
let source: string;
let prefixCount = 0;

beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());
beforeEach(async () => {
  source = await dirs.make('src-');
  // A fresh prefix per test: the same bucket, independent stores.
  prefixCount += 1;
  store = s3.makeStore(`run-${prefixCount}/media-backups/`);
});
afterEach(() => dirs.cleanup());

/** `aws s3 cp` stand-in: stream the object to a local file. */
async function download(key: string): Promise<string> {
  const file = path.join(await dirs.make('dl-'), path.basename(key));
  await pipeline(await store.getStream(key), createWriteStream(file));
  return file;
}

describe('backups to an S3-compatible server (s3rver)', () => {
  it('full then incremental: every archive downloads and extracts with GNU tar to the source tree', async () => {
    const files = await makeMediaTree(source, { files: 25, seed: 21 });
    // Bigger than one 8 MiB part, so the archive goes up as a real multipart upload.
    await writeFile(path.join(source, 'lecture.mp4'), randomBytesFrom(seededRandom(5), 11 * 1024 * 1024));
    const clock = tickingClock();

    const full = await runBackup({ store, clock, logger: silentLogger }, { source });
    expect(full).toMatchObject({ type: 'full', files: 26, changedFiles: 26 });
    const head = await store.head(full.archiveKey);
    expect(head?.size).toBe(full.archiveBytes);

    await writeFile(path.join(source, files[0]), 'edited');
    await unlink(path.join(source, files[1]));
    const inc = await runBackup({ store, clock, logger: silentLogger }, { source });
    expect(inc).toMatchObject({ type: 'incremental', files: 25, changedFiles: 1, deletedFiles: 1 });

    const fullFile = await download(full.archiveKey);
    const incFile = await download(inc.archiveKey);
    expect((await gnuTarList(incFile)).filter((p) => !p.endsWith('/'))).toEqual([files[0]]);
    const out = await dirs.make('extract-');
    await gnuTarExtract(fullFile, out);
    await gnuTarExtract(incFile, out);
    await unlink(path.join(out, files[1])); // plain tar cannot know about deletions; the manifest does
    expect(await snapshotTree(out)).toEqual(await snapshotTree(source));

    const committed = await listCommittedBackups(store);
    expect(committed.map((c) => c.backupId)).toEqual([full.backupId, inc.backupId]);
    const manifest = await readManifest(store, committed[1]);
    expect(manifest.header.totals.files).toBe(25);
    expect((await store.list('')).map((o) => o.key)).toContain('status/last-run.json');
  });

  it('the CLI backs up to s3:// with endpoint and checksum settings from the environment', async () => {
    await makeMediaTree(source, { files: 5, seed: 3 });
    const { stdout } = await execFileAsync(
      process.execPath,
      [
        path.resolve('bin/media-backup.mjs'),
        'backup',
        '--json',
        '--source',
        source,
        '--store',
        `s3://${s3.bucket}/cli-run/`,
      ],
      {
        env: {
          ...process.env,
          S3_ENDPOINT: s3.endpoint,
          S3_FORCE_PATH_STYLE: 'true',
          S3_CHECKSUMS: 'off',
          AWS_ACCESS_KEY_ID: 'S3RVER',
          AWS_SECRET_ACCESS_KEY: 'S3RVER',
          AWS_REGION: 'us-east-1',
        },
      },
    );
    const result = JSON.parse(stdout);
    expect(result).toMatchObject({ status: 'SUCCEEDED', type: 'full', files: 5 });
    const cliStore = s3.makeStore('cli-run/');
    expect((await listCommittedBackups(cliStore)).map((b) => b.backupId)).toEqual([result.backupId]);
  });
});
