import type { Construct } from 'constructs';
import { DEFAULT_LEVEL } from '../lambda/core/parallel-gzip.js';
import { DEFAULT_BACKUP_TIME } from './local-time.js';

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
  /**
   * ARN of an existing KMS key for bucket encryption; absent means S3-managed keys (SSE-S3). The
   * stack grants the functions' roles on this key through IAM only, which works only when the key's
   * policy delegates to IAM in this account (the default key policy's "Enable IAM User Permissions"
   * statement, `arn:aws:iam::<account>:root` with `kms:*`); otherwise every read and write fails at
   * run time with AccessDenied.
   */
  readonly kmsKeyArn?: string;
  /**
   * Create the bucket with S3 Object Lock so backups cannot be deleted or overwritten early (in
   * {@link MediaBackupConfig.objectLockMode}). Can only be chosen when the bucket is created.
   */
  readonly objectLock: boolean;
  /**
   * Object Lock retention mode, present exactly when `objectLock` is true (default `GOVERNANCE`).
   * `GOVERNANCE`: anyone with `s3:BypassGovernanceRetention` (any administrator with `s3:*`) can
   * still delete or overwrite a locked version early. `COMPLIANCE`: nobody, not even the account
   * root, until the lock runs out; a wrong setting cannot be undone and the objects are billed
   * until then.
   */
  readonly objectLockMode?: ObjectLockMode;
  /** Local start time of the daily backup, `HH:MM` (24 h) in {@link MediaBackupConfig.timeZone}. */
  readonly backupSchedule: string;
  /** Day of the week (`MON`..`SUN`) whose scheduled backup is a `full`; every other day runs `auto`. */
  readonly fullBackupDay: Weekday;
  /** IANA time zone the schedules run in, e.g. `Europe/Berlin`. */
  readonly timeZone: string;
  /**
   * Address that receives alarm emails (SNS) and the formatted failure, alarm and digest emails of
   * the notify function (SES); absent means no email, no notify function and no SES identity.
   */
  readonly notificationEmail?: string;
  /**
   * SES-verified address the notify function sends from. Defaults to `notificationEmail` (one
   * address to verify, which also satisfies the SES sandbox); only valid with `notificationEmail`.
   */
  readonly senderEmail?: string;
  /**
   * The sender address is already an SES identity in this account and region (you verified it
   * before): use it instead of creating `AWS::SES::EmailIdentity`, which fails with AlreadyExists.
   */
  readonly useExistingSesIdentity: boolean;
  /**
   * Also subscribe `notificationEmail` to the alarm topic directly (raw SNS alarm text, which still
   * arrives when SES or the notify function fails, at the price of a second mail per alarm).
   */
  readonly rawAlarmEmail: boolean;
  /** The backup-age alarm fires when the newest committed backup is older than this many hours. */
  readonly maxBackupAgeHours: number;
  /** The monitor reports a backup whose archive is smaller than this many bytes as critical. */
  readonly minBackupBytes: number;
  /** The monitor warns when a full backup's source is this many percent smaller than the previous full's. */
  readonly maxShrinkPercent: number;
  /** The monitor warns when the media file system's metered size exceeds this many bytes; absent means no check. */
  readonly efsWarnBytes?: number;
  /** Email a weekly digest of the backups (needs `notificationEmail`). */
  readonly weeklyDigest: boolean;
  /** Memory of the monitor function in MB. */
  readonly monitorMemoryMb: number;
  /**
   * Deploy the CloudWatch dashboard `<stack>-media-backup` ($3 a month at list price beyond an
   * account's first 3 dashboards). Without it the alarms, metrics and emails stay the same.
   */
  readonly dashboard: boolean;
  /** The existing EFS file system and network to back up; absent means a demo VPC and EFS are created. */
  readonly existingFileSystem?: ExistingFileSystemConfig;
  /**
   * Availability zones of the demo VPC (two or more, e.g. `eu-west-1a,eu-west-1b`); absent means the
   * region's first two zones as CloudFormation lists them (`Fn::GetAZs`), never a lookup. Set it when
   * Lambda is not offered in one of those zones. Demo VPC only.
   */
  readonly demoAvailabilityZones?: readonly string[];
  /** POSIX user id the created access point runs file operations as (demo EFS only). */
  readonly posixUid: number;
  /** POSIX group id the created access point runs file operations as (demo EFS only). */
  readonly posixGid: number;
  /** The media tree, relative to the access point root (mounted at `/mnt/efs`). */
  readonly mediaPath: string;
  /** Folder, relative to the access point root, that restores into a new folder land in (`<restoresPath>/<backupId>`). */
  readonly restoresPath: string;
  /** Globs the backup leaves out (handed to the function as `BACKUP_EXCLUDE`, comma-separated). */
  readonly backupExclude: readonly string[];
  /** Memory of the backup function in MB; Lambda allots vCPUs in proportion, and gzip is CPU-bound. */
  readonly backupMemoryMb: number;
  /**
   * Reserve concurrency 1 for the backup function (a second concurrent run is throttled). Off by
   * default: reserving fails the deploy in accounts whose concurrency quota is low (new accounts
   * often have 10, and Lambda keeps 10 unreserved), and the store's lock already refuses a second run.
   */
  readonly reserveBackupConcurrency: boolean;
  /** gzip level 0-9 of compressible data (`COMPRESSION_LEVEL`); media is stored either way. */
  readonly compressionLevel: number;
  /** Memory of the restore function in MB. */
  readonly restoreMemoryMb: number;
  /** Memory of the verify function in MB. */
  readonly verifyMemoryMb: number;
  /** Days the functions' CloudWatch log groups keep their logs (a value CloudWatch Logs accepts). */
  readonly logRetentionDays: number;
  /**
   * Add an S3 gateway endpoint to the functions' subnets so they reach S3 without a NAT gateway.
   * Defaults to true for the created VPC and false for an existing one (which needs
   * `privateSubnetRouteTableIds` for it).
   */
  readonly createS3GatewayEndpoint: boolean;
}

