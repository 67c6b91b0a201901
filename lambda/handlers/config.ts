import path from 'node:path';
import { DEFAULT_LEVEL } from '../core/defaults.js';
import { errorMessage } from '../core/errors.js';
import { assertSafeRelativePath } from '../core/repository/manifest.js';
import { envMilliseconds } from '../store/open-store.js';
import { S3ObjectStore } from '../store/s3.js';
import { HandlerConfigError } from './errors.js';

/** The functions' settings, from their environment (set by the stack). */
export interface HandlerConfig {
  /** `BUCKET_NAME`: the backup bucket. */
  readonly bucketName: string;
  /** `BACKUP_PREFIX`: key prefix of every backup object. */
  readonly backupPrefix: string;
  /** `KMS_KEY_ID`: SSE-KMS key for every object written; unset = the bucket's default encryption. */
  readonly kmsKeyId: string | undefined;
  /** `EFS_MOUNT`: absolute path where the file system is mounted. */
  readonly efsMount: string;
  /** `MEDIA_PATH`: the media tree, relative to the mount (a subfolder, never the mount itself). */
  readonly mediaPath: string;
  /** `RESTORES_PATH`: where new-folder restores go by default, relative to the mount. */
  readonly restoresPath: string;
  /** `FULL_INTERVAL_DAYS`: age of the latest full at which `auto` takes a new full. */
  readonly fullIntervalDays: number;
  /** `SYNTHETIC_FULLS`: build the weekly full from the store's unchanged bytes plus the changed files. */
  readonly syntheticFulls: boolean;
  /** `NORMAL_FULL_EVERY`: every Nth full re-reads the whole tree (1 = never synthetic). */
  readonly normalFullEvery: number;
  /** `COMPRESSION_LEVEL`: gzip level 0-9 of compressible data (media is stored either way). */
  readonly compressionLevel: number;
  /** `BACKUP_EXCLUDE`: comma-separated globs left out of backups. */
  readonly exclude: readonly string[];
  /** `DEADLINE_MARGIN_MS`: a backup is aborted this long before the invocation would time out. */
  readonly deadlineMarginMs: number;
  /** `S3_ENDPOINT`, `S3_FORCE_PATH_STYLE`, `S3_CHECKSUMS`: for S3-compatible servers (tests); unset in AWS. */
  readonly s3: {
    readonly endpoint: string | undefined;
    readonly forcePathStyle: boolean;
    readonly checksums: 'on' | 'off';
  };
}

export const CONFIG_DEFAULTS = {
  backupPrefix: 'media-backups/',
  efsMount: '/mnt/efs',
  mediaPath: 'media',
  restoresPath: 'restores',
  fullIntervalDays: 7,
  syntheticFulls: true,
  normalFullEvery: 4,
  compressionLevel: DEFAULT_LEVEL,
  deadlineMarginMs: 60_000,
} as const;

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Reads and checks the function's environment. Call it inside the handler, never at module top level:
 * a bad setting then fails the invocation with a message naming the variable instead of crashing
 * the runtime's init phase with a stack trace.
 */
export function readHandlerConfig(env: Env = process.env): HandlerConfig {
  const bucketName = value(env, 'BUCKET_NAME');
  if (bucketName === undefined) {
    throw new HandlerConfigError(
      'environment variable BUCKET_NAME is not set: it must name the backup bucket (the stack sets it)',
    );
  }
  const efsMount = value(env, 'EFS_MOUNT') ?? CONFIG_DEFAULTS.efsMount;
  if (!path.isAbsolute(efsMount) || path.resolve(efsMount) === '/') {
    throw new HandlerConfigError(
      `environment variable EFS_MOUNT must be the absolute path where the file system is mounted, such as /mnt/efs (got ${JSON.stringify(efsMount)})`,
    );
  }
  const mediaPath = relativeFolder(env, 'MEDIA_PATH', CONFIG_DEFAULTS.mediaPath);
  const restoresPath = relativeFolder(env, 'RESTORES_PATH', CONFIG_DEFAULTS.restoresPath);
  if (isSameOrInside(restoresPath, mediaPath) || isSameOrInside(mediaPath, restoresPath)) {
    throw new HandlerConfigError(
      `environment variables MEDIA_PATH (${JSON.stringify(mediaPath)}) and RESTORES_PATH (${JSON.stringify(restoresPath)}) must be separate folders, neither inside the other: restores inside the media tree would be backed up with it`,
    );
  }
  const checksums = value(env, 'S3_CHECKSUMS') ?? 'on';
  if (checksums !== 'on' && checksums !== 'off') {
    throw new HandlerConfigError(
      `environment variable S3_CHECKSUMS must be 'on' or 'off' (got ${JSON.stringify(checksums)})`,
    );
  }
  return {
    bucketName,
    backupPrefix: value(env, 'BACKUP_PREFIX') ?? CONFIG_DEFAULTS.backupPrefix,
    kmsKeyId: value(env, 'KMS_KEY_ID'),
    efsMount: path.resolve(efsMount),
    mediaPath,
    restoresPath,
    fullIntervalDays: wholeNumber(env, 'FULL_INTERVAL_DAYS', CONFIG_DEFAULTS.fullIntervalDays, 1, 'days'),
    syntheticFulls:
      value(env, 'SYNTHETIC_FULLS') === undefined
        ? CONFIG_DEFAULTS.syntheticFulls
        : booleanValue(env, 'SYNTHETIC_FULLS'),
    normalFullEvery: wholeNumber(env, 'NORMAL_FULL_EVERY', CONFIG_DEFAULTS.normalFullEvery, 1, 'fulls'),
    compressionLevel: compressionLevel(env),
    exclude: (value(env, 'BACKUP_EXCLUDE') ?? '')
      .split(',')
      .map((glob) => glob.trim())
      .filter((glob) => glob !== ''),
    deadlineMarginMs: wholeNumber(
      env,
      'DEADLINE_MARGIN_MS',
      CONFIG_DEFAULTS.deadlineMarginMs,
      0,
      'milliseconds',
    ),
    s3: {
      endpoint: value(env, 'S3_ENDPOINT'),
      forcePathStyle: booleanValue(env, 'S3_FORCE_PATH_STYLE'),
      checksums,
    },
  };
}

