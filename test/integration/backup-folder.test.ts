import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import {
  type BackupMetadata,
  listCommittedBackups,
  readManifest,
} from '../../lambda/core/repository/catalog.js';
import type { FileEntry } from '../../lambda/core/repository/manifest.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { DAY, gnuTarExtract, gnuTarList, tempDirs, tickingClock } from '../fixtures/engine.js';
import {
  documentBytes,
  makeMediaTree,
  randomBytesFrom,
  seededRandom,
  snapshotTree,
} from '../fixtures/media-tree.js';

const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
let clock: ReturnType<typeof tickingClock>;

beforeEach(async () => {
  source = await dirs.make('src-');
  storeDir = await dirs.make('store-');
  store = new FsObjectStore(storeDir);
  clock = tickingClock();
});
afterEach(() => dirs.cleanup());

const backup = (options: Partial<Parameters<typeof runBackup>[1]> = {}) =>
  runBackup({ store, clock, logger: silentLogger }, { source, ...options });

/** Non-folder entries (files and links) of a stored archive, per GNU tar. */
async function nonFoldersInArchive(key: string): Promise<string[]> {
  return (await gnuTarList(path.join(storeDir, key))).filter((p) => !p.endsWith('/'));
}

describe('full backup to a folder store', () => {
  it('writes a plain tar.gz that GNU tar extracts to exactly the source tree, then commits', async () => {
    await makeMediaTree(source, { files: 60, seed: 11 });
    await mkdir(path.join(source, 'empty-folder'));
    await chmod(path.join(source, 'reports'), 0o750).catch(() => undefined);

    const result = await backup({ type: 'full' });

    expect(result).toMatchObject({
      status: 'SUCCEEDED',
      type: 'full',
      files: 60,
      changedFiles: 60,
      deletedFiles: 0,
    });
    expect(result.archiveKey).toMatch(/^full\/backup_\d{8}_\d{6}\.tar\.gz$/);
    const keys = (await store.list('')).map((o) => o.key);
    const id = result.backupId;
    expect(keys).toEqual([
      `full/${id}.manifest.jsonl.gz`,
      `full/${id}.tar.gz`,
      `full/${id}.tar.gz.metadata.json`,
      'status/last-run.json',
    ]);

    const out = await dirs.make('extract-');
    await gnuTarExtract(path.join(storeDir, result.archiveKey), out);
    expect(await snapshotTree(out, { mtimes: true, modes: true })).toEqual(
      await snapshotTree(source, { mtimes: true, modes: true }),
    );

    // The archive hash in metadata and result is the hash of the stored bytes.
    const archiveBytes = await readFile(path.join(storeDir, result.archiveKey));
    const sha = createHash('sha256').update(archiveBytes).digest('hex');
    expect(result.archiveSha256).toBe(sha);
    const metadata = JSON.parse(
      await readFile(path.join(storeDir, `full/${id}.tar.gz.metadata.json`), 'utf8'),
    ) as BackupMetadata;
    expect(metadata.archive).toEqual({ key: result.archiveKey, bytes: archiveBytes.length, sha256: sha });
    expect(metadata.totals).toEqual({ files: 60, bytes: result.bytes });

    // Every manifest hash is the real content hash.
    const [entry] = await listCommittedBackups(store);
    const manifest = await readManifest(store, entry);
    const files = manifest.entries.filter((e): e is FileEntry => e.type === 'file');
    expect(files).toHaveLength(60);
    for (const f of files) {
      const real = createHash('sha256')
        .update(await readFile(path.join(source, f.path)))
        .digest('hex');
      expect(f.sha256, f.path).toBe(real);
      expect(f.archive).toBe(result.archiveKey);
    }
    expect(manifest.entries.find((e) => e.path === 'empty-folder')).toMatchObject({ type: 'dir' });
  });

  it('keeps every byte when read buffers are recycled: many multi-MiB files, interleaved with small ones', async () => {
    // More 1 MiB reads than the archive writer keeps buffers for, with distinct bytes in each, so a
    // buffer reused before the gzip stage copied it would show up as wrong content.
    const rand = seededRandom(31);
    for (let i = 0; i < 24; i++) {
      await writeFile(path.join(source, `clip-${i}.mp4`), randomBytesFrom(rand, 1024 * 1024 + 4096 * i + 7));
      await writeFile(path.join(source, `note-${i}.txt`), documentBytes(rand, 100 + 997 * i));
    }
    await writeFile(path.join(source, 'report.pdf'), documentBytes(rand, 5 * 1024 * 1024 + 3));
    const result = await backup({ type: 'full', gzip: { workers: 2 } });
    const out = await dirs.make('extract-');
    await gnuTarExtract(path.join(storeDir, result.archiveKey), out);
    expect(await snapshotTree(out, { mtimes: true, modes: true })).toEqual(
      await snapshotTree(source, { mtimes: true, modes: true }),
    );
  });

  it('backs up edge trees: empty files, a 300-byte path, unicode and spaces, links out of the tree', async () => {
    const longDir = Array.from({ length: 5 }, (_, i) => `folder-${i}-${'x'.repeat(40)}`).join('/');
    const longPath = `${longDir}/${'n'.repeat(300 - longDir.length - 5)}.jpg`;
    expect(longPath.length).toBe(300);
    await mkdir(path.join(source, longDir), { recursive: true });
    await writeFile(path.join(source, longPath), 'long');
    await writeFile(path.join(source, 'empty.pdf'), '');
    await mkdir(path.join(source, 'chat/Ünïcödé räum 🎓'), { recursive: true });
    await writeFile(path.join(source, 'chat/Ünïcödé räum 🎓/naïve file (1).png'), 'ü');
    await symlink('/etc/hostname', path.join(source, 'outside-link'));
    await symlink('../empty.pdf', path.join(source, 'chat/relative-link'));

    const result = await backup();

    expect(result.files).toBe(3);
    const out = await dirs.make('extract-');
    await gnuTarExtract(path.join(storeDir, result.archiveKey), out);
    expect(await snapshotTree(out)).toEqual(await snapshotTree(source));
    // The link was recorded, not followed: /etc/hostname's bytes are not in the archive.
    const [entry] = await listCommittedBackups(store);
    const manifest = await readManifest(store, entry);
    expect(manifest.entries.find((e) => e.path === 'outside-link')).toEqual({
      path: 'outside-link',
      type: 'symlink',
      target: '/etc/hostname',
      mtimeMs: expect.any(Number),
      // Where its tar entry sits (a synthetic full copies it from there).
      archive: entry.archiveKey,
      range: { offset: expect.any(Number), length: expect.any(Number), crc64nvme: expect.any(String) },
    });
    expect(manifest.entries.find((e) => e.path === longPath)).toMatchObject({ type: 'file', size: 4 });
  });

  it('backs up an empty source folder as a valid, empty archive', async () => {
    const result = await backup();
    expect(result).toMatchObject({ files: 0, bytes: 0 });
    expect(await gnuTarList(path.join(storeDir, result.archiveKey))).toEqual([]);
  });
});

