import { createHash } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  S3Client,
  type S3ClientConfig,
  type StorageClass,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { PartTrackedAssembly, type TrackedPart } from './assembly-parts.js';
import {
  acquireLease,
  type LeaseBackend,
  type LeaseRecord,
  parseLeaseRecord,
  releaseHandedOverLease,
} from './lease.js';
import {
  type AssembleOptions,
  type Assembly,
  type AssemblyExpectation,
  type AssemblyResult,
  assertSafeKey,
  checkByteRange,
  isReplaceableKey,
  type Leftover,
  type LockHandle,
  ObjectExistsError,
  ObjectNotFoundError,
  type ObjectStore,
  type PutOptions,
  type RemoveLeftoversOptions,
  removableLeftovers,
  SourceChangedError,
  type SourcePin,
  type StorageTier,
  StoreConfigError,
  type StoredObject,
  StoreRequestError,
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
/** UploadPartCopy copies a byte range only from a source larger than 5 MB (decimal). */
export const S3_MIN_COPY_SOURCE_BYTES = 5_000_000;

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
  /**
   * How long opening a TCP connection may take before the attempt fails (and is retried).
   * @default {@link DEFAULT_CONNECT_TIMEOUT_MS}
   */
  readonly connectTimeoutMs?: number;
  /**
   * How long a request may go without a single byte moving either way (sending a part, waiting for
   * the answer, reading a GET body) before it fails. This is what ends a stalled request.
   * @default {@link DEFAULT_IDLE_TIMEOUT_MS}
   */
  readonly idleTimeoutMs?: number;
  /** Attempts per request, including the first (the SDK's standard retry mode). @default 3 */
  readonly maxAttempts?: number;
}

/**
 * A TCP (and TLS) handshake to S3 takes milliseconds; 5 s is generous even on a poor link, and a
 * refused or black-holed connection is retried quickly instead of waiting minutes for the kernel.
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/**
 * An idle timeout, not a total one: an 8 MiB part on a 1 Mbit/s uplink takes ~70 s to send, so a
 * total limit would fail healthy slow uploads, while a connection where no byte moves for 60 s is
 * dead (S3 itself closes connections idle for ~20 s between requests). A stalled request thus fails
 * within about `maxAttempts` x 60 s plus backoff; a stalled GET body (not retried: its bytes were
 * already handed on) within 60 s. The other side of the same rule: a reader that stops consuming a
 * GET body for 60 s (a target disk that hangs) also ends the download.
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;

const DEFAULT_PREFIX = 'media-backups/';
/**
 * Where our multipart uploads write: archives under `full/` and `incremental/` (docs/ARCHITECTURE.md,
 * Object layout). The leftover sweep looks nowhere else: a store at the bucket root shares the
 * bucket with whatever else writes there, and another application's upload is not ours to abort.
 */
