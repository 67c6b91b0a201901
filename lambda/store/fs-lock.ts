import { randomBytes } from 'node:crypto';
import { link, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { makeDirs } from './fs-paths.js';
import { acquireLease, type LeaseBackend, type LeaseSnapshot, parseLeaseRecord } from './lease.js';
import { type LockHandle, LockHeldError } from './types.js';

/**
 * The backup lock of a folder store ({@link acquireLease} runs the protocol), made of files only: no
 * daemon, and it works on NFS/EFS, which support hard links. A version is the file's exact text.
 *
 * - **Create if absent**: the complete record goes to a temporary file, which is then `link()`ed to
 *   the lock name. `link` fails with EEXIST when the name exists and never replaces it, so nobody
 *   ever reads a half-written lock and of N runs starting together exactly one wins.
 * - **Replace / release if unchanged** run under a second exclusive file, `<lock>.takeover`
 *   (created the same way): its holder re-reads the lock and only if it still has the exact bytes
 *   expected renames a fresh record over it (or removes it). Two runs taking over one stale lock
 *   cannot both win, and a renewal never overwrites a lock another run took over. A `.takeover`
 *   file older than the TTL (its run died holding it) is removed; that attempt counts as busy.
 */
export function acquireFsLock(
  file: string,
  storeUrl: string,
  options: { owner: string; ttlMs: number },
): Promise<LockHandle> {
  return makeDirs(path.dirname(file)).then(() =>
    acquireLease(fsLeaseBackend(file, storeUrl, options.ttlMs), storeUrl, {
      ...options,
      recordProcess: true,
    }),
  );
}

export function fsLeaseBackend(file: string, storeUrl: string, ttlMs: number): LeaseBackend<string> {
  const mutex = `${file}.takeover`;
  /** Runs `change` while holding the mutex; throws LockHeldError when another run holds it. */
  const exclusively = async <T>(change: () => Promise<T>): Promise<T> => {
    if (!(await linkInPlace(mutex, JSON.stringify({ pid: process.pid, host: hostname() })))) {
      const st = await stat(mutex).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > ttlMs) await rm(mutex, { force: true });
      throw new LockHeldError(storeUrl, undefined);
    }
    try {
      return await change();
    } finally {
      await rm(mutex, { force: true });
    }
  };
  const read = (): Promise<LeaseSnapshot<string> | undefined> => readSnapshot(file);
  return {
    read,
    createIfAbsent: async (record) => {
      const text = JSON.stringify(record);
      return (await linkInPlace(file, text)) ? text : undefined;
    },
    replaceIfUnchanged: (version, record) =>
      exclusively(async () => {
        if ((await read())?.version !== version) return undefined;
        const text = JSON.stringify(record);
        const temp = tempName(file, 'replace');
        await writeFile(temp, text, { flag: 'wx', flush: true });
        try {
          await rename(temp, file);
        } catch (error) {
          await rm(temp, { force: true });
          throw error;
        }
        return text;
      }),
    releaseIfUnchanged: (version) =>
      exclusively(async () => {
        if ((await read())?.version !== version) return false;
        await rm(file, { force: true });
        return true;
      }),
  };
}

/** Writes `text` to a temp file and links it to `file`; false when `file` exists (never replaced). */
async function linkInPlace(file: string, text: string): Promise<boolean> {
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

async function readSnapshot(file: string): Promise<LeaseSnapshot<string> | undefined> {
  let modifiedAt: Date;
  try {
    modifiedAt = (await stat(file)).mtime;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const text = await readFile(file, 'utf8');
    return { version: text, record: parseLeaseRecord(text), modifiedAt };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    // Unreadable (permissions, I/O): held by an unknown run until it is older than the TTL.
    return { version: `\0unreadable:${code}`, record: undefined, modifiedAt };
  }
}

/** Temp files carry the folder store's `.partial-` mark: hidden from listings, swept as leftovers. */
function tempName(file: string, purpose: string): string {
  return `${file}.partial-${purpose}-${randomBytes(6).toString('hex')}`;
}
