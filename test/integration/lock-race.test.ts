import { mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { type LockHandle, LockHeldError } from '../../lambda/store/types.js';
import { tempDirs } from '../fixtures/engine.js';

const dirs = tempDirs();
let storeDir: string;
let store: FsObjectStore;
let lockFile: string;
const TTL = 60_000;

beforeEach(async () => {
  storeDir = await dirs.make('lock-race-');
  store = new FsObjectStore(storeDir);
  lockFile = path.join(storeDir, 'locks/backup.lock');
  await mkdir(path.dirname(lockFile), { recursive: true });
});
afterEach(async () => {
  vi.useRealTimers();
  await dirs.cleanup();
});

/** Starts `n` acquirers at once; returns the handles of the winners and the errors of the others. */
async function race(n: number): Promise<{ winners: LockHandle[]; errors: unknown[] }> {
  const settled = await Promise.allSettled(
    Array.from({ length: n }, (_, i) => store.acquireLock('backup', { owner: `run-${i}`, ttlMs: TTL })),
  );
  return {
    winners: settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : [])),
    errors: settled.flatMap((s) => (s.status === 'rejected' ? [s.reason] : [])),
  };
}

describe('folder-store lock', () => {
  it('an empty lock file (its owner is still writing it) is held, not stale', async () => {
    await writeFile(lockFile, '');
    await expect(store.acquireLock('backup', { owner: 'second', ttlMs: TTL })).rejects.toBeInstanceOf(
      LockHeldError,
    );
    expect(await readFile(lockFile, 'utf8')).toBe('');
  });

  it.each([
    ['empty', ''],
    ['torn', '{"owner":"crashed","acqu'],
  ])('an %s lock file older than the TTL is taken over', async (_name, text) => {
    await writeFile(lockFile, text);
    const old = new Date(Date.now() - 2 * TTL);
    await utimes(lockFile, old, old);
    const lock = await store.acquireLock('backup', { owner: 'next', ttlMs: TTL });
    expect(JSON.parse(await readFile(lockFile, 'utf8'))).toMatchObject({ owner: 'next' });
    await lock.release();
  });

  it('a lock file is never seen empty or torn: it appears complete', async () => {
    const lock = await store.acquireLock('backup', { owner: 'first', ttlMs: TTL });
    expect(JSON.parse(await readFile(lockFile, 'utf8'))).toMatchObject({ owner: 'first' });
    await lock.release();
    // No temp files are left beside it.
    expect(await readdir(path.dirname(lockFile))).toEqual([]);
  });

  it('of 24 runs acquiring at once exactly one wins; the others get LockHeldError (30 rounds)', async () => {
    for (let round = 0; round < 30; round += 1) {
      const { winners, errors } = await race(24);
      expect(winners).toHaveLength(1);
      expect(errors).toHaveLength(23);
      for (const error of errors) expect(error).toBeInstanceOf(LockHeldError);
      await winners[0].release();
      expect(await readdir(path.dirname(lockFile))).toEqual([]);
    }
  });

  it('of 24 runs taking over the same expired lock at once exactly one wins (30 rounds)', async () => {
    for (let round = 0; round < 30; round += 1) {
      await writeFile(
        lockFile,
        JSON.stringify({
          owner: 'crashed',
          acquiredAt: new Date(0).toISOString(),
          expiresAt: new Date(Date.now() - 1000).toISOString(),
          host: 'other-host',
          pid: 1,
        }),
      );
      const { winners, errors } = await race(24);
      expect(winners).toHaveLength(1);
      for (const error of errors) expect(error).toBeInstanceOf(LockHeldError);
      expect(JSON.parse(await readFile(lockFile, 'utf8')).owner).toMatch(/^run-\d+$/);
      await winners[0].release();
      expect(await readdir(path.dirname(lockFile))).toEqual([]);
    }
  });

  it('renewing never overwrites a lock another run took over, and release leaves it alone', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const lock = await store.acquireLock('backup', { owner: 'slow', ttlMs: 3000 });
    const other = JSON.stringify({
      owner: 'other',
      acquiredAt: new Date().toISOString(),
      expiresAt: new Date(Date.now() + TTL).toISOString(),
      host: 'other-host',
      pid: 7,
      nonce: 'theirs',
    });
    await writeFile(lockFile, other);
    vi.advanceTimersByTime(1000);
    await lock.release();
    expect(await readFile(lockFile, 'utf8')).toBe(other);
  });

  it('renewing extends our own lock', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const lock = await store.acquireLock('backup', { owner: 'slow', ttlMs: 3000 });
    const before = JSON.parse(await readFile(lockFile, 'utf8'));
    // Renewal writes a fresh record; make the first one look old so the change is visible.
    await writeFile(lockFile, JSON.stringify({ ...before, expiresAt: new Date(0).toISOString() }));
    vi.advanceTimersByTime(1000);
    await vi.waitFor(async () => {
      const renewed = JSON.parse(await readFile(lockFile, 'utf8'));
      expect(Date.parse(renewed.expiresAt)).toBeGreaterThan(Date.now());
      expect(renewed.nonce).toBe(before.nonce);
    });
    await lock.release();
    expect(await readdir(path.dirname(lockFile))).toEqual([]);
  });
});
