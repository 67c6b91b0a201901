import { mkdir, readFile, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { runHealthChecks } from '../../lambda/core/checker/health.js';
import { checkArchiveItem, planArchiveChecks, runVerify } from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import {
  archivesOf,
  chainProblems,
  listCommittedBackups,
  readManifest,
  readMetadata,
  readVerifiedDamage,
} from '../../lambda/core/repository/catalog.js';
import { VERIFY_STATUS_KEY } from '../../lambda/core/repository/layout.js';
import type { FileEntry } from '../../lambda/core/repository/manifest.js';
import { lifecycleExpiry, readRetention } from '../../lambda/core/repository/retention.js';
import { listBackups, readStoreStatus } from '../../lambda/core/repository/status.js';
import { readUsage } from '../../lambda/core/repository/usage.js';
import { runShardedBackup } from '../../lambda/core/sharding/sharded-backup.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { runCli } from '../fixtures/cli.js';
import { gnuTarExtract, tempDirs, tickingClock } from '../fixtures/engine.js';
import { flipOneByte } from '../fixtures/folder-world.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';
import { partKeyFor, type ShardedBackup, writeShardedBackup } from '../fixtures/sharded-backup.js';

// Issue 14: everything that reads backups understands a sharded one (parts, no single archive,
// metadata with `parts`). The backups are real: parts written by writeArchive, read by GNU tar.

const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
let sharded: ShardedBackup;
const clock = tickingClock('2025-12-27T03:00:00Z');
const deps = () => ({ store, clock, logger: silentLogger });
const path0 = (key: string) => path.join(storeDir, key);

beforeEach(async () => {
  source = await dirs.make('src-');
  storeDir = await dirs.make('store-');
  store = new FsObjectStore(storeDir);
  await makeMediaTree(source, { files: 24, seed: 14 });
  // Sorted first: `a`, `a/b`, `a/b/c` (before `avatars`): part 1 holds only these folders, so no file
  // row of the manifest names it; only the metadata says the backup needs it.
  await mkdir(path.join(source, 'a', 'b', 'c'), { recursive: true });
  sharded = await writeShardedBackup(store, source, { parts: 4, cuts: [3, 14, 25] });
});
afterEach(() => dirs.cleanup());

const fileRows = () => sharded.entries.filter((e): e is FileEntry => e.type === 'file');
const partWithFiles = (n: number) => sharded.parts.filter((p) => p.files > 0)[n];

describe('the sharded-backup fixture', () => {
  it('is a real sharded backup: GNU tar extracting every part gives the tree; the manifest reads as one file', async () => {
    expect(sharded.parts.map((p) => p.key)).toEqual(
      [1, 2, 3, 4].map((i) => partKeyFor('full', sharded.backupId, i)),
    );
    expect(sharded.parts[0].files).toBe(0);
    const out = await dirs.make('tar-');
    for (const part of sharded.parts) await gnuTarExtract(path0(part.key), out);
    expect(await snapshotTree(out)).toEqual(await snapshotTree(source));

    const [entry] = await listCommittedBackups(store);
    expect(entry.partKeys).toEqual(sharded.parts.map((p) => p.key));
    const manifest = await readManifest(store, entry);
    expect(manifest.entries).toEqual(sharded.entries);
    // Each part's rows are its own gzip member, where manifestRange says.
    const raw = await readFile(path0(sharded.manifestKey));
    const { gunzipSync } = await import('node:zlib');
    const part2 = sharded.parts[1];
    const rows = gunzipSync(
      raw.subarray(part2.manifestRange.offset, part2.manifestRange.offset + part2.manifestRange.length),
    )
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).path);
    expect(rows[0]).toBe(part2.firstPath);
    expect(rows.at(-1)).toBe(part2.lastPath);
  });
});

