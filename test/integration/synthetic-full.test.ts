import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type BackupOptions, runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import type { BackupMetadata } from '../../lambda/core/repository/catalog.js';
import { keysFor } from '../../lambda/core/repository/layout.js';
import { decodeManifest } from '../../lambda/core/repository/manifest.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { freshStagingKey } from '../../lambda/core/synthetic/synthetic-full.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import type { ObjectStore } from '../../lambda/store/types.js';
import { DAY, tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree, randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';
import { fullSnapshot } from '../fixtures/tree-listing.js';

const execFileAsync = promisify(execFile);

/** Only the files (bytes, mode, mtime): what GNU tar and Python give back from any archive. */
const filesOf = (snapshot: Record<string, string>) =>
  Object.fromEntries(Object.entries(snapshot).filter(([, v]) => v.startsWith('file ')));

async function metadataOf(
  store: ObjectStore,
  type: 'full' | 'incremental',
  id: string,
): Promise<BackupMetadata> {
  return JSON.parse(String(await store.get(keysFor(type, id).metadata))) as BackupMetadata;
}

/** 1% churn and then some: two files rewritten, one added, one deleted, one chmod'ed, a folder added. */
async function churn(source: string, files: readonly string[]): Promise<void> {
  const rand = seededRandom(99);
  await writeFile(path.join(source, files[3]), randomBytesFrom(rand, 40_000));
  await writeFile(path.join(source, files[10]), randomBytesFrom(rand, 300_000));
  const later = new Date(Date.UTC(2025, 5, 1));
  await utimes(path.join(source, files[3]), later, later);
  await utimes(path.join(source, files[10]), later, later);
  await rm(path.join(source, files[5]));
  await chmod(path.join(source, files[7]), 0o600);
  await mkdir(path.join(source, 'reports/2026'), { recursive: true });
  await writeFile(path.join(source, 'reports/2026/new.pdf'), randomBytesFrom(rand, 12_345));
}

describe('synthetic fulls on a folder store', () => {
  const dirs = tempDirs();
  let source: string;
  let storeDir: string;
  let store: FsObjectStore;
  let files: string[];
  let clock: ReturnType<typeof tickingClock>;
  const backup = (options: Partial<BackupOptions> = {}) =>
    runBackup({ store, clock, logger: silentLogger }, { source, ...options });

  beforeEach(async () => {
    source = await dirs.make('synth-src-');
    storeDir = await dirs.make('synth-store-');
    store = new FsObjectStore(storeDir);
    clock = tickingClock();
    files = await makeMediaTree(source, { files: 80, maxFileBytes: 256 * 1024 });
    // A file of several gzip members, a long name (PAX header), an empty file, a link, an empty folder.
    await writeFile(path.join(source, 'materials/lecture.mp4'), randomBytesFrom(seededRandom(5), 3_500_000));
    await writeFile(
      path.join(source, `chat/${'long-name-'.repeat(14)}.png`),
      randomBytesFrom(seededRandom(6), 9_000),
    );
    await writeFile(path.join(source, 'chat/empty.txt'), '');
    await symlink('../avatars', path.join(source, 'chat/avatars-link'));
    await mkdir(path.join(source, 'empty-folder'));
  });
  afterEach(() => dirs.cleanup());

  it('builds the weekly full from the store: reads only what changed, restores byte-exact, plain tar.gz for GNU tar and Python', async () => {
    const first = await backup();
    expect(first.type).toBe('full');
    expect(first.synthetic).toBeUndefined();
    clock.jump(DAY);
    await churn(source, files);
    const incremental = await backup();
    expect(incremental.type).toBe('incremental');
    // Folders and links point at an identical tar entry: the full's while unchanged, else the incremental's.
    const incManifest = await decodeManifest(
      (await store.get(keysFor('incremental', incremental.backupId).manifest)) as Buffer,
      'incremental',
    );
    const locationOf = (p: string) => {
      const e = incManifest.entries.find((x) => x.path === p);
      return e && e.type !== 'file' ? e.archive : undefined;
    };
    expect(locationOf('empty-folder')).toBe(keysFor('full', first.backupId).archive);
    expect(locationOf('chat/avatars-link')).toBe(keysFor('full', first.backupId).archive);
    expect(locationOf('reports/2026')).toBe(keysFor('incremental', incremental.backupId).archive);
    clock.jump(7 * DAY);
    await writeFile(path.join(source, files[20]), randomBytesFrom(seededRandom(7), 20_000));

    const synthetic = await backup();
    expect(synthetic.type).toBe('full');
    expect(synthetic.synthetic).toBeDefined();
    const report = synthetic.synthetic as NonNullable<typeof synthetic.synthetic>;
    // Read from the tree: the file changed since the incremental, and the one whose mode changed
    // (its recorded tar header holds the old mode, so its range is not copied).
    const chmodded = (await stat(path.join(source, files[7]))).size;
    expect(report.bytesReadFromSource).toBe(20_000 + chmodded);
    expect(synthetic.changedFiles).toBe(2);
    expect(report.baseBackupId).toBe(incremental.backupId);
    expect(report.sources).toEqual(
      [keysFor('full', first.backupId).archive, keysFor('incremental', incremental.backupId).archive].sort(),
    );
    expect(report.bytesCopied + report.bytesFetched).toBe(synthetic.archiveBytes);
    expect(report.filesCopied).toBe(synthetic.files - 2);

    const metadata = await metadataOf(store, 'full', synthetic.backupId);
    expect(metadata.synthetic).toEqual(report);
    expect(metadata.baseBackupId).toBeNull();
    // Identified by its CRC64NVME (checked before the commit), as on S3: no second hash of every byte.
    expect(metadata.archive?.sha256).toBeUndefined();
    expect(metadata.archive?.crc64nvme).toMatch(/^[A-Za-z0-9+/]{11}=$/);
    // The manifest points every file at the new archive only: the full stands alone.
    const manifest = await decodeManifest(
      (await store.get(keysFor('full', synthetic.backupId).manifest)) as Buffer,
      'synthetic',
    );
    const archiveKey = keysFor('full', synthetic.backupId).archive;
    for (const e of manifest.entries) {
      expect(e.archive).toBe(archiveKey);
      expect(e.type === 'file' || e.range !== undefined).toBe(true);
    }
    // The staging object is gone once committed.
    expect(await store.list(`staging/${synthetic.backupId}/`)).toEqual([]);

    const expected = await fullSnapshot(source);
    const target = path.join(await dirs.make('synth-restore-'), 'media');
    await runRestore({ store, clock, logger: silentLogger }, { backup: synthetic.backupId, target });
    expect(await fullSnapshot(target)).toEqual(expected);

    const archivePath = path.join(storeDir, archiveKey);
    await execFileAsync('gzip', ['-t', archivePath]);
    const gnu = await dirs.make('synth-gnu-');
    await execFileAsync('tar', ['-xzf', archivePath, '-C', gnu]);
    expect(filesOf(await fullSnapshot(gnu))).toEqual(filesOf(expected));
    const py = await dirs.make('synth-py-');
    await execFileAsync('python3', [
      '-c',
      'import sys, tarfile\nwith tarfile.open(sys.argv[1]) as t:\n    kw = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}\n    t.extractall(sys.argv[2], **kw)',
      archivePath,
      py,
    ]);
    expect(filesOf(await fullSnapshot(py))).toEqual(filesOf(expected));
  });

  it('an embedded end-of-archive would lose files silently in GNU tar: why a fresh one is written only last', async () => {
    // Two plain archives glued together: GNU tar (no -i) stops at the first one's zero blocks, exit 0.
    const work = await dirs.make('synth-eoa-');
    await mkdir(path.join(work, 'a'));
    await mkdir(path.join(work, 'b'));
    await writeFile(path.join(work, 'a/first.jpg'), 'one');
    await writeFile(path.join(work, 'b/second.jpg'), 'two');
    await execFileAsync('tar', [
      '-czf',
      path.join(work, 'a.tar.gz'),
      '-C',
      path.join(work, 'a'),
      'first.jpg',
    ]);
    await execFileAsync('tar', [
      '-czf',
      path.join(work, 'b.tar.gz'),
      '-C',
      path.join(work, 'b'),
      'second.jpg',
    ]);
    const glued = Buffer.concat([
      await readFile(path.join(work, 'a.tar.gz')),
      await readFile(path.join(work, 'b.tar.gz')),
    ]);
    await writeFile(path.join(work, 'glued.tar.gz'), glued);
    const { stdout } = await execFileAsync('tar', ['-tzf', path.join(work, 'glued.tar.gz')]);
    expect(stdout.trim().split('\n')).toEqual(['first.jpg']);
    // Our synthetic full has no such member inside: every file is listed (the test above extracts them).
  });

  it('needs one full whose manifest records byte ranges: a base written before that takes a normal full and says why', async () => {
    const first = await backup();
    // Rewrite the stored manifest as an older version wrote it: no ranges.
    const key = keysFor('full', first.backupId).manifest;
    const manifest = await decodeManifest((await store.get(key)) as Buffer, key);
    const { encodeManifest } = await import('../../lambda/core/repository/manifest.js');
    const stripped = manifest.entries.map((e) => (e.type === 'file' ? { ...e, range: undefined } : e));
    await writeFile(
      path.join(storeDir, key),
      await encodeManifest({ header: manifest.header, entries: stripped }),
    );
    clock.jump(8 * DAY);
    const second = await backup();
    expect(second.type).toBe('full');
    expect(second.synthetic).toBeUndefined();
    expect(second.syntheticSkipped).toMatch(/have no recorded byte range/);
    expect((await metadataOf(store, 'full', second.backupId)).syntheticSkipped).toBe(second.syntheticSkipped);
    // The normal full records ranges: the next full is synthetic.
    clock.jump(8 * DAY);
    const third = await backup();
    expect(third.synthetic).toBeDefined();
  });

  it('every Nth full is normal (normalFullEvery), and `backup full` is normal unless --synthetic', async () => {
    const b1 = await backup({ normalFullEvery: 3 });
    clock.jump(8 * DAY);
    const b2 = await backup({ normalFullEvery: 3 });
    clock.jump(8 * DAY);
    const b3 = await backup({ normalFullEvery: 3 });
    clock.jump(8 * DAY);
    const b4 = await backup({ normalFullEvery: 3 });
    expect([b1, b2, b3, b4].map((b) => b.synthetic !== undefined)).toEqual([false, true, true, false]);
    expect(b4.syntheticSkipped).toMatch(/every 3rd full is a normal full.*last 2 were synthetic/);
    const requested = await backup({ type: 'full' });
    expect(requested.synthetic).toBeUndefined();
    expect(requested.syntheticSkipped).toMatch(/--synthetic/);
    const forced = await backup({ type: 'full', synthetic: true, normalFullEvery: 3 });
    expect(forced.synthetic).toBeDefined();
    const never = await backup({ type: 'full', synthetic: false });
    expect(never.synthetic).toBeUndefined();
  });

  it('a source archive corrupted in the store (same size): checksum mismatch, falls back to a normal full that is good', async () => {
    const first = await backup();
    clock.jump(8 * DAY);
    // Corrupt a byte inside the big file's range in the first full.
    const key = keysFor('full', first.backupId).archive;
    const manifest = await decodeManifest(
      (await store.get(keysFor('full', first.backupId).manifest)) as Buffer,
      'm',
    );
    const big = manifest.entries.find((e) => e.path === 'materials/lecture.mp4');
    if (big?.type !== 'file' || !big.range) throw new Error('fixture: no range for the big file');
    const { open } = await import('node:fs/promises');
    const fh = await open(path.join(storeDir, key), 'r+');
    await fh.write(Buffer.from([0x55]), 0, 1, big.range.offset + Math.floor(big.range.length / 2));
    await fh.close();

    const second = await backup();
    expect(second.type).toBe('full');
    expect(second.synthetic).toBeUndefined();
    expect(second.syntheticSkipped).toMatch(/synthetic full on .* failed.*(CRC64NVME|checksum)/i);
    // Nothing of the attempt is visible; the normal full restores the tree.
    expect(second.backupId).not.toBe(first.backupId);
    const target = path.join(await dirs.make('synth-fallback-'), 'media');
    await runRestore({ store, clock, logger: silentLogger }, { backup: second.backupId, target });
    expect(await fullSnapshot(target)).toEqual(await fullSnapshot(source));
  });

  it('a source that disappears mid-assembly: falls back to a normal full, no half-visible backup', async () => {
    const first = await backup();
    clock.jump(8 * DAY);
    const sourceKey = keysFor('full', first.backupId).archive;
    // The store loses the source archive when the first copy starts.
    const vanishing: ObjectStore = Object.create(store);
    vanishing.assemble = async (key, options) => {
      const assembly = await store.assemble(key, options);
      const copyPart = assembly.copyPart.bind(assembly);
      let gone = false;
      return Object.assign(Object.create(assembly), {
        copyPart: async (...args: Parameters<typeof copyPart>) => {
          if (!gone) {
            gone = true;
            await rm(path.join(storeDir, sourceKey));
          }
          return copyPart(...args);
        },
      });
    };
    const result = await runBackup({ store: vanishing, clock, logger: silentLogger }, { source });
    expect(result.synthetic).toBeUndefined();
    expect(result.syntheticSkipped).toMatch(new RegExp(`failed.*${sourceKey.replace(/[.]/g, '\\.')}`));
    const fulls = (await store.list('full/')).map((o) => o.key);
    // The attempt's id has no manifest (not a backup); the normal full has one.
    expect(fulls.filter((k) => k.endsWith('.manifest.jsonl.gz'))).toEqual([
      keysFor('full', first.backupId).manifest,
      keysFor('full', result.backupId).manifest,
    ]);
    const target = path.join(await dirs.make('synth-vanish-'), 'media');
    await runRestore({ store, clock, logger: silentLogger }, { backup: result.backupId, target });
    expect(await fullSnapshot(target)).toEqual(await fullSnapshot(source));
  });

  it('a crash between the archive and the manifest commits nothing; the next run builds a good full under a new id', async () => {
    const first = await backup();
    clock.jump(8 * DAY);
    const crashing: ObjectStore = Object.create(store);
    crashing.put = async (key, body, options) => {
      if (key.endsWith('.manifest.jsonl.gz')) throw new Error('killed before the manifest');
      return (store as ObjectStore).put(key, body, options);
    };
    await expect(runBackup({ store: crashing, clock, logger: silentLogger }, { source })).rejects.toThrow(
      /killed before the manifest/,
    );
    const { listCommittedBackups } = await import('../../lambda/core/repository/catalog.js');
    expect((await listCommittedBackups(store)).map((c) => c.backupId)).toEqual([first.backupId]);
    const next = await backup();
    expect(next.synthetic).toBeDefined();
    const target = path.join(await dirs.make('synth-crash-'), 'media');
    await runRestore({ store, clock, logger: silentLogger }, { backup: next.backupId, target });
    expect(await fullSnapshot(target)).toEqual(await fullSnapshot(source));
    expect(freshStagingKey(next.backupId)).toContain(next.backupId);
  });
});
