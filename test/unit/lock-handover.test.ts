import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { LockHeldError } from '../../lambda/store/types.js';
import { tempDirs } from '../fixtures/engine.js';

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

const record = async (dir: string) =>
  JSON.parse(await readFile(path.join(dir, 'locks/backup.lock'), 'utf8')) as {
    state: string;
    expiresAt: string;
    nonce: string;
  };

describe('lock hand-over (a sharded run passes the backup lock to its state machine)', () => {
  it('extends the expiry, stops renewing, and only the token releases it', async () => {
    const dir = await dirs.make('handover-');
    const store = new FsObjectStore(dir);
    const lock = await store.acquireLock('backup', { owner: 'planner', ttlMs: 60_000 });
    const token = await lock.handOver?.(6 * 3600_000);
    expect(token).toMatch(/^[0-9a-f]{16}$/);
    const held = await record(dir);
    expect(held.state).toBe('held');
    expect(Date.parse(held.expiresAt) - Date.now()).toBeGreaterThan(5.9 * 3600_000);
    // Another run is refused for the whole hand-over, not just the original 60 s.
    await expect(store.acquireLock('backup', { owner: 'next', ttlMs: 60_000 })).rejects.toThrow(
      LockHeldError,
    );
    // A wrong token changes nothing.
    expect(await store.releaseLock('backup', 'ffffffffffffffff')).toBe(false);
    expect((await record(dir)).state).toBe('held');
    // The right one releases it, once.
    expect(await store.releaseLock('backup', token as string)).toBe(true);
    expect(await store.releaseLock('backup', token as string)).toBe(false);
    const next = await store.acquireLock('backup', { owner: 'next', ttlMs: 60_000 });
    // The old token cannot release the next run's lock.
    expect(await store.releaseLock('backup', token as string)).toBe(false);
    expect((await record(dir)).state).toBe('held');
    await next.release();
  });

  it('a hand-over of a lock lost meanwhile fails instead of writing', async () => {
    const dir = await dirs.make('handover-lost-');
    const store = new FsObjectStore(dir);
    const lock = await store.acquireLock('backup', { owner: 'planner', ttlMs: 60_000 });
    await lock.release();
    const other = await store.acquireLock('backup', { owner: 'other', ttlMs: 60_000 });
    const before = await record(dir);
    await expect(lock.handOver?.(3600_000)).rejects.toThrow(LockHeldError);
    expect(await record(dir)).toEqual(before);
    await other.release();
  });
});