const ARCHIVE_FOLDERS: readonly string[] = ['full/', 'incremental/', 'staging/'];
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
  /** Ask S3 for a full-object CRC64NVME on every archive and read it back (off for s3rver). */
  private readonly fullObjectChecksums: boolean;

  /** S3 checks an assembled object's CRC64NVME on CompleteMultipartUpload only with checksums on. */
  get checksAssembledCrc(): boolean {
    return this.fullObjectChecksums;
  }
  private readonly queueSize: number;
  /** Timeouts of each request attempt (they also go into error hints). */
  readonly timeouts: { readonly connectMs: number; readonly idleMs: number };

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
    this.fullObjectChecksums = options.checksums !== 'off';
    this.queueSize = options.queueSize ?? 4;
    if (!Number.isInteger(this.queueSize) || this.queueSize < 1) {
      throw new StoreConfigError(`\`queueSize\` must be a positive integer, got ${options.queueSize}`);
    }
    const connectMs = positiveInteger(
      'connectTimeoutMs',
      options.connectTimeoutMs,
      DEFAULT_CONNECT_TIMEOUT_MS,
    );
    const idleMs = positiveInteger('idleTimeoutMs', options.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS);
    const maxAttempts = positiveInteger('maxAttempts', options.maxAttempts, 3);
    this.timeouts = { connectMs, idleMs };
    this.client =
      options.client ??
      new S3Client({
        // S3-compatible servers ignore the region, but the SDK refuses to sign without one.
        region: options.region ?? (options.endpoint ? 'us-east-1' : undefined),
        endpoint: options.endpoint,
        forcePathStyle: options.forcePathStyle,
        credentials: options.credentials,
        maxAttempts,
        // Without these the SDK waits for ever on a request S3 (or the network) never answers. The
        // socket timeout stays armed while a GET body is read, so a body that stalls mid-stream
        // fails too. Options (not a NodeHttpHandler instance) so the SDK builds its own handler.
        requestHandler: { connectionTimeout: connectMs, socketTimeout: idleMs },
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
    // A retried (or failed) CreateMultipartUpload may have created uploads whose ids we never saw.
    let createRetried = false;
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
              const name = commandName(command);
              // Both requests come after the whole body went through the tap: the CRC is final.
              if (crc && (name === 'CompleteMultipartUpload' || name === 'PutObject')) {
                (command as { input: { ChecksumCRC64NVME?: string } }).input.ChecksumCRC64NVME =
                  await crcOfSent();
              }
              try {
                const response = (await send(command, ...rest)) as { $metadata?: { attempts?: number } };
                if (
                  commandName(command) === 'CreateMultipartUpload' &&
                  (response?.$metadata?.attempts ?? 1) > 1
                )
                  createRetried = true;
                return response;
              } catch (error) {
                if (commandName(command) === 'CreateMultipartUpload') createRetried = true;
                failedOperation.set(error, commandName(command));
                stop(error);
                throw error;
              }
            }
          : Reflect.get(target, property, target),
    });

    // What we sent, to recognise our own object after an ambiguous create (below).
    const sent = { bytes: 0, sha256: createHash('sha256') };
    // The archive's full-object CRC64NVME, computed as it streams: S3 checks it on the request that
    // creates the object and keeps it, so verify can compare it without downloading the archive.
    const crc = this.fullObjectChecksums ? new Crc64Nvme() : undefined;
    let crcBase64: Promise<string> | undefined;
    const crcOfSent = (): Promise<string> => {
      crcBase64 ??= (crc as Crc64Nvme).digest().then((d) => Buffer.from(d).toString('base64'));
      return crcBase64;
    };
    // A generator, not a Transform: a body error reaches lib-storage after the chunks before it,
    // as it would from the body itself (a Transform drops its buffered chunks when destroyed).
    async function* tap(source: Readable): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        sent.bytes += (chunk as Buffer).length;
        sent.sha256.update(chunk as Buffer);
        crc?.update(chunk as Buffer);
        yield chunk as Buffer;
      }
    }
    const tapped = Readable.from(tap(body), { objectMode: false });
    // Its errors are the body's (handled above) or ours (stop): lib-storage sees them by reading.
    tapped.on('error', () => undefined);

    // Archives are created, never replaced: lib-storage copies these params into PutObject (small
    // archives) and CompleteMultipartUpload, where S3 evaluates `If-None-Match: *` (412 if the key
    // exists); CreateMultipartUpload and UploadPart do not take the header.
    const create = !isReplaceableKey(key);
    const upload = new Upload({
      client: watchedClient,
      params: {
        ...this.writeParams(objectKey, options.tier, options.contentType),
        ...(create ? { IfNoneMatch: '*' } : {}),
        // lib-storage copies these into CreateMultipartUpload (a full-object, not composite,
        // checksum: comparable with one computed over the whole archive), UploadPart (the SDK adds
        // each part's CRC64NVME) and PutObject; CompleteMultipartUpload gets the value (above).
        ...(crc ? { ChecksumAlgorithm: 'CRC64NVME' as const, ChecksumType: 'FULL_OBJECT' as const } : {}),
        Body: tapped,
      },
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
      const operation = failedOperation.get(original);
      // The request that creates the object failed (every attempt, or a retry met a 412): S3 may
      // have stored it anyway and the answer was lost. It counts as written only when the object
      // holds exactly the bytes we sent, which the tap saw in full (the body was consumed before
      // this request); someone else's object (412) is refused.
      const lastRequest = operation === 'CompleteMultipartUpload' || operation === 'PutObject';
      let ours: Ownership = false;
      if (create && lastRequest) {
        const stored = crc ? await this.headChecksum(key).catch(() => undefined) : undefined;
        ours = stored?.crc64nvme
          ? stored.size === sent.bytes && stored.crc64nvme === (await crcOfSent())
          : await this.storedObjectIs(objectKey, sent.bytes, sent.sha256.digest('hex'));
      }
      if (ours === true) {
        // Written: checked below like any upload.
      } else if (create && lastRequest && isPreconditionFailed(original)) {
        if (ours === false) throw new ObjectExistsError(this.location(objectKey), { cause: original });
        throw this.requestError(operation, objectKey, original, this.unprovenNote(ours.readError));
      } else {
        const abortFailed = error !== original && failedOperation.get(error) === 'AbortMultipartUpload';
        throw this.requestError(
          operation ?? 'multipart upload',
          objectKey,
          original,
          abortFailed
            ? `aborting the multipart upload failed too (${this.describe(error)}); its parts stay billed until the next backup or the bucket's lifecycle rule removes them`
            : ours === false
              ? 'nothing was stored under this key'
              : `the object may have been stored (reading it back failed: ${readErrorReason(ours.readError, this.timeouts)}); not counted as written, run again`,
        );
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // After `stop` the body emits the error we destroyed it with, possibly later; keep a listener
      // so that emission is not an unhandled 'error' event that kills the process.
      if (!stopping) body.off('error', onBodyError);
      if (createRetried) await this.abortUploadsOf(objectKey);
    }

    const head = await this.call('HeadObject', objectKey, () =>
      this.client.send(
        new HeadObjectCommand({
          Bucket: this.bucket,
          Key: objectKey,
          ...(crc ? { ChecksumMode: 'ENABLED' as const } : {}),
        }),
      ),
    );
    if (head.ContentLength === undefined) {
      throw this.requestError('HeadObject', objectKey, new Error('no Content-Length returned'));
    }
    if (!crc) return { key, bytes: head.ContentLength };
    const ours = await crcOfSent();
    const stored = fullObjectCrc(head);
    if (stored !== undefined && stored !== ours) {
      throw this.requestError(
        'HeadObject',
        objectKey,
        new Error(`the stored object's CRC64NVME is ${stored}; the bytes sent have ${ours}`),
        'the archive in the bucket is not what this run sent; the backup was not committed',
      );
    }
    // Recorded only when S3 holds it: an S3-compatible server without checksums leaves verify to
    // download and hash the archive instead.
    return { key, bytes: head.ContentLength, ...(stored ? { crc64nvme: stored } : {}) };
  }

  /**
   * Size and full-object CRC64NVME of an archive, from one HeadObject with checksum mode (no body
   * download). `crc64nvme` is absent when S3 holds none (written without it, or a composite one).
   */
  async headChecksum(key: string): Promise<{ size: number; crc64nvme?: string } | undefined> {
    const objectKey = this.objectKey(key);
    try {
      const head = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey, ChecksumMode: 'ENABLED' }),
      );
      const crc64nvme = fullObjectCrc(head);
      return { size: head.ContentLength ?? 0, ...(crc64nvme ? { crc64nvme } : {}) };
    } catch (error) {
      if (isMissingObject(error)) return undefined;
      throw this.requestError('HeadObject', objectKey, error);
    }
  }

  /**
   * Metadata and manifests are created with `If-None-Match: *` (S3 answers 412 when the key
   * exists). Status records are replaced unconditionally, not with `If-Match`: each is one whole
   * JSON summary rewritten by the run that holds the backup lock (or by verify, whose record merges
   * what it read), a lost update costs at most a re-check, not backup history, and the store
   * interface would have to carry ETags from every read to every write for it. The lock has its own
   * conditional protocol ({@link leaseBackend}).
   */
  async put(key: string, body: Buffer | string, options: PutOptions = {}): Promise<void> {
    const objectKey = this.objectKey(key);
    const create = !isReplaceableKey(key);
    try {
      await this.client.send(
        new PutObjectCommand({
          ...this.writeParams(objectKey, options.tier, options.contentType),
          ...(create ? { IfNoneMatch: '*' } : {}),
          Body: body,
        }),
      );
    } catch (error) {
      // An ambiguous write: the connection dropped after S3 stored the object, on every attempt,
      // or (with If-None-Match) the SDK's retry met the object its first attempt stored and got 412.
      // If the object now holds exactly our bytes the write happened; reporting it as failed would
      // call a committed backup failed.
      const ours = await this.holdsExactly(objectKey, body);
      if (ours === true) return;
      if (create && isPreconditionFailed(error)) {
        if (ours === false) throw new ObjectExistsError(this.location(objectKey), { cause: error });
        throw this.requestError('PutObject', objectKey, error, this.unprovenNote(ours.readError));
      }
      throw this.requestError('PutObject', objectKey, error);
    }
  }

  /**
   * Whether the object at `objectKey` is `bytes` long with this sha256 (streamed, not buffered);
   * `readError` when it could not be read to tell (then it may well be ours).
   */
  private async storedObjectIs(objectKey: string, bytes: number, sha256: string): Promise<Ownership> {
    try {
      const response = await this.getObject(objectKey);
      if (!response) return false;
      if (response.ContentLength !== undefined && response.ContentLength !== bytes) return false;
      if (!(response.Body instanceof Readable)) return false;
      const hash = createHash('sha256');
      let seen = 0;
      for await (const chunk of response.Body) {
        seen += (chunk as Buffer).length;
        hash.update(chunk as Buffer);
      }
      return seen === bytes && hash.digest('hex') === sha256;
    } catch (error) {
      return { readError: error };
    }
  }

  /** Whether the object at `objectKey` holds exactly `body`; `readError` when it could not be read. */
  private async holdsExactly(objectKey: string, body: Buffer | string): Promise<Ownership> {
    try {
      const response = await this.getObject(objectKey);
      if (!response?.Body) return false;
      const stored = await response.Body.transformToByteArray();
      return Buffer.from(stored).equals(typeof body === 'string' ? Buffer.from(body) : body);
    } catch (error) {
      return { readError: error };
    }
  }

  /** Note for a 412 on a create whose object could not be read back to tell whether it is ours. */
  private unprovenNote(readError: unknown): string {
    const reason = readErrorReason(readError, this.timeouts);
    return (
      "S3 says an object already exists at this key, most likely this run's own write whose answer was lost, " +
      `but reading it back to compare failed: ${reason}. Not counted as written; run again`
    );
  }

  /**
   * Aborts every multipart upload in progress for `objectKey`. Used after a CreateMultipartUpload
   * that the SDK retried: an earlier attempt may have created an upload whose id we never learned.
   * Archive keys are unique per backup and written under the lock, so none of them is another
   * run's. Best effort: the next backup's leftover sweep and the lifecycle rule catch the rest.
   */
  private async abortUploadsOf(objectKey: string): Promise<void> {
    try {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: objectKey }),
      );
      for (const upload of page.Uploads ?? []) {
        if (upload.Key !== objectKey || !upload.UploadId) continue;
        await this.client
          .send(
            new AbortMultipartUploadCommand({
              Bucket: this.bucket,
              Key: objectKey,
              UploadId: upload.UploadId,
            }),
          )
          .catch(() => undefined);
      }
    } catch {
      // Listing not allowed or failing: left to the leftover sweep.
    }
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
      throw this.requestError('GetObject', objectKey, new Error('response body is not a stream'));
    }
    return this.namedBodyErrors(response.Body, objectKey);
  }

  /**
   * The body with its errors (a reset, or the idle timeout when it stalls mid-stream) turned into a
   * {@link StoreRequestError} naming GetObject and the key: the raw `aborted` / `socket timed out`
   * says nothing about which of many reads failed.
   */
  private namedBodyErrors(body: Readable, objectKey: string): Readable {
    const out = new PassThrough({ highWaterMark: body.readableHighWaterMark });
    body.on('error', (error) => {
      out.destroy(this.requestError('GetObject', objectKey, error, 'the download was cut off mid-body'));
    });
    // A consumer that stops early (destroys the stream) must not leave the connection open.
    out.on('close', () => body.destroy());
    body.pipe(out);
    return out;
  }

  /**
   * Exactly `length` bytes at `offset`, with one ranged GetObject. With `pin` the read is
   * conditional on the pinned ETag (`If-Match`) and version, so a replaced source fails
   * ({@link SourceChangedError}) instead of returning other bytes.
   */
  async getRange(key: string, offset: number, length: number, pin?: SourcePin): Promise<Buffer> {
    const objectKey = this.objectKey(key);
    checkByteRange(key, offset, length);
    if (length === 0) return Buffer.alloc(0);
    const range = `bytes=${offset}-${offset + length - 1}`;
    let response: GetObjectCommandOutput;
    try {
      response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: objectKey,
          Range: range,
          ...(pin?.etag ? { IfMatch: pin.etag } : {}),
          ...(pin?.versionId ? { VersionId: pin.versionId } : {}),
        }),
      );
    } catch (error) {
      throw this.sourceError('GetObject', key, error, pin, `reading bytes ${offset}..${offset + length - 1}`);
    }
    const bytes = await this.call('GetObject', objectKey, async () => {
      if (!response.Body) throw new Error('response has no body');
      return response.Body.transformToByteArray();
    });
    if (bytes.byteLength !== length) {
      throw this.requestError(
        'GetObject',
        objectKey,
        new Error(`${range} returned ${bytes.byteLength} bytes, not ${length}`),
        bytes.byteLength < length
          ? 'the object is shorter than the range: it is not the object the range was recorded from'
          : 'the server ignored the Range header',
      );
    }
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Size, ETag and version of an object (one HeadObject), to pin copies and reads from it. */
  async pinSource(key: string): Promise<SourcePin | undefined> {
    const objectKey = this.objectKey(key);
    let head: HeadObjectCommandOutput;
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }));
    } catch (error) {
      if (isMissingObject(error)) return undefined;
      throw this.requestError('HeadObject', objectKey, error);
    }
    if (head.ContentLength === undefined) {
      throw this.requestError('HeadObject', objectKey, new Error('no Content-Length returned'));
    }
    return {
      key,
      size: head.ContentLength,
      ...(head.ETag ? { etag: head.ETag } : {}),
      ...(head.VersionId ? { versionId: head.VersionId } : {}),
    };
  }

  /**
   * A multipart upload whose parts are uploaded buffers (UploadPart, each with its CRC64NVME when
   * checksums are on) and server-side range copies (UploadPartCopy pinned by `CopySourceIfMatch` and
   * version). Completed with `If-None-Match: *` and the expected full-object CRC64NVME, which S3
   * checks against the bytes it assembled; then a HEAD compares size and checksum. Aborted
   * (AbortMultipartUpload) on any failure or on the abort signal.
   */
  async assemble(key: string, options: AssembleOptions = {}): Promise<Assembly> {
    const objectKey = this.objectKey(key);
    const { signal } = options;
    signal?.throwIfAborted();
    const checksums = this.fullObjectChecksums;
    const created = await this.call('CreateMultipartUpload', objectKey, () =>
      this.client.send(
        new CreateMultipartUploadCommand({
          ...this.writeParams(objectKey, options.tier, options.contentType),
          // A full-object (not composite) CRC64NVME: S3 checks the one Complete carries against the
          // assembled bytes, copied parts included, and keeps it for verify.
          ...(checksums
            ? { ChecksumAlgorithm: 'CRC64NVME' as const, ChecksumType: 'FULL_OBJECT' as const }
            : {}),
        }),
        { abortSignal: signal },
      ),
    );
    if (!created.UploadId) {
      throw this.requestError('CreateMultipartUpload', objectKey, new Error('no UploadId returned'));
    }
    return new S3Assembly({
      client: this.client,
      bucket: this.bucket,
      key,
      objectKey,
      location: this.location(objectKey),
      uploadId: created.UploadId,
      checksums,
      signal,
      sourceObjectKey: (sourceKey) => this.objectKey(sourceKey),
      requestError: (operation, errorKey, cause, note) => this.requestError(operation, errorKey, cause, note),
      sourceError: (operation, sourceKey, cause, pin, what) =>
        this.sourceError(operation, sourceKey, cause, pin, what),
      headChecksum: () => this.headChecksum(key),
    });
  }

  /**
   * A failed read or copy of a source, as the caller can act on it: a pinned source that changed
   * (412) is {@link SourceChangedError}, a missing one (or version) {@link ObjectNotFoundError},
   * anything else a {@link StoreRequestError} naming the source and what was being done.
   */
  private sourceError(
    operation: string,
    sourceKey: string,
    error: unknown,
    pin: SourcePin | undefined,
    what: string,
  ): Error {
    const sourceObjectKey = this.prefix + sourceKey;
    if (pin && isPreconditionFailed(error)) {
      return new SourceChangedError(
        this.location(sourceObjectKey),
        pin,
        `${operation} ${what} answered 412 PreconditionFailed`,
        { cause: error },
      );
    }
    if (errorName(error) === 'NoSuchVersion' || isMissingObject(error)) {
      return new ObjectNotFoundError(this.url, sourceKey);
    }
    return this.requestError(operation, sourceObjectKey, error, what);
  }

  async head(key: string): Promise<StoredObject | undefined> {
    const objectKey = this.objectKey(key);
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }));
      return { key, size: response.ContentLength ?? 0, lastModified: response.LastModified ?? new Date(0) };
    } catch (error) {
      if (isMissingObject(error)) return undefined;
      throw this.requestError('HeadObject', objectKey, error);
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

  /** Archive multipart uploads under the prefix that were never completed nor aborted (a killed run's). */
  async listLeftovers(): Promise<Leftover[]> {
    const out: Leftover[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.call('ListMultipartUploads', this.prefix, () =>
        this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: this.prefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        ),
      );
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key?.startsWith(this.prefix) || !upload.UploadId) continue;
        const key = upload.Key.slice(this.prefix.length);
        if (!ARCHIVE_FOLDERS.some((folder) => key.startsWith(folder))) continue;
        out.push({
          key,
          kind: 'multipart-upload',
          since: upload.Initiated ?? new Date(0),
          bytes: await this.uploadedBytes(upload.Key, upload.UploadId),
          id: upload.UploadId,
        });
      }
      const more = page.IsTruncated === true;
      keyMarker = more ? page.NextKeyMarker : undefined;
      uploadIdMarker = more ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return out.sort((a, b) => a.since.getTime() - b.since.getTime());
  }

  async removeLeftovers(options: RemoveLeftoversOptions): Promise<Leftover[]> {
    const removed: Leftover[] = [];
    for (const leftover of removableLeftovers(await this.listLeftovers(), options)) {
      const objectKey = this.prefix + leftover.key;
      try {
        await this.client.send(
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: leftover.id }),
        );
      } catch (error) {
        // Gone meanwhile (another cleanup, the lifecycle rule): nothing left to remove.
        if (errorName(error) === 'NoSuchUpload' || httpStatus(error) === 404) continue;
        throw this.requestError('AbortMultipartUpload', objectKey, error);
      }
      removed.push(leftover);
    }
    return removed;
  }

  private async uploadedBytes(objectKey: string, uploadId: string): Promise<number> {
    let bytes = 0;
    let marker: string | undefined;
    do {
      const page = await this.call('ListParts', objectKey, () =>
        this.client.send(
          new ListPartsCommand({
            Bucket: this.bucket,
            Key: objectKey,
            UploadId: uploadId,
            PartNumberMarker: marker,
          }),
        ),
      ).catch((error: unknown) => {
        // Completed or aborted since it was listed.
        if (errorName((error as Error).cause) === 'NoSuchUpload') return undefined;
        throw error;
      });
      if (!page) return bytes;
      for (const part of page.Parts ?? []) bytes += part.Size ?? 0;
      marker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
    } while (marker);
    return bytes;
  }

  async acquireLock(name: string, options: { owner: string; ttlMs: number }): Promise<LockHandle> {
    return acquireLease(this.leaseBackend(this.objectKey(`locks/${name}.lock`)), this.url, options);
  }

  async releaseLock(name: string, token: string): Promise<boolean> {
    return releaseHandedOverLease(this.leaseBackend(this.objectKey(`locks/${name}.lock`)), token);
  }

  /**
   * The lock's primitives on S3 conditional writes: create with `If-None-Match: *`, replace and
   * release with `If-Match` on the ETag last seen. Release overwrites with `state: released`, never
   * DeleteObject: the backup role has no s3:DeleteObject permission, so a compromised or buggy run
   * cannot remove backups.
   */
  private leaseBackend(lockKey: string): LeaseBackend<string> {
    const write = async (
      record: LeaseRecord,
      condition: { IfNoneMatch: '*' } | { IfMatch: string },
    ): Promise<string | undefined> => {
      try {
        const response = await this.client.send(
          new PutObjectCommand({
            ...this.writeParams(lockKey, 'standard', 'application/json'),
            ...condition,
            Body: JSON.stringify(record),
          }),
        );
        if (!response.ETag) throw new Error('no ETag returned');
        return response.ETag;
      } catch (error) {
        if (isConditionFailure(error)) return undefined;
        throw this.requestError('PutObject', lockKey, error);
      }
    };
    return {
      read: async () => {
        const response = await this.getObject(lockKey);
        if (!response) return undefined;
        const text = await this.call(
          'GetObject',
          lockKey,
          async () => (await response.Body?.transformToString()) ?? '',
        );
        if (!response.ETag) throw this.requestError('GetObject', lockKey, new Error('no ETag returned'));
        return {
          version: response.ETag,
          record: parseLeaseRecord(text),
          // Missing only from hand-made fakes: then an unparseable lock counts as old.
          modifiedAt: response.LastModified ?? new Date(0),
        };
      },
      createIfAbsent: (record) => write(record, { IfNoneMatch: '*' }),
      replaceIfUnchanged: (etag, record) => write(record, { IfMatch: etag }),
      releaseIfUnchanged: async (etag, released) => (await write(released, { IfMatch: etag })) !== undefined,
    };
  }

  private async getObject(objectKey: string) {
    try {
      return await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: objectKey }));
    } catch (error) {
      if (isMissingObject(error)) return undefined;
      throw this.requestError('GetObject', objectKey, error);
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

  private requestError(
    operation: string,
    objectKey: string,
    cause: unknown,
    note?: string,
  ): StoreRequestError {
    return new StoreRequestError(operation, this.location(objectKey), this.describe(cause), { cause, note });
  }

  /** The SDK's error in one line, with what to check. */
  private describe(error: unknown): string {
    return describeAwsError(error, this.timeouts);
  }

  private async call<T>(operation: string, objectKey: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      throw this.requestError(operation, objectKey, error);
    }
  }
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new StoreConfigError(`\`${name}\` must be a positive integer, got ${value}`);
  }
  return value;
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