/** Day names as EventBridge Scheduler cron expressions spell them. */
export const WEEKDAYS = ['MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT', 'SUN'] as const;
/** A day of the week, as in a cron expression. */
export type Weekday = (typeof WEEKDAYS)[number];

/**
 * An existing EFS file system and the network the functions reach it through. Every id is given
 * explicitly because synth never looks anything up.
 */
export interface ExistingFileSystemConfig {
  /** `fs-…` id of the file system holding the media tree. */
  readonly fileSystemId: string;
  /** `fsap-…` id of an access point on that file system whose root holds `mediaPath`. */
  readonly accessPointId: string;
  /** `sg-…` id of the security group the functions use; the mount targets must admit it on TCP 2049. */
  readonly securityGroupId: string;
  /** `vpc-…` id of the VPC of the mount targets. */
  readonly vpcId: string;
  /** Private subnets (`subnet-…`) the functions run in, one per availability zone. */
  readonly privateSubnetIds: readonly string[];
  /** Availability zones of `privateSubnetIds`, in the same order. */
  readonly availabilityZones: readonly string[];
  /** Route tables (`rtb-…`) of `privateSubnetIds`, in the same order; needed only for `createS3GatewayEndpoint`. */
  readonly privateSubnetRouteTableIds?: readonly string[];
}

/** CloudWatch Logs retention periods (days) that `logRetentionDays` may take. */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

