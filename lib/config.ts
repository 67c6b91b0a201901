import type { Construct } from 'constructs';
import { z } from 'zod';
import { DEFAULT_LEVEL } from '../lambda/core/defaults.js';
import { DEFAULT_BACKUP_TIME } from './local-time.js';

/**
 * Deployment settings of the media-backup stack, read from CDK context (`cdk.json` "context", or
 * `cdk synth -c key=value`). {@link configSchema} below is the one place a setting is declared: its
 * type, how a context value is read, its default and its meaning. The TypeScript type, the list of
 * known keys and {@link DEFAULT_CONFIG} all come from it.
 *
 * Context values arrive typed from `cdk.json` and as strings from `-c key=value`, so `"30"` and
 * `"true"` are read as 30 and true. `null` counts as unset for every key.
 */

/** Day names as EventBridge Scheduler cron expressions spell them. */
export const WEEKDAYS = ['MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT', 'SUN'] as const;
/** A day of the week, as in a cron expression. */
export type Weekday = (typeof WEEKDAYS)[number];
const FULL_DAY_NAMES = ['MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY', 'SUNDAY'];

/** Object Lock retention modes, in the spelling S3 and `cdk.json` use. */
export const OBJECT_LOCK_MODES = ['GOVERNANCE', 'COMPLIANCE'] as const;
/** An Object Lock retention mode. */
export type ObjectLockMode = (typeof OBJECT_LOCK_MODES)[number];

/** CloudWatch Logs retention periods (days) that `logRetentionDays` may take. */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

/** Thrown when the deployment settings are invalid; the message lists every problem found. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';

  constructor(readonly problems: readonly string[]) {
    super(`Invalid media-backup configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

// --- Reading one context value ---------------------------------------------------------------------

/** What a reader returns for a value it refuses: what the value must be (the key is put in front). */
class Refusal {
  constructor(
    readonly problem: string,
    readonly got?: string,
  ) {}
}
const refuse = (problem: string, got?: string) => new Refusal(problem, got);

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function isBlank(value: unknown): boolean {
  return value === undefined || value === null || (typeof value === 'string' && value.trim() === '');
}

/**
 * A setting read from a context value: `read` returns the value, `undefined` for "unset", or a
 * {@link Refusal}, reported as "<problem> (got <value>)".
 */
function setting<T>(read: (value: unknown) => T | Refusal) {
  return z.unknown().transform((value, ctx): Exclude<T, Refusal> => {
    const result = read(value);
    if (!(result instanceof Refusal)) return result as Exclude<T, Refusal>;
    ctx.addIssue({
      code: 'custom',
      input: value,
      message: `${result.problem} (got ${result.got ?? describe(value)})`,
    });
    return z.NEVER;
  });
}

/** A whole number from a number or a string of digits (`-c key=30`), else undefined. */
function wholeNumber(value: unknown): number | undefined {
  const number =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && /^\s*\d+\s*$/.test(value)
        ? Number(value)
        : NaN;
  return Number.isSafeInteger(number) ? number : undefined;
}

/** Reads a whole number from `min` to `max`. */
const inRange = (min: number, max: number) => (value: unknown) => {
  const number = wholeNumber(value);
  return number !== undefined && number >= min && number <= max
    ? number
    : refuse(`must be a whole number from ${min} to ${max}`);
};
const integer = (min: number, max: number) => setting(inRange(min, max));

const wholeDays = setting((value) => {
  const days = wholeNumber(value);
  return days !== undefined && days >= 1 ? days : refuse('must be a whole number of days >= 1');
});

// Lambda's limits: 128 MB to 10,240 MB (10 GB) in 1 MB steps.
const memoryMb = integer(128, 10240);

const flag = setting((value) =>
  value === true || value === 'true'
    ? true
    : value === false || value === 'false'
      ? false
      : refuse('must be true or false'),
);

/** One of `values`, case-insensitive; `aliases[i]` is another spelling of `values[i]`. */
const oneOf = <const V extends readonly string[]>(values: V, aliases: readonly string[] = []) =>
  setting((value): V[number] | Refusal => {
    const text = typeof value === 'string' ? value.trim().toUpperCase() : '';
    return (
      values.find((candidate, i) => text === candidate || text === aliases[i]) ??
      refuse(`must be one of ${values.join(', ')}`)
    );
  });

