import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type LockHandle, LockHeldError, type LockInfo } from './types.js';

/** Body of `locks/<name>.lock`, in every store. */
export interface LeaseRecord extends LockInfo {
  readonly state: 'held' | 'released';
  /**
   * Random per acquisition: tells this run's lock from any other, even in the same process, and
   * recognises our own write when its answer was lost (the retry then sees "already there").
   */
  readonly nonce?: string;
  /** Where the holder runs: a lock of a dead process on this host is stale at once. */
  readonly host?: string;
  readonly pid?: number;
}

/** The lock as a store read it. */
export interface LeaseSnapshot<V> {
  /** What a conditional write compares against (an ETag, or the file's exact bytes). */
  readonly version: V;
  /** `undefined` when the lock is empty, torn or not ours to parse. */
  readonly record: LeaseRecord | undefined;
  /** When the lock was last written (LastModified, mtime). */
  readonly modifiedAt: Date;
}

/**
 * The two primitives each store supplies; the protocol above them is written once, here.
 * Every method throws on a failure it cannot classify (network, permissions).
 */
export interface LeaseBackend<V> {
  read(): Promise<LeaseSnapshot<V> | undefined>;
  /** Creates the lock with `record` unless something is there (never replaces); the new version or `undefined`. */
  createIfAbsent(record: LeaseRecord): Promise<V | undefined>;
  /** Replaces the lock if it is still at `version`; the new version, or `undefined` when it changed. */
  replaceIfUnchanged(version: V, record: LeaseRecord): Promise<V | undefined>;
  /** Gives the lock up if it is still at `version` (removes it, or writes `released`); false when it changed. */
  releaseIfUnchanged(version: V, released: LeaseRecord): Promise<boolean>;
}

/**
 * Takes the lock or throws {@link LockHeldError}:
 * - create if absent; else read it: ours (a lost answer) is adopted, a live one is held, a stale one
 *   (released, expired, its process gone, or unparseable and older than the TTL) is replaced if it
 *   is still exactly what was judged stale, so of two runs taking over only one wins;
 * - renewed every TTL/3 by replace-if-unchanged; a lock someone else replaced is lost, never written;
 * - released by release-if-unchanged. `release` is idempotent.
 */
export async function acquireLease<V>(
  backend: LeaseBackend<V>,
  storeUrl: string,
  options: {
    owner: string;
    ttlMs: number;
    /**
     * Record host and pid, so a lock whose process on this host is gone is stale at once. Only for
     * local folders: in Lambda every sandbox may share a hostname while pids live in separate
     * namespaces, so a live lock would look dead. @default false
     */
    recordProcess?: boolean;
  },
): Promise<LockHandle> {
  const nonce = randomBytes(8).toString('hex');
  const acquiredAt = new Date().toISOString();
  let ttlMs = options.ttlMs;
  const record = (state: LeaseRecord['state'] = 'held'): LeaseRecord => ({
    owner: options.owner,
    acquiredAt,
    expiresAt: new Date(Date.now() + (state === 'held' ? ttlMs : 0)).toISOString(),
    state,
    nonce,
    ...(options.recordProcess ? { host: hostname(), pid: process.pid } : {}),
  });
  const ours = (snapshot: LeaseSnapshot<V> | undefined): snapshot is LeaseSnapshot<V> =>
    snapshot?.record?.nonce === nonce && snapshot.record.state === 'held';
  /**
   * Runs a conditional write. When it failed or lost, what is there may be our own earlier write
   * whose answer never arrived: adopted (`wrote: false`). `undefined`: someone else's lock is there.
   */
  const attempt = async (
    write: () => Promise<V | undefined>,
  ): Promise<{ version: V; wrote: boolean } | undefined> => {
    try {
      const version = await write();
      if (version !== undefined) return { version, wrote: true };
    } catch (error) {
      const now = await backend.read().catch(() => undefined);
      if (ours(now)) return { version: now.version, wrote: false };
      throw error;
    }
    const now = await backend.read();
    return ours(now) ? { version: now.version, wrote: false } : undefined;
  };

  let taken = await attempt(() => backend.createIfAbsent(record()));
  if (taken === undefined) {
    const current = await backend.read();
    if (current === undefined) {
      // Released between our create and read: one more try.
      taken = await attempt(() => backend.createIfAbsent(record()));
      if (taken === undefined) throw new LockHeldError(storeUrl, holderOf(await backend.read()));
    } else {
      if (!isStale(current, options.ttlMs)) throw new LockHeldError(storeUrl, holderOf(current));
      taken = await attempt(() => backend.replaceIfUnchanged(current.version, record()));
      if (taken === undefined) throw new LockHeldError(storeUrl, holderOf(await backend.read()));
    }
  }

  let held: V = taken.version;
  let lost = false;
  let renewing: Promise<void> = Promise.resolve();
  // Renew while we run so a long backup is not mistaken for a crashed one.
  const renew = setInterval(
    () => {
      renewing = renewing.then(async () => {
        if (lost) return;
        try {
          // Twice: the first may only find our own earlier renewal whose answer was lost.
          for (let round = 0; round < 2; round += 1) {
            const current = held;
            const next = await attempt(() => backend.replaceIfUnchanged(current, record()));
            if (next === undefined) {
              // Taken over after it expired: never write it again.
              lost = true;
              return;
            }
            held = next.version;
            if (next.wrote) return;
          }
        } catch {
          // Retried at the next tick; the lock stays valid until it expires.
        }
      });
    },
    Math.max(1000, Math.floor(options.ttlMs / 3)),
  );
  renew.unref();

  let releasing: Promise<void> | undefined;
  const release = async (): Promise<void> => {
    clearInterval(renew);
    await renewing;
    if (lost) return;
    if (await backend.releaseIfUnchanged(held, record('released'))) return;
    // Changed since our last write: our renewal landed unseen (release that), or it was taken over.
    const now = await backend.read();
    if (ours(now)) await backend.releaseIfUnchanged(now.version, record('released'));
  };
  const handOver = async (newTtlMs: number): Promise<string> => {
    clearInterval(renew);
    await renewing;
    if (lost) throw new LockHeldError(storeUrl, holderOf(await backend.read()));
    ttlMs = newTtlMs;
    // Twice, as a renewal: the first may only find our own earlier write whose answer was lost.
    for (let round = 0; round < 2; round += 1) {
      const current = held;
      const next = await attempt(() => backend.replaceIfUnchanged(current, record()));
      if (next === undefined) {
        lost = true;
        throw new LockHeldError(storeUrl, holderOf(await backend.read()));
      }
      held = next.version;
      if (next.wrote) break;
    }
    return nonce;
  };
  return {
    release: () => {
      releasing ??= release();
      return releasing;
    },
    handOver,
  };
}