function readErrorReason(error: unknown, timeouts: { connectMs: number; idleMs: number }): string {
  return error instanceof StoreRequestError ? error.reason : describeAwsError(error, timeouts);
}

/** A stored object is ours (`true`), someone else's (`false`), or could not be read to tell. */
type Ownership = boolean | { readonly readError: unknown };

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

/** The object's whole-content CRC64NVME (base64), when S3 reports a full-object one. */
function fullObjectCrc(head: { ChecksumCRC64NVME?: string; ChecksumType?: string }): string | undefined {
  if (!head.ChecksumCRC64NVME) return undefined;
  // A composite checksum (a checksum of part checksums, suffixed "-N") says nothing comparable.
  if (head.ChecksumType !== undefined && head.ChecksumType !== 'FULL_OBJECT') return undefined;
  if (head.ChecksumCRC64NVME.includes('-')) return undefined;
  return head.ChecksumCRC64NVME;
}

/** S3 refused a conditional write because the object exists (`If-None-Match: *`) or changed (`If-Match`). */
function isPreconditionFailed(error: unknown): boolean {
  return errorName(error) === 'PreconditionFailed' || httpStatus(error) === 412;
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
  PreconditionFailed: 'another run changed the object at the same time (a conditional write lost)',
  NoSuchUpload: 'the multipart upload was aborted or completed by someone else (another run, or a cleanup)',
  EntityTooSmall:
    'a part other than the last is under 5 MiB, which S3 refuses: the part plan broke the minimum part size',
  BadDigest: 'the bytes S3 received or assembled do not have the checksum sent with them',
  InvalidPart: 'a part listed to complete the upload was never uploaded (or its ETag differs)',
  InvalidPartOrder: 'the parts listed to complete the upload are not in ascending order',
};

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

