import { Readable } from 'node:stream';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type PutObjectCommandInput,
  S3Client,
  type S3ClientConfig,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  assertSafeKey,
  type LockHandle,
  LockHeldError,
  type LockInfo,
  ObjectNotFoundError,
  type ObjectStore,
  type PutOptions,
  type StorageTier,
  StoreConfigError,
  type StoredObject,
  type UploadOptions,
  type UploadResult,
} from './types.js';

const MiB = 1024 * 1024;

/** S3 refuses parts below 5 MiB (except the last one). */
export const S3_MIN_PART_SIZE = 5 * MiB;
/** S3's largest part. */
export const S3_MAX_PART_SIZE = 5 * 1024 * MiB;
/** S3's largest object (5 TiB). */
export const S3_MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MiB;
/** S3 allows 10,000 parts per multipart upload. */
export const S3_MAX_PARTS = 10_000;

/**
 * Our smallest part: bigger than S3's 5 MiB minimum so a typical archive needs fewer requests, and
 * small enough that `partSize * queueSize` stays modest in a 1-2 GB Lambda.
 */
export const MIN_PART_SIZE = 8 * MiB;
/**
 * Parts are sized for 9,000 of the 10,000 allowed, and for 2% more bytes than announced, so an
 * estimate that is slightly low (a file grew while it was being archived) still fits.
 */
const PART_BUDGET = 9_000;
const SIZE_HEADROOM = 1.02;

/**
 * Multipart part size for a stream of at most `maxBytes` bytes.
 *
 * Without `maxBytes` the part size must still let a 5 TiB archive fit in 10,000 parts, which gives
 * parts of about 594 MiB. That is the trade-off of not knowing the size: lib-storage buffers each
 * part in memory, one being filled plus `queueSize` in flight, so memory is roughly
 * `partSize * (queueSize + 1)` (about 3 GiB at the default queue size of 4). Callers that know an
 * upper bound (the scan's byte total) should pass it and get 8 MiB parts for anything below ~70 GiB.
 */
export function choosePartSize(maxBytes?: number): number {
  if (maxBytes === undefined) return DEFAULT_PART_SIZE;
  if (!Number.isFinite(maxBytes) || maxBytes < 0) {
    throw new StoreConfigError(`\`maxBytes\` must be a non-negative number of bytes, got ${maxBytes}`);
  }
  const fitted = Math.ceil((maxBytes * SIZE_HEADROOM) / PART_BUDGET);
  return Math.min(S3_MAX_PART_SIZE, Math.max(MIN_PART_SIZE, fitted));
}

/** Part size used when the stream's length is unknown: enough for the largest object S3 accepts. */
export const DEFAULT_PART_SIZE = Math.ceil((S3_MAX_OBJECT_SIZE * SIZE_HEADROOM) / PART_BUDGET);

export interface S3ObjectStoreOptions {
  readonly bucket: string;
  /**
   * Key prefix of every object; normalised to end with `/` (or be empty for the bucket root).
   * @default 'media-backups/'
   */
  readonly prefix?: string;
  /** A ready client (tests, custom middleware). When given, the connection options below are ignored. */
  readonly client?: S3Client;
  /** @default the SDK's region chain (`AWS_REGION`, profile); `us-east-1` when only `endpoint` is set */
  readonly region?: string;
  /** Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:4568`. @default AWS S3 */
  readonly endpoint?: string;
  /** Path-style addressing (`host/bucket/key`), which most S3-compatible servers need. @default false */
  readonly forcePathStyle?: boolean;
  /** KMS key for SSE-KMS; when set every write asks for `aws:kms` with this key. @default bucket default encryption */
  readonly kmsKeyId?: string;
  /**
   * Flexible checksums. `'off'` computes and validates them only where S3 requires them, which
   * s3rver needs (it corrupts streamed bodies sent with checksum trailers). Keep `'on'` against AWS.
   * @default 'on'
   */
  readonly checksums?: 'on' | 'off';
  /** @default the SDK's credential chain */
  readonly credentials?: S3ClientConfig['credentials'];
  /** Parts uploaded in parallel by `upload`; each buffers one part in memory. @default 4 */
  readonly queueSize?: number;
}