describe('chain check (chainProblems) of a sharded backup', () => {
  const problemsNow = async () => {
    const committed = await listCommittedBackups(store);
    const entry = committed.at(-1)!;
    return chainProblems(
      entry,
      await readManifest(store, entry),
      committed,
      {
        size: async (key) => (await store.head(key))?.size,
        metadata: (e) => readMetadata(store, e),
      },
      await readVerifiedDamage(store),
    );
  };

  it('is sound with every part present at its recorded size', async () => {
    expect(await problemsNow()).toEqual([]);
  });

  it('names a deleted part, also one holding only folders (no file row names it)', async () => {
    await rm(path0(sharded.parts[0].key));
    await rm(path0(sharded.parts[2].key));
    expect(await problemsNow()).toEqual([
      `archive ${sharded.parts[0].key} is missing`,
      `archive ${sharded.parts[2].key} is missing`,
    ]);
  });

  it('names a truncated part with its recorded size', async () => {
    const part = sharded.parts[1];
    await truncate(path0(part.key), part.bytes - 10);
    expect(await problemsNow()).toEqual([
      `archive ${part.key} is ${part.bytes - 10} bytes; its metadata recorded ${part.bytes}`,
    ]);
  });

  it('an incremental on a sharded full: its chain is every part its files are in; auto takes a full when one is gone', async () => {
    await writeFile(path.join(source, 'new.pdf'), 'new file');
    const inc = await runBackup(deps(), { source });
    expect(inc.type).toBe('incremental');
    expect(inc.baseBackupId).toBe(sharded.backupId);
    const incManifest = await readManifest(store, (await listCommittedBackups(store)).at(-1)!);
    const archives = new Set(incManifest.entries.flatMap((e) => (e.type === 'file' ? [e.archive] : [])));
    expect([...archives].sort()).toEqual(
      [...sharded.parts.slice(1).map((p) => p.key), inc.archiveKey].sort(),
    );
    expect(await problemsNow()).toEqual([]);

    const gone = partWithFiles(1).key;
    await rm(path0(gone));
    expect(await problemsNow()).toEqual([`archive ${gone} is missing`]);
    const next = await runBackup(deps(), { source });
    expect(next.type).toBe('full');
    expect(next.reason).toContain(gone);
  });
});

