import type { Readable } from 'node:stream';

/** One object in a store, as listings return it. */
export interface StoredObject {
  /** Key relative to the store's root/prefix, POSIX separators, e.g. `full/backup_20251227_020000.tar.gz`. */
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date;
}

/** Storage tier for a written object. Archives go to infrequent access; small objects stay STANDARD. */
export type StorageTier = 'archive' | 'standard';

export interface PutOptions {
  /** @default 'standard' */
  readonly tier?: StorageTier;
  readonly contentType?: string;
}

export interface UploadOptions extends PutOptions {
  /**
   * Upper bound of the stream's length in bytes, when known. S3 allows at most 10,000 parts, so the
   * multipart part size is derived from it (part sizes cannot change mid-upload).
   */
  readonly maxBytes?: number;
  /** Aborts the upload; nothing becomes visible. */
  readonly signal?: AbortSignal;
}

export interface UploadResult {
  readonly key: string;
  /** Bytes the store reports for the object after the write (re-read, not what we think we sent). */
  readonly bytes: number;
  /**
   * The object's full-object CRC64NVME (base64) as the store reports it after the write, equal to
   * the one computed over the bytes sent. Only stores that keep checksums (S3) return it.
   */
  readonly crc64nvme?: string;
}

/**
 * Prefixes of the only objects a run may replace: the lock and the status records. Everything else
 * (archives, metadata, manifests) is backup history: created once, never replaced, so a buggy or
 * compromised writer cannot overwrite a good backup or plant a fake one under an existing key.
 */
export const REPLACEABLE_PREFIXES: readonly string[] = ['locks/', 'status/'];

/** Whether `put`/`upload` may replace an existing object at `key` ({@link REPLACEABLE_PREFIXES}). */
export function isReplaceableKey(key: string): boolean {
  return REPLACEABLE_PREFIXES.some((prefix) => key.startsWith(prefix));
}

/**
 * Something a killed run left behind (kill -9, power loss): a folder store's `*.partial-*` file, or
 * an S3 multipart upload that was never completed nor aborted. Invisible to listings; billed or
 * taking disk space until removed.
 */
export interface Leftover {
  /** The key the run was writing, e.g. `full/backup_20251227_020000.tar.gz`. */
  readonly key: string;
  readonly kind: 'partial-file' | 'multipart-upload';
  /** When it was last written (file mtime) or started (multipart upload initiation). */
  readonly since: Date;
  /** Bytes it holds (the file's size, or the sum of the uploaded parts). */
  readonly bytes: number;
  /** Store-specific identity (the file name, or the upload id). */
  readonly id: string;
}

/** The options of {@link ObjectStore.removeLeftovers}. */
export interface RemoveLeftoversOptions {
  readonly olderThanMs: number;
  readonly now?: Date;
  /** Only leftovers whose key starts with this (one run's parts and work objects). */
  readonly keyPrefix?: string;
}

/**
 * The leftovers `removeLeftovers` may remove: last written more than `olderThanMs` ago (a write still
 * in progress has a fresh time and is never touched) and, with `keyPrefix`, only that run's.
 */
export function removableLeftovers(
  leftovers: readonly Leftover[],
  options: RemoveLeftoversOptions,
): Leftover[] {
  const now = (options.now ?? new Date()).getTime();
  return leftovers.filter(
    (l) =>
      now - l.since.getTime() > options.olderThanMs &&
      (options.keyPrefix === undefined || l.key.startsWith(options.keyPrefix)),
  );
}

/** A held lock; `release` is idempotent. */
export interface LockHandle {
  release(): Promise<void>;
  /**
   * Passes the lock to work that continues in other processes (the steps of a sharded run's state
   * machine): stops renewing it, rewrites its expiry to `ttlMs` from now and returns a token with
   * which {@link ObjectStore.releaseLock} releases it later. The lock stays held until then, or until
   * it expires if those steps die. Throws LockHeldError when the lock was lost meanwhile.
   */
  handOver?(ttlMs: number): Promise<string>;
}

/** What a store knows about the current holder of a lock. */
export interface LockInfo {
  readonly owner: string;
  readonly acquiredAt: string;
  readonly expiresAt: string;
}

/**
 * An object pinned as the source of range copies and ranged reads: reads and copies with the pin
 * fail with {@link SourceChangedError} when the object was replaced or changed since it was pinned,
 * so an assembly never mixes bytes of two versions of a source.
 */