/** An S3 request failed; `cause` is the SDK's error. */
export class S3StoreError extends Error {
  override readonly name = 'S3StoreError';
  constructor(
    /** S3 operation, e.g. `PutObject`. */
    readonly operation: string,
    /** `s3://bucket/key` the request was about. */
    readonly location: string,
    cause: unknown,
    /** Appended to the message, e.g. what else went wrong while cleaning up. */
    note?: string,
  ) {
    super(`S3 ${operation} failed for ${location}: ${describeAwsError(cause)}${note ? `; ${note}` : ''}`, {
      cause,
    });
  }
}

/** Body of `locks/<name>.lock`. */
interface S3LockRecord extends LockInfo {
  readonly state: 'held' | 'released';
}

const DEFAULT_PREFIX = 'media-backups/';
// Bucket naming rules (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html).
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * A bucket and prefix as a store. Every object lives at `<prefix><key>`; archives are streamed with
 * multipart uploads, and the lock relies on S3 conditional writes (`If-None-Match`/`If-Match`).
 */
export class S3ObjectStore implements ObjectStore {
  readonly url: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;
  private readonly kmsKeyId: string | undefined;
  private readonly queueSize: number;

  constructor(options: S3ObjectStoreOptions) {
    if (!BUCKET_NAME.test(options.bucket)) {
      throw new StoreConfigError(
        `\`bucket\` ${JSON.stringify(options.bucket)} is not a valid S3 bucket name (3-63 characters: a-z, 0-9, '.', '-')`,
      );
    }
    this.bucket = options.bucket;
    this.prefix = normalisePrefix(options.prefix ?? DEFAULT_PREFIX);
    this.url = `s3://${this.bucket}/${this.prefix}`;
    this.kmsKeyId = options.kmsKeyId || undefined;
    this.queueSize = options.queueSize ?? 4;
    if (!Number.isInteger(this.queueSize) || this.queueSize < 1) {
      throw new StoreConfigError(`\`queueSize\` must be a positive integer, got ${options.queueSize}`);
    }
    this.client =
      options.client ??
      new S3Client({
        // S3-compatible servers ignore the region, but the SDK refuses to sign without one.
        region: options.region ?? (options.endpoint ? 'us-east-1' : undefined),
        endpoint: options.endpoint,
        forcePathStyle: options.forcePathStyle,
        credentials: options.credentials,
        ...(options.checksums === 'off'
          ? { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }
          : {}),
      });
  }