/**
 * Releases a lock that {@link LockHandle.handOver} passed to another process (a later step of a
 * state machine), identified by the token handOver returned. False when the lock is no longer that
 * hand-over's (released already, expired and taken over): nothing is written then.
 */
export async function releaseHandedOverLease<V>(backend: LeaseBackend<V>, token: string): Promise<boolean> {
  for (let round = 0; round < 3; round += 1) {
    const now = await backend.read();
    if (!now?.record || now.record.nonce !== token || now.record.state !== 'held') return false;
    const released: LeaseRecord = { ...now.record, state: 'released', expiresAt: new Date().toISOString() };
    if (await backend.releaseIfUnchanged(now.version, released)) return true;
  }
  return false;
}

/** Parses a lock body; `undefined` for anything that is not a lock record. */
export function parseLeaseRecord(text: string): LeaseRecord | undefined {
  try {
    const value = JSON.parse(text) as Partial<LeaseRecord> | null;
    if (typeof value !== 'object' || value === null) return undefined;
    if (typeof value.owner !== 'string' || typeof value.expiresAt !== 'string') return undefined;
    if (!Number.isFinite(Date.parse(value.expiresAt))) return undefined;
    return {
      owner: value.owner,
      acquiredAt: typeof value.acquiredAt === 'string' ? value.acquiredAt : '',
      expiresAt: value.expiresAt,
      state: value.state === 'released' ? 'released' : 'held',
      ...(typeof value.nonce === 'string' ? { nonce: value.nonce } : {}),
      ...(typeof value.host === 'string' ? { host: value.host } : {}),
      ...(typeof value.pid === 'number' ? { pid: value.pid } : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * A lock nobody holds any more: released, expired, or held by a process on this host that is gone.
 * A lock that does not parse (empty, torn, hand-edited) is held until nobody wrote it for a TTL:
 * reading an empty lock as stale let a second run take over a lock its owner was still writing.
 */
export function isStale(snapshot: LeaseSnapshot<unknown>, ttlMs: number): boolean {
  const holder = snapshot.record;
  if (!holder) return Date.now() - snapshot.modifiedAt.getTime() > ttlMs;
  if (holder.state === 'released') return true;
  if (Date.parse(holder.expiresAt) <= Date.now()) return true;
  if (holder.host === hostname() && holder.pid !== process.pid && Number.isInteger(holder.pid)) {
    try {
      process.kill(holder.pid as number, 0);
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }
  return false;
}

function holderOf(snapshot: LeaseSnapshot<unknown> | undefined): LockInfo | undefined {
  const r = snapshot?.record;
  return r ? { owner: r.owner, acquiredAt: r.acquiredAt, expiresAt: r.expiresAt } : undefined;
}
