import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tarStream from 'tar-stream';
import { MediaBackupError } from '../errors.js';
import { decodeFsName } from '../fs-names.js';
import { assertSafeRelativePath } from '../repository/manifest.js';

/** An archive is damaged or does not match its manifest: restoring from it would give wrong bytes. */
export class ArchiveIntegrityError extends MediaBackupError {
  override readonly name = 'ArchiveIntegrityError';
}

export type TarEntryType = 'file' | 'directory' | 'symlink';

export interface TarEntry {
  /** Validated relative path, without the trailing `/` of folders. */
  readonly path: string;
  readonly type: TarEntryType;
  readonly size: number;
  readonly mode: number;
  readonly mtime: Date;
  readonly linkname: string | null;
  /** The entry's bytes; must be consumed (or resumed) before the next entry arrives. */
  readonly body: Readable;
}

/**
 * A name as our paths spell it. PAX records are UTF-8 and tar-stream decodes them as such; ustar
 * fields and GNU long names are raw bytes (media-backup writes a name that is not valid UTF-8 as a
 * GNU long name, byte-exact, as GNU tar does), read as latin1 and decoded here: UTF-8 when valid,
 * else with the escapes of fs-names.ts.
 */
function entryName(name: string, fromPax: string | undefined): string {
  if (fromPax !== undefined || !/[\u0080-\uffff]/.test(name)) return name;
  return decodeFsName(Buffer.from(name, 'latin1'));
}

/**
 * Reads a tar.gz stream entry by entry, refusing anything media-backup never writes: unsafe paths
 * (`..`, absolute, NUL), hardlinks, devices, FIFOs. `label` names the backup and archive in errors.
 * Damage (truncated or corrupt gzip, broken tar) surfaces as {@link ArchiveIntegrityError}.
 */
export async function readTarGz(
  body: Readable,
  label: string,
  visit: (entry: TarEntry) => Promise<void>,
  /** Stops reading: the archive's stream is closed and the signal's reason thrown. */
  signal?: AbortSignal,
): Promise<void> {
  // latin1: ustar and GNU long-name fields come back byte for byte (see `entryName`).
  // (A tar-stream option its type declarations do not list.)
  const extract = tarStream.extract({ filenameEncoding: 'latin1' } as Parameters<
    typeof tarStream.extract
  >[0]);
  // Large chunks: each one is a thread-pool hand-off, and 16 KiB ones made gunzip the bottleneck.
  const gunzip = createGunzip({ chunkSize: 1024 * 1024 });
  const feeding = pipeline(body, gunzip, extract as unknown as NodeJS.WritableStream);
  let feedError: unknown;
  let visitError: unknown;
  feeding.catch((error) => {
    feedError = error;
    extract.destroy(error);
  });
  // Another archive of the same restore failed (or Ctrl-C): stop waiting for this one's bytes.
  const onAbort = () => {
    const reason = signal?.reason ?? new Error('stopped');
    body.destroy(reason);
    extract.destroy(reason);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    for await (const raw of extract) {
      const header = raw.header;
      const pax = (header.pax ?? {}) as { path?: string; linkpath?: string };
      // `tar -czf x.tar.gz -C media .` (the obvious command) names entries `./` and `./avatars/u1.jpg`:
      // the same tree rooted at `.`. The `./` entry is the target folder itself: nothing to create.
      const fullName = entryName(header.name, pax.path).replace(/^(?:\.\/+)+/, '');
      const name = header.type === 'directory' ? fullName.replace(/\/+$/, '') : fullName;
      if (header.type === 'directory' && (name === '' || name === '.')) {
        (raw as unknown as Readable).resume();
        continue;
      }
      assertSafeRelativePath(name, `${label}: archive entry`);
      if (header.type !== 'file' && header.type !== 'directory' && header.type !== 'symlink') {
        throw new ArchiveIntegrityError(
          `${label}: entry ${JSON.stringify(name)} is a ${header.type}; media-backup archives hold only files, folders and symlinks, so this archive was altered or not made by media-backup. Nothing was restored from it.`,
        );
      }
      await visit({
        path: name,
        type: header.type,
        size: header.size ?? 0,
        mode: header.mode ?? 0o644,
        mtime: header.mtime ?? new Date(0),
        linkname: header.linkname == null ? null : entryName(header.linkname, pax.linkpath),
        body: raw as unknown as Readable,
      }).catch((error) => {
        visitError = error;
        throw error;
      });
      // Skip whatever the visitor did not read.
      (raw as unknown as Readable).resume();
    }
    await feeding;
  } catch (error) {
    body.destroy();
    // The visitor's own verdict first, then why we were stopped; a torn-down pipeline only reports
    // "premature close".
    const cause = visitError ?? (signal?.aborted ? signal.reason : undefined) ?? feedError ?? error;
    // A stop the caller asked for (Ctrl-C) is not damage either.
    if (cause instanceof MediaBackupError || (cause as Error)?.name === 'AbortError') throw cause;
    // Stopped because another archive failed: that failure is the story, not this archive.
    if (signal?.aborted && cause === signal.reason) throw cause;
    throw new ArchiveIntegrityError(
      `${label} is damaged or truncated (${(cause as Error)?.message ?? String(cause)}). Use another backup, or check the object in the store.`,
      { cause },
    );
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