/** The error in one line (`name: message (HTTP n, after n attempts)`) with a hint about what to check. */
function describeAwsError(error: unknown, timeouts: { connectMs: number; idleMs: number }): string {
  if (!(error instanceof Error)) return String(error);
  const status = httpStatus(error);
  const attempts = (error as { $metadata?: { attempts?: number } }).$metadata?.attempts;
  const code = (error as NodeJS.ErrnoException).code;
  const facts = [status ? `HTTP ${status}` : '', attempts && attempts > 1 ? `after ${attempts} attempts` : '']
    .filter(Boolean)
    .join(', ');
  let hint = HINTS[error.name];
  // The SDK names resets "TimeoutError" too (ECONNRESET is in its timeout codes): tell them apart.
  if (
    !hint &&
    ((code && NETWORK_CODES.has(code)) || /socket hang up|ECONNRESET|EPIPE|aborted/i.test(error.message))
  ) {
    hint = 'the connection failed or was cut: check the network path (proxy, VPC endpoint, NAT) to S3';
  } else if (!hint && (error.name === 'TimeoutError' || code === 'ETIMEDOUT')) {
    hint = /establish a connection/.test(error.message)
      ? `no connection within ${timeouts.connectMs} ms: check the endpoint and the network path to S3 (S3_CONNECT_TIMEOUT_MS sets the limit)`
      : `no data moved for ${timeouts.idleMs} ms: the network or S3 stalled; check connectivity, or raise S3_IDLE_TIMEOUT_MS on a very slow link`;
  } else if (!hint && status === 403) {
    hint = HINTS.AccessDenied;
  } else if (!hint && status === 412) {
    hint = HINTS.PreconditionFailed;
  } else if (!hint && status !== undefined && status >= 500) {
    hint = 'S3 kept failing after the retries: try again later (a short outage or throttling)';
  }
  return `${error.name}: ${error.message}${facts ? ` (${facts})` : ''}${hint ? `; ${hint}` : ''}`;
}