/** Absolute path of a folder given relative to the mount. */
export function underMount(config: HandlerConfig, relative: string): string {
  return path.join(config.efsMount, ...relative.split('/'));
}

/**
 * The backup store the config names. The caller owns the client: destroy it (`store.client.destroy()`)
 * when the invocation ends.
 */
export function openHandlerStore(config: HandlerConfig): S3ObjectStore {
  try {
    return new S3ObjectStore({
      bucket: config.bucketName,
      prefix: config.backupPrefix,
      kmsKeyId: config.kmsKeyId,
      endpoint: config.s3.endpoint,
      forcePathStyle: config.s3.forcePathStyle,
      checksums: config.s3.checksums,
      // Read here, inside the try, so a bad value is a HandlerConfigError naming the variable.
      connectTimeoutMs: envMilliseconds('S3_CONNECT_TIMEOUT_MS'),
      idleTimeoutMs: envMilliseconds('S3_IDLE_TIMEOUT_MS'),
    });
  } catch (error) {
    // The store names its option (`bucket`); the operator needs the variable that set it.
    throw new HandlerConfigError(
      `environment variables BUCKET_NAME / BACKUP_PREFIX / S3_* do not make a valid store: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}

/** `path` equals `folder` or lies below it (both relative POSIX paths). */
export function isSameOrInside(p: string, folder: string): boolean {
  return p === folder || p.startsWith(`${folder}/`);
}

/** An empty variable counts as unset: CloudFormation cannot remove a variable, only blank it. */
function value(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  return raw ? raw : undefined;
}

function relativeFolder(env: Env, name: string, fallback: string): string {
  const raw = value(env, name) ?? fallback;
  // A trailing slash is a common way to write a folder; it is not a different folder.
  const folder = raw.replace(/\/+$/, '');
  try {
    assertSafeRelativePath(folder, `environment variable ${name}`);
  } catch (error) {
    throw new HandlerConfigError(
      `environment variable ${name} must be a folder relative to EFS_MOUNT, such as ${JSON.stringify(fallback)}, not the mount itself (got ${JSON.stringify(raw)}: ${errorMessage(error)})`,
      { cause: error },
    );
  }
  return folder;
}

function wholeNumber(env: Env, name: string, fallback: number, min: number, unit: string): number {
  const raw = value(env, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw new HandlerConfigError(
      `environment variable ${name} must be a whole number of ${unit}, at least ${min} (got ${JSON.stringify(raw)})`,
    );
  }
  return n;
}

function compressionLevel(env: Env): number {
  const level = wholeNumber(env, 'COMPRESSION_LEVEL', CONFIG_DEFAULTS.compressionLevel, 0, 'gzip level');
  if (level > 9) {
    throw new HandlerConfigError(
      `environment variable COMPRESSION_LEVEL must be a gzip level from 0 to 9 (got ${level})`,
    );
  }
  return level;
}

function booleanValue(env: Env, name: string): boolean {
  const raw = value(env, name);
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  throw new HandlerConfigError(
    `environment variable ${name} must be 'true' or 'false' (got ${JSON.stringify(raw)})`,
  );
}