/** Values used when a context key is absent. `cdk.json` repeats them so operators can see them. */
// `createS3GatewayEndpoint` is absent: its default depends on whether the network is created.
export const DEFAULT_CONFIG = {
  retentionDays: 30,
  fullIntervalDays: 7,
  backupPrefix: 'media-backups/',
  objectLock: false,
  // Clear of every zone's daylight-saving changes; lib/constructs/schedules.ts refuses a time in one.
  backupSchedule: DEFAULT_BACKUP_TIME,
  fullBackupDay: 'SUN',
  timeZone: 'UTC',
  posixUid: 1000,
  posixGid: 1000,
  mediaPath: 'media',
  restoresPath: 'restores',
  backupExclude: [],
  backupMemoryMb: 3538,
  compressionLevel: DEFAULT_LEVEL,
  restoreMemoryMb: 2048,
  verifyMemoryMb: 1024,
  logRetentionDays: 90,
  maxBackupAgeHours: 48,
  minBackupBytes: 1_000_000,
  maxShrinkPercent: 50,
  weeklyDigest: true,
  monitorMemoryMb: 512,
  dashboard: true,
  reserveBackupConcurrency: false,
  useExistingSesIdentity: false,
  rawAlarmEmail: false,
} as const satisfies Omit<
  MediaBackupConfig,
  | 'demoAvailabilityZones'
  | 'kmsKeyArn'
  | 'notificationEmail'
  | 'senderEmail'
  | 'efsWarnBytes'
  | 'existingFileSystem'
  | 'createS3GatewayEndpoint'
  | 'objectLockMode'
>;

/** The keys of an existing file system and network: set all of them or none. */
export const EXISTING_FILE_SYSTEM_KEYS = [
  'fileSystemId',
  'accessPointId',
  'securityGroupId',
  'vpcId',
  'privateSubnetIds',
  'availabilityZones',
] as const satisfies readonly (keyof ExistingFileSystemConfig)[];

