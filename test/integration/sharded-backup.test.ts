import { execFile } from 'node:child_process';
import { appendFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { scanTree } from '../../lambda/core/archiver/scan.js';
import { silentLogger } from '../../lambda/core/deps.js';
import {
  type BackupMetadata,
  listCommittedBackups,
  readManifest,
} from '../../lambda/core/repository/catalog.js';
import { keysFor } from '../../lambda/core/repository/layout.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import {
  abortShardedBackup,
  commitShardedBackup,
  runShard,
  runShardedBackup,
  ShardedBackupError,
  type ShardedBackupOptions,
  type ShardItem,
  stagingPrefix,
  writeShardPlan,
} from '../../lambda/core/sharding/sharded-backup.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import type { ObjectStore } from '../../lambda/store/types.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';

const execFileAsync = promisify(execFile);
const dirs = tempDirs();
const snap = (root: string) => snapshotTree(root, { mtimes: true, modes: true });

afterAll(() => dirs.cleanup());

/** A media tree with empty folders, symlinks and names that stress path order (`a`, `a-b`, `a/b`). */
async function makeTree(files = 120): Promise<string> {
  const source = await dirs.make('shard-src-');
  await makeMediaTree(source, { files, maxFileBytes: 96 * 1024, seed: 7 });
  await mkdir(path.join(source, 'empty/inner'), { recursive: true });
  await mkdir(path.join(source, 'a/b'), { recursive: true });
  await writeFile(path.join(source, 'a-b'), 'dash');
  await writeFile(path.join(source, 'a/b/c.txt'), 'c');
  await writeFile(path.join(source, 'a.b'), 'dot');
  await symlink('avatars', path.join(source, 'link-to-avatars'));
  return source;
}

async function restoreInto(store: ObjectStore, backupId: string): Promise<string> {
  const target = path.join(await dirs.make('shard-restore-'), 'media');
  const restored = await runRestore(
    { store, clock: tickingClock(), logger: silentLogger },
    { backup: backupId, target },
  );
  expect(restored.verified).toBe(true);
  return target;
}

async function metadataOf(
  store: ObjectStore,
  type: 'full' | 'incremental',
  backupId: string,
): Promise<BackupMetadata> {
  return JSON.parse(
    (await store.get(keysFor(type, backupId).metadata))?.toString('utf8') ?? 'null',
  ) as BackupMetadata;
}

