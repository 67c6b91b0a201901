import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  acquireLease,
  type LeaseBackend,
  type LeaseRecord,
  parseLeaseRecord,
} from '../../lambda/store/lease.js';
import { LockHeldError } from '../../lambda/store/types.js';

const TTL = 60_000;
const NOW = new Date('2025-12-27T02:00:00Z');

/**
 * An in-memory lock object with versions, as S3 (ETags) or a folder (exact bytes) provide them.
 * `loseAnswers` makes the next writes apply but then fail, as when the connection drops after the
 * store wrote: the protocol must recognise its own write.
 */
function fakeBackend() {
  let current: { version: number; text: string; modifiedAt: Date } | undefined;
  let next = 1;
  const state = { loseAnswers: 0, writes: 0 };
  const put = (text: string): number => {
    current = { version: next++, text, modifiedAt: new Date() };
    state.writes += 1;
    if (state.loseAnswers > 0) {
      state.loseAnswers -= 1;
      throw new Error('socket hang up');
    }
    return current.version;
  };
  const backend: LeaseBackend<number> = {
    read: async () =>
      current && {
        version: current.version,
        record: parseLeaseRecord(current.text),
        modifiedAt: current.modifiedAt,
      },
    createIfAbsent: async (record) => (current ? undefined : put(JSON.stringify(record))),
    replaceIfUnchanged: async (version, record) =>
      current?.version === version ? put(JSON.stringify(record)) : undefined,
    releaseIfUnchanged: async (version, released) => {
      if (current?.version !== version) return false;
      put(JSON.stringify(released));
      return true;
    },
  };
  return {
    backend,
    state,
    record: (): LeaseRecord | undefined => (current ? parseLeaseRecord(current.text) : undefined),
    set: (text: string, modifiedAt = new Date()) => {
      current = { version: next++, text, modifiedAt };
    },
  };
}

const other = (fields: Partial<LeaseRecord> = {}) =>
  JSON.stringify({
    owner: 'other',
    acquiredAt: NOW.toISOString(),
    expiresAt: new Date(NOW.getTime() + TTL).toISOString(),
    state: 'held',
    nonce: 'theirs',
    ...fields,
  });

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] });
  vi.setSystemTime(NOW);
});
afterEach(() => vi.useRealTimers());

describe('acquireLease', () => {
  it('creates the lock, renews it every TTL/3 and releases it', async () => {
    const fake = fakeBackend();
    const lock = await acquireLease(fake.backend, 'mem://', { owner: 'me', ttlMs: TTL });
    expect(fake.record()).toMatchObject({
      owner: 'me',
      state: 'held',
      expiresAt: '2025-12-27T02:01:00.000Z',
    });

    await vi.advanceTimersByTimeAsync(TTL / 3);
    expect(fake.record()?.expiresAt).toBe('2025-12-27T02:01:20.000Z');
    await lock.release();
    await lock.release();
    expect(fake.record()).toMatchObject({ owner: 'me', state: 'released' });
    expect(fake.state.writes).toBe(3);
  });

  it.each([
    ['a live lock', other(), new Date()],
    ['an unparseable lock written less than a TTL ago', '', new Date(NOW.getTime() - TTL / 2)],
  ])('refuses %s with LockHeldError', async (_name, text, modifiedAt) => {
    const fake = fakeBackend();
    fake.set(text, modifiedAt);
    await expect(acquireLease(fake.backend, 'mem://', { owner: 'me', ttlMs: TTL })).rejects.toBeInstanceOf(
      LockHeldError,
    );
    expect(fake.state.writes).toBe(0);
  });

  it.each([
    ['expired', other({ expiresAt: new Date(NOW.getTime() - 1).toISOString() }), new Date()],
    ['released', other({ state: 'released' }), new Date()],
    ['unparseable and older than the TTL', '{"own', new Date(NOW.getTime() - 2 * TTL)],
  ])('takes over a lock that is %s', async (_name, text, modifiedAt) => {
    const fake = fakeBackend();
    fake.set(text, modifiedAt);
    await acquireLease(fake.backend, 'mem://', { owner: 'me', ttlMs: TTL });
    expect(fake.record()).toMatchObject({ owner: 'me', state: 'held' });
  });

  it('of ten runs taking over one stale lock exactly one wins', async () => {
    const fake = fakeBackend();
    fake.set(other({ expiresAt: new Date(0).toISOString() }));
    const settled = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        acquireLease(fake.backend, 'mem://', { owner: `run-${i}`, ttlMs: TTL }),
      ),
    );
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    for (const s of settled.filter((s) => s.status === 'rejected'))
      expect(s.reason).toBeInstanceOf(LockHeldError);
  });

  it('a create whose answer was lost is recognised as ours, not as a lock held by someone else', async () => {
    const fake = fakeBackend();
    fake.state.loseAnswers = 1;
    const lock = await acquireLease(fake.backend, 'mem://', { owner: 'me', ttlMs: TTL });
    expect(fake.record()).toMatchObject({ owner: 'me' });
    await lock.release();
    expect(fake.record()).toMatchObject({ state: 'released' });
  });

  it('a renewal whose answer was lost is adopted and renewed again; the lock is not given up', async () => {
    const fake = fakeBackend();
    const lock = await acquireLease(fake.backend, 'mem://', { owner: 'me', ttlMs: TTL });
    fake.state.loseAnswers = 1;
    await vi.advanceTimersByTimeAsync(TTL / 3);
    expect(fake.record()).toMatchObject({ owner: 'me', state: 'held' });
    await lock.release();
    expect(fake.record()).toMatchObject({ owner: 'me', state: 'released' });
  });

  it('a lock taken over while we could not renew is never written again', async () => {
    const fake = fakeBackend();
    const lock = await acquireLease(fake.backend, 'mem://', { owner: 'me', ttlMs: TTL });
    fake.set(other());
    await vi.advanceTimersByTimeAsync(2 * TTL);
    await lock.release();
    expect(fake.record()).toMatchObject({ owner: 'other', state: 'held' });
    expect(fake.state.writes).toBe(1);
  });

  it('a failing store is retried at the next renewal', async () => {
    const fake = fakeBackend();
    const lock = await acquireLease(fake.backend, 'mem://', { owner: 'me', ttlMs: TTL });
    const replace = fake.backend.replaceIfUnchanged;
    fake.backend.replaceIfUnchanged = async () => {
      throw new Error('timeout');
    };
    await vi.advanceTimersByTimeAsync(TTL / 3);
    fake.backend.replaceIfUnchanged = replace;
    await vi.advanceTimersByTimeAsync(TTL / 3);
    expect(fake.record()?.expiresAt).toBe('2025-12-27T02:01:40.000Z');
    await lock.release();
  });
});