function commandName(command: unknown): string {
  const name = (command as { constructor?: { name?: string } } | undefined)?.constructor?.name ?? '';
  return name.replace(/Command$/, '') || 'request';
}

/** What an {@link S3Assembly} needs from its store (closures over the store's private helpers). */
interface S3AssemblyContext {
  readonly client: S3Client;
  readonly bucket: string;
  readonly key: string;
  readonly objectKey: string;
  /** `s3://bucket/prefix/key` of the object being assembled. */
  readonly location: string;
  readonly uploadId: string;
  readonly checksums: boolean;
  readonly signal: AbortSignal | undefined;
  sourceObjectKey(sourceKey: string): string;
  requestError(operation: string, objectKey: string, cause: unknown, note?: string): StoreRequestError;
  sourceError(operation: string, sourceKey: string, cause: unknown, pin: SourcePin, what: string): Error;
  headChecksum(): Promise<{ size: number; crc64nvme?: string } | undefined>;
}

/** One multipart upload being assembled ({@link S3ObjectStore.assemble}). */
class S3Assembly extends PartTrackedAssembly<CompletedPart> implements Assembly {
  readonly minPartBytes = S3_MIN_PART_SIZE;
  readonly maxPartBytes = S3_MAX_PART_SIZE;
  readonly maxParts = S3_MAX_PARTS;
  readonly minCopySourceBytes = S3_MIN_COPY_SOURCE_BYTES;
  protected readonly location: string;
  private aborting: Promise<void> | undefined;
  /** Cancels the requests in flight once the assembly failed or was aborted. */
  private readonly stopper = new AbortController();