function describeStore(
  name: string,
  open: () => Promise<{ store: ObjectStore; storeDir?: string; close?: () => Promise<void> }>,
) {
  describe(`sharded backup on ${name}`, () => {
    let store: ObjectStore;
    let storeDir: string | undefined;
    let close: (() => Promise<void>) | undefined;
    let source: string;
    const clock = tickingClock('2026-11-01T02:00:00Z');
    const run = (options: Partial<ShardedBackupOptions> = {}) =>
      runShardedBackup(
        { store, clock, logger: silentLogger },
        { source, shards: 4, parallel: 2, ...options },
      );

    beforeAll(async () => {
      ({ store, storeDir, close } = await open());
      source = await makeTree();
    });
    afterAll(async () => close?.());

    it('backs up in 4 parts that restore to the tree, and that GNU tar extracts into the tree', async () => {
      const result = await run();
      expect(result.type).toBe('full');
      expect(result.shards).toBe(4);
      expect(result.parts.map((p) => p.key)).toEqual(
        [1, 2, 3, 4].map((i) => `full/${result.backupId}.part-000${i}.tar.gz`),
      );
      const metadata = await metadataOf(store, 'full', result.backupId);
      expect(metadata.archive).toBeUndefined();
      expect(metadata.parts?.map((p) => p.index)).toEqual([1, 2, 3, 4]);
      // Contiguous, ordered ranges.
      const parts = metadata.parts ?? [];
      for (let i = 1; i < parts.length; i++) expect(parts[i].firstPath > parts[i - 1].lastPath).toBe(true);
      // The manifest's members: header, then one per part at the recorded ranges.
      const manifest = (await store.get(keysFor('full', result.backupId).manifest)) as Buffer;
      for (const p of parts) {
        const member = gunzipSync(
          manifest.subarray(p.manifestRange.offset, p.manifestRange.offset + p.manifestRange.length),
        )
          .toString('utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { path: string });
        expect(member[0].path).toBe(p.firstPath);
        expect(member.at(-1)?.path).toBe(p.lastPath);
      }
      const committed = await listCommittedBackups(store);
      const decoded = await readManifest(store, committed.at(-1) as (typeof committed)[number]);
      expect(decoded.header.totals.files).toBe(result.files);
      expect(await snap(await restoreInto(store, result.backupId))).toEqual(await snap(source));

      // Plain tar.gz: every part extracted with GNU tar into one folder gives the tree.
      const plain = await dirs.make('shard-gnutar-');
      for (const p of parts) {
        const file = path.join(plain, `..${path.basename(p.key)}`);
        await writeFile(file, (await store.get(p.key)) as Buffer);
        await execFileAsync('tar', ['-xzf', file, '-C', plain]);
        await rm(file);
      }
      const tarTree = await snapshotTree(plain);
      expect(tarTree).toEqual(await snapshotTree(source));
      // No work objects left where the store can delete them.
      if (storeDir) expect(await store.list(stagingPrefix(result.backupId))).toEqual([]);
    });

    it('an incremental after the sharded full (single run and sharded) restores to the changed tree', async () => {
      await appendFile(path.join(source, 'a-b'), ' changed');
      await writeFile(path.join(source, 'chat/new-file.png'), 'new');
      await rm(path.join(source, 'a.b'));
      const single = await runBackup({ store, clock, logger: silentLogger }, { source, type: 'incremental' });
      expect(single.type).toBe('incremental');
      expect(single.changedFiles).toBe(2);
      expect(await snap(await restoreInto(store, single.backupId))).toEqual(await snap(source));

      await writeFile(path.join(source, 'reports/late.xlsx'), 'late');
      const sharded = await run({ type: 'incremental', shards: 3 });
      expect(sharded.type).toBe('incremental');
      expect(sharded.changedFiles).toBe(1);
      expect(sharded.deletedFiles).toBe(0);
      expect(await snap(await restoreInto(store, sharded.backupId))).toEqual(await snap(source));
    });

    it('a failing shard commits nothing, records FAILED naming it, and the next run succeeds', async () => {
      const before = await listCommittedBackups(store);
      const error = await run({
        type: 'full',
        failShard: (shard) => {
          if (shard === 3) throw new Error('injected failure in shard 3');
        },
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ShardedBackupError);
      expect((error as Error).message).toMatch(/shard 3 of 4 failed: injected failure in shard 3/);
      expect(await listCommittedBackups(store)).toEqual(before);
      const status = JSON.parse(((await store.get('status/last-run.json')) as Buffer).toString('utf8'));
      expect(status).toMatchObject({ status: 'FAILED', failedShard: 3 });
      expect(status.error.message).toMatch(/shard 3 of 4 failed/);
      if (storeDir) {
        // The folder store deletes the failed run's parts and work objects.
        const full = await store.list('full/');
        expect(full.filter((o) => !before.some((b) => o.key.includes(b.backupId)))).toEqual([]);
        expect(await store.list('staging/')).toEqual([]);
      }
      const next = await run({ type: 'full' });
      expect(await snap(await restoreInto(store, next.backupId))).toEqual(await snap(source));
    });
  });
}

describeStore('a folder store', async () => {
  const storeDir = await dirs.make('shard-store-');
  return { store: new FsObjectStore(storeDir), storeDir };
});

let s3: S3rverFixture | undefined;
describeStore('S3 (s3rver)', async () => {
  s3 = await startS3rver();
  return { store: s3.makeStore(), close: () => (s3 as S3rverFixture).stop() };
});

describe('shard retries', () => {
  it('a retried shard returns its result and never writes a second part; a part whose result was lost is adopted', async () => {
    const source = await makeTree(60);
    const storeDir = await dirs.make('shard-retry-');
    const store = new FsObjectStore(storeDir);
    const deps = { store, clock: tickingClock('2026-11-02T02:00:00Z'), logger: silentLogger };
    const scan = await scanTree(source);
    const plan = await writeShardPlan(deps, {
      backupId: 'backup_20261102_020000',
      type: 'full',
      reason: 'test',
      baseBackupId: null,
      createdAt: new Date('2026-11-02T02:00:00Z'),
      root: scan.root,
      rootMeta: scan.rootMeta,
      entries: scan.entries,
      skipped: () => scan.skipped,
      shards: 3,
      gzipLevel: 5,
      maxShrinkPercent: 50,
    });
    expect(plan.items).toHaveLength(3);
    const items = (await store.get(plan.itemsKey))
      ?.toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ShardItem);
    expect(items).toEqual(plan.items);
    const [one, two, three] = plan.items;
    const first = await runShard(deps, two, { source });
    const partKey = first.part?.key as string;
    const partFile = path.join(storeDir, partKey);
    const bytesBefore = await readFile(partFile);
    // Retry after success: same result, no new part.
    const again = await runShard(deps, two, { source });
    expect(again.reused).toBe(true);
    expect(again.part).toEqual(first.part);
    // Crash between the part and its result: the retry adopts the part, byte for byte unchanged.
    await rm(path.join(storeDir, stagingPrefix(two.backupId), 'shard-0002.result.json'));
    const adopted = await runShard(deps, two, { source });
    // Whole: sizes, sha256 and the tar/gzip figures the compression ratio is computed from.
    expect(adopted.part).toEqual(first.part);
    expect(first.part?.tarBytes).toBeGreaterThan(0);
    expect(adopted.rowsKey).toBe(first.rowsKey);
    expect(await readFile(partFile)).toEqual(bytesBefore);
    expect((await store.list('full/')).filter((o) => o.key.includes('.part-0002'))).toHaveLength(1);
    // A foreign object at a part's key is never adopted.
    await mkdir(path.dirname(path.join(storeDir, 'full/x')), { recursive: true });
    await writeFile(path.join(storeDir, `full/${one.backupId}.part-0001.tar.gz`), 'not ours');
    await expect(runShard(deps, one, { source })).rejects.toThrow(
      /none of the 0 recorded attempts of shard 1 wrote it/,
    );
    await rm(path.join(storeDir, `full/${one.backupId}.part-0001.tar.gz`));
    // Commit refuses while a shard has no result, then succeeds.
    await expect(commitShardedBackup(deps, plan.planKey)).rejects.toThrow(/shard 1 of 3 .* has no result/);
    await runShard(deps, one, { source });
    await runShard(deps, three, { source });
    const committed = await commitShardedBackup(deps, plan.planKey);
    expect(committed.parts).toHaveLength(3);
    // A retried commit (its answer lost) returns the same backup.
    const recommit = await commitShardedBackup(deps, plan.planKey);
    expect(recommit.backupId).toBe(committed.backupId);
    // A cleanup after a commit whose answer was lost undoes nothing and records no failure.
    expect(await abortShardedBackup(deps, plan.planKey, { message: 'commit step timed out' })).toBe(
      'already-committed',
    );
    expect(JSON.parse(((await store.get('status/last-run.json')) as Buffer).toString('utf8')).status).toBe(
      'SUCCEEDED',
    );
    expect(await listCommittedBackups(store)).toHaveLength(1);
    const target = path.join(await dirs.make('shard-retry-restore-'), 'media');
    await runRestore(deps, { backup: committed.backupId, target });
    expect(await snap(target)).toEqual(await snap(source));
  });
});

describe('backup ids', () => {
  it('a new run never reuses the id of a failed sharded run whose parts or work objects remain', async () => {
    const source = await makeTree(5);
    const storeDir = await dirs.make('shard-ids-');
    const store = new FsObjectStore(storeDir);
    // What a failed sharded run at 02:00:01 leaves on S3 (no delete permission): a part, no manifest.
    await store.put('full/backup_20261103_020001.part-0001.tar.gz', 'left by a failed run');
    await store.put('staging/backup_20261103_020002/plan.json', '{}');
    const result = await runBackup(
      { store, clock: tickingClock('2026-11-03T02:00:00Z'), logger: silentLogger },
      { source, type: 'full' },
    );
    expect(result.backupId).toBe('backup_20261103_020003');
  });
});

describe('a file that vanished between the plan and its shard', () => {
  it('keeps the previous version in a sharded incremental and reports it skipped', async () => {
    const source = await makeTree(30);
    const storeDir = await dirs.make('shard-vanish-');
    const store = new FsObjectStore(storeDir);
    const clock = tickingClock('2026-11-04T02:00:00Z');
    const deps = { store, clock, logger: silentLogger };
    const full = await runShardedBackup(deps, { source, shards: 2 });
    const before = await snap(source);
    // Changed after the full: planned to be re-read, then gone before its shard runs.
    await appendFile(path.join(source, 'a-b'), ' edited');
    const committed = await listCommittedBackups(store);
    const baseManifest = await readManifest(store, committed[0]);
    const scan = await scanTree(source);
    const plan = await writeShardPlan(deps, {
      backupId: 'backup_20261104_030000',
      type: 'incremental',
      reason: 'test',
      baseBackupId: full.backupId,
      createdAt: new Date('2026-11-04T03:00:00Z'),
      root: scan.root,
      rootMeta: scan.rootMeta,
      entries: scan.entries,
      baseEntries: baseManifest.entries,
      skipped: () => scan.skipped,
      shards: 2,
      gzipLevel: 5,
      maxShrinkPercent: 50,
    });
    await rm(path.join(source, 'a-b'));
    for (const item of plan.items) await runShard(deps, item, { source });
    const result = await commitShardedBackup(deps, plan.planKey);
    expect(result.skipped).toEqual([
      { path: 'a-b', reason: expect.stringMatching(/previous version kept$/) },
    ]);
    // The restore point still has the file as the full had it.
    const restored = await snap(await restoreInto(store, result.backupId));
    expect(restored['a-b']).toEqual(before['a-b']);
  });
});
