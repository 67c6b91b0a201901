import { randomBytes } from 'node:crypto';
import { link, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { makeDirs } from './fs-paths.js';
import { type LockHandle, LockHeldError, type LockInfo } from './types.js';

/** Body of `locks/<name>.lock` in a folder store. */
interface FsLockRecord extends LockInfo {
  readonly host: string;
  readonly pid: number;
  /** Random per acquisition: tells this run's lock from another run's in the same process. */
  readonly nonce?: string;
}

/** What the lock file held when it was read: its exact text, and the record if it parses. */
interface LockSnapshot {
  readonly text: string;
  readonly record: FsLockRecord | undefined;
  readonly mtimeMs: number;
}

/**
 * The backup lock of a folder store, made of files only (no daemon, works on NFS/EFS, which support
 * hard links):
 *
 * - **Create**: the complete record is written to a temporary file, then `link()`ed to the lock
 *   name. `link` fails with EEXIST when the name exists and never replaces it, so a reader never
 *   sees a half-written lock and of N runs starting together exactly one wins.
 * - **Held or stale**: a lock whose record parses is stale once `expiresAt` has passed (or its
 *   process on this host is gone). A lock that is empty or does not parse (hand-edited, written by
 *   an older version) is *held* until its mtime is older than the TTL: reading it as stale let a
 *   second run take over a lock whose owner was still writing it.
 * - **Takeover** of a stale lock happens under a second exclusive file, `<lock>.takeover` (created
 *   the same way): its holder re-reads the lock, and only if it still has the exact bytes that were
 *   judged stale renames a fresh record over it. Two runs taking over the same stale lock therefore
 *   cannot both win. A `.takeover` file older than the TTL (its run died mid-takeover) is removed,
 *   and that attempt reports the lock as held; the next run proceeds.
 * - **Renew and release** are compare-and-replace: read the lock, check it carries our nonce, then
 *   rename a fresh temp file over it (renew) or remove it (release). A folder has no atomic
 *   compare-and-swap, so there is a window of one read-to-rename between the check and the write;
 *   it only matters if another run took the lock over in that instant, which it can only do once our
 *   lock has expired, which renewing every TTL/3 prevents while we are alive.
 */
export async function acquireFsLock(
  file: string,
  storeUrl: string,
  options: { owner: string; ttlMs: number },
): Promise<LockHandle> {
  await makeDirs(path.dirname(file));
  const nonce = randomBytes(8).toString('hex');
  const acquiredAt = new Date().toISOString();
  const record = (): FsLockRecord => ({
    owner: options.owner,
    acquiredAt,
    expiresAt: new Date(Date.now() + options.ttlMs).toISOString(),
    host: hostname(),
    pid: process.pid,
    nonce,
  });

  if (!(await createIfAbsent(file, JSON.stringify(record())))) {
    const current = await readSnapshot(file);
    if (current === undefined) {
      // Released between our create and read: one more try, then report it as held.
      if (!(await createIfAbsent(file, JSON.stringify(record()))))
        throw new LockHeldError(storeUrl, (await readSnapshot(file))?.record);
    } else {
      if (!isStale(current, options.ttlMs)) throw new LockHeldError(storeUrl, current.record);
      await takeOver(file, current, JSON.stringify(record()), storeUrl, options.ttlMs);
    }
  }

  let lost = false;
  let renewing: Promise<void> = Promise.resolve();
  const isOurs = (snapshot: LockSnapshot | undefined): boolean => snapshot?.record?.nonce === nonce;
  // Renew while we run so a long backup is not mistaken for a crashed one.
  const renew = setInterval(
    () => {
      renewing = renewing.then(async () => {
        if (lost) return;
        try {
          const temp = tempName(file, 'renew');
          await writeFile(temp, JSON.stringify(record()), { flag: 'wx' });
          if (!isOurs(await readSnapshot(file))) {
            // Taken over after it expired: never write it again.
            lost = true;
            await rm(temp, { force: true });
            return;
          }
          await rename(temp, file);
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
    if (isOurs(await readSnapshot(file))) await rm(file, { force: true });
  };
  return {
    release: () => {
      releasing ??= release();
      return releasing;
    },
  };
}

/** Writes `text` to a temp file and links it to `file`; false when `file` exists (never replaced). */
async function createIfAbsent(file: string, text: string): Promise<boolean> {
  const temp = tempName(file, 'new');
  await writeFile(temp, text, { flag: 'wx', flush: true });
  try {
    await link(temp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await rm(temp, { force: true });
  }
}

async function takeOver(
  file: string,
  judged: LockSnapshot,
  text: string,
  storeUrl: string,
  ttlMs: number,
): Promise<void> {
  const mutex = `${file}.takeover`;
  if (!(await createIfAbsent(mutex, JSON.stringify({ pid: process.pid, host: hostname() })))) {
    // Another run is taking it over right now, or one died doing so: clear that after the TTL.
    const st = await stat(mutex).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > ttlMs) await rm(mutex, { force: true });
    throw new LockHeldError(storeUrl, judged.record);
  }
  try {
    const current = await readSnapshot(file);
    if (current !== undefined && current.text !== judged.text) {
      // Someone took it over (or its owner renewed it) since we read it.
      throw new LockHeldError(storeUrl, current.record);
    }
    const temp = tempName(file, 'takeover');
    await writeFile(temp, text, { flag: 'wx', flush: true });
    try {
      await rename(temp, file);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  } finally {
    await rm(mutex, { force: true });
  }
}

async function readSnapshot(file: string): Promise<LockSnapshot | undefined> {
  let mtimeMs: number;
  try {
    mtimeMs = (await stat(file)).mtimeMs;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const text = await readFile(file, 'utf8');
    return { text, record: parseRecord(text), mtimeMs };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    // Unreadable (permissions, I/O): held by an unknown run until it is older than the TTL.
    return { text: `\0unreadable:${code}`, record: undefined, mtimeMs };
  }
}

function parseRecord(text: string): FsLockRecord | undefined {
  try {
    const value = JSON.parse(text) as Partial<FsLockRecord>;
    if (typeof value !== 'object' || value === null) return undefined;
    if (typeof value.owner !== 'string' || typeof value.expiresAt !== 'string') return undefined;
    if (!Number.isFinite(Date.parse(value.expiresAt))) return undefined;
    return value as FsLockRecord;
  } catch {
    return undefined;
  }
}

function isStale(snapshot: LockSnapshot, ttlMs: number): boolean {
  const holder = snapshot.record;
  // Empty, torn or foreign: held until nobody has touched it for a whole TTL.
  if (!holder) return Date.now() - snapshot.mtimeMs > ttlMs;
  if (Date.parse(holder.expiresAt) < Date.now()) return true;
  if (holder.host === hostname() && holder.pid !== process.pid && Number.isInteger(holder.pid)) {
    try {
      process.kill(holder.pid, 0);
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }
  return false;
}

/** Temp files carry the folder store's `.partial-` mark: hidden from listings, swept as leftovers. */
function tempName(file: string, purpose: string): string {
  return `${file}.partial-${purpose}-${randomBytes(6).toString('hex')}`;
}
