import { execFile } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { makeDirs } from '../../lambda/store/fs-paths.js';
import { openStore } from '../../lambda/store/open-store.js';
import { StoreConfigError } from '../../lambda/store/types.js';
import { tempDirs } from '../fixtures/engine.js';

const execFileAsync = promisify(execFile);
const dirs = tempDirs();
afterEach(() => dirs.cleanup());

describe('folder store roots that cannot hold backups are refused', () => {
  it.each(['file:///proc/self', 'file:///proc/self/backups', '/sys/kernel', 'file:///dev/store'])(
    '%s gives a StoreConfigError naming the kernel file system',
    async (url) => {
      await expect(openStore(url)).rejects.toThrow(StoreConfigError);
      await expect(openStore(url)).rejects.toThrow(/kernel's \/(proc|sys|dev) file system/);
    },
  );

  it('a symlink into /proc is followed and refused', async () => {
    const dir = await dirs.make('store-link-');
    await symlink('/proc/self', path.join(dir, 'store'));
    await expect(openStore(path.join(dir, 'store', 'backups'))).rejects.toThrow(/really \/proc\//);
  });

  it('/dev/shm (a real tmpfs) stays usable', async () => {
    expect(() => new FsObjectStore('/dev/shm/media-backup-store')).not.toThrow();
  });

  it.each([
    ['a raw NUL in a file URL', 'file:///tmp/store\0x'],
    ['an escaped NUL in a file URL', 'file:///tmp/store%00x'],
    ['a NUL in a plain path', '/tmp/store\0x'],
    ['a NUL in an S3 prefix', 's3://bucket-name/pre\0fix'],
  ])('%s gives a StoreConfigError (CLI exit 2), not a raw Node error', async (_name, url) => {
    await expect(openStore(url)).rejects.toBeInstanceOf(StoreConfigError);
  });
});

describe('creating store folders is bounded', () => {
  // Node's recursive mkdir spins at 100% CPU for ever here; ours fails at once.
  it('a folder the file system refuses although its parent exists fails at once', {
    timeout: 3000,
  }, async () => {
    await expect(makeDirs('/proc/self/media-backup/locks')).rejects.toThrow(
      /cannot create folder \/proc\/self\/media-backup: the file system refuses it/,
    );
  });

  it('creates every missing level and accepts existing ones', async () => {
    const dir = await dirs.make('mkdirs-');
    await makeDirs(path.join(dir, 'a/b/c'));
    await makeDirs(path.join(dir, 'a/b/c'));
    const store = new FsObjectStore(path.join(dir, 'a/b/c'));
    await store.put('status/x.json', '{}');
    expect((await store.get('status/x.json'))?.toString()).toBe('{}');
  });

  it('a file in the way is reported by name', async () => {
    const dir = await dirs.make('mkdirs-');
    await mkdir(path.join(dir, 'a'));
    await writeFile(path.join(dir, 'a/b'), 'x');
    await expect(makeDirs(path.join(dir, 'a/b/c'))).rejects.toThrow(/a\/b exists and is not a folder/);
  });
});

describe('CLI', () => {
  it.each([
    ['file:///proc/self', /kernel's \/proc file system/],
    ['file:///tmp/store%00x', /contains a NUL byte/],
  ])('--store %s exits 2 at once with one line', { timeout: 30_000 }, async (url, message) => {
    const bin = path.resolve('bin/media-backup.mjs');
    const run = await execFileAsync(process.execPath, [bin, 'list', '--store', url], {
      timeout: 20_000,
    }).catch((e: { code: number; stderr: string; killed: boolean }) => e);
    expect(run).toMatchObject({ code: 2, killed: false });
    expect(run.stderr).toMatch(message);
  });
});