/**
 * A list from context: a JSON array of strings, or one comma-separated string (`-c key=a,b`); blank
 * means unset. With `id`, every item must match its pattern.
 */
const list = (id?: { pattern: RegExp; example: string }) =>
  setting((value): string[] | undefined | Refusal => {
    if (isBlank(value)) return undefined;
    const items =
      typeof value === 'string'
        ? value.split(',').map((item) => item.trim())
        : Array.isArray(value) && value.every((item) => typeof item === 'string')
          ? value.map((item: string) => item.trim())
          : undefined;
    if (!items || items.some((item) => item === '')) {
      return refuse('must be a comma-separated string or a list of non-empty strings');
    }
    const bad = id ? items.filter((item) => !id.pattern.test(item)) : [];
    return bad.length > 0 ? refuse(`must list ids like ${id?.example}`, bad.map(describe).join(', ')) : items;
  });

const AWS_ID = (prefix: string) => new RegExp(`^${prefix}-[0-9a-f]{8}(?:[0-9a-f]{9})?$`);
const AVAILABILITY_ZONE = /^[a-z]{2}(?:-[a-z]+)+-\d[a-z]$/;
const awsIdExample = (prefix: string) => ({
  pattern: AWS_ID(prefix),
  example: `${prefix}-0123456789abcdef0`,
});
const zones = { pattern: AVAILABILITY_ZONE, example: 'eu-west-1a' };

/** An AWS resource id like `fs-0123456789abcdef0`; blank means unset. */
const awsId = (prefix: string) =>
  setting((value) => {
    if (isBlank(value)) return undefined;
    const id = typeof value === 'string' ? value.trim() : '';
    return AWS_ID(prefix).test(id) ? id : refuse(`must be an id like ${prefix}-0123456789abcdef0`);
  });

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
/** An email address; blank means unset. */
const email = setting((value) => {
  if (isBlank(value)) return undefined;
  const address = typeof value === 'string' ? value.trim() : '';
  return EMAIL.test(address) ? address : refuse('must be an email address');
});

/** A path below the access point root: no leading or trailing `/`, no `.` or `..`, no `,`. */
const relativePath = setting((value) => {
  const segments = typeof value === 'string' ? value.split('/') : [''];
  return typeof value === 'string' &&
    !segments.some(
      (segment) => segment === '' || segment === '.' || segment === '..' || segment.includes(','),
    )
    ? value
    : refuse(
        'must be a relative path below the mount, like "media" or "app/media", without "..", "." or a leading or trailing "/"',
      );
});

// Key ARNs only: an alias ARN would work for encryption, but grants to the backup and restore
// functions need the key itself.
const KMS_KEY_ARN =
  /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/(?:mrk-[a-f0-9]{32}|[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})$/;
// One or more non-empty segments, each ending in '/': rejects a leading '/' and '//'.
const PREFIX_SEGMENTS = /^(?:[^/]+\/)+$/;
// IANA names: "UTC", "Etc/GMT+5", "Europe/Berlin", "America/Argentina/Buenos_Aires". A loose check of
// the form only; EventBridge Scheduler rejects an unknown zone at deploy time.
const IANA_TIME_ZONE = /^(?:UTC|GMT|[A-Z][A-Za-z]+(?:\/[A-Za-z0-9_+-]+)+)$/;

/**
 * Parse a local time of day, `HH:MM` (24 h, `H:MM` accepted).
 *
 * @returns undefined when `value` is not such a time
 */
export function parseTimeOfDay(value: string): { hour: number; minute: number } | undefined {
  const match = /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(value.trim());
  return match ? { hour: Number(match[1]), minute: Number(match[2]) } : undefined;
}

// --- The settings ----------------------------------------------------------------------------------

