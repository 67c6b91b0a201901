import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runHealthChecks } from '../../lambda/core/checker/health.js';
import {
  checkArchiveItem,
  planArchiveChecks,
  recordArchiveChecks,
  runVerify,
} from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { readVerifiedDamage } from '../../lambda/core/repository/catalog.js';
import { listBackups } from '../../lambda/core/repository/status.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';
import { type ShardedBackup, writeShardedBackup } from '../fixtures/sharded-backup.js';

// Issue 14: the consumers of a sharded backup against an S3 server (s3rver): listings, heads,
// streamed downloads of parts. (CRC64NVME per part: verify-archive-items.test.ts, mocked, as s3rver
// keeps no checksums.)

const dirs = tempDirs();
let s3: S3rverFixture;
let store: S3ObjectStore;
let sharded: ShardedBackup;
let prefixCount = 0;
const NOW = new Date('2025-12-27T06:00:00Z');
const clock = { now: () => NOW };
const deps = () => ({ store, clock, logger: silentLogger });

beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());
beforeEach(async () => {
  const source = await dirs.make('src-');
  await makeMediaTree(source, { files: 20, seed: 33 });
  prefixCount += 1;
  store = s3.makeStore(`sharded-${prefixCount}/media-backups/`);
  sharded = await writeShardedBackup(store, source, { parts: 4 });
});
afterEach(() => dirs.cleanup());

/** An operator's mistake or a corrupt copy: the backup role itself can neither delete nor replace. */
const deletePart = (key: string) =>
  store.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: `${store.prefix}${key}` }));

describe('a sharded backup in S3 (s3rver)', () => {
  it('lists with the sum of its parts; quick and deep verify pass, part by part', async () => {
    const [listing] = await listBackups(store);
    expect(listing).toMatchObject({ archiveBytes: sharded.parts.reduce((s, p) => s + p.bytes, 0), parts: 4 });
    const quick = await runVerify(deps(), { parallel: 2 });
    expect(quick.backups[0]).toMatchObject({ ok: true, archivesChecked: 4 });
    const deep = await runVerify(deps(), { deep: true, parallel: 4 });
    expect(deep.backups[0]).toMatchObject({
      ok: true,
      method: 'archive',
      archivesDeepVerified: sharded.parts.map((p) => p.key),
    });
  });

  it('a deleted part: verify names it, health is critical naming it', async () => {
    const gone = sharded.parts[3].key;
    await deletePart(gone);
    const quick = await runVerify(deps(), { record: false });
    expect(quick.backups[0].problems).toEqual([`backup ${sharded.backupId}: archive ${gone} is missing`]);
    const report = await runHealthChecks(deps(), { minBackupBytes: 1 });
    const integrity = report.checks.find((c) => c.name === 'integrity');
    expect(integrity?.status).toBe('critical');
    expect(integrity?.message).toContain(`its archive ${gone} is missing`);
  });

  it('the verify units: a replaced part fails its item; the record makes the backup damaged', async () => {
    const replaced = sharded.parts[1];
    // Same size, other bytes: only a download and hash can tell.
    await store.client.send(
      new PutObjectCommand({
        Bucket: s3.bucket,
        Key: `${store.prefix}${replaced.key}`,
        Body: Buffer.alloc(replaced.bytes, 7),
      }),
    );
    const { items } = await planArchiveChecks(store, {});
    const results = await Promise.all(items.map((item) => checkArchiveItem(store, item)));
    expect(results.map((r) => [r.archiveKey, r.ok])).toEqual(
      sharded.parts.map((p) => [p.key, p !== replaced]),
    );
    expect(results[1].problems.join(' ')).toContain(replaced.key);
    const verdict = await recordArchiveChecks(store, results, NOW);
    expect(verdict).toMatchObject({ status: 'FAILED', recorded: true });
    expect((await readVerifiedDamage(store)).get(sharded.backupId)).toContain(replaced.key);
  });
});