  async upload(key: string, body: Readable, options: UploadOptions = {}): Promise<UploadResult> {
    const objectKey = this.objectKey(key);
    const { signal, maxBytes } = options;
    if (maxBytes !== undefined && maxBytes > S3_MAX_OBJECT_SIZE) {
      body.destroy();
      throw new StoreConfigError(
        `${key} would be ${maxBytes} bytes, more than the 5 TiB S3 allows per object: split the archive into shards`,
      );
    }
    const partSize = choosePartSize(maxBytes);
    if (signal?.aborted) {
      body.destroy();
      throw signal.reason;
    }

    // lib-storage only stops reading the body when the body itself fails: a failed part ends one of
    // its `queueSize` workers while the others keep draining the stream to its end (hours, for a
    // large archive) before it sends AbortMultipartUpload. And `upload.abort()` makes `done()` reject
    // at once while in-flight parts and the AbortMultipartUpload carry on in the background, or
    // never happen when the workers wait on a stalled body. So both an S3 failure and an abort
    // destroy the body instead: every worker then stops, lib-storage sends AbortMultipartUpload
    // (leavePartsOnError is false) and only then does `done()` reject.
    let stopping = false;
    let bodyError: unknown;
    // The first thing that went wrong. lib-storage reports a failed AbortMultipartUpload instead of
    // the failure that made it abort, which is not what the operator needs to fix.
    let firstFailure: unknown;
    const failedOperation = new Map<unknown, string>();
    const stop = (reason: unknown): void => {
      if (stopping) return;
      stopping = true;
      firstFailure ??= reason;
      body.destroy(reason as Error);
    };
    const onBodyError = (error: unknown): void => {
      if (stopping || bodyError !== undefined) return;
      bodyError = error;
      firstFailure ??= error;
    };
    const onAbort = (): void => stop(signal?.reason);
    body.on('error', onBodyError);
    signal?.addEventListener('abort', onAbort, { once: true });

    const send = this.client.send.bind(this.client) as (
      command: unknown,
      ...rest: unknown[]
    ) => Promise<unknown>;
    const watchedClient = new Proxy(this.client, {
      get: (target, property) =>
        property === 'send'
          ? async (command: unknown, ...rest: unknown[]) => {
              try {
                return await send(command, ...rest);
              } catch (error) {
                failedOperation.set(error, commandName(command));
                stop(error);
                throw error;
              }
            }
          : Reflect.get(target, property, target),
    });

    const upload = new Upload({
      client: watchedClient,
      params: { ...this.writeParams(objectKey, options.tier, options.contentType), Body: body },
      partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (error) {
      body.destroy();
      if (signal?.aborted) throw signal.reason;
      const original = firstFailure ?? error;
      // The body's own error goes back unchanged: it is the caller's (a tar or disk failure), not S3's.
      // If AbortMultipartUpload failed too, its parts are invisible and the bucket's
      // AbortIncompleteMultipartUpload lifecycle rule removes them.
      if (bodyError !== undefined && original === bodyError) throw original;
      const abortFailed = error !== original && failedOperation.get(error) === 'AbortMultipartUpload';
      throw new S3StoreError(
        failedOperation.get(original) ?? 'multipart upload',
        this.location(objectKey),
        original,
        abortFailed
          ? `aborting the multipart upload failed too (${describeAwsError(error)}); its parts stay billed until the bucket's lifecycle rule removes them`
          : undefined,
      );
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // After `stop` the body emits the error we destroyed it with, possibly later; keep a listener
      // so that emission is not an unhandled 'error' event that kills the process.
      if (!stopping) body.off('error', onBodyError);
    }

    const head = await this.call('HeadObject', objectKey, () =>
      this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey })),
    );
    if (head.ContentLength === undefined) {
      throw new S3StoreError('HeadObject', this.location(objectKey), new Error('no Content-Length returned'));
    }
    return { key, bytes: head.ContentLength };
  }

  async put(key: string, body: Buffer | string, options: PutOptions = {}): Promise<void> {
    const objectKey = this.objectKey(key);
    await this.call('PutObject', objectKey, () =>
      this.client.send(
        new PutObjectCommand({
          ...this.writeParams(objectKey, options.tier, options.contentType),
          Body: body,
        }),
      ),
    );
  }

  async get(key: string): Promise<Buffer | undefined> {
    const objectKey = this.objectKey(key);
    const response = await this.getObject(objectKey);
    if (!response) return undefined;
    const bytes = await this.call('GetObject', objectKey, async () => {
      if (!response.Body) throw new Error('response has no body');
      return response.Body.transformToByteArray();
    });
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  async getStream(key: string): Promise<Readable> {
    const objectKey = this.objectKey(key);
    const response = await this.getObject(objectKey);
    if (!response) throw new ObjectNotFoundError(this.url, key);
    if (!(response.Body instanceof Readable)) {
      throw new S3StoreError(
        'GetObject',
        this.location(objectKey),
        new Error('response body is not a stream'),
      );
    }
    return response.Body;
  }

  async head(key: string): Promise<StoredObject | undefined> {
    const objectKey = this.objectKey(key);
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }));
      return { key, size: response.ContentLength ?? 0, lastModified: response.LastModified ?? new Date(0) };
    } catch (error) {
      if (isMissingObject(error)) return undefined;
      throw new S3StoreError('HeadObject', this.location(objectKey), error);
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    // A listing prefix may be a partial key (`full/backup_2025`) or end with '/'.
    if (prefix !== '') assertSafeKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
    const listPrefix = this.prefix + prefix;
    const out: StoredObject[] = [];
    let continuationToken: string | undefined;
    do {
      const page = await this.call('ListObjectsV2', listPrefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: listPrefix,
            ContinuationToken: continuationToken,
          }),
        ),
      );
      for (const object of page.Contents ?? []) {
        // Zero-byte "folder" markers made by consoles are not objects of ours.
        if (!object.Key?.startsWith(this.prefix) || object.Key.endsWith('/')) continue;
        out.push({
          key: object.Key.slice(this.prefix.length),
          size: object.Size ?? 0,
          lastModified: object.LastModified ?? new Date(0),
        });
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async acquireLock(name: string, options: { owner: string; ttlMs: number }): Promise<LockHandle> {
    const lockKey = this.objectKey(`locks/${name}.lock`);
    const acquiredAt = new Date().toISOString();
    const heldRecord = (): S3LockRecord => ({
      owner: options.owner,
      acquiredAt,
      expiresAt: new Date(Date.now() + options.ttlMs).toISOString(),
      state: 'held',
    });

    let etag = await this.takeLock(lockKey, heldRecord);

    // Renew while we run so a long backup is not mistaken for a crashed one. Each write is
    // conditional on our last ETag: if it fails with 412 someone took the lock over (we were too
    // slow), and we must not write it again.
    let lost = false;
    let renewing: Promise<void> = Promise.resolve();
    const renew = setInterval(
      () => {
        renewing = renewing.then(async () => {
          if (lost) return;
          try {
            etag = await this.writeLock(lockKey, heldRecord(), { IfMatch: etag });
          } catch (error) {
            // Anything else is retried at the next tick; the lock stays valid until it expires.
            if (isConditionFailure(error)) lost = true;
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
      // Release by overwriting, never DeleteObject: the backup role has no s3:DeleteObject
      // permission, so a compromised or buggy run cannot remove backups.
      const released: S3LockRecord = {
        ...heldRecord(),
        expiresAt: new Date().toISOString(),
        state: 'released',
      };
      try {
        await this.writeLock(lockKey, released, { IfMatch: etag });
      } catch (error) {
        // 412: the lock was taken over after it expired; it is not ours to release any more.
        if (isConditionFailure(error)) return;
        throw new S3StoreError('PutObject', this.location(lockKey), error);
      }
    };
    return {
      release: () => {
        releasing ??= release();
        return releasing;
      },
    };
  }

  /** Creates the lock object, or takes over a released or expired one; returns the new ETag. */
  private async takeLock(lockKey: string, record: () => S3LockRecord): Promise<string> {
    // A few rounds only for the rare case where the lock vanished between our create and read.
    for (let attempt = 0; attempt < 3; attempt += 1) {
      try {
        return await this.writeLock(lockKey, record(), { IfNoneMatch: '*' });
      } catch (error) {
        if (!isConditionFailure(error)) throw new S3StoreError('PutObject', this.location(lockKey), error);
      }
      const current = await this.readLock(lockKey);
      if (!current) continue;
      if (current.record && isLive(current.record))
        throw new LockHeldError(this.url, lockInfo(current.record));
      try {
        return await this.writeLock(lockKey, record(), { IfMatch: current.etag });
      } catch (error) {
        if (!isConditionFailure(error)) throw new S3StoreError('PutObject', this.location(lockKey), error);
        // Another run took it over between our read and write.
        const winner = await this.readLock(lockKey);
        throw new LockHeldError(this.url, winner?.record ? lockInfo(winner.record) : undefined);
      }
    }
    throw new LockHeldError(this.url, undefined);
  }

  private async writeLock(
    lockKey: string,
    record: S3LockRecord,
    condition: { IfNoneMatch: '*' } | { IfMatch: string },
  ): Promise<string> {
    const response = await this.client.send(
      new PutObjectCommand({
        ...this.writeParams(lockKey, 'standard', 'application/json'),
        ...condition,
        Body: JSON.stringify(record),
      }),
    );
    if (!response.ETag) throw new Error(`PutObject of ${this.location(lockKey)} returned no ETag`);
    return response.ETag;
  }

  private async readLock(
    lockKey: string,
  ): Promise<{ etag: string; record: S3LockRecord | undefined } | undefined> {
    const response = await this.getObject(lockKey);
    if (!response) return undefined;
    const text = await this.call(
      'GetObject',
      lockKey,
      async () => (await response.Body?.transformToString()) ?? '',
    );
    if (!response.ETag)
      throw new S3StoreError('GetObject', this.location(lockKey), new Error('no ETag returned'));
    return { etag: response.ETag, record: parseLockRecord(text) };
  }

  private async getObject(objectKey: string) {
    try {
      return await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: objectKey }));
    } catch (error) {
      if (isMissingObject(error)) return undefined;
      throw new S3StoreError('GetObject', this.location(objectKey), error);
    }
  }

  private writeParams(
    objectKey: string,
    tier: StorageTier | undefined,
    contentType: string | undefined,
  ): PutObjectCommandInput {
    // Small objects stay STANDARD: IA bills at least 128 KB and 30 days per object.
    const storageClass: StorageClass = tier === 'archive' ? 'STANDARD_IA' : 'STANDARD';
    return {
      Bucket: this.bucket,
      Key: objectKey,
      StorageClass: storageClass,
      ...(contentType ? { ContentType: contentType } : {}),
      ...(this.kmsKeyId ? { ServerSideEncryption: 'aws:kms', SSEKMSKeyId: this.kmsKeyId } : {}),
    };
  }

  private objectKey(key: string): string {
    assertSafeKey(key);
    return this.prefix + key;
  }

  private location(objectKey: string): string {
    return `s3://${this.bucket}/${objectKey}`;
  }

  private async call<T>(operation: string, objectKey: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      throw new S3StoreError(operation, this.location(objectKey), error);
    }
  }
}

function normalisePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  if (trimmed === '') return '';
  try {
    assertSafeKey(trimmed);
  } catch {
    throw new StoreConfigError(
      `\`prefix\` ${JSON.stringify(prefix)} is not a valid key prefix (no '.', '..' or empty segments, no '\\')`,
    );
  }
  return `${trimmed}/`;
}

interface AwsErrorShape {
  readonly name?: string;
  readonly message?: string;
  readonly $metadata?: { readonly httpStatusCode?: number };
}

function httpStatus(error: unknown): number | undefined {
  return (error as AwsErrorShape | undefined)?.$metadata?.httpStatusCode;
}

function errorName(error: unknown): string | undefined {
  return (error as AwsErrorShape | undefined)?.name;
}

/** The object (not the bucket) does not exist. HEAD has no body, so S3 can only say 404 `NotFound`. */
function isMissingObject(error: unknown): boolean {
  const name = errorName(error);
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || httpStatus(error) === 404;
}

/** A conditional write lost: 412, or 409 when S3 saw a concurrent conditional write to the same key. */
function isConditionFailure(error: unknown): boolean {
  const name = errorName(error);
  const status = httpStatus(error);
  return (
    name === 'PreconditionFailed' || name === 'ConditionalRequestConflict' || status === 412 || status === 409
  );
}