const settings = {
  /** Every restore point younger than this many days stays restorable. */
  retentionDays: wholeDays.default(30),
  /** `auto` backups start a new full chain when the latest full is older than this many days. */
  fullIntervalDays: wholeDays.default(7),
  /** Key prefix of all backup objects in the bucket: empty, or ending in `/`. */
  backupPrefix: setting((value) =>
    typeof value !== 'string'
      ? refuse('must be a string')
      : value === ''
        ? value
        : !value.endsWith('/')
          ? refuse('must be empty or end with "/"')
          : PREFIX_SEGMENTS.test(value)
            ? value
            : refuse('must not start with "/" or contain "//"'),
  ).default('media-backups/'),
  /**
   * ARN of an existing KMS key for bucket encryption; absent means S3-managed keys (SSE-S3). The
   * stack grants the functions' roles on this key through IAM only, which works only when the key's
   * policy delegates to IAM in this account (the default key policy's "Enable IAM User Permissions"
   * statement, `arn:aws:iam::<account>:root` with `kms:*`); otherwise every read and write fails at
   * run time with AccessDenied.
   */
  kmsKeyArn: setting((value) =>
    // An empty string lets `-c kmsKeyArn=` override a value from cdk.json back to SSE-S3.
    value === ''
      ? undefined
      : typeof value === 'string' && KMS_KEY_ARN.test(value)
        ? value
        : refuse('must be a KMS key ARN like arn:aws:kms:<region>:<account>:key/<key-id>'),
  ).optional(),
  /**
   * Create the bucket with S3 Object Lock so backups cannot be deleted or overwritten early (in
   * `objectLockMode`). Can only be chosen when the bucket is created.
   */
  objectLock: flag.default(false),
  /**
   * Object Lock retention mode, present exactly when `objectLock` is true (default `GOVERNANCE`).
   * `GOVERNANCE`: anyone with `s3:BypassGovernanceRetention` (any administrator with `s3:*`) can
   * still delete or overwrite a locked version early. `COMPLIANCE`: nobody, not even the account
   * root, until the lock runs out; a wrong setting cannot be undone and the objects are billed
   * until then.
   */
  objectLockMode: oneOf(OBJECT_LOCK_MODES).optional(),
  /**
   * Local start time of the daily backup, `HH:MM` (24 h) in `timeZone`. The default is clear of
   * every zone's daylight-saving changes; lib/constructs/schedules.ts refuses a time in one.
   */
  backupSchedule: setting((value) => {
    const time = typeof value === 'string' ? parseTimeOfDay(value) : undefined;
    return time
      ? `${String(time.hour).padStart(2, '0')}:${String(time.minute).padStart(2, '0')}`
      : refuse('must be a time of day HH:MM, 00:00 to 23:59');
  }).default(DEFAULT_BACKUP_TIME),
  /** Day of the week (`MON`..`SUN`, or `Sunday`) whose scheduled backup is a `full`; every other day runs `auto`. */
  fullBackupDay: oneOf(WEEKDAYS, FULL_DAY_NAMES).default('SUN'),
  /** IANA time zone the schedules run in, e.g. `Europe/Berlin`. */
  timeZone: setting((value) =>
    typeof value === 'string' && IANA_TIME_ZONE.test(value)
      ? value
      : refuse('must be an IANA time zone name like UTC or Europe/Berlin'),
  ).default('UTC'),
  /**
   * Address that receives alarm emails (SNS) and the formatted failure, alarm and digest emails of
   * the notify function (SES); absent means no email, no notify function and no SES identity.
   */
  notificationEmail: email.optional(),
  /**
   * SES-verified address the notify function sends from. Defaults to `notificationEmail` (one
   * address to verify, which also satisfies the SES sandbox); only valid with `notificationEmail`.
   */
  senderEmail: email.optional(),
  /**
   * The sender address is already an SES identity in this account and region (you verified it
   * before): use it instead of creating `AWS::SES::EmailIdentity`, which fails with AlreadyExists.
   */
  useExistingSesIdentity: flag.default(false),
  /**
   * Also subscribe `notificationEmail` to the alarm topic directly (raw SNS alarm text, which still
   * arrives when SES or the notify function fails, at the price of a second mail per alarm).
   */
  rawAlarmEmail: flag.default(false),
  /**
   * The backup-age alarm fires when the newest committed backup is older than this many hours.
   * Backups run once a day, so a limit of a day or less would alarm between any two of them.
   */
  maxBackupAgeHours: integer(25, 8760).default(48),
  /** The monitor reports a backup whose archive is smaller than this many bytes as critical. */
  minBackupBytes: integer(0, Number.MAX_SAFE_INTEGER).default(1_000_000),
  /** The monitor warns when a full backup's source is this many percent smaller than the previous full's. */
  maxShrinkPercent: integer(1, 100).default(50),
  /** The monitor warns when the media file system's metered size exceeds this many bytes; absent (or blank) means no check. */
  efsWarnBytes: setting((value) =>
    isBlank(value) ? undefined : inRange(1, Number.MAX_SAFE_INTEGER)(value),
  ).optional(),
  /** Email a weekly digest of the backups (needs `notificationEmail`). */
  weeklyDigest: flag.default(true),
  /** Memory of the monitor function in MB. */
  monitorMemoryMb: memoryMb.default(512),
  /**
   * Deploy the CloudWatch dashboard `<stack>-media-backup` ($3 a month at list price beyond an
   * account's first 3 dashboards). Without it the alarms, metrics and emails stay the same.
   */
  dashboard: flag.default(true),
  // An existing EFS file system and the network the functions reach it through (set all six or
  // none; see `existingFileSystem` of the result). Every id is given because synth looks nothing up.
  /** `fs-…` id of the file system holding the media tree. */
  fileSystemId: awsId('fs').optional(),
  /** `fsap-…` id of an access point on that file system whose root holds `mediaPath`. */
  accessPointId: awsId('fsap').optional(),
  /** `sg-…` id of the security group the functions use; the mount targets must admit it on TCP 2049. */
  securityGroupId: awsId('sg').optional(),
  /** `vpc-…` id of the VPC of the mount targets. */
  vpcId: awsId('vpc').optional(),
  /** Private subnets (`subnet-…`) the functions run in, one per availability zone. */
  privateSubnetIds: list(awsIdExample('subnet')).optional(),
  /** Availability zones of `privateSubnetIds`, in the same order. */
  availabilityZones: list(zones).optional(),
  /** Route tables (`rtb-…`) of `privateSubnetIds`, in the same order; needed only for `createS3GatewayEndpoint`. */
  privateSubnetRouteTableIds: list(awsIdExample('rtb')).optional(),
  /**
   * Availability zones of the demo VPC (two or more, e.g. `eu-west-1a,eu-west-1b`); absent means the
   * region's first two zones as CloudFormation lists them (`Fn::GetAZs`), never a lookup. Set it when
   * Lambda is not offered in one of those zones. Demo VPC only.
   */
  demoAvailabilityZones: list(zones).optional(),
  /** POSIX user id the created access point runs file operations as (demo EFS only). */
  posixUid: integer(0, 4294967295).default(1000),
  /** POSIX group id the created access point runs file operations as (demo EFS only). */
  posixGid: integer(0, 4294967295).default(1000),
  /** The media tree, relative to the access point root (mounted at `/mnt/efs`). */
  mediaPath: relativePath.default('media'),
  /** Folder, relative to the access point root, that restores into a new folder land in (`<restoresPath>/<backupId>`). */
  restoresPath: relativePath.default('restores'),
  /** Globs the backup leaves out (handed to the function as `BACKUP_EXCLUDE`, comma-separated); blank means none. */
  backupExclude: list()
    .transform((globs): readonly string[] => globs ?? [])
    .default([]),
  /** Memory of the backup function in MB; Lambda allots vCPUs in proportion, and gzip is CPU-bound. */
  backupMemoryMb: memoryMb.default(3538),
  /**
   * Reserve concurrency 1 for the backup function (a second concurrent run is throttled). Off by
   * default: reserving fails the deploy in accounts whose concurrency quota is low (new accounts
   * often have 10, and Lambda keeps 10 unreserved), and the store's lock already refuses a second run.
   */
  reserveBackupConcurrency: flag.default(false),
  /** gzip level 0-9 of compressible data (`COMPRESSION_LEVEL`); media is stored either way. */
  compressionLevel: integer(0, 9).default(DEFAULT_LEVEL),
  /**
   * Synthetic fulls (`SYNTHETIC_FULLS`): on the full day the backup builds the new full server-side
   * from the unchanged entries' bytes already in the bucket (S3 UploadPartCopy of byte ranges of the
   * chain's archives, pinned by version and ETag) plus the files changed since the last backup, read
   * from EFS and compressed as today. The result is the same plain tar.gz; any check that fails falls
   * back to a normal full. False: every full re-reads the whole tree.
   */
  syntheticFulls: flag.default(true),
  /**
   * Every this many fulls is a normal full that re-reads and re-hashes the whole tree
   * (`NORMAL_FULL_EVERY`), so a byte damaged in the bucket is not copied forward into every later
   * full. 1 means every full is normal (no synthetic fulls); 4 with weekly fulls: one normal full a
   * month.
   */
  normalFullEvery: integer(1, 52).default(4),
  /**
   * Shards of a sharded backup (and parts of a sharded restore or verify) processed at once: the
   * Distributed Map's MaxConcurrency. Every shard reads the media tree on EFS and writes to S3, so
   * the file system's throughput (bursting EFS: about 100 MiB/s per TiB stored) bounds what more
   * shards gain; each running shard is one Lambda invocation of the account's concurrency quota.
   */
  shardMaxConcurrency: integer(1, 1000).default(8),
  /**
   * A sharded run (the backup state machine's execution) is stopped after this many hours; the backup
   * lock handed to it lasts as long. Its shards, commit and cleanup all run inside this time.
   */
  shardedRunTimeoutHours: integer(1, 168).default(24),
  /** Memory of the restore function in MB. */
  restoreMemoryMb: memoryMb.default(2048),
  /** Memory of the verify function in MB. */
  verifyMemoryMb: memoryMb.default(1024),
  /** Days the functions' CloudWatch log groups keep their logs (a value CloudWatch Logs accepts). */
  logRetentionDays: setting((value) => {
    const days = wholeNumber(value);
    if (days === undefined || days < 1 || days > 3653) return refuse('must be a whole number from 1 to 3653');
    return (LOG_RETENTION_DAYS as readonly number[]).includes(days)
      ? days
      : refuse(`must be a retention CloudWatch Logs offers: ${LOG_RETENTION_DAYS.join(', ')}`);
  }).default(90),
  /**
   * Add an S3 gateway endpoint to the functions' subnets so they reach S3 without a NAT gateway.
   * Defaults to true for the created VPC and false for an existing one (which needs
   * `privateSubnetRouteTableIds` for it).
   */
  createS3GatewayEndpoint: flag.optional(),
};