/** The context keys {@link loadConfig} reads. */
export const CONFIG_KEYS = [
  'retentionDays',
  'fullIntervalDays',
  'backupPrefix',
  'kmsKeyArn',
  'objectLock',
  'objectLockMode',
  'backupSchedule',
  'fullBackupDay',
  'timeZone',
  'notificationEmail',
  'senderEmail',
  'useExistingSesIdentity',
  'rawAlarmEmail',
  'maxBackupAgeHours',
  'minBackupBytes',
  'maxShrinkPercent',
  'efsWarnBytes',
  'weeklyDigest',
  'monitorMemoryMb',
  'dashboard',
  ...EXISTING_FILE_SYSTEM_KEYS,
  'privateSubnetRouteTableIds',
  'demoAvailabilityZones',
  'posixUid',
  'posixGid',
  'mediaPath',
  'restoresPath',
  'backupExclude',
  'backupMemoryMb',
  'reserveBackupConcurrency',
  'compressionLevel',
  'restoreMemoryMb',
  'verifyMemoryMb',
  'logRetentionDays',
  'createS3GatewayEndpoint',
] as const;

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
  const objectLockMode = parseObjectLockMode(raw.objectLockMode, objectLock, problems);

  const backupSchedule = parseTimeOfDayKey(raw.backupSchedule, problems);
  const fullBackupDay = parseWeekday(raw.fullBackupDay, problems);
  const timeZone = parseTimeZone(raw.timeZone, problems);
  const notificationEmail = parseEmail('notificationEmail', raw.notificationEmail, problems);
  const senderEmail = parseEmail('senderEmail', raw.senderEmail, problems);
  if (senderEmail !== undefined && isBlank(raw.notificationEmail)) {
    problems.push(
      '`senderEmail` needs `notificationEmail`: without a recipient no email is sent (set both, or neither)',
    );
  }
  const useExistingSesIdentity = parseBoolean(
    'useExistingSesIdentity',
    raw.useExistingSesIdentity,
    DEFAULT_CONFIG.useExistingSesIdentity,
    problems,
  );
  const rawAlarmEmail = parseBoolean(
    'rawAlarmEmail',
    raw.rawAlarmEmail,
    DEFAULT_CONFIG.rawAlarmEmail,
    problems,
  );
  for (const [key, value] of [
    ['useExistingSesIdentity', useExistingSesIdentity],
    ['rawAlarmEmail', rawAlarmEmail],
  ] as const) {
    if (value === true && isBlank(raw.notificationEmail)) {
      problems.push(`\`${key}\` needs \`notificationEmail\`: without a recipient no email is sent`);
    }
  }
  // Backups run once a day, so a limit of a day or less would alarm between any two of them.
  const maxBackupAgeHours = parseInteger(
    'maxBackupAgeHours',
    raw.maxBackupAgeHours,
    DEFAULT_CONFIG.maxBackupAgeHours,
    25,
    8760,
    problems,
  );
  const minBackupBytes = parseInteger(
    'minBackupBytes',
    raw.minBackupBytes,
    DEFAULT_CONFIG.minBackupBytes,
    0,
    Number.MAX_SAFE_INTEGER,
    problems,
  );
  const maxShrinkPercent = parseInteger(
    'maxShrinkPercent',
    raw.maxShrinkPercent,
    DEFAULT_CONFIG.maxShrinkPercent,
    1,
    100,
    problems,
  );
  const efsWarnBytes = isBlank(raw.efsWarnBytes)
    ? undefined
    : parseInteger('efsWarnBytes', raw.efsWarnBytes, 0, 1, Number.MAX_SAFE_INTEGER, problems);
  const weeklyDigest = parseBoolean('weeklyDigest', raw.weeklyDigest, DEFAULT_CONFIG.weeklyDigest, problems);
  const monitorMemoryMb = parseMemory(
    'monitorMemoryMb',
    raw.monitorMemoryMb,
    DEFAULT_CONFIG.monitorMemoryMb,
    problems,
  );
  const dashboard = parseBoolean('dashboard', raw.dashboard, DEFAULT_CONFIG.dashboard, problems);
  const existingFileSystem = parseExistingFileSystem(raw, problems);
  const demoAvailabilityZones = isBlank(raw.demoAvailabilityZones)
    ? undefined
    : parseIdList(
        'demoAvailabilityZones',
        raw.demoAvailabilityZones,
        AVAILABILITY_ZONE,
        'eu-west-1a',
        problems,
      );
  if (demoAvailabilityZones !== undefined && demoAvailabilityZones.length < 2) {
    problems.push(
      `\`demoAvailabilityZones\` must list at least two zones, like eu-west-1a,eu-west-1b (got ${describe(raw.demoAvailabilityZones)}): ` +
        'EFS mount targets and Lambda need two zones to survive one failing',
    );
  }
  if (demoAvailabilityZones !== undefined && !isBlank(raw.fileSystemId)) {
    problems.push(
      '`demoAvailabilityZones` applies only to the demo VPC; an existing file system takes `availabilityZones`',
    );
  }
  const posixUid = parseInteger('posixUid', raw.posixUid, DEFAULT_CONFIG.posixUid, 0, 4294967295, problems);
  const posixGid = parseInteger('posixGid', raw.posixGid, DEFAULT_CONFIG.posixGid, 0, 4294967295, problems);
  const mediaPath = parseRelativePath('mediaPath', raw.mediaPath, DEFAULT_CONFIG.mediaPath, problems);
  const restoresPath = parseRelativePath(
    'restoresPath',
    raw.restoresPath,
    DEFAULT_CONFIG.restoresPath,
    problems,
  );
  if (mediaPath !== undefined && restoresPath !== undefined && overlaps(mediaPath, restoresPath)) {
    problems.push(
      `\`restoresPath\` must not be inside \`mediaPath\` or contain it (got ${describe(restoresPath)} and ${describe(mediaPath)}): ` +
        'restores would be backed up, or an in-place restore would swap them away',
    );
  }
  const backupExclude = parseList('backupExclude', raw.backupExclude, problems) ?? [];
  const backupMemoryMb = parseMemory(
    'backupMemoryMb',
    raw.backupMemoryMb,
    DEFAULT_CONFIG.backupMemoryMb,
    problems,
  );
  const reserveBackupConcurrency = parseBoolean(
    'reserveBackupConcurrency',
    raw.reserveBackupConcurrency,
    DEFAULT_CONFIG.reserveBackupConcurrency,
    problems,
  );
  const compressionLevel = parseInteger(
    'compressionLevel',
    raw.compressionLevel,
    DEFAULT_CONFIG.compressionLevel,
    0,
    9,
    problems,
  );
  const restoreMemoryMb = parseMemory(
    'restoreMemoryMb',
    raw.restoreMemoryMb,
    DEFAULT_CONFIG.restoreMemoryMb,
    problems,
  );
  const verifyMemoryMb = parseMemory(
    'verifyMemoryMb',
    raw.verifyMemoryMb,
    DEFAULT_CONFIG.verifyMemoryMb,
    problems,
  );
  const logRetentionDays = parseLogRetention(raw.logRetentionDays, problems);
  const createS3GatewayEndpoint = parseBoolean(
    'createS3GatewayEndpoint',
    raw.createS3GatewayEndpoint,
    existingFileSystem === undefined,
    problems,
  );
  if (
    createS3GatewayEndpoint === true &&
    existingFileSystem !== undefined &&
    existingFileSystem.privateSubnetRouteTableIds === undefined
  ) {
    problems.push(
      '`createS3GatewayEndpoint` with an existing VPC needs `privateSubnetRouteTableIds` (the route tables of ' +
        '`privateSubnetIds`); or set it to false when the VPC already routes S3 traffic',
    );
  }

  if (
    problems.length > 0 ||
    retentionDays === undefined ||
    fullIntervalDays === undefined ||
    backupPrefix === undefined ||
    objectLock === undefined ||
    backupSchedule === undefined ||
    fullBackupDay === undefined ||
    timeZone === undefined ||
    posixUid === undefined ||
    posixGid === undefined ||
    mediaPath === undefined ||
    restoresPath === undefined ||
    backupMemoryMb === undefined ||
    compressionLevel === undefined ||
    restoreMemoryMb === undefined ||
    verifyMemoryMb === undefined ||
    logRetentionDays === undefined ||
    createS3GatewayEndpoint === undefined ||
    maxBackupAgeHours === undefined ||
    minBackupBytes === undefined ||
    maxShrinkPercent === undefined ||
    weeklyDigest === undefined ||
    monitorMemoryMb === undefined ||
    dashboard === undefined ||
    useExistingSesIdentity === undefined ||
    rawAlarmEmail === undefined ||
    reserveBackupConcurrency === undefined
  ) {
    throw new ConfigError(problems);
  }
  return {
    retentionDays,
    fullIntervalDays,
    backupPrefix,
    objectLock,
    ...(objectLockMode === undefined ? {} : { objectLockMode }),
    ...(kmsKeyArn === undefined ? {} : { kmsKeyArn }),
    backupSchedule,
    fullBackupDay,
    timeZone,
    ...(notificationEmail === undefined ? {} : { notificationEmail }),
    ...(notificationEmail === undefined ? {} : { senderEmail: senderEmail ?? notificationEmail }),
    useExistingSesIdentity,
    rawAlarmEmail,
    maxBackupAgeHours,
    minBackupBytes,
    maxShrinkPercent,
    ...(efsWarnBytes === undefined ? {} : { efsWarnBytes }),
    weeklyDigest,
    monitorMemoryMb,
    dashboard,
    ...(existingFileSystem === undefined ? {} : { existingFileSystem }),
    ...(demoAvailabilityZones === undefined ? {} : { demoAvailabilityZones }),
    posixUid,
    posixGid,
    mediaPath,
    restoresPath,
    backupExclude,
    backupMemoryMb,
    reserveBackupConcurrency,
    compressionLevel,
    restoreMemoryMb,
    verifyMemoryMb,
    logRetentionDays,
    createS3GatewayEndpoint,
  };
}