describe('verify of a sharded backup', () => {
  it('quick: checks every part (size and sha256)', async () => {
    const result = await runVerify(deps(), { all: true, parallel: 2 });
    expect(result.status).toBe('SUCCEEDED');
    expect(result.backups).toEqual([
      expect.objectContaining({ backupId: sharded.backupId, ok: true, archivesChecked: 4, method: 'sha256' }),
    ]);
  });

  it('quick: a deleted part fails the backup, naming the part', async () => {
    const gone = sharded.parts[0].key;
    await rm(path0(gone));
    const result = await runVerify(deps(), {});
    expect(result.status).toBe('FAILED');
    expect(result.backups[0].problems).toEqual([`backup ${sharded.backupId}: archive ${gone} is missing`]);
  });

  it('quick: a flipped byte in one part is a sha256 mismatch of that part only', async () => {
    const damaged = sharded.parts[2];
    await flipOneByte(storeDir, damaged.key);
    const result = await runVerify(deps(), {});
    expect(result.backups[0].problems).toHaveLength(1);
    expect(result.backups[0].problems[0]).toMatch(
      new RegExp(
        `^backup ${sharded.backupId}: archive ${damaged.key.replace(/\./g, '\\.')} has sha256 [0-9a-f]{64}; the metadata recorded ${damaged.sha256}`,
      ),
    );
  });

  it('deep: every part in one download each, every file re-hashed; each part recorded as deep-verified', async () => {
    const progress: { files: number; bytes: number; totalFiles: number; totalBytes: number }[] = [];
    const result = await runVerify(deps(), { deep: true, parallel: 3, onProgress: (p) => progress.push(p) });
    expect(result.status).toBe('SUCCEEDED');
    // The CLI's bar: every file counted once, against the backup's totals.
    const totals = { files: fileRows().length, bytes: fileRows().reduce((s, f) => s + f.size, 0) };
    expect(progress).toHaveLength(totals.files);
    expect(progress.at(-1)).toEqual({ ...totals, totalFiles: totals.files, totalBytes: totals.bytes });
    expect(result.backups).toEqual([
      expect.objectContaining({
        backupId: sharded.backupId,
        ok: true,
        method: 'archive',
        archivesChecked: 4,
        filesVerified: fileRows().length,
        archivesDeepVerified: sharded.parts.map((p) => p.key),
      }),
    ]);
    const record = JSON.parse((await readFile(path0(VERIFY_STATUS_KEY))).toString('utf8'));
    expect(Object.keys(record.deepVerified).sort()).toEqual(sharded.parts.map((p) => p.key));
  });

  it('deep: a flipped byte in one part names that part; the other parts pass and are recorded; auto then takes a full', async () => {
    const damaged = partWithFiles(1);
    await flipOneByte(storeDir, damaged.key);
    const result = await runVerify(deps(), { deep: true, parallel: 2 });
    expect(result.status).toBe('FAILED');
    const [b] = result.backups;
    expect(b.problems.length).toBeGreaterThan(0);
    for (const p of b.problems) expect(p).toContain(damaged.key);
    const others = sharded.parts.filter((p) => p.key !== damaged.key).map((p) => p.key);
    expect(b.archivesDeepVerified).toEqual(others);
    const record = JSON.parse((await readFile(path0(VERIFY_STATUS_KEY))).toString('utf8'));
    expect(Object.keys(record.deepVerified).sort()).toEqual(others);
    expect((await readVerifiedDamage(store)).get(sharded.backupId)).toContain(damaged.key);

    const next = await runBackup(deps(), { source });
    expect(next.type).toBe('full');
  });

  it('deep: parts are checked `parallel` at once, each downloaded once', async () => {
    const seen = async (parallel: number) => {
      let open = 0;
      let most = 0;
      const downloads: string[] = [];
      const counting: FsObjectStore = Object.create(store);
      counting.getStream = async (key: string) => {
        const stream = await store.getStream(key);
        if (/\.part-\d{4}\.tar\.gz$/.test(key)) {
          downloads.push(key);
          open += 1;
          most = Math.max(most, open);
          stream.once('close', () => {
            open -= 1;
          });
        }
        return stream;
      };
      const result = await runVerify(
        { store: counting, clock, logger: silentLogger },
        { deep: true, parallel, record: false },
      );
      expect(result.status).toBe('SUCCEEDED');
      return { most, downloads: downloads.sort() };
    };
    expect(await seen(1)).toEqual({ most: 1, downloads: sharded.parts.map((p) => p.key) });
    expect(await seen(3)).toEqual({ most: 3, downloads: sharded.parts.map((p) => p.key) });
  });

  it('deep, of an incremental on a sharded full: reads the parts it needs; a missing one breaks its chain', async () => {
    await writeFile(path.join(source, 'new.pdf'), 'new file');
    const inc = await runBackup(deps(), { source });
    const ok = await runVerify(deps(), { deep: true, parallel: 2, record: false });
    expect(ok.backups).toEqual([
      expect.objectContaining({
        backupId: inc.backupId,
        ok: true,
        method: 'archive',
        filesVerified: fileRows().length + 1,
        archivesDeepVerified: [...sharded.parts.slice(1).map((p) => p.key), inc.archiveKey].sort(),
      }),
    ]);
    const gone = partWithFiles(0).key;
    await rm(path0(gone));
    const broken = await runVerify(deps(), { deep: true, record: false });
    expect(broken.backups[0].problems).toEqual([
      `backup ${inc.backupId}: archive ${gone}, which holds files of this backup, is missing (chain broken)`,
    ]);
  });

  it('--all: one result per backup', async () => {
    await writeFile(path.join(source, 'new.pdf'), 'new file');
    const inc = await runBackup(deps(), { source });
    const result = await runVerify(deps(), { all: true, deep: true, parallel: 2 });
    expect(result.backups.map((b) => [b.backupId, b.ok, b.method])).toEqual([
      [sharded.backupId, true, 'archive'],
      [inc.backupId, true, 'archive'],
    ]);
  });

  it('rotation counts each part as an archive: a sharded backup not yet covered is checked part by part', async () => {
    await writeFile(path.join(source, 'new.pdf'), 'new file');
    const inc = await runBackup(deps(), { source });
    // The latest (a single-archive incremental) is covered by its own checks; part 1 (folders only)
    // is named by no file row of it, so rotation takes it.
    const result = await runVerify(deps(), { deep: true, rotate: true, parallel: 2 });
    expect(result.status).toBe('SUCCEEDED');
    expect(result.backups.map((b) => [b.backupId, b.archivesDeepVerified])).toEqual([
      [inc.backupId, [...sharded.parts.slice(1).map((p) => p.key), inc.archiveKey].sort()],
      [sharded.backupId, [sharded.parts[0].key]],
    ]);
    const record = JSON.parse((await readFile(path0(VERIFY_STATUS_KEY))).toString('utf8'));
    expect(Object.keys(record.deepVerified).sort()).toEqual(
      [...sharded.parts.map((p) => p.key), inc.archiveKey].sort(),
    );
  });

  it('rotation does not check a part of the latest backup twice when it failed', async () => {
    const damaged = partWithFiles(0);
    await flipOneByte(storeDir, damaged.key);
    const result = await runVerify(deps(), { deep: true, rotate: true });
    expect(result.backups.map((b) => b.backupId)).toEqual([sharded.backupId]);
    expect(result.backups[0].archivesDeepVerified).toEqual(
      sharded.parts.filter((p) => p !== damaged).map((p) => p.key),
    );
  });

  it("the state machine plan of a rotating verify: the latest backup's archives, then the slice per part", async () => {
    await writeFile(path.join(source, 'new.pdf'), 'new file');
    const inc = await runBackup(deps(), { source });
    const plan = await planArchiveChecks(store, { rotate: true });
    expect(plan.items.map((i) => [i.backupId, i.archiveKey])).toEqual([
      ...[...sharded.parts.slice(1).map((p) => p.key), inc.archiveKey].sort().map((k) => [inc.backupId, k]),
      [sharded.backupId, sharded.parts[0].key],
    ]);
  });
});