  constructor(private readonly ctx: S3AssemblyContext) {
    super();
    this.location = ctx.location;
    this.watch(ctx.signal);
  }

  uploadPart(partNumber: number, offset: number, body: Buffer): Promise<void> {
    return this.track(partNumber, offset, body.length, async () => {
      const { ctx } = this;
      // The part's own CRC64NVME: S3 checks it on arrival, and Complete lists it with the part.
      const crc = ctx.checksums ? await crc64nvmeOfBuffer(body) : undefined;
      try {
        const response = await ctx.client.send(
          new UploadPartCommand({
            Bucket: ctx.bucket,
            Key: ctx.objectKey,
            UploadId: ctx.uploadId,
            PartNumber: partNumber,
            Body: body,
            ContentLength: body.length,
            ...(crc ? { ChecksumAlgorithm: 'CRC64NVME' as const, ChecksumCRC64NVME: crc } : {}),
          }),
          { abortSignal: this.stopper.signal },
        );
        if (!response.ETag) throw new Error('no ETag returned');
        return { PartNumber: partNumber, ETag: response.ETag, ...(crc ? { ChecksumCRC64NVME: crc } : {}) };
      } catch (error) {
        throw ctx.requestError(
          'UploadPart',
          ctx.objectKey,
          error,
          `part ${partNumber} (${body.length} bytes at offset ${offset})`,
        );
      }
    });
  }

