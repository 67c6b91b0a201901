import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FsAssembly, type FsSource, pinFile, readRange } from './fs-assembly.js';
import { acquireFsLock, fsLeaseBackend } from './fs-lock.js';
import { checkStoreRoot, makeDirs } from './fs-paths.js';
import { releaseHandedOverLease } from './lease.js';
import {
  type AssembleOptions,
  type Assembly,
  assertSafeKey,
  isReplaceableKey,
  type Leftover,
  type LockHandle,
  ObjectExistsError,
  ObjectNotFoundError,
  type ObjectStore,
  type RemoveLeftoversOptions,
  removableLeftovers,
  type SourcePin,
  StoreConfigError,
  type StoredObject,
  type UploadOptions,
  type UploadResult,
} from './types.js';

/** Marks a file being written; never listed, removed when the write fails. */
const PARTIAL_MARK = '.partial-';

/**
 * A local folder as a store: each key is a file below `root`. Writes go to a temporary sibling and
 * are moved into place, so a crash never leaves a half-written object under its real name. Backup
 * history (everything outside `locks/` and `status/`) is linked into place, which fails when the
 * name exists, so a committed file is never replaced; status records are renamed over.
 */
export class FsObjectStore implements ObjectStore {
  readonly url: string;
  readonly localPath: string;
  /** The folder assembly computes CRC64NVME of every byte it writes and refuses a mismatch. */
  readonly checksAssembledCrc = true;

  constructor(readonly root: string) {
    this.root = checkStoreRoot(root);
    this.localPath = this.root;
    this.url = `file://${this.root}`;
  }