describe('health of a sharded backup', () => {
  const health = () =>
    runHealthChecks(
      { store, clock: { now: () => new Date('2025-12-27T06:00:00Z') }, logger: silentLogger },
      { minBackupBytes: 1, tinyTreeBytes: 1 },
    );
  const check = async (name: string) => (await health()).checks.find((c) => c.name === name)!;

  it('reports the size as the sum of the parts; integrity and chain ok', async () => {
    const sum = sharded.parts.reduce((s, p) => s + p.bytes, 0);
    expect((await check('size')).value).toBe(sum);
    expect((await check('integrity')).status).toBe('ok');
    expect((await check('chain')).status).toBe('ok');
  });

  it('is critical when a part is gone (also one holding only folders), naming it', async () => {
    const gone = sharded.parts[0].key;
    await rm(path0(gone));
    const report = await health();
    const integrity = report.checks.find((c) => c.name === 'integrity')!;
    const chain = report.checks.find((c) => c.name === 'chain')!;
    expect(integrity.status).toBe('critical');
    expect(integrity.message).toContain(`its archive ${gone} is missing`);
    expect(chain.status).toBe('critical');
    expect(chain.message).toContain(`${sharded.backupId} needs missing ${gone}`);
  });

  it('lists parts of a failed sharded run (no manifest) as orphans once old enough', async () => {
    const failedId = 'backup_20251225_020000';
    const orphan = partKeyFor('full', failedId, 1);
    await mkdir(path.dirname(path0(orphan)), { recursive: true });
    await writeFile(path0(orphan), Buffer.alloc(1234));
    const old = new Date('2025-12-25T02:10:00Z');
    await utimes(path0(orphan), old, old);
    const orphans = await check('orphans');
    expect(orphans.status).toBe('warning');
    expect(orphans.message).toContain(failedId);
  });
});