  copyPart(
    partNumber: number,
    offset: number,
    source: SourcePin,
    sourceOffset: number,
    length: number,
  ): Promise<void> {
    return this.track(partNumber, offset, length, async () => {
      const { ctx } = this;
      checkByteRange(source.key, sourceOffset, length);
      if (length === 0 || sourceOffset + length > source.size) {
        throw new StoreConfigError(
          `cannot copy bytes ${sourceOffset}..${sourceOffset + length - 1} of ${source.key} into part ${partNumber} of ${ctx.location}: the pinned source has ${source.size} bytes`,
        );
      }
      const first = sourceOffset;
      const last = sourceOffset + length - 1;
      try {
        const response = await ctx.client.send(
          new UploadPartCopyCommand({
            Bucket: ctx.bucket,
            Key: ctx.objectKey,
            UploadId: ctx.uploadId,
            PartNumber: partNumber,
            CopySource: copySourceOf(ctx.bucket, ctx.sourceObjectKey(source.key), source.versionId),
            CopySourceRange: `bytes=${first}-${last}`,
            // Only the pinned bytes: a source replaced since the pin answers 412.
            ...(source.etag ? { CopySourceIfMatch: source.etag } : {}),
          }),
          { abortSignal: this.stopper.signal },
        );
        const result = response.CopyPartResult;
        if (!result?.ETag) throw new Error('no ETag in the CopyPartResult');
        return {
          PartNumber: partNumber,
          ETag: result.ETag,
          // S3 computes the copied part's CRC64NVME (the upload was created with the algorithm).
          ...(ctx.checksums && result.ChecksumCRC64NVME
            ? { ChecksumCRC64NVME: result.ChecksumCRC64NVME }
            : {}),
        };
      } catch (error) {
        const into = `into part ${partNumber} of ${ctx.location}`;
        if (errorName(error) === 'NoSuchUpload') {
          throw ctx.requestError('UploadPartCopy', ctx.objectKey, error, `copying ${source.key} ${into}`);
        }
        throw ctx.sourceError(
          'UploadPartCopy',
          source.key,
          error,
          source,
          `copying bytes ${first}..${last} ${into}`,
        );
      }
    });
  }

