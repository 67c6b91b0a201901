import { fileURLToPath } from 'node:url';
import { FsObjectStore } from './fs.js';
import type { S3ObjectStore } from './s3.js';
import { type ObjectStore, StoreConfigError } from './types.js';

/** Connection settings for `s3://` stores; each falls back to an environment variable. */
export interface OpenStoreOptions {
  /** @default `S3_ENDPOINT`, else AWS S3 */
  readonly endpoint?: string;
  /** @default `S3_FORCE_PATH_STYLE === 'true'` */
  readonly forcePathStyle?: boolean;
  /** @default `S3_CHECKSUMS` (`'on'` or `'off'`), else `'on'` */
  readonly checksums?: 'on' | 'off';
  /** @default `S3_KMS_KEY_ID`, else the bucket's default encryption */
  readonly kmsKeyId?: string;
  /** @default `AWS_REGION`, else the SDK's region chain */
  readonly region?: string;
  /** Connection timeout per attempt. @default `S3_CONNECT_TIMEOUT_MS`, else 5000 */
  readonly connectTimeoutMs?: number;
  /** No-progress (idle) timeout per attempt, also while a body streams. @default `S3_IDLE_TIMEOUT_MS`, else 60000 */
  readonly idleTimeoutMs?: number;
}

const USAGE = 'use s3://bucket/prefix, file:///absolute/path or a folder path';

/**
 * Opens the store a URL names:
 * - `s3://bucket/prefix/` an S3 prefix; `s3://bucket` uses the default prefix `media-backups/`,
 *   `s3://bucket/` the bucket root (so a store's own `url` opens the same store again);
 * - `file:///absolute/path` or a plain path (relative to the working directory): a folder.
 * Rejects with {@link StoreConfigError} naming the URL for anything else. Async because the AWS SDK
 * is loaded only for `s3://` stores: it costs ~0.4 s and tens of MB that a folder store never needs.
 */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<ObjectStore> {
  if (url.includes('\0'))
    throw new StoreConfigError(`store URL ${JSON.stringify(url)} contains a NUL byte: ${USAGE}`);
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]+):/.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (url.trim() === '') throw new StoreConfigError(`empty store URL: ${USAGE}`);
    return new FsObjectStore(url);
  }
  if (scheme === 'file') return new FsObjectStore(filePath(url));
  if (scheme === 's3') return openS3Store(url, options);
  throw new StoreConfigError(`unsupported store URL ${JSON.stringify(url)}: ${USAGE}`);
}

function filePath(url: string): string {
  try {
    return fileURLToPath(url);
  } catch (error) {
    throw new StoreConfigError(
      `invalid file store URL ${JSON.stringify(url)} (${(error as Error).message}): ${USAGE}`,
      { cause: error },
    );
  }
}

async function openS3Store(url: string, options: OpenStoreOptions): Promise<S3ObjectStore> {
  const match = /^s3:\/\/([^/?#]*)(\/[^?#]*)?$/i.exec(url);
  const bucket = match?.[1];
  if (!match || !bucket) {
    throw new StoreConfigError(`invalid S3 store URL ${JSON.stringify(url)}: expected s3://bucket/prefix`);
  }
  const path = match[2];
  let prefix: string | undefined;
  try {
    prefix = path === undefined ? undefined : decodeURIComponent(path.slice(1));
  } catch (error) {
    throw new StoreConfigError(`invalid S3 store URL ${JSON.stringify(url)}: bad %-escape in the prefix`, {
      cause: error,
    });
  }
  const { S3ObjectStore } = await import('./s3.js');
  try {
    return new S3ObjectStore({
      bucket,
      prefix,
      endpoint: options.endpoint ?? env('S3_ENDPOINT'),
      forcePathStyle: options.forcePathStyle ?? envBoolean('S3_FORCE_PATH_STYLE'),
      checksums: options.checksums ?? envChecksums(),
      kmsKeyId: options.kmsKeyId ?? env('S3_KMS_KEY_ID'),
      region: options.region ?? env('AWS_REGION'),
      connectTimeoutMs: options.connectTimeoutMs ?? envMilliseconds('S3_CONNECT_TIMEOUT_MS'),
      idleTimeoutMs: options.idleTimeoutMs ?? envMilliseconds('S3_IDLE_TIMEOUT_MS'),
    });
  } catch (error) {
    if (!(error instanceof StoreConfigError)) throw error;
    throw new StoreConfigError(`invalid S3 store URL ${JSON.stringify(url)}: ${error.message}`, {
      cause: error,
    });
  }
}

function env(name: string): string | undefined {
  const value = process.env[name]?.trim();
  return value ? value : undefined;
}

function envBoolean(name: string): boolean | undefined {
  const value = env(name);
  if (value === undefined) return undefined;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new StoreConfigError(`${name} must be 'true' or 'false', got ${JSON.stringify(value)}`);
}

/** A positive whole number of milliseconds from the environment (`S3_CONNECT_TIMEOUT_MS`, ...). */
export function envMilliseconds(name: string): number | undefined {
  const value = env(name);
  if (value === undefined) return undefined;
  const ms = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(ms) || ms < 1) {
    throw new StoreConfigError(
      `${name} must be a positive whole number of milliseconds, got ${JSON.stringify(value)}`,
    );
  }
  return ms;
}

function envChecksums(): 'on' | 'off' | undefined {
  const value = env('S3_CHECKSUMS');
  if (value === undefined || value === 'on' || value === 'off') return value;
  throw new StoreConfigError(`S3_CHECKSUMS must be 'on' or 'off', got ${JSON.stringify(value)}`);
}