  private pathOf(key: string): string {
    assertSafeKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  private async tempPathFor(key: string): Promise<string> {
    const target = this.pathOf(key);
    await makeDirs(path.dirname(target));
    return `${target}${PARTIAL_MARK}${randomBytes(6).toString('hex')}`;
  }

  async upload(key: string, body: Readable, options: UploadOptions = {}): Promise<UploadResult> {
    const target = this.pathOf(key);
    const temp = await this.tempPathFor(key);
    try {
      const out = createWriteStream(temp, { flags: 'wx' });
      await pipeline(body, out, { signal: options.signal });
      const fh = await open(temp, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await this.commit(key, temp, target);
    } catch (error) {
      body.destroy();
      await rm(temp, { force: true });
      throw error;
    }
    return { key, bytes: (await stat(target)).size };
  }

  async put(key: string, body: Buffer | string): Promise<void> {
    const target = this.pathOf(key);
    const temp = await this.tempPathFor(key);
    try {
      await writeFile(temp, body, { flag: 'wx', flush: true });
      await this.commit(key, temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }

  /** Moves a fully written temp file into place: exclusively for backup history, over the old one for status. */
  private async commit(key: string, temp: string, target: string): Promise<void> {
    if (isReplaceableKey(key)) {
      await rename(temp, target);
      return;
    }
    try {
      // link() fails with EEXIST instead of replacing, unlike rename(); the temp name goes after.
      await link(temp, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ObjectExistsError(`${this.url}/${key}`, { cause: error });
      }
      throw error;
    }
    // Committed: a temp name that could not be removed is only a leftover for the sweep.
    await unlink(temp).catch(() => undefined);
  }

  async get(key: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.pathOf(key));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async getStream(key: string): Promise<Readable> {
    const file = this.pathOf(key);
    try {
      const fh = await open(file, 'r');
      return fh.createReadStream({ highWaterMark: 1024 * 1024 });
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(this.url, key);
      throw error;
    }
  }

  /** Exactly `length` bytes at `offset`; with `pin`, only from the pinned file (else SourceChangedError). */
  async getRange(key: string, offset: number, length: number, pin?: SourcePin): Promise<Buffer> {
    return readRange(this.sourceOf(key), offset, length, pin);
  }

  /** Size and identity (device, inode, size, modification time) of a file, to pin reads and copies. */
  async pinSource(key: string): Promise<SourcePin | undefined> {
    return pinFile(this.pathOf(key), key);
  }

  /**
   * Assembles `key` in a `*.partial-*` file next to it (a killed run's is a leftover like an
   * upload's) with positional writes and range copies, then links it into place as a create.
   */
  async assemble(key: string, options: AssembleOptions = {}): Promise<Assembly> {
    options.signal?.throwIfAborted();
    const target = this.pathOf(key);
    const temp = await this.tempPathFor(key);
    return FsAssembly.start({
      key,
      temp,
      location: `${this.url}/${key}`,
      sourceOf: (sourceKey) => this.sourceOf(sourceKey),
      commit: () => this.commit(key, temp, target),
      signal: options.signal,
      sha256: options.sha256,
    });
  }

  private sourceOf(key: string): FsSource {
    return { file: this.pathOf(key), key, storeUrl: this.url };
  }

  async head(key: string): Promise<StoredObject | undefined> {
    try {
      const st = await stat(this.pathOf(key));
      return st.isFile() ? { key, size: st.size, lastModified: st.mtime } : undefined;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if (isNotFound(error)) return;
        throw error;
      }
      for (const entry of entries) {
        const key = rel ? `${rel}/${entry.name}` : entry.name;
        // Only descend where the prefix can still match.
        if (!key.startsWith(prefix) && !prefix.startsWith(`${key}/`)) continue;
        if (entry.isDirectory()) {
          await walk(path.join(dir, entry.name), key);
        } else if (entry.isFile() && !entry.name.includes(PARTIAL_MARK) && key.startsWith(prefix)) {
          const st = await stat(path.join(dir, entry.name));
          out.push({ key, size: st.size, lastModified: st.mtime });
        }
      }
    };
    await walk(this.root, '');
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** `*.partial-*` files of writes that never finished (the run was killed before it could remove them). */
  async listLeftovers(): Promise<Leftover[]> {
    const out: Leftover[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if (isNotFound(error)) return;
        throw error;
      }
      for (const entry of entries) {
        const id = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          await walk(path.join(dir, entry.name), id);
          continue;
        }
        const mark = entry.name.indexOf(PARTIAL_MARK);
        if (!entry.isFile() || mark < 0) continue;
        const st = await stat(path.join(dir, entry.name)).catch(() => undefined);
        if (!st) continue; // finished or removed meanwhile
        const key = rel ? `${rel}/${entry.name.slice(0, mark)}` : entry.name.slice(0, mark);
        out.push({ key, kind: 'partial-file', since: st.mtime, bytes: st.size, id });
      }
    };
    await walk(this.root, '');
    return out.sort((a, b) => a.since.getTime() - b.since.getTime());
  }

  async removeLeftovers(options: RemoveLeftoversOptions): Promise<Leftover[]> {
    const removed: Leftover[] = [];
    for (const leftover of removableLeftovers(await this.listLeftovers(), options)) {
      await rm(path.join(this.root, ...leftover.id.split('/')), { force: true });
      removed.push(leftover);
    }
    return removed;
  }

  async acquireLock(name: string, options: { owner: string; ttlMs: number }): Promise<LockHandle> {
    return acquireFsLock(this.pathOf(`locks/${name}.lock`), this.url, options);
  }

  async releaseLock(name: string, token: string): Promise<boolean> {
    const file = this.pathOf(`locks/${name}.lock`);
    return releaseHandedOverLease(fsLeaseBackend(file, this.url, 60_000), token);
  }

  /** Deletes every object (and partial file) whose key starts with `prefix`; the count of objects. */
  async removePrefix(prefix: string): Promise<number> {
    if (prefix.length === 0) throw new StoreConfigError('removePrefix needs a non-empty prefix');
    const objects = await this.list(prefix);
    for (const o of objects) await rm(this.pathOf(o.key), { force: true });
    for (const l of await this.listLeftovers()) {
      if (l.key.startsWith(prefix)) await rm(path.join(this.root, ...l.id.split('/')), { force: true });
    }
    // A prefix that names a folder (`staging/backup_x/`): remove the folder too once empty.
    if (prefix.endsWith('/')) await rm(this.pathOf(prefix.slice(0, -1)), { recursive: true, force: true });
    return objects.length;
  }
}

function isNotFound(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
