import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { scanTree } from '../../lambda/core/archiver/scan.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'scan-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('scanTree', () => {
  it('records files, folders and symlinks sorted by path, with size, mtime and mode', async () => {
    await mkdir(path.join(dir, 'avatars/sub'), { recursive: true });
    await mkdir(path.join(dir, 'empty'));
    await writeFile(path.join(dir, 'avatars/u1.jpg'), 'abc', { mode: 0o640 });
    await writeFile(path.join(dir, 'avatars-old.png'), '');
    await utimes(path.join(dir, 'avatars/u1.jpg'), 1000, 1_700_000_000.25);
    await symlink('/etc/passwd', path.join(dir, 'avatars/sub/outside'));

    const result = await scanTree(dir);

    // '-' (0x2d) sorts before '/' (0x2f): global code-unit order, not a depth-first walk order.
    expect(result.entries.map((e) => e.path)).toEqual([
      'avatars',
      'avatars-old.png',
      'avatars/sub',
      'avatars/sub/outside',
      'avatars/u1.jpg',
      'empty',
    ]);
    expect(result.entries.find((e) => e.path === 'avatars/u1.jpg')).toEqual({
      path: 'avatars/u1.jpg',
      type: 'file',
      size: 3,
      mtimeMs: 1_700_000_000_250,
      mode: 0o640,
    });
    expect(result.entries.find((e) => e.path === 'avatars/sub/outside')).toEqual({
      path: 'avatars/sub/outside',
      type: 'symlink',
      target: '/etc/passwd',
      mtimeMs: expect.any(Number),
    });
    expect(result.skipped).toEqual([]);
  });

  it('never follows a symlinked folder', async () => {
    await mkdir(path.join(dir, 'real'));
    await writeFile(path.join(dir, 'real/a.txt'), 'x');
    await symlink(path.join(dir, 'real'), path.join(dir, 'link'));
    const result = await scanTree(dir);
    expect(result.entries.map((e) => e.path)).toEqual(['link', 'real', 'real/a.txt']);
  });

  it('skips FIFOs and sockets with a reason and counts them', async () => {
    execFileSync('mkfifo', [path.join(dir, 'pipe')]);
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(path.join(dir, 'sock'), resolve));
    try {
      await writeFile(path.join(dir, 'ok.pdf'), 'x');
      const result = await scanTree(dir);
      expect(result.entries.map((e) => e.path)).toEqual(['ok.pdf']);
      expect(result.skipped).toEqual([
        { path: 'pipe', reason: 'FIFO: not a regular file, skipped' },
        { path: 'sock', reason: 'socket: not a regular file, skipped' },
      ]);
    } finally {
      server.close();
    }
  });

  it('applies --exclude globs to names at any depth and to whole paths', async () => {
    await mkdir(path.join(dir, 'chat/tmp'), { recursive: true });
    await mkdir(path.join(dir, 'reports'), { recursive: true });
    await writeFile(path.join(dir, 'chat/a.jpg'), 'x');
    await writeFile(path.join(dir, 'chat/a.jpg.tmp'), 'x');
    await writeFile(path.join(dir, 'chat/tmp/big.mp4'), 'x');
    await writeFile(path.join(dir, 'reports/r.pdf'), 'x');
    const result = await scanTree(dir, { exclude: ['*.tmp', 'chat/tmp', 'reports/**'] });
    // `reports/**` also matches the folder itself, so nothing below it is even listed.
    expect(result.entries.map((e) => e.path)).toEqual(['chat', 'chat/a.jpg']);
    expect(result.excluded).toBe(3);
  });

  it('leaves out a store folder that lives inside the source', async () => {
    await mkdir(path.join(dir, 'backups/media/full'), { recursive: true });
    await writeFile(path.join(dir, 'backups/media/full/x.tar.gz'), 'x');
    await writeFile(path.join(dir, 'a.jpg'), 'x');
    const result = await scanTree(dir, { excludeAbsolute: [path.join(dir, 'backups/media')] });
    expect(result.entries.map((e) => e.path)).toEqual(['a.jpg', 'backups']);
  });

  it.each([
    ['missing', (d: string) => path.join(d, 'nope'), /source folder .*nope does not exist/],
    ['a file', (d: string) => path.join(d, 'file.txt'), /is not a folder/],
  ])('fails clearly when the source is %s', async (_name, pick, message) => {
    await writeFile(path.join(dir, 'file.txt'), 'x');
    await expect(scanTree(pick(dir))).rejects.toThrow(message);
    await expect(scanTree(pick(dir))).rejects.toHaveProperty('name', 'SourceError');
  });
});