const HINTS: Record<string, string> = {
  AccessDenied: 'check the IAM policy of the role running the backup and the KMS key policy',
  NoSuchBucket: 'check the bucket name and region',
  InvalidAccessKeyId: 'check the credentials in use',
  SignatureDoesNotMatch: 'check the secret key and region',
};

function describeAwsError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const status = httpStatus(error);
  const hint = HINTS[error.name];
  return `${error.name}: ${error.message}${status ? ` (HTTP ${status})` : ''}${hint ? `; ${hint}` : ''}`;
}

function commandName(command: unknown): string {
  const name = (command as { constructor?: { name?: string } } | undefined)?.constructor?.name ?? '';
  return name.replace(/Command$/, '') || 'request';
}

function parseLockRecord(text: string): S3LockRecord | undefined {
  try {
    const value = JSON.parse(text) as Partial<S3LockRecord>;
    if (typeof value.owner !== 'string' || typeof value.expiresAt !== 'string') return undefined;
    return {
      owner: value.owner,
      acquiredAt: typeof value.acquiredAt === 'string' ? value.acquiredAt : '',
      expiresAt: value.expiresAt,
      state: value.state === 'released' ? 'released' : 'held',
    };
  } catch {
    // Not ours or hand-edited: treat as no valid holder so backups are not blocked for ever
    // (the backup role cannot delete it).
    return undefined;
  }
}

function isLive(record: S3LockRecord): boolean {
  const expiresAt = Date.parse(record.expiresAt);
  return record.state === 'held' && Number.isFinite(expiresAt) && expiresAt > Date.now();
}

function lockInfo(record: S3LockRecord): LockInfo {
  return { owner: record.owner, acquiredAt: record.acquiredAt, expiresAt: record.expiresAt };
}