/**
 * Parse a local time of day, `HH:MM` (24 h, `H:MM` accepted).
 *
 * @returns undefined when `value` is not such a time
 */
export function parseTimeOfDay(value: string): { hour: number; minute: number } | undefined {
  const match = /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(value.trim());
  return match ? { hour: Number(match[1]), minute: Number(match[2]) } : undefined;
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

/** Object Lock retention modes, in the spelling S3 and `cdk.json` use. */
export const OBJECT_LOCK_MODES = ['GOVERNANCE', 'COMPLIANCE'] as const;
/** An Object Lock retention mode. */
export type ObjectLockMode = (typeof OBJECT_LOCK_MODES)[number];

/** The mode when `objectLock` is true (`GOVERNANCE` unless set), nothing when it is false. */
function parseObjectLockMode(
  value: unknown,
  objectLock: boolean | undefined,
  problems: string[],
): ObjectLockMode | undefined {
  const text = typeof value === 'string' ? value.trim().toUpperCase() : undefined;
  const mode = OBJECT_LOCK_MODES.find((m) => m === text);
  if (!isAbsent(value) && !mode) {
    problems.push(
      `\`objectLockMode\` must be one of ${OBJECT_LOCK_MODES.join(', ')} (got ${describe(value)})`,
    );
    return undefined;
  }
  if (objectLock === false && mode) {
    problems.push(
      `\`objectLockMode\` needs \`objectLock\`: true (got objectLockMode ${mode} with objectLock false); ` +
        'set objectLock to true when the bucket is first created, or remove objectLockMode',
    );
    return undefined;
  }
  return objectLock ? (mode ?? 'GOVERNANCE') : undefined;
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

function isBlank(value: unknown): boolean {
  return isAbsent(value) || (typeof value === 'string' && value.trim() === '');
}

function parseInteger(
  key: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
  problems: string[],
): number | undefined {
  if (isAbsent(value)) return fallback;
  const number =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && /^\s*\d+\s*$/.test(value)
        ? Number(value)
        : NaN;
  if (!Number.isSafeInteger(number) || number < min || number > max) {
    problems.push(`\`${key}\` must be a whole number from ${min} to ${max} (got ${describe(value)})`);
    return undefined;
  }
  return number;
}

function parseMemory(key: string, value: unknown, fallback: number, problems: string[]): number | undefined {
  // Lambda's limits: 128 MB to 10,240 MB (10 GB) in 1 MB steps.
  return parseInteger(key, value, fallback, 128, 10240, problems);
}

function parseTimeOfDayKey(value: unknown, problems: string[]): string | undefined {
  if (isAbsent(value)) return DEFAULT_CONFIG.backupSchedule;
  const time = typeof value === 'string' ? parseTimeOfDay(value) : undefined;
  if (!time) {
    problems.push(`\`backupSchedule\` must be a time of day HH:MM, 00:00 to 23:59 (got ${describe(value)})`);
    return undefined;
  }
  return `${String(time.hour).padStart(2, '0')}:${String(time.minute).padStart(2, '0')}`;
}

const FULL_DAY_NAMES = ['MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY', 'SUNDAY'];

function parseWeekday(value: unknown, problems: string[]): Weekday | undefined {
  if (isAbsent(value)) return DEFAULT_CONFIG.fullBackupDay;
  // "SUN", "sun" or "Sunday".
  const text = typeof value === 'string' ? value.trim().toUpperCase() : '';
  const weekday = WEEKDAYS.find((day, i) => text === day || text === FULL_DAY_NAMES[i]);
  if (!weekday) {
    problems.push(`\`fullBackupDay\` must be one of ${WEEKDAYS.join(', ')} (got ${describe(value)})`);
    return undefined;
  }
  return weekday;
}

// IANA names: "UTC", "Etc/GMT+5", "Europe/Berlin", "America/Argentina/Buenos_Aires". A loose check of
// the form only; EventBridge Scheduler rejects an unknown zone at deploy time.
const IANA_TIME_ZONE = /^(?:UTC|GMT|[A-Z][A-Za-z]+(?:\/[A-Za-z0-9_+-]+)+)$/;

function parseTimeZone(value: unknown, problems: string[]): string | undefined {
  if (isAbsent(value)) return DEFAULT_CONFIG.timeZone;
  if (typeof value !== 'string' || !IANA_TIME_ZONE.test(value)) {
    problems.push(
      `\`timeZone\` must be an IANA time zone name like UTC or Europe/Berlin (got ${describe(value)})`,
    );
    return undefined;
  }
  return value;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function parseEmail(key: string, value: unknown, problems: string[]): string | undefined {
  if (isBlank(value)) return undefined;
  if (typeof value !== 'string' || !EMAIL.test(value.trim())) {
    problems.push(`\`${key}\` must be an email address (got ${describe(value)})`);
    return undefined;
  }
  return value.trim();
}

/** A list from context: a JSON array of strings, or one comma-separated string (`-c key=a,b`). */
function parseList(key: string, value: unknown, problems: string[]): string[] | undefined {
  if (isBlank(value)) return undefined;
  const items =
    typeof value === 'string'
      ? value.split(',').map((item) => item.trim())
      : Array.isArray(value) && value.every((item) => typeof item === 'string')
        ? value.map((item: string) => item.trim())
        : undefined;
  if (!items || items.some((item) => item === '')) {
    problems.push(
      `\`${key}\` must be a comma-separated string or a list of non-empty strings (got ${describe(value)})`,
    );
    return undefined;
  }
  return items;
}

function parseIdList(
  key: string,
  value: unknown,
  pattern: RegExp,
  example: string,
  problems: string[],
): string[] | undefined {
  const items = parseList(key, value, problems);
  if (items === undefined) return undefined;
  const bad = items.filter((item) => !pattern.test(item));
  if (bad.length > 0) {
    problems.push(`\`${key}\` must list ids like ${example} (got ${bad.map(describe).join(', ')})`);
    return undefined;
  }
  return items;
}

function parseId(key: string, value: unknown, pattern: RegExp, example: string, problems: string[]) {
  if (typeof value !== 'string' || !pattern.test(value.trim())) {
    problems.push(`\`${key}\` must be an id like ${example} (got ${describe(value)})`);
    return undefined;
  }
  return value.trim();
}

const AWS_ID = (prefix: string) => new RegExp(`^${prefix}-[0-9a-f]{8}(?:[0-9a-f]{9})?$`);
const AVAILABILITY_ZONE = /^[a-z]{2}(?:-[a-z]+)+-\d[a-z]$/;

function parseExistingFileSystem(
  raw: Record<string, unknown>,
  problems: string[],
): ExistingFileSystemConfig | undefined {
  const given = EXISTING_FILE_SYSTEM_KEYS.filter((key) => !isBlank(raw[key]));
  const routeTablesGiven = !isBlank(raw.privateSubnetRouteTableIds);
  if (given.length === 0) {
    if (routeTablesGiven) {
      problems.push(
        '`privateSubnetRouteTableIds` applies only to an existing VPC (set `vpcId` and the rest)',
      );
    }
    return undefined;
  }
  if (given.length < EXISTING_FILE_SYSTEM_KEYS.length) {
    const missing = EXISTING_FILE_SYSTEM_KEYS.filter((key) => !given.includes(key));
    problems.push(
      `an existing file system needs all of ${EXISTING_FILE_SYSTEM_KEYS.map((k) => `\`${k}\``).join(', ')}; ` +
        `missing ${missing.map((k) => `\`${k}\``).join(', ')} (or set none of them for a demo VPC and EFS)`,
    );
    return undefined;
  }
  const before = problems.length;
  const fileSystemId = parseId(
    'fileSystemId',
    raw.fileSystemId,
    AWS_ID('fs'),
    'fs-0123456789abcdef0',
    problems,
  );
  const accessPointId = parseId(
    'accessPointId',
    raw.accessPointId,
    AWS_ID('fsap'),
    'fsap-0123456789abcdef0',
    problems,
  );
  const securityGroupId = parseId(
    'securityGroupId',
    raw.securityGroupId,
    AWS_ID('sg'),
    'sg-0123456789abcdef0',
    problems,
  );
  const vpcId = parseId('vpcId', raw.vpcId, AWS_ID('vpc'), 'vpc-0123456789abcdef0', problems);
  const privateSubnetIds = parseIdList(
    'privateSubnetIds',
    raw.privateSubnetIds,
    AWS_ID('subnet'),
    'subnet-0123456789abcdef0',
    problems,
  );
  const availabilityZones = parseIdList(
    'availabilityZones',
    raw.availabilityZones,
    AVAILABILITY_ZONE,
    'eu-west-1a',
    problems,
  );
  const privateSubnetRouteTableIds = routeTablesGiven
    ? parseIdList(
        'privateSubnetRouteTableIds',
        raw.privateSubnetRouteTableIds,
        AWS_ID('rtb'),
        'rtb-0123456789abcdef0',
        problems,
      )
    : undefined;
  if (privateSubnetIds && availabilityZones && privateSubnetIds.length !== availabilityZones.length) {
    problems.push(
      `\`privateSubnetIds\` and \`availabilityZones\` must have the same length, one subnet per zone ` +
        `(got ${privateSubnetIds.length} and ${availabilityZones.length})`,
    );
  }
  if (
    privateSubnetIds &&
    privateSubnetRouteTableIds &&
    privateSubnetIds.length !== privateSubnetRouteTableIds.length
  ) {
    problems.push(
      `\`privateSubnetRouteTableIds\` must list one route table per subnet in \`privateSubnetIds\` ` +
        `(got ${privateSubnetRouteTableIds.length} and ${privateSubnetIds.length})`,
    );
  }
  if (
    problems.length > before ||
    !fileSystemId ||
    !accessPointId ||
    !securityGroupId ||
    !vpcId ||
    !privateSubnetIds ||
    !availabilityZones
  ) {
    return undefined;
  }
  return {
    fileSystemId,
    accessPointId,
    securityGroupId,
    vpcId,
    privateSubnetIds,
    availabilityZones,
    ...(privateSubnetRouteTableIds ? { privateSubnetRouteTableIds } : {}),
  };
}

function parseRelativePath(key: string, value: unknown, fallback: string, problems: string[]) {
  if (isAbsent(value)) return fallback;
  const segments = typeof value === 'string' ? value.split('/') : [];
  if (
    typeof value !== 'string' ||
    segments.some((segment) => segment === '' || segment === '.' || segment === '..' || segment.includes(','))
  ) {
    problems.push(
      `\`${key}\` must be a relative path below the mount, like "media" or "app/media", without "..", ` +
        `"." or a leading or trailing "/" (got ${describe(value)})`,
    );
    return undefined;
  }
  return value;
}

function overlaps(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

function parseLogRetention(value: unknown, problems: string[]): number | undefined {
  const days = parseInteger('logRetentionDays', value, DEFAULT_CONFIG.logRetentionDays, 1, 3653, problems);
  if (days === undefined) return undefined;
  if (!(LOG_RETENTION_DAYS as readonly number[]).includes(days)) {
    problems.push(
      `\`logRetentionDays\` must be a retention CloudWatch Logs offers: ${LOG_RETENTION_DAYS.join(', ')} (got ${describe(value)})`,
    );
    return undefined;
  }
  return days;
}
