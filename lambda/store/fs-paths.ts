import { realpathSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { StoreConfigError } from './types.js';

/**
 * Kernel file systems that look like folders but hold no files. Node's recursive mkdir spins for
 * ever on /proc (mkdir returns ENOENT although the parent exists, so it retries the parent without
 * end). /dev/shm is a real tmpfs and stays allowed.
 */
const SYSTEM_ROOTS = ['/proc', '/sys', '/dev'];
const ALLOWED_UNDER_SYSTEM = ['/dev/shm'];

/** Deeper than any real store path; bounds the walk up to an existing ancestor. */
const MAX_DEPTH = 256;

/**
 * Checks a folder store's root before anything touches it: no NUL byte (Node would throw a raw
 * argument error deep inside a write), and not on a kernel file system (after following symlinks
 * of the part that exists). Returns the absolute path.
 */
export function checkStoreRoot(root: string): string {
  if (root.includes('\0')) {
    throw new StoreConfigError(
      `store folder ${JSON.stringify(root)} contains a NUL byte: use file:///absolute/path or a folder path`,
    );
  }
  const absolute = path.resolve(root);
  const real = realpathOfExisting(absolute);
  for (const candidate of new Set([absolute, real])) {
    const system = SYSTEM_ROOTS.find((s) => candidate === s || candidate.startsWith(`${s}/`));
    const allowed = ALLOWED_UNDER_SYSTEM.some((a) => candidate === a || candidate.startsWith(`${a}/`));
    if (system && !allowed) {
      throw new StoreConfigError(
        `store folder ${absolute}${candidate !== absolute ? ` (really ${candidate})` : ''} is on the kernel's ${system} file system, which cannot hold backups: choose a folder on a disk`,
      );
    }
  }
  return absolute;
}

/** `absolute` with the symlinks of its longest existing ancestor resolved. */
function realpathOfExisting(absolute: string): string {
  let existing = absolute;
  const rest: string[] = [];
  for (let depth = 0; depth < MAX_DEPTH; depth += 1) {
    try {
      return path.join(realpathSync(existing), ...rest.reverse());
    } catch {
      const parent = path.dirname(existing);
      if (parent === existing) break;
      rest.push(path.basename(existing));
      existing = parent;
    }
  }
  return absolute;
}

/**
 * `mkdir -p` with a bounded number of steps: finds the nearest existing ancestor, then creates each
 * missing level once. Where a file system refuses a folder although its parent exists (ENOENT from
 * mkdir, as /proc does) it fails at once instead of retrying.
 */
export async function makeDirs(dir: string): Promise<void> {
  const missing: string[] = [];
  let current = dir;
  for (let depth = 0; ; depth += 1) {
    if (depth > MAX_DEPTH) throw new StoreConfigError(`store folder ${dir} is nested too deeply`);
    try {
      if ((await stat(current)).isDirectory()) break;
      throw new StoreConfigError(`cannot create folder ${dir}: ${current} exists and is not a folder`);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // ENOTDIR: a file somewhere above; the walk up finds and names it.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
      const parent = path.dirname(current);
      if (parent === current) throw error;
      missing.push(current);
      current = parent;
    }
  }
  for (const folder of missing.reverse()) {
    try {
      await mkdir(folder);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && (await stat(folder)).isDirectory()) continue;
      if (code === 'ENOENT') {
        throw new StoreConfigError(
          `cannot create folder ${folder}: the file system refuses it although its parent exists (not a disk folder?); choose another store folder`,
          { cause: error },
        );
      }
      throw error;
    }
  }
}
