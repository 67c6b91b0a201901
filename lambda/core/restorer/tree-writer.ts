import { createHash } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  constants as fsConstants,
  futimesSync,
  lstatSync,
  mkdirSync,
  openSync,
  writeSync,
} from 'node:fs';
import { chmod, type FileHandle, lutimes, open, symlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { MediaBackupError, RestoreTargetError } from '../errors.js';
import { fsPath } from '../fs-names.js';
import { comparePaths, type DirEntry, type SymlinkEntry } from '../repository/manifest.js';
import { ArchiveIntegrityError } from './archive-reader.js';

export function sizeMismatch(
  label: string,
  rel: string,
  actual: number,
  declared: number,
  /** Counted while streaming: the entry holds at least `actual` bytes. */
  atLeast = false,
): ArchiveIntegrityError {
  return new ArchiveIntegrityError(
    `${label}: file ${JSON.stringify(rel)} is ${atLeast ? 'at least ' : ''}${actual} bytes in the archive but the manifest declares ${declared} bytes; stopped before writing past the declared size. The archive or the manifest is corrupt or was altered; nothing was restored. Try another backup.`,
  );
}

const TARGET_FAILURES: Record<string, string> = {
  ENOSPC: 'no space left on the device (the disk is full)',
  EDQUOT: 'the disk quota is exceeded',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied (the target is not writable)',
  EPERM: 'operation not permitted (the target is not writable)',
  EIO: "an I/O error on the target's disk",
};

/**
 * Turns the error of a file system call on the restore target into a {@link RestoreTargetError}
 * that names the target and says the backup is not at fault. Other errors are returned as they are.
 */
export function targetError(error: unknown, target: string, action: string, where: string): unknown {
  const errno = error as NodeJS.ErrnoException;
  if (error instanceof MediaBackupError || typeof errno?.code !== 'string' || !errno.syscall) return error;
  const what = TARGET_FAILURES[errno.code] ?? `${errno.code} (${errno.message})`;
  return new RestoreTargetError(
    `restore target ${target}: ${action} ${where} failed: ${what}. The backup is not at fault and stays good: free space (or fix the permissions) at the target, or restore into a folder on another disk. Nothing was restored; the target was left as it was.`,
    { cause: error },
  );
}

/** Files up to this declared size are written concurrently (in memory whole); larger ones stream. */
const CONCURRENT_WRITE_MAX_FILE = 1024 * 1024;
/** Bytes held by concurrent writes at most. */
const CONCURRENT_WRITE_BYTES = 64 * 1024 * 1024;

/** Writes a tree under `root`, or only hashes when `root` is null (dry run). */
export class TreeWriter {
  /** Folders below root that we created or checked: real folders, not links. */
  private readonly folders = new Set<string>(['']);
  /** Files written at once (issue 13); 1 = one at a time, synchronously. Set once staging exists. */
  writeConcurrency = 1;
  private readonly inFlight = new Set<Promise<void>>();
  private inFlightBytes = 0;
  private writeError: unknown;

  constructor(
    private readonly root: string | null,
    private readonly label: string,
    /** The restore target the operator named (the root is a staging folder beside it). */
    private readonly target: string | null = root,
    private readonly hooks: { onBytes?: (n: number) => void; signal?: AbortSignal } = {},
  ) {}

  /** A failed file system call on the target: the target's fault, never the archive's. */
  private failed(error: unknown, action: string, rel: string): unknown {
    return targetError(error, this.target ?? '', action, rel ? `${this.target}/${rel}` : (this.target ?? ''));
  }

  private pathOf(rel: string): string | Buffer {
    // Paths were validated (no `..`, not absolute); join keeps them under root. A name that is not
    // valid UTF-8 is escaped in the string and goes to the file system as its original bytes.
    return fsPath(path.join(this.root!, ...rel.split('/')));
  }

  /**
   * Creates a folder and its parents one by one, refusing any component that is a link or a file:
   * nothing is ever written through a link, even one the restore itself created.
   */
  private async ensureFolder(rel: string): Promise<void> {
    if (this.folders.has(rel)) return;
    const slash = rel.lastIndexOf('/');
    await this.ensureFolder(slash < 0 ? '' : rel.slice(0, slash));
    const abs = this.pathOf(rel);
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(abs, { throwIfNoEntry: false });
      if (!st) mkdirSync(abs, { mode: 0o700 });
    } catch (error) {
      // Another process extracting another archive into the same staging folder (a restore state
      // machine's parallel steps) made it first: check what is there now.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
        throw this.failed(error, 'creating folder', rel);
      try {
        st = lstatSync(abs);
      } catch (again) {
        throw this.failed(again, 'creating folder', rel);
      }
    }
    if (st && !st.isDirectory()) {
      throw new ArchiveIntegrityError(
        `${this.label}: ${JSON.stringify(rel)} must be a folder but is a ${st.isSymbolicLink() ? 'symlink' : 'file'}; refusing to write below it`,
      );
    }
    this.folders.add(rel);
  }

  private parentOf(rel: string): string {
    const slash = rel.lastIndexOf('/');
    return slash < 0 ? '' : rel.slice(0, slash);
  }

  /**
   * Writes (or, in a dry run, only hashes) one file from the archive. Synchronous file calls on
   * purpose: async ones cost ~1 ms per file in thread-pool hand-offs here, which made a restore of
   * many small files 10x slower than GNU tar. Mode and mtime are set on the open descriptor.
   */
  async writeFile(
    rel: string,
    body: Readable,
    meta?: { mode: number; mtimeMs: number },
    /** The declared size: never hash or write a byte past it. */
    maxBytes = Number.POSITIVE_INFINITY,
  ): Promise<{ path: string; size: number; sha256: string }> {
    const hash = createHash('sha256');
    let size = 0;
    if (this.root === null) {
      for await (const chunk of body) {
        if (size + (chunk as Buffer).length > maxBytes) {
          throw sizeMismatch(this.label, rel, size + (chunk as Buffer).length, maxBytes, true);
        }
        this.hooks.signal?.throwIfAborted();
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
        this.hooks.onBytes?.((chunk as Buffer).length);
      }
      return { path: rel, size, sha256: hash.digest('hex') };
    }
    if (this.writeConcurrency > 1 && maxBytes <= CONCURRENT_WRITE_MAX_FILE) {
      return this.writeConcurrently(rel, body, meta, maxBytes);
    }
    await this.ensureFolder(this.parentOf(rel));
    let fd: number;
    try {
      // O_EXCL: never opens an existing file or follows a link at the path.
      fd = openSync(this.pathOf(rel), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ArchiveIntegrityError(`${this.label}: ${JSON.stringify(rel)} would be written twice`);
      }
      throw this.failed(error, 'creating file', rel);
    }
    try {
      for await (const chunk of body) {
        const buffer = chunk as Buffer;
        if (size + buffer.length > maxBytes)
          throw sizeMismatch(this.label, rel, size + buffer.length, maxBytes, true);
        this.hooks.signal?.throwIfAborted();
        hash.update(buffer);
        size += buffer.length;
        try {
          for (let at = 0; at < buffer.length; ) at += writeSync(fd, buffer, at);
        } catch (error) {
          throw this.failed(error, 'writing', rel);
        }
        this.hooks.onBytes?.(buffer.length);
      }
      if (meta) {
        try {
          fchmodSync(fd, meta.mode);
          futimesSync(fd, meta.mtimeMs / 1000, meta.mtimeMs / 1000);
        } catch (error) {
          throw this.failed(error, 'setting mode and time of', rel);
        }
      }
    } finally {
      closeSync(fd);
    }
    return { path: rel, size, sha256: hash.digest('hex') };
  }

  /**
   * A small file (declared size <= 1 MiB) is taken from the archive and hashed in memory, then
   * written by async calls while the next entries are read: up to `writeConcurrency` files and
   * 64 MiB in flight. Same rules as writeFile: the declared size is enforced while reading, O_EXCL
   * (never an existing file or a link), the folder chain checked first, mode and time on the
   * descriptor. A write's failure surfaces at the next file or at drain().
   */
  private async writeConcurrently(
    rel: string,
    body: Readable,
    meta: { mode: number; mtimeMs: number } | undefined,
    maxBytes: number,
  ): Promise<{ path: string; size: number; sha256: string }> {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      const buffer = chunk as Buffer;
      if (size + buffer.length > maxBytes)
        throw sizeMismatch(this.label, rel, size + buffer.length, maxBytes, true);
      this.hooks.signal?.throwIfAborted();
      hash.update(buffer);
      chunks.push(buffer);
      size += buffer.length;
      this.hooks.onBytes?.(buffer.length);
    }
    if (this.writeError !== undefined) throw this.writeError;
    await this.ensureFolder(this.parentOf(rel));
    while (
      this.inFlight.size > 0 &&
      (this.inFlight.size >= this.writeConcurrency || this.inFlightBytes + size > CONCURRENT_WRITE_BYTES)
    ) {
      await Promise.race(this.inFlight);
      if (this.writeError !== undefined) throw this.writeError;
    }
    const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
    this.inFlightBytes += size;
    const task = this.writeWhole(rel, data, meta)
      .catch((error) => {
        this.writeError ??= error;
      })
      .finally(() => {
        this.inFlight.delete(task);
        this.inFlightBytes -= size;
      });
    this.inFlight.add(task);
    return { path: rel, size, sha256: hash.digest('hex') };
  }

  private async writeWhole(
    rel: string,
    data: Buffer,
    meta?: { mode: number; mtimeMs: number },
  ): Promise<void> {
    let handle: FileHandle;
    try {
      // O_EXCL: never opens an existing file or follows a link at the path.
      handle = await open(
        this.pathOf(rel),
        fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL,
        0o600,
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ArchiveIntegrityError(`${this.label}: ${JSON.stringify(rel)} would be written twice`);
      }
      throw this.failed(error, 'creating file', rel);
    }
    try {
      try {
        // write(2) may write less than asked without an error (a disk filling part-way, NFS):
        // write the rest, or the file would be short in a restore reported as verified.
        for (let at = 0; at < data.length; ) {
          at += (await handle.write(data, at, data.length - at, at)).bytesWritten;
        }
      } catch (error) {
        throw this.failed(error, 'writing', rel);
      }
      if (meta) {
        try {
          await handle.chmod(meta.mode);
          await handle.utimes(meta.mtimeMs / 1000, meta.mtimeMs / 1000);
        } catch (error) {
          throw this.failed(error, 'setting mode and time of', rel);
        }
      }
    } finally {
      await handle.close();
    }
  }

  /** Waits for every concurrent write; throws the first failure. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.writeError !== undefined) throw this.writeError;
  }

  /** Waits for every concurrent write, ignoring failures (before the staging folder is removed). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
  }

  /** Folders, then modes and times, then links last (so no file is ever written through one). */
  async finish(
    dirs: readonly DirEntry[],
    symlinks: readonly SymlinkEntry[],
    root?: { readonly mode: number; readonly mtimeMs: number },
  ) {
    for (const d of dirs) await this.ensureFolder(d.path);
    for (const l of symlinks) {
      await this.ensureFolder(this.parentOf(l.path));
      try {
        await symlink(fsPath(l.target), this.pathOf(l.path));
        if (l.mtimeMs !== undefined) await lutimes(this.pathOf(l.path), l.mtimeMs / 1000, l.mtimeMs / 1000);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
          throw this.failed(error, 'creating symlink', l.path);
        throw new ArchiveIntegrityError(
          `${this.label}: symlink ${JSON.stringify(l.path)} cannot be created (${(error as NodeJS.ErrnoException).code}): a file or folder already has that path`,
          { cause: error },
        );
      }
    }
    // Deepest first, so restoring a read-only folder's mode does not block its children.
    for (const d of [...dirs].sort((a, b) => comparePaths(b.path, a.path))) {
      const p = this.pathOf(d.path);
      try {
        await chmod(p, d.mode);
        if (d.mtimeMs !== undefined) await utimes(p, d.mtimeMs / 1000, d.mtimeMs / 1000);
      } catch (error) {
        throw this.failed(error, 'setting mode and time of', d.path);
      }
    }
    // The root last: creating anything inside it changes its mtime.
    if (this.root) {
      try {
        await chmod(this.root, root?.mode ?? 0o755);
        if (root) await utimes(this.root, root.mtimeMs / 1000, root.mtimeMs / 1000);
      } catch (error) {
        throw this.failed(error, 'setting mode and time of', '');
      }
    }
  }
}