export interface SourcePin {
  readonly key: string;
  /** S3: the object's ETag; folder store: device, inode, size and modification time of the file. */
  readonly etag?: string;
  /** S3 on a versioned bucket: the version copied from. */
  readonly versionId?: string;
  readonly size: number;
}

/** The options of {@link ObjectStore.assemble}. */
export interface AssembleOptions {
  /** @default 'standard' */
  readonly tier?: StorageTier;
  /** e.g. `application/gzip` (S3 only). */
  readonly contentType?: string;
  /** Aborts the assembly: requests in flight are cancelled and nothing becomes visible. */
  readonly signal?: AbortSignal;
  /**
   * Also compute the object's sha256 where the store reads every byte anyway (the folder store).
   * S3 never does (the bytes stay in S3). @default true
   */
  readonly sha256?: boolean;
}

/** What {@link Assembly.complete} expects the assembled object to be. */
export interface AssemblyExpectation {
  readonly bytes: number;
  /** Full-object CRC64NVME, base64 of the 8 big-endian bytes (as S3's `x-amz-checksum-crc64nvme`). */
  readonly crc64nvme: string;
}

/** What {@link Assembly.complete} wrote. */
export interface AssemblyResult extends UploadResult {
  /** sha256 (hex) of the object's bytes, when the store computed it (the folder store does). */
  readonly sha256?: string;
}

/**
 * An object being assembled from parts, each either bytes uploaded by the caller or a range copied
 * inside the store from a pinned source (S3: a multipart upload with UploadPartCopy; folder store: a
 * temporary file next to the target). Parts may be written in any order and concurrently; part
 * numbers follow the parts' order in the object (1, 2, ...), and `offset` is where a part starts in
 * it. Nothing is visible at the key before {@link complete} succeeds; after any failure, call
 * {@link abort} (the assembly aborts itself on its own failures and on the abort signal too).
 */
export interface Assembly {
  /** Smallest part except the last (S3: 5 MiB; folder store: 0). */
  readonly minPartBytes: number;
  /** Largest part (S3: 5 GiB). */
  readonly maxPartBytes: number;
  /** Most parts per object (S3: 10,000). */
  readonly maxParts: number;
  /**
   * Ranges are copied only from sources larger than this (S3: 5,000,000 bytes, UploadPartCopy's
   * rule for ranged copies); smaller sources must be read and uploaded. Folder store: 0.
   */
  readonly minCopySourceBytes: number;
  uploadPart(partNumber: number, offset: number, body: Buffer): Promise<void>;
  /**
   * Copies `length` bytes at `sourceOffset` of the pinned `source` into the part. A source that is
   * missing throws {@link ObjectNotFoundError} naming it; one that changed since it was pinned,
   * {@link SourceChangedError}.
   */
  copyPart(
    partNumber: number,
    offset: number,
    source: SourcePin,
    sourceOffset: number,
    length: number,
  ): Promise<void>;
  /**
   * Makes the object visible at its key, as a create ({@link ObjectExistsError} when the key
   * exists), after checking that the parts cover `expected.bytes` without gap and that the bytes
   * have `expected.crc64nvme` (S3 checks it on CompleteMultipartUpload and reports it on a HEAD
   * that is then compared; the folder store computes it over every byte it wrote or copied and
   * refuses a mismatch before linking the file into place).
   */
  complete(expected: AssemblyExpectation): Promise<AssemblyResult>;
  /** Removes what was written (idempotent; a no-op after a successful complete). */
  abort(): Promise<void>;
}

/**
 * Where backups live. Keys are the same in every store (docs/ARCHITECTURE.md, Object layout), so a folder store
 * copied to S3 (or the reverse) stays valid.
 */