describe('incremental and auto backups', () => {
  it('archives exactly the new and changed files while the manifest lists the whole tree', async () => {
    const files = await makeMediaTree(source, { files: 30, seed: 5 });
    const full = await backup();
    expect(full.type).toBe('full');

    const [edited, touched, removed, renamedFrom] = files;
    await writeFile(path.join(source, edited), 'new content');
    await utimes(path.join(source, touched), new Date(), new Date()); // mtime-only change
    await unlink(path.join(source, removed));
    await rename(path.join(source, renamedFrom), path.join(source, 'avatars/renamed.jpg'));
    await mkdir(path.join(source, 'avatars'), { recursive: true });
    await writeFile(path.join(source, 'reports/added.pdf'), 'added').catch(async () => {
      await mkdir(path.join(source, 'reports'), { recursive: true });
      await writeFile(path.join(source, 'reports/added.pdf'), 'added');
    });

    const inc = await backup();

    expect(inc).toMatchObject({
      type: 'incremental',
      baseBackupId: full.backupId,
      files: 30,
      changedFiles: 4,
      deletedFiles: 2,
    });
    expect(inc.archiveKey).toMatch(/^incremental\//);
    const archived = await nonFoldersInArchive(inc.archiveKey);
    const fileSet = new Set(
      Object.entries(await snapshotTree(source))
        .filter(([, v]) => v.type === 'file')
        .map(([k]) => k),
    );
    expect(archived.filter((p) => fileSet.has(p)).sort()).toEqual(
      [edited, touched, 'avatars/renamed.jpg', 'reports/added.pdf'].sort(),
    );

    const committed = await listCommittedBackups(store);
    const manifest = await readManifest(store, committed[1]);
    const byPath = new Map(manifest.entries.map((e) => [e.path, e]));
    expect(byPath.has(removed)).toBe(false);
    expect(byPath.has(renamedFrom)).toBe(false);
    expect((byPath.get(edited) as FileEntry).archive).toBe(inc.archiveKey);
    expect((byPath.get(files[5]) as FileEntry).archive).toBe(full.archiveKey);
    expect(manifest.header).toMatchObject({
      type: 'incremental',
      baseBackupId: full.backupId,
      totals: { files: 30 },
    });

    // Plain-tar disaster restore: full, then the incremental, gives today's content for every file.
    const out = await dirs.make('extract-');
    await gnuTarExtract(path.join(storeDir, full.archiveKey), out);
    await gnuTarExtract(path.join(storeDir, inc.archiveKey), out);
    const restored = await snapshotTree(out);
    for (const [p, v] of Object.entries(await snapshotTree(source))) expect(restored[p], p).toEqual(v);
  });

  it('auto takes a new full once the latest full is fullIntervalDays old', async () => {
    await makeMediaTree(source, { files: 5 });
    expect((await backup()).type).toBe('full');
    expect((await backup()).type).toBe('incremental');
    clock.jump(3 * DAY);
    const third = await backup();
    expect(third).toMatchObject({ type: 'incremental', changedFiles: 0, files: 5 });
    clock.jump(4 * DAY);
    const fourth = await backup();
    expect(fourth.type).toBe('full');
    expect(fourth.reason).toMatch(/days old/);
    expect((await listCommittedBackups(store)).map((b) => b.type)).toEqual([
      'full',
      'incremental',
      'incremental',
      'full',
    ]);
  });

  it('falls back to a full when an archive of the chain is missing', async () => {
    await makeMediaTree(source, { files: 5 });
    const full = await backup();
    await rm(path.join(storeDir, full.archiveKey));
    const next = await backup({ type: 'incremental' });
    expect(next.type).toBe('full');
    expect(next.reason).toMatch(/cannot be read .*missing/);
    expect(next.changedFiles).toBe(5);
  });

  it('falls back to a full when the latest manifest is corrupt', async () => {
    await makeMediaTree(source, { files: 5 });
    const full = await backup();
    await writeFile(path.join(storeDir, `full/${full.backupId}.manifest.jsonl.gz`), 'garbage');
    const next = await backup();
    expect(next).toMatchObject({ type: 'full', changedFiles: 5 });
    expect(next.reason).toMatch(/not a valid gzip file/);
  });
});