  protected async completeParts(
    expected: AssemblyExpectation,
    tracked: readonly TrackedPart<CompletedPart>[],
  ): Promise<AssemblyResult> {
    const { ctx } = this;
    const parts = tracked.map((part) => part.value);
    try {
      await ctx.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: ctx.bucket,
          Key: ctx.objectKey,
          UploadId: ctx.uploadId,
          MultipartUpload: { Parts: parts },
          // Backup history is created, never replaced: 412 when the key exists.
          IfNoneMatch: '*',
          ...(ctx.checksums
            ? { ChecksumCRC64NVME: expected.crc64nvme, ChecksumType: 'FULL_OBJECT' as const }
            : {}),
        }),
      );
    } catch (error) {
      // The answer may have been lost after S3 stored the object (a retry then meets our own
      // object and gets 412): it is ours when it has exactly the expected size and CRC64NVME.
      const stored = ctx.checksums ? await ctx.headChecksum().catch(() => undefined) : undefined;
      const ours =
        stored !== undefined && stored.size === expected.bytes && stored.crc64nvme === expected.crc64nvme;
      if (!ours) {
        if (isPreconditionFailed(error)) throw new ObjectExistsError(ctx.location, { cause: error });
        throw ctx.requestError(
          'CompleteMultipartUpload',
          ctx.objectKey,
          error,
          errorName(error) === 'BadDigest'
            ? `the assembled bytes do not have the expected CRC64NVME ${expected.crc64nvme}: nothing was stored under this key`
            : 'not counted as written',
        );
      }
    }
    // The upload is complete: nothing to abort any more, whatever the check below finds.
    this.completed = true;
    this.unwatch();
    return await this.checkStored(expected);
  }

  /** HEAD after Complete: the object at the key has the expected size and (when kept) CRC64NVME. */
  private async checkStored(expected: AssemblyExpectation): Promise<AssemblyResult> {
    const { ctx } = this;
    const stored = await ctx.headChecksum();
    const note = 'the object at this key is not the assembled one; do not record it as a backup';
    if (!stored) {
      throw ctx.requestError(
        'HeadObject',
        ctx.objectKey,
        new Error('the object is missing right after it was completed'),
        note,
      );
    }
    if (stored.size !== expected.bytes) {
      throw ctx.requestError(
        'HeadObject',
        ctx.objectKey,
        new Error(`the stored object has ${stored.size} bytes; ${expected.bytes} were assembled`),
        note,
      );
    }
    if (ctx.checksums && stored.crc64nvme !== undefined && stored.crc64nvme !== expected.crc64nvme) {
      throw ctx.requestError(
        'HeadObject',
        ctx.objectKey,
        new Error(`the stored object's CRC64NVME is ${stored.crc64nvme}; ${expected.crc64nvme} was expected`),
        note,
      );
    }
    return { key: ctx.key, bytes: stored.size, ...(stored.crc64nvme ? { crc64nvme: stored.crc64nvme } : {}) };
  }

  abort(): Promise<void> {
    this.aborting ??= this.abortOnce();
    return this.aborting;
  }

  private async abortOnce(): Promise<void> {
    const { ctx } = this;
    this.unwatch();
    this.failure ??= { error: new StoreConfigError(`the assembly of ${ctx.location} was aborted`) };
    // A copy of a 5 GiB part takes a while: cancel what is in flight, then wait for it to settle
    // (a part landing after AbortMultipartUpload would keep the upload billed).
    if (!this.completing) this.stopper.abort(this.failure.error);
    await Promise.allSettled([...this.inFlight]);
    if (this.completing) await this.completing.catch(() => undefined);
    if (this.completed) return;
    try {
      await ctx.client.send(
        new AbortMultipartUploadCommand({ Bucket: ctx.bucket, Key: ctx.objectKey, UploadId: ctx.uploadId }),
      );
    } catch (error) {
      if (errorName(error) === 'NoSuchUpload' || httpStatus(error) === 404) return;
      throw ctx.requestError(
        'AbortMultipartUpload',
        ctx.objectKey,
        error,
        "its parts stay billed until the next backup's leftover sweep or the bucket's lifecycle rule removes them",
      );
    }
  }
}

/**
 * `x-amz-copy-source`: the bucket and the URL-encoded key (each segment encoded, '/' kept, which
 * S3 and S3-compatible servers both accept), and the version when pinned.
 */
function copySourceOf(bucket: string, objectKey: string, versionId: string | undefined): string {
  const key = objectKey.split('/').map(encodeURIComponent).join('/');
  return `${bucket}/${key}${versionId ? `?versionId=${encodeURIComponent(versionId)}` : ''}`;
}

async function crc64nvmeOfBuffer(body: Buffer): Promise<string> {
  const crc = new Crc64Nvme();
  crc.update(body);
  return Buffer.from(await crc.digest()).toString('base64');
}