/** The context keys {@link loadConfig} reads, in the order problems are reported. */
export const CONFIG_KEYS = Object.keys(settings) as readonly (keyof typeof settings)[];

/** The keys of an existing file system and network: set all of them or none. */
export const EXISTING_FILE_SYSTEM_KEYS = [
  'fileSystemId',
  'accessPointId',
  'securityGroupId',
  'vpcId',
  'privateSubnetIds',
  'availabilityZones',
] as const satisfies readonly (keyof typeof settings)[];

// --- Rules across settings -------------------------------------------------------------------------

type Settings = z.output<z.ZodObject<typeof settings>>;

/**
 * The refinement below also runs when some keys are invalid, so one run reports every problem; an
 * invalid key holds `z.NEVER` there, and a rule that reads it stays quiet.
 */
const INVALID: unknown = z.NEVER;
const valid = <T>(value: T): value is Exclude<T, undefined> => value !== undefined && value !== INVALID;

function checkAcrossSettings(s: Settings, report: (message: string, key?: keyof Settings) => void): void {
  if (valid(s.retentionDays) && valid(s.fullIntervalDays) && s.retentionDays < s.fullIntervalDays) {
    report(
      `\`retentionDays\` must be at least \`fullIntervalDays\` (got ${s.retentionDays} < ${s.fullIntervalDays}): ` +
        'a shorter retention would not cover one full backup cycle',
      'retentionDays',
    );
  }
  if (s.objectLock === false && valid(s.objectLockMode)) {
    report(
      `\`objectLockMode\` needs \`objectLock\`: true (got objectLockMode ${s.objectLockMode} with objectLock false); ` +
        'set objectLock to true when the bucket is first created, or remove objectLockMode',
      'objectLockMode',
    );
  }
  // `undefined` is a blank address; an invalid one is reported as such.
  if (s.notificationEmail === undefined) {
    if (valid(s.senderEmail)) {
      report(
        '`senderEmail` needs `notificationEmail`: without a recipient no email is sent (set both, or neither)',
        'senderEmail',
      );
    }
    for (const key of ['useExistingSesIdentity', 'rawAlarmEmail'] as const) {
      if (s[key] === true)
        report(`\`${key}\` needs \`notificationEmail\`: without a recipient no email is sent`, key);
    }
  }

  const given = EXISTING_FILE_SYSTEM_KEYS.filter((key) => s[key] !== undefined);
  const routeTables = s.privateSubnetRouteTableIds;
  if (given.length === 0 && routeTables !== undefined) {
    report(
      '`privateSubnetRouteTableIds` applies only to an existing VPC (set `vpcId` and the rest)',
      'privateSubnetRouteTableIds',
    );
  }
  if (given.length > 0 && given.length < EXISTING_FILE_SYSTEM_KEYS.length) {
    const missing = EXISTING_FILE_SYSTEM_KEYS.filter((key) => !given.includes(key));
    report(
      `an existing file system needs all of ${EXISTING_FILE_SYSTEM_KEYS.map((k) => `\`${k}\``).join(', ')}; ` +
        `missing ${missing.map((k) => `\`${k}\``).join(', ')} (or set none of them for a demo VPC and EFS)`,
    );
  }
  if (given.length === EXISTING_FILE_SYSTEM_KEYS.length) {
    const { privateSubnetIds: subnets, availabilityZones: azs } = s;
    if (valid(subnets) && valid(azs) && subnets.length !== azs.length) {
      report(
        '`privateSubnetIds` and `availabilityZones` must have the same length, one subnet per zone ' +
          `(got ${subnets.length} and ${azs.length})`,
        'availabilityZones',
      );
    }
    if (valid(subnets) && valid(routeTables) && subnets.length !== routeTables.length) {
      report(
        '`privateSubnetRouteTableIds` must list one route table per subnet in `privateSubnetIds` ' +
          `(got ${routeTables.length} and ${subnets.length})`,
        'privateSubnetRouteTableIds',
      );
    }
    if (
      s.createS3GatewayEndpoint === true &&
      routeTables === undefined &&
      given.every((key) => valid(s[key]))
    ) {
      report(
        '`createS3GatewayEndpoint` with an existing VPC needs `privateSubnetRouteTableIds` (the route tables of ' +
          '`privateSubnetIds`); or set it to false when the VPC already routes S3 traffic',
        'createS3GatewayEndpoint',
      );
    }
  }

  const demoZones = s.demoAvailabilityZones;
  if (valid(demoZones) && demoZones.length < 2) {
    report(
      `\`demoAvailabilityZones\` must list at least two zones, like eu-west-1a,eu-west-1b (got ${describe(demoZones.join(','))}): ` +
        'EFS mount targets and Lambda need two zones to survive one failing',
      'demoAvailabilityZones',
    );
  }
  if (valid(demoZones) && s.fileSystemId !== undefined) {
    report(
      '`demoAvailabilityZones` applies only to the demo VPC; an existing file system takes `availabilityZones`',
      'demoAvailabilityZones',
    );
  }

  const { mediaPath, restoresPath } = s;
  if (
    valid(mediaPath) &&
    valid(restoresPath) &&
    (mediaPath === restoresPath ||
      mediaPath.startsWith(`${restoresPath}/`) ||
      restoresPath.startsWith(`${mediaPath}/`))
  ) {
    report(
      `\`restoresPath\` must not be inside \`mediaPath\` or contain it (got ${describe(restoresPath)} and ${describe(mediaPath)}): ` +
        'restores would be backed up, or an in-place restore would swap them away',
      'restoresPath',
    );
  }
}

