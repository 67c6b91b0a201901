import type { Construct } from 'constructs';

/**
 * Deployment settings of the media-backup stack, read from CDK context
 * (`cdk.json` "context", or `cdk synth -c key=value`).
 */
export interface MediaBackupConfig {
  /** Every restore point younger than this many days stays restorable. */
  readonly retentionDays: number;
  /** `auto` backups start a new full chain when the latest full is older than this many days. */
  readonly fullIntervalDays: number;
  /** Key prefix of all backup objects in the bucket: empty, or ending in `/`. */
  readonly backupPrefix: string;
  /** ARN of an existing KMS key for bucket encryption; absent means S3-managed keys (SSE-S3). */
  readonly kmsKeyArn?: string;
  /** Create the bucket with S3 Object Lock (governance mode) so backups cannot be deleted early. */
  readonly objectLock: boolean;
}

/** Values used when a context key is absent. `cdk.json` repeats them so operators can see them. */
export const DEFAULT_CONFIG = {
  retentionDays: 30,
  fullIntervalDays: 7,
  backupPrefix: 'media-backups/',
  objectLock: false,
} as const satisfies Omit<MediaBackupConfig, 'kmsKeyArn'>;

/** The context keys {@link loadConfig} reads. */
export const CONFIG_KEYS = [
  'retentionDays',
  'fullIntervalDays',
  'backupPrefix',
  'kmsKeyArn',
  'objectLock',
] as const satisfies readonly (keyof MediaBackupConfig)[];

/** Thrown when the deployment settings are invalid; the message lists every problem found. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';

  constructor(readonly problems: readonly string[]) {
    super(`Invalid media-backup configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

// Key ARNs only: an alias ARN would work for encryption, but grants to the backup and restore
// functions need the key itself.
const KMS_KEY_ARN =
  /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/(?:mrk-[a-f0-9]{32}|[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})$/;
// One or more non-empty segments, each ending in '/': rejects a leading '/' and '//'.
const PREFIX_SEGMENTS = /^(?:[^/]+\/)+$/;

/**
 * Validate raw settings (as found in CDK context) and fill in defaults.
 * `-c key=value` delivers every value as a string, so `"30"` and `"true"` are accepted.
 *
 * @throws ConfigError naming every invalid key
 */
export function parseConfig(raw: Record<string, unknown>): MediaBackupConfig {
  const problems: string[] = [];

  const retentionDays = parseWholeDays(
    'retentionDays',
    raw.retentionDays,
    DEFAULT_CONFIG.retentionDays,
    problems,
  );
  const fullIntervalDays = parseWholeDays(
    'fullIntervalDays',
    raw.fullIntervalDays,
    DEFAULT_CONFIG.fullIntervalDays,
    problems,
  );
  if (retentionDays !== undefined && fullIntervalDays !== undefined && retentionDays < fullIntervalDays) {
    problems.push(
      `\`retentionDays\` must be at least \`fullIntervalDays\` (got ${retentionDays} < ${fullIntervalDays}): ` +
        'a shorter retention would not cover one full backup cycle',
    );
  }

  const backupPrefix = parseBackupPrefix(raw.backupPrefix, problems);
  const kmsKeyArn = parseKmsKeyArn(raw.kmsKeyArn, problems);
  const objectLock = parseBoolean('objectLock', raw.objectLock, DEFAULT_CONFIG.objectLock, problems);

  if (
    problems.length > 0 ||
    retentionDays === undefined ||
    fullIntervalDays === undefined ||
    backupPrefix === undefined ||
    objectLock === undefined
  ) {
    throw new ConfigError(problems);
  }
  return {
    retentionDays,
    fullIntervalDays,
    backupPrefix,
    objectLock,
    ...(kmsKeyArn === undefined ? {} : { kmsKeyArn }),
  };
}

/** Read and validate the settings from the construct tree's context (see {@link parseConfig}). */
export function loadConfig(scope: Construct): MediaBackupConfig {
  const raw: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    raw[key] = scope.node.tryGetContext(key);
  }
  return parseConfig(raw);
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function isAbsent(value: unknown): boolean {
  return value === undefined || value === null;
}

function parseWholeDays(
  key: string,
  value: unknown,
  fallback: number,
  problems: string[],
): number | undefined {
  if (isAbsent(value)) return fallback;
  const days =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && /^\s*\d+\s*$/.test(value)
        ? Number(value)
        : NaN;
  if (!Number.isSafeInteger(days) || days < 1) {
    problems.push(`\`${key}\` must be a whole number of days >= 1 (got ${describe(value)})`);
    return undefined;
  }
  return days;
}

function parseBoolean(
  key: string,
  value: unknown,
  fallback: boolean,
  problems: string[],
): boolean | undefined {
  if (isAbsent(value)) return fallback;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  problems.push(`\`${key}\` must be true or false (got ${describe(value)})`);
  return undefined;
}

function parseBackupPrefix(value: unknown, problems: string[]): string | undefined {
  if (isAbsent(value)) return DEFAULT_CONFIG.backupPrefix;
  if (typeof value !== 'string') {
    problems.push(`\`backupPrefix\` must be a string (got ${describe(value)})`);
    return undefined;
  }
  if (value === '') return value;
  if (!value.endsWith('/')) {
    problems.push(`\`backupPrefix\` must be empty or end with "/" (got ${describe(value)})`);
    return undefined;
  }
  if (!PREFIX_SEGMENTS.test(value)) {
    problems.push(`\`backupPrefix\` must not start with "/" or contain "//" (got ${describe(value)})`);
    return undefined;
  }
  return value;
}

function parseKmsKeyArn(value: unknown, problems: string[]): string | undefined {
  // An empty string lets `-c kmsKeyArn=` override a value from cdk.json back to SSE-S3.
  if (isAbsent(value) || value === '') return undefined;
  if (typeof value !== 'string' || !KMS_KEY_ARN.test(value)) {
    problems.push(
      `\`kmsKeyArn\` must be a KMS key ARN like arn:aws:kms:<region>:<account>:key/<key-id> (got ${describe(value)})`,
    );
    return undefined;
  }
  return value;
}