export interface ObjectStore {
  /** Human-readable location, e.g. `file:///srv/backups` or `s3://bucket/media-backups/`. */
  readonly url: string;
  /** For stores that are a local folder: its absolute path, so a backup never archives its own store. */
  readonly localPath?: string;
  /**
   * Streams `body` to `key`. The object becomes visible only when the whole stream was written;
   * on any error (including an error from `body`) nothing is left behind under `key`. Outside
   * {@link REPLACEABLE_PREFIXES} the write is a create: {@link ObjectExistsError} when `key` exists.
   */
  upload(key: string, body: Readable, options?: UploadOptions): Promise<UploadResult>;
  /**
   * Writes a small object whole (atomically: readers see the old or the new content). Outside
   * {@link REPLACEABLE_PREFIXES} the write is a create: {@link ObjectExistsError} when `key` exists
   * with other bytes (the same bytes count as written: a retry whose first attempt succeeded).
   */
  put(key: string, body: Buffer | string, options?: PutOptions): Promise<void>;
  /** Reads a whole object; `undefined` when it does not exist. */
  get(key: string): Promise<Buffer | undefined>;
  /** Streams an object; throws {@link ObjectNotFoundError} when it does not exist. */
  getStream(key: string): Promise<Readable>;
  /** Size and date of an object; `undefined` when it does not exist. */
  head(key: string): Promise<StoredObject | undefined>;
  /**
   * Size and stored full-object CRC64NVME of an object without reading its body; `undefined` when
   * it does not exist. Only stores that keep checksums (S3) have it; `crc64nvme` is absent when the
   * object has none.
   */
  headChecksum?(key: string): Promise<{ size: number; crc64nvme?: string } | undefined>;
  /** Every object whose key starts with `prefix`, sorted by key. */
  list(prefix: string): Promise<StoredObject[]>;
  /**
   * Takes the named lock or throws {@link LockHeldError}. A lock whose holder stopped renewing it
   * (crashed) expires after `ttlMs` and can be taken over.
   */
  acquireLock(name: string, options: { owner: string; ttlMs: number }): Promise<LockHandle>;
  /** Releases a lock passed on with {@link LockHandle.handOver}; false when it is no longer that hand-over's. */
  releaseLock?(name: string, token: string): Promise<boolean>;
  /**
   * Deletes every object under `prefix` (a failed sharded run's uncommitted parts and its `staging/`
   * work objects). Only folder stores have it: on S3 the backup role cannot delete (a compromised run
   * must not remove backups); lifecycle rules expire those objects there.
   */
  removePrefix?(prefix: string): Promise<number>;
  /** Leftovers of killed runs ({@link Leftover}), oldest first. */
  listLeftovers?(): Promise<Leftover[]>;
  /**
   * Removes the leftovers last written more than `olderThanMs` before `now` (use at least the lock
   * TTL, so a run that is still writing is never touched) and returns what it removed.
   */
  removeLeftovers?(options: RemoveLeftoversOptions): Promise<Leftover[]>;
  /**
   * Reads exactly `length` bytes at `offset`. {@link ObjectNotFoundError} when the object is
   * missing; {@link SourceChangedError} when `pin` is given and the object changed since; an error
   * naming the key and range when the object has fewer bytes there.
   */
  getRange?(key: string, offset: number, length: number, pin?: SourcePin): Promise<Buffer>;
  /** Size and identity (ETag, version) of an object, to pin copies from it; undefined when missing. */
  pinSource?(key: string): Promise<SourcePin | undefined>;
  /**
   * Whether an assembled object's full-object CRC64NVME is checked before it becomes visible (S3 with
   * checksums on; the folder store computes it). A synthetic full is only built where it is: without
   * the check a source damaged in a copied range would be committed unnoticed.
   */
  readonly checksAssembledCrc?: boolean;
  /** Starts an object assembled from uploaded parts and in-store range copies ({@link Assembly}). */
  assemble?(key: string, options?: AssembleOptions): Promise<Assembly>;
}

export class ObjectNotFoundError extends Error {
  override readonly name = 'ObjectNotFoundError';
  constructor(
    readonly store: string,
    readonly key: string,
  ) {
    super(`object ${key} does not exist in ${store}`);
  }
}

/**
 * A create found an object already at its key (S3: 412 PreconditionFailed on `If-None-Match: *`;
 * folder store: EEXIST). Never retried: replacing it could destroy a good backup.
 */
export class ObjectExistsError extends Error {
  override readonly name = 'ObjectExistsError';
  constructor(
    /** Full location, e.g. `s3://bucket/media-backups/full/backup_20251227_020000.tar.gz`. */
    readonly location: string,
    options: { cause?: unknown } = {},
  ) {
    super(
      `an object already exists at ${location}: refusing to overwrite backup history. ` +
        'Another run wrote a backup with the same id (check that only one deployment targets this store, ' +
        'and the system clock), or someone copied objects into the store; inspect the object, then run again.',
      options,
    );
  }
}

/**
 * A pinned source ({@link SourcePin}) is no longer the object that was pinned: it was replaced or
 * rewritten after the pin was taken (S3: 412 on `x-amz-copy-source-if-match` / `If-Match`).
 */