describe('list, status, usage and retention of a sharded backup', () => {
  const sum = () => sharded.parts.reduce((s, p) => s + p.bytes, 0);

  it('list and status: archive bytes are the sum of the parts', async () => {
    const [listing] = await listBackups(store);
    expect(listing).toEqual(
      expect.objectContaining({
        backupId: sharded.backupId,
        archiveBytes: sum(),
        parts: 4,
        archiveKeys: sharded.parts.map((p) => p.key),
      }),
    );
    expect((await readStoreStatus(store, new Date('2025-12-27T06:00:00Z'))).latestBackup?.archiveBytes).toBe(
      sum(),
    );
    expect(archivesOf(sharded.metadata)).toEqual(sharded.parts);
  });

  it('usage: the full/ bytes are the parts', async () => {
    const usage = await readUsage(store, new Date('2025-12-27T06:00:00Z'));
    expect(usage.byType.full).toEqual({ objects: 4, bytes: sum() });
  });

  it('retention: the backup covers all its parts; an old part (even one holding only folders) bounds restorableUntil', async () => {
    const old = new Date('2025-11-20T02:00:00Z');
    await utimes(path0(sharded.parts[0].key), old, old);
    const report = await readRetention({ store }, new Date('2025-12-27T06:00:00Z'));
    const [b] = report.backups;
    const metadataBytes = (await readFile(path0(sharded.metadataKey))).length;
    const manifestBytes = (await readFile(path0(sharded.manifestKey))).length;
    expect(b).toEqual(
      expect.objectContaining({
        backupId: sharded.backupId,
        committed: true,
        objects: 6,
        bytes: sum() + metadataBytes + manifestBytes,
      }),
    );
    expect(b.restorableUntil).toBe(lifecycleExpiry(old, report.expireAfterDays).toISOString());
  });

  it('CLI: list shows the parts; verify --deep --parallel names the damaged part and exits 1', async () => {
    const list = await runCli(['list', '--store', storeDir]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${sharded.backupId}\\s+full\\s+\\d+\\s+.*\\s+4\\n`));
    const good = await runCli(['verify', '--deep', '--parallel', '3', '--store', storeDir]);
    expect(good.code).toBe(0);
    expect(good.stdout).toContain(`OK     ${sharded.backupId} (full), ${fileRows().length} files re-hashed`);

    const damaged = partWithFiles(0);
    await flipOneByte(storeDir, damaged.key);
    const bad = await runCli(['verify', '--deep', '--parallel', '2', '--store', storeDir]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(`FAILED ${sharded.backupId}`);
    expect(bad.stdout).toContain(damaged.key);

    const usage = await runCli(['verify', '--parallel', '0', '--store', storeDir]);
    expect(usage.code).not.toBe(0);
    expect(usage.stderr).toContain('--parallel must be a whole number of at least 1');
  });
});

describe('a backup made by the sharding engine reads the same', () => {
  it('list sums its parts, the verify plan has one item per part, every item passes, health is ok', async () => {
    const made = await runShardedBackup(
      { store, clock, logger: silentLogger },
      { source, shards: 3, parallel: 2, type: 'full' },
    );
    const metadata = (await readMetadata(store, (await listCommittedBackups(store)).at(-1)!))!;
    const parts = archivesOf(metadata);
    expect(parts.map((p) => p.key)).toEqual(made.parts.map((p) => p.key));
    const listing = (await listBackups(store)).at(-1)!;
    expect(listing).toMatchObject({
      backupId: made.backupId,
      parts: 3,
      archiveBytes: parts.reduce((n, p) => n + p.bytes, 0),
    });
    const { items } = await planArchiveChecks(store, {});
    expect(items.map((i) => i.archiveKey)).toEqual(parts.map((p) => p.key));
    const results = await Promise.all(items.map((item) => checkArchiveItem(store, item)));
    expect(results.map((r) => r.ok)).toEqual([true, true, true]);
    const report = await runHealthChecks(
      { store, clock: { now: () => new Date('2025-12-27T06:00:00Z') }, logger: silentLogger },
      { minBackupBytes: 1 },
    );
    expect(report.checks.find((c) => c.name === 'integrity')?.status).toBe('ok');
  });
});