// --- The schema ------------------------------------------------------------------------------------

/** Names the unknown keys, with the known key each one is probably a typo of. */
function unknownKeysMessage(keys: readonly string[]): string {
  const named = keys.map((key) => {
    const near = CONFIG_KEYS.find((known) => editDistance(known.toLowerCase(), key.toLowerCase()) <= 2);
    return near ? `\`${key}\` (did you mean \`${near}\`?)` : `\`${key}\``;
  });
  return (
    `unknown setting${keys.length > 1 ? 's' : ''} ${named.join(', ')}: media-backup reads the keys of the ` +
    'README table "Configuration (CDK context)"; remove or rename it'
  );
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * The settings schema: raw context values in, {@link MediaBackupConfig} out. Unknown keys are
 * refused by name; the existing file system's keys are gathered into `existingFileSystem`.
 */
export const configSchema = z
  .strictObject(settings, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? unknownKeysMessage(issue.keys)
        : `the settings must be an object of context keys (got ${describe(issue.input)})`,
  })
  .superRefine(
    (s, ctx) =>
      checkAcrossSettings(s, (message, key) =>
        ctx.addIssue({ code: 'custom', message, ...(key ? { path: [key] } : {}) }),
      ),
    // Also with invalid keys, so that every problem is reported at once.
    { when: () => true },
  )
  .transform((s) => {
    const {
      fileSystemId,
      accessPointId,
      securityGroupId,
      vpcId,
      privateSubnetIds,
      availabilityZones,
      privateSubnetRouteTableIds,
      createS3GatewayEndpoint,
      objectLockMode,
      senderEmail,
      ...rest
    } = s;
    const existingFileSystem =
      fileSystemId && accessPointId && securityGroupId && vpcId && privateSubnetIds && availabilityZones
        ? {
            fileSystemId,
            accessPointId,
            securityGroupId,
            vpcId,
            privateSubnetIds,
            availabilityZones,
            ...(privateSubnetRouteTableIds ? { privateSubnetRouteTableIds } : {}),
          }
        : undefined;
    const config = {
      ...rest,
      objectLockMode: s.objectLock ? (objectLockMode ?? 'GOVERNANCE') : undefined,
      senderEmail: s.notificationEmail === undefined ? undefined : (senderEmail ?? s.notificationEmail),
      existingFileSystem,
      createS3GatewayEndpoint: createS3GatewayEndpoint ?? existingFileSystem === undefined,
    };
    // Unset optional settings are left out rather than present as undefined.
    return Object.fromEntries(Object.entries(config).filter(([, value]) => value !== undefined)) as Readonly<
      OmitUndefined<typeof config>
    >;
  });