export class SourceChangedError extends Error {
  override readonly name = 'SourceChangedError';
  constructor(
    /** Full location of the source, e.g. `s3://bucket/media-backups/full/backup_20251227_020000.tar.gz`. */
    readonly location: string,
    readonly pin: SourcePin,
    /** What differs, e.g. `S3 answered 412 PreconditionFailed`. */
    readonly detail: string,
    options: { cause?: unknown } = {},
  ) {
    super(
      `source ${location} changed since it was pinned (${detail}${pin.etag ? `; pinned ETag ${pin.etag}` : ''}, ${pin.size} bytes): ` +
        'its bytes cannot be copied as recorded; read the tree again (a normal full backup)',
      options,
    );
  }
}

export class LockHeldError extends Error {
  override readonly name = 'LockHeldError';
  constructor(
    readonly store: string,
    readonly holder: LockInfo | undefined,
  ) {
    super(
      `a backup is already running against ${store}` +
        (holder
          ? ` (started ${holder.acquiredAt} by ${holder.owner}; the lock expires at ${holder.expiresAt} if that run died)`
          : '') +
        '. Wait for it to finish, then run again.',
    );
  }
}

/**
 * A request to the store failed (after the SDK's retries): names the operation, the key and the
 * store, with a hint about what to check. `cause` is the underlying error.
 */
export class StoreRequestError extends Error {
  override readonly name = 'StoreRequestError';
  constructor(
    /** e.g. `UploadPart`, `PutObject`, `GetObject`. */
    readonly operation: string,
    /** Full location, e.g. `s3://bucket/media-backups/full/backup_20251227_020000.tar.gz`. */
    readonly location: string,
    /** What went wrong, with a hint (see the store's error descriptions). */
    readonly reason: string,
    options: { cause?: unknown; note?: string } = {},
  ) {
    const service = location.startsWith('s3://') ? 'S3 ' : '';
    super(
      `${service}${operation} failed for ${location}: ${reason}${options.note ? `; ${options.note}` : ''}`,
      {
        cause: options.cause,
      },
    );
  }
}

export class StoreConfigError extends Error {
  override readonly name = 'StoreConfigError';
}

/** Rejects a byte range that is not two safe non-negative integers (offset, length) within `key`. */
export function checkByteRange(key: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new StoreConfigError(
      `invalid byte range of ${key}: offset ${offset}, length ${length} (both must be non-negative integers)`,
    );
  }
}

/**
 * The parts of an assembly in object order, after checking that they are numbered 1..n without gap,
 * each starts where the one before ends (the first at 0) and together hold `expectedBytes`: a part
 * plan that left a hole or an overlap is refused before anything becomes visible.
 */
export function partsInOrder<P extends { readonly offset: number; readonly length: number }>(
  parts: ReadonlyMap<number, P>,
  expectedBytes: number,
  location: string,
): P[] {
  if (parts.size === 0) throw new StoreConfigError(`cannot complete ${location}: no part was written`);
  const ordered: P[] = [];
  let next = 0;
  for (let number = 1; number <= parts.size; number += 1) {
    const part = parts.get(number);
    if (!part) {
      throw new StoreConfigError(
        `cannot complete ${location}: part ${number} is missing (${parts.size} parts written; they must be numbered 1..${parts.size})`,
      );
    }
    if (part.offset !== next) {
      throw new StoreConfigError(
        `cannot complete ${location}: part ${number} starts at byte ${part.offset}, but the parts before it end at byte ${next}`,
      );
    }
    next += part.length;
    ordered.push(part);
  }
  if (next !== expectedBytes) {
    throw new StoreConfigError(
      `cannot complete ${location}: the parts hold ${next} bytes, ${expectedBytes} expected`,
    );
  }
  return ordered;
}

/** Checks a part number (1..`maxParts`) and the part's offset in the object. */
export function checkPart(location: string, partNumber: number, offset: number, maxParts: number): void {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > maxParts) {
    throw new StoreConfigError(
      `part number ${partNumber} of ${location} is not an integer in 1..${maxParts}`,
    );
  }
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new StoreConfigError(`part ${partNumber} of ${location} has an invalid offset ${offset}`);
  }
}

/** Rejects keys that could escape the store root. */
export function assertSafeKey(key: string): void {
  if (
    key.length === 0 ||
    key.startsWith('/') ||
    key.includes('\0') ||
    key.includes('\\') ||
    key.split('/').some((part) => part === '..' || part === '.' || part === '')
  ) {
    throw new StoreConfigError(`invalid object key ${JSON.stringify(key)}`);
  }
}