type OmitUndefined<T> = {
  [K in keyof T as undefined extends T[K] ? K : never]?: Exclude<T[K], undefined>;
} & {
  [K in keyof T as undefined extends T[K] ? never : K]: T[K];
};

/** Deployment settings of the media-backup stack (see {@link configSchema}). */
export type MediaBackupConfig = z.output<typeof configSchema>;

/**
 * An existing EFS file system and the network the functions reach it through. Every id is given
 * explicitly because synth never looks anything up.
 */
export type ExistingFileSystemConfig = NonNullable<MediaBackupConfig['existingFileSystem']>;

/**
 * Values used when a context key is absent, from the schema. `cdk.json` repeats them so operators
 * can see them (a test keeps the two equal). Keys without a default (`kmsKeyArn`, the emails, the
 * existing file system, ...) are absent; `createS3GatewayEndpoint` depends on the network.
 */
export const DEFAULT_CONFIG = Object.freeze(
  Object.fromEntries(
    Object.entries(z.strictObject(settings).parse({})).filter(([, value]) => value !== undefined),
  ) as Readonly<OmitUndefined<Settings>>,
);

/**
 * Validate raw settings (as found in CDK context) and fill in defaults.
 * `-c key=value` delivers every value as a string, so `"30"` and `"true"` are accepted.
 *
 * @throws ConfigError naming every invalid or unknown key
 */
export function parseConfig(raw: Record<string, unknown>): MediaBackupConfig {
  const given = Object.fromEntries(
    Object.entries(raw).filter(([, value]) => value !== null && value !== undefined),
  );
  const result = configSchema.safeParse(given);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => {
      const [key] = issue.path;
      return typeof key === 'string' && !issue.message.startsWith('`')
        ? `\`${key}\` ${issue.message}`
        : issue.message;
    }),
  );
}

/**
 * Context keys of the CDK and of libraries are namespaced (`@aws-cdk/core:…`, `aws:cdk:…`,
 * `availability-zones:…`); a plain name is ours, so a misspelt one is refused instead of ignored.
 */
const OWN_KEY = /^[A-Za-z][A-Za-z0-9]*$/;

/** Read and validate the settings from the construct tree's context (see {@link parseConfig}). */
export function loadConfig(scope: Construct): MediaBackupConfig {
  const context: Record<string, unknown> = scope.node.getAllContext();
  return parseConfig(Object.fromEntries(Object.entries(context).filter(([key]) => OWN_KEY.test(key))));
}
