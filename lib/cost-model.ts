import { smallestFittingPartSize } from '../lambda/core/synthetic/part-plan.js';

/**
 * Monthly AWS cost of a media-backup deployment, from list prices, for a given tree size and policy;
 * and the cost of AWS Backup for EFS under the same retention, for comparison.
 *
 * Pure and dependency-free: `scripts/cost-table.ts` turns it into the README's cost tables (`npm run
 * costs`), and `test/unit/cost-model.test.ts` checks its arithmetic and that the README matches.
 * Synthetic fulls (issue 15) are simulated and planned here by the rules of
 * lambda/core/synthetic/part-plan.ts (test/unit/cost-model-planner.test.ts keeps the two equal), and
 * {@link renderSyntheticFullsCostTable} writes their README table (test/unit/cost-model-synthetic.test.ts).
 * Restores are one-off events and are kept out of every monthly figure (see {@link RESTORE_PRICES}).
 */

/** Region of every price below. */
export const PRICE_REGION = 'us-east-1';

/**
 * When the prices below were last compared with the AWS pricing pages (stored copies of
 * aws.amazon.com/{s3,efs,lambda,cloudwatch,backup,sns,ses,sqs,eventbridge}/pricing). Every figure is
 * on-demand, without the free tier, without Savings Plans or volume tiers beyond the first.
 */
export const PRICES_AS_OF = '2026-12-01';

/** us-east-1 list prices, USD. GB means 2^30 bytes, as AWS bills storage. */
export const PRICES = {
  // https://aws.amazon.com/s3/pricing/ (Storage; Requests & data retrievals)
  /** S3 Standard storage, first 50 TB, per GB-month (manifests, metadata, status, lock). */
  s3StandardGBMonth: 0.023,
  /** S3 Standard-IA storage per GB-month (archives); 30-day and 128 KB minimum per object. */
  s3StandardIaGBMonth: 0.0125,
  /** S3 Standard-IA retrieval per GB read. */
  s3StandardIaRetrievalGB: 0.01,
  /** PUT, COPY, POST, LIST on S3 Standard, per 1,000 (LIST is billed at this rate whatever the class). */
  s3StandardPutPer1000: 0.005,
  /** GET, SELECT and all other requests (HEAD included) on S3 Standard, per 1,000. */
  s3StandardGetPer1000: 0.0004,
  /** PUT, COPY, POST on Standard-IA objects (each multipart part, create and complete), per 1,000. */
  s3StandardIaPutPer1000: 0.01,
  /** GET and all other requests (HEAD, GetObjectAttributes) on Standard-IA objects, per 1,000. */
  s3StandardIaGetPer1000: 0.001,

  // https://aws.amazon.com/efs/pricing/ (Elastic Throughput; Bursting includes reads in storage)
  /** EFS Elastic throughput, data read, per GB. Bursting and Provisioned do not charge per read. */
  efsElasticReadGB: 0.03,

  // https://aws.amazon.com/lambda/pricing/ (Arm, first 7.5 billion GB-seconds per month)
  /** Lambda duration on arm64, per GB-second. */
  lambdaArmGBSecond: 0.0000133334,
  /** Lambda requests, per million. */
  lambdaRequestsPerMillion: 0.2,

  // https://aws.amazon.com/cloudwatch/pricing/
  /** Standard-resolution metric alarm (period >= 60 s), per alarm-month. */
  cloudWatchAlarmMonth: 0.1,
  /** Composite alarm, per alarm-month. */
  cloudWatchCompositeAlarmMonth: 0.5,
  /**
   * Custom metric (first 10,000), per metric-month. "All custom metrics charges are prorated by the
   * hour and metered only when you send metrics to CloudWatch": a metric published once a day is
   * billed for 1 hour a day, one published hourly for the whole month.
   */
  cloudWatchCustomMetricMonth: 0.3,
  /** Custom dashboard per month (an account's first 3 are free: free tier, not counted here). */
  cloudWatchDashboardMonth: 3,
  /** Logs ingestion (standard class), per GB; EMF metric lines are logs too. */
  cloudWatchLogsIngestGB: 0.5,
  /** Logs archive storage per GB-month (compressed; counted uncompressed here, an upper bound). */
  cloudWatchLogsStorageGBMonth: 0.03,

  // https://aws.amazon.com/sns/pricing/, https://aws.amazon.com/ses/pricing/,
  // https://aws.amazon.com/sqs/pricing/, https://aws.amazon.com/eventbridge/pricing/ (Scheduler)
  /** SNS email notifications, per 100,000 (the first 1,000 a month are free). */
  snsEmailPer100k: 2,
  /** SES outbound email, per 1,000. */
  sesEmailPer1000: 0.1,
  /** SQS standard requests, per million (after the free million). */
  sqsRequestsPerMillion: 0.4,
  /** EventBridge Scheduler invocations, per million (after 14 million free). */
  schedulerInvocationsPerMillion: 1,

  // https://aws.amazon.com/backup/pricing/ (Amazon EFS; billed by the GB-day). The stored copy of that
  // page lists the price tables without their figures; $0.05/GB-month warm and $0.02/GB restored in
  // us-east-1 as of June 2026 are from https://www.factualminds.com/blog/aws-backup-pricing-vaults-cross-region-restores/
  /** AWS Backup for EFS, warm storage, per GB-month (incremental: changed data only after the first). */
  awsBackupEfsWarmGBMonth: 0.05,
} as const;

/** One-off prices, kept out of every monthly figure: a restore is an event, not a running cost. */
export const RESTORE_PRICES = {
  /** AWS Backup for EFS, restore from warm storage, per GB restored. */
  awsBackupEfsWarmRestoreGB: 0.02,
  /** A media-backup restore reads its archives from Standard-IA: retrieval per GB. */
  s3StandardIaRetrievalGB: PRICES.s3StandardIaRetrievalGB,
} as const;

/** 365 / 12: the average month. */
export const DAYS_PER_MONTH = 365 / 12;
/** 730: the hours AWS bills in a month. */
export const HOURS_PER_MONTH = 730;
/** S3 Standard-IA bills each object as at least 128 KiB... */
export const IA_MIN_OBJECT_GB = (128 * 1024) / 2 ** 30;
/** ...and for at least 30 days. */
export const IA_MIN_DAYS = 30;
/**
 * S3 lifecycle rounds each expiry up to the next midnight UTC: half a day on average for the
 * current version's expiry and half a day for the noncurrent version's removal.
 */
export const LIFECYCLE_ROUNDING_DAYS = 1;

/**
 * Multipart part size, as `choosePartSize` in lambda/store/s3.ts (8 MiB, or larger so that the
 * upper bound of an archive, times 1.02, fits 9,000 parts); the unit test checks the two agree.
 */
export const PART = { minBytes: 8 * 1024 * 1024, budget: 9000, headroom: 1.02 } as const;

/** Throughput mode of the EFS file system: Elastic charges per GB read, Bursting does not. */
export type EfsThroughputMode = 'bursting' | 'elastic';

/**
 * How archives are verified.
 * - `quick`: `download` reads and sha256-hashes the whole archive (today: S3's multipart ETag is not a
 *   whole-object hash); `checksum` compares S3's full-object CRC64NVME and size with the metadata
 *   (HeadObject / GetObjectAttributes, no body: issue 12).
 * - `deep`: `latest-full-weekly` dry-run restores the latest backup once a week, 6 h after the full,
 *   so it reads the new full (today); `rotating` deep-verifies every archive once in its lifetime
 *   (issue 12), i.e. reads each written byte once. A deep verify runs the quick check first: with
 *   `download` the archive is read twice.
 */
export interface VerifyPolicy {
  readonly quick: 'download' | 'checksum';
  readonly deep: 'latest-full-weekly' | 'rotating';
}

/** Everything the model needs; {@link TODAY} holds the defaults of the current stack. */
export interface CostInputs {
  /** Size of the media tree, GB. */
  readonly treeGB: number;
  /** Bytes changed or added per day, % of the tree (each day's incremental archive). */
  readonly dailyChurnPercent: number;
  /** Archive bytes / source bytes (1 for JPEG/MP4 media, which gzip cannot shrink). */
  readonly compressionRatio: number;
  /** `retentionDays`: every restore point younger stays restorable. */
  readonly retentionDays: number;
  /** `fullIntervalDays`: a full every this many days, an incremental on the others. */
  readonly fullIntervalDays: number;
  /** Days lifecycle keeps a noncurrent version (an expired archive) before removing it. */
  readonly noncurrentDays: number;
  /** Throughput mode of the media file system (the demo file system: `elastic`). */
  readonly efsThroughputMode: EfsThroughputMode;
  readonly verify: VerifyPolicy;
  /** Memory of the backup function, MB (1,769 MB = 1 vCPU). */
  readonly backupMemoryMB: number;
  /** Memory of the verify function, MB. */
  readonly verifyMemoryMB: number;
  /** Memory of the monitor function, MB. */
  readonly monitorMemoryMB: number;
  /** Memory of the notify function, MB. */
  readonly notifyMemoryMB: number;
  /**
   * CPU-seconds the backup spends per GB of source read, on the S3 path (README "Throughput and
   * memory": ~20 at level 5, ~15 at level 1, measured here, not on Lambda).
   */
  readonly backupCpuSecondsPerGB: number;
  /** Parallel efficiency of the gzip workers (0.85 measured on 2 cores). */
  readonly backupParallelEfficiency: number;
  /** The rate one main thread reads, hashes and frames the tar stream at, MB/s (~150 measured). */
  readonly backupMaxMBPerSecond: number;
  /**
   * CPU-seconds a verify spends per GB it reads (one thread: gunzip + sha256). Not measured on
   * Lambda; a restore here runs at 107.5 MB/s, ~9.3 s/GB, rounded up to 10.
   */
  readonly verifyCpuSecondsPerGB: number;
  /** Files per GB of media (~2 MB per photo or video: 500). Drives scan time and manifest size. */
  readonly filesPerGB: number;
  /** Scan time per file on EFS, ms (NFS round trips; README: 1-3 ms per small file; not measured). */
  readonly scanMsPerFile: number;
  /** Gzipped manifest bytes per file (a JSON line with a 64-hex sha256: ~100 bytes gzipped). */
  readonly manifestBytesPerFile: number;
  /** Run time of one monitor invocation, s (not measured). */
  readonly monitorSecondsPerRun: number;
  /** Run time of one notify invocation, s (not measured). */
  readonly notifySecondsPerRun: number;
  /** Emails per month (weekly digest; failures are rare and not counted). */
  readonly notificationsPerMonth: number;
  /** Standard-resolution metric alarms of the stack (see {@link DEFAULT_ALARMS}). */
  readonly alarms: number;
  /** Composite alarms of the stack. */
  readonly compositeAlarms: number;
  /** Custom metrics, by who publishes them (see {@link DEFAULT_CUSTOM_METRICS}). */
  readonly customMetrics: CustomMetricCounts;
  /**
   * Whether the CloudWatch dashboard is deployed: the stack's `dashboard` context key (default true).
   * Without it the custom metrics stay the same (lib/constructs/monitoring.ts `PANEL_ONLY_METRICS`).
   */
  readonly dashboard: boolean;
  /** Log bytes per invocation, KB (JSON logs + EMF lines + Lambda's START/END/REPORT; not measured). */
  readonly logKBPerInvocation: number;
  /** Log group retention, days. */
  readonly logRetentionDays: number;
  /**
   * The stack's `syntheticFulls`: a full is built server-side from the chain's unchanged bytes plus
   * the files changed since the last backup (issue 15). See {@link planSyntheticFullModel}.
   */
  readonly syntheticFulls: boolean;
  /** The stack's `normalFullEvery`: every this many fulls is a normal one (1: all normal). */
  readonly normalFullEvery: number;
  /**
   * Changed or added files that sit next to each other in tree order (one import folder): 1 means
   * every changed file stands alone, which breaks the copy runs of a synthetic full most often (the
   * most parts; the bytes and so the dollars barely move, see the tests). Not measured.
   */
  readonly changedFilesPerRun: number;
  /**
   * Files per folder of the media tree (each folder's entry precedes its files in the archive). Not
   * measured (the bench tree has ~40-200).
   */
  readonly filesPerDirectory: number;
  /**
   * Share (0..1) of the changed files that were added, deleted or renamed rather than rewritten in
   * place. Each of those sets its folder's mtime, so that folder's entry is no longer the one in the
   * previous full: a synthetic full takes it from the incremental of the day it last changed, or
   * writes it fresh when that was today, and either way it splits the copy run around it (a folder
   * whose mode and mtime are unchanged is copied with its neighbours, lambda/core/archiver/plan.ts
   * `locateFolderOrLink`). A rewrite through a temporary file and a rename (rsync's default) also
   * changes the folder's mtime: count it here. Not measured.
   */
  readonly addedOrRemovedShare: number;
  /**
   * Wall time of one part request of a synthetic full (UploadPartCopy or UploadPart), s, with
   * {@link SYNTHETIC_CONCURRENCY} in flight: the Lambda waits while S3 copies. Not measured on AWS.
   */
  readonly syntheticPartRequestSeconds: number;
  /** Wall time of one ranged GET of a synthetic full before its bytes flow, s. Not measured on AWS. */
  readonly rangedGetSeconds: number;
  /** Rate a synthetic full moves fetched (not copied) bytes through the Lambda, MB/s. Not measured on AWS. */
  readonly syntheticFetchMBPerSecond: number;
}

/** Custom metrics by publisher; each is billed for the hours in which it receives data. */
export interface CustomMetricCounts {
  /** Published by the hourly monitor: billed every hour. */
  readonly hourly: number;
  /** Published once per backup run. */
  readonly perBackupRun: number;
  /** Published once per verify run. */
  readonly perVerifyRun: number;
  /** Published once per email the notify function sends. */
  readonly perNotification: number;
}

/**
 * Alarms, counted by reading lib/constructs/monitoring.ts on 2026-12-01 (a stack with
 * `notificationEmail`): `backup-age`, `backup-failed`, `verify-failures`, `health-critical`,
 * `notification-failures`, `backup-duration` (6); `<fn>-errors` and `<fn>-throttles` for backup,
 * restore, verify, monitor and notify (10; 8 without `notificationEmail`, which has no notify
 * function); `dead-letter-messages` and `dead-letter-age` (2): 18 metric alarms, all at periods of
 * 5 min or more (standard resolution), plus the composite `<stack>-failing` (1). The committed
 * version before the issue-11 alarm work had 17 metric alarms and no composite. Another helper is
 * changing the alarms: pass the counts of the code you deploy.
 */
export const DEFAULT_ALARMS = { alarms: 18, compositeAlarms: 1 } as const;

/**
 * Custom metrics, counted from lib/metrics.ts `METRIC_NAMES` (the contract with
 * lambda/handlers/metrics.ts): one dimension (`Stack`), so one metric per name. Monitor:
 * HoursSinceLastBackup, HealthCritical, HealthWarning (hourly); backup: BackupSucceeded,
 * BackupFailed, ArchiveBytes, SourceBytes, ChangedFiles, DurationSeconds (once per run); verify:
 * VerifyFailures; notify: NotificationFailures (once per email). 11 in all.
 */
export const DEFAULT_CUSTOM_METRICS: CustomMetricCounts = {
  hourly: 3,
  perBackupRun: 6,
  perVerifyRun: 1,
  perNotification: 1,
};

/** The stack as deployed today: noncurrent versions 7 days, verify downloads, weekly deep verify of the latest full. */
export const TODAY: CostInputs = {
  treeGB: 500,
  dailyChurnPercent: 1,
  compressionRatio: 1,
  retentionDays: 30,
  fullIntervalDays: 7,
  noncurrentDays: 7,
  efsThroughputMode: 'elastic',
  verify: { quick: 'download', deep: 'latest-full-weekly' },
  backupMemoryMB: 3538,
  verifyMemoryMB: 1024,
  monitorMemoryMB: 512,
  notifyMemoryMB: 256,
  backupCpuSecondsPerGB: 20,
  backupParallelEfficiency: 0.85,
  backupMaxMBPerSecond: 150,
  verifyCpuSecondsPerGB: 10,
  filesPerGB: 500,
  scanMsPerFile: 1,
  manifestBytesPerFile: 100,
  monitorSecondsPerRun: 3,
  notifySecondsPerRun: 1,
  notificationsPerMonth: 365 / 12 / 7,
  ...DEFAULT_ALARMS,
  customMetrics: DEFAULT_CUSTOM_METRICS,
  dashboard: true,
  logKBPerInvocation: 10,
  logRetentionDays: 90,
  syntheticFulls: false,
  normalFullEvery: 4,
  changedFilesPerRun: 1,
  filesPerDirectory: 100,
  addedOrRemovedShare: 0.5,
  syntheticPartRequestSeconds: 0.3,
  rangedGetSeconds: 0.05,
  syntheticFetchMBPerSecond: 100,
};

/**
 * After issue 12: conditional writes leave noncurrent versions only from lifecycle expiry, so they
 * are kept 1 day; quick verify compares S3's checksum without downloading; deep verify rotates.
 */
export const AFTER_ISSUE_12: CostInputs = {
  ...TODAY,
  noncurrentDays: 1,
  verify: { quick: 'checksum', deep: 'rotating' },
};

/**
 * Issue 15, the stack's defaults: synthetic fulls on, every 4th full a normal one (with weekly fulls,
 * one normal full a month). Everything else as {@link AFTER_ISSUE_12}.
 */
export const WITH_SYNTHETIC_FULLS: CostInputs = {
  ...AFTER_ISSUE_12,
  syntheticFulls: true,
  normalFullEvery: 4,
};

/** One line of a monthly bill. */
export interface CostItem {
  /** Stable id, for tests and tables. */
  readonly id: CostItemId;
  /** What it is, for a table row. */
  readonly label: string;
  /** USD per month (unrounded). */
  readonly usd: number;
  /** The arithmetic, in words and numbers. */
  readonly detail: string;
}

export type CostItemId =
  | 's3-ia-storage'
  | 's3-standard-storage'
  | 's3-requests'
  | 's3-ia-retrieval'
  | 's3-ia-retrieval-copies'
  | 'efs-elastic-reads'
  | 'lambda'
  | 'cloudwatch-alarms'
  | 'cloudwatch-metrics'
  | 'cloudwatch-dashboard'
  | 'cloudwatch-logs'
  | 'messaging'
  | 'aws-backup-storage';

/** A monthly bill. */
export interface CostBreakdown {
  readonly items: readonly CostItem[];
  /** Sum of the items, USD per month. */
  readonly total: number;
  /** Quantities behind the items, for tests and notes. */
  readonly quantities: Readonly<Record<string, number>>;
}

/** Thrown when an input is out of range; names the input. */
export class CostInputError extends Error {
  override readonly name = 'CostInputError';
}

function validate(i: CostInputs): void {
  const positive: (keyof CostInputs)[] = [
    'treeGB',
    'compressionRatio',
    'retentionDays',
    'fullIntervalDays',
    'backupMemoryMB',
    'verifyMemoryMB',
    'monitorMemoryMB',
    'notifyMemoryMB',
    'backupCpuSecondsPerGB',
    'backupParallelEfficiency',
    'backupMaxMBPerSecond',
    'verifyCpuSecondsPerGB',
  ];
  for (const key of positive) {
    const value = i[key] as number;
    if (!(Number.isFinite(value) && value > 0)) {
      throw new CostInputError(`\`${key}\` must be a number > 0 (got ${value}): fix the cost model's input`);
    }
  }
  const nonNegative: (keyof CostInputs)[] = [
    'dailyChurnPercent',
    'noncurrentDays',
    'filesPerGB',
    'scanMsPerFile',
    'manifestBytesPerFile',
    'monitorSecondsPerRun',
    'notifySecondsPerRun',
    'notificationsPerMonth',
    'alarms',
    'compositeAlarms',
    'logKBPerInvocation',
    'logRetentionDays',
  ];
  for (const key of nonNegative) {
    const value = i[key] as number;
    if (!(Number.isFinite(value) && value >= 0)) {
      throw new CostInputError(`\`${key}\` must be a number >= 0 (got ${value}): fix the cost model's input`);
    }
  }
  const atLeastOne: (keyof CostInputs)[] = ['normalFullEvery', 'changedFilesPerRun', 'filesPerDirectory'];
  for (const key of atLeastOne) {
    const value = i[key] as number;
    if (!(Number.isSafeInteger(value) && value >= 1)) {
      throw new CostInputError(
        `\`${key}\` must be a whole number >= 1 (got ${value}): fix the cost model's input`,
      );
    }
  }
  for (const key of [
    'syntheticPartRequestSeconds',
    'rangedGetSeconds',
    'syntheticFetchMBPerSecond',
  ] as const) {
    if (!(Number.isFinite(i[key]) && i[key] > 0)) {
      throw new CostInputError(`\`${key}\` must be a number > 0 (got ${i[key]}): fix the cost model's input`);
    }
  }
  if (!(Number.isFinite(i.addedOrRemovedShare) && i.addedOrRemovedShare >= 0 && i.addedOrRemovedShare <= 1)) {
    throw new CostInputError(
      `\`addedOrRemovedShare\` must be a number from 0 to 1 (got ${i.addedOrRemovedShare}): fix the cost model's input`,
    );
  }
  if (i.dailyChurnPercent > 100) {
    throw new CostInputError(`\`dailyChurnPercent\` must be at most 100 (got ${i.dailyChurnPercent})`);
  }
  if (i.fullIntervalDays > i.retentionDays) {
    throw new CostInputError(
      `\`fullIntervalDays\` (${i.fullIntervalDays}) must not exceed \`retentionDays\` (${i.retentionDays}), as the stack requires`,
    );
  }
}

/** Part size of an upload whose upper bound is `maxBytes`, as lambda/store/s3.ts `choosePartSize`. */
export function partSizeBytes(maxBytes: number): number {
  return Math.max(PART.minBytes, Math.ceil((maxBytes * PART.headroom) / PART.budget));
}

/** S3 PUT-class requests to upload an object of `bytes`: one PutObject, or create + parts + complete. */
export function uploadRequests(bytes: number): number {
  // The engine's upper bound is the changed bytes plus tar overhead plus 1%.
  const partSize = partSizeBytes(bytes * 1.01);
  if (bytes <= partSize) return 1;
  return Math.ceil(bytes / partSize) + 2;
}

/** How long each archive is billed, in days: lifecycle expiry + noncurrent days + rounding, at least 30. */
export function archiveBilledDays(
  i: Pick<CostInputs, 'retentionDays' | 'fullIntervalDays' | 'noncurrentDays'>,
) {
  return Math.max(
    IA_MIN_DAYS,
    i.retentionDays + i.fullIntervalDays + i.noncurrentDays + LIFECYCLE_ROUNDING_DAYS,
  );
}

const GIB = 2 ** 30;
const MIB = 2 ** 20;

// --- Synthetic fulls (issue 15) -------------------------------------------------------------------

/** Part requests a synthetic full keeps in flight (lambda/core/synthetic/assemble.ts: 4). */
export const SYNTHETIC_CONCURRENCY = 4;
/** Bytes of a folder entry's gzip member (PAX header + tar header). Not measured. */
export const DIRECTORY_ENTRY_BYTES = 1024;
/** Days a staged object of fresh members is kept (BackupBucket `stagingExpirationDays`) + lifecycle rounding. */
export const STAGING_BILLED_DAYS = 7 + LIFECYCLE_ROUNDING_DAYS;
/** Bytes the check after assembly gunzips from the new full: a few members of 3 random runs. */
export const SYNTHETIC_CHECK_BYTES = 3 * MIB;

/**
 * S3's multipart limits and the planner's starting thresholds, as lambda/core/synthetic/part-plan.ts
 * (`S3_PART_LIMITS`, `DEFAULT_TARGET_UPLOAD_PART_BYTES`); the unit test runs both on the same layout.
 */
export const SYNTHETIC_PART_LIMITS = {
  minPartBytes: 5 * MIB,
  maxPartBytes: 5 * GIB,
  maxParts: 10_000,
  minCopySourceBytes: 5_000_000,
  targetUploadPartBytes: 8 * MIB,
} as const;

/**
 * Where the bytes of one synthetic full come from, in archive order: `segments[k]` bytes of source
 * `sources[k]` (0: the previous full; 1..D-1: the incremental of that day; D: this run's staged fresh
 * members, in S3 Standard). Consecutive segments of one source are contiguous in it (both lie in tree
 * order and nothing lies between two neighbours of the tree).
 */
export interface SyntheticFullLayout {
  readonly segments: Float64Array;
  readonly sources: Uint16Array;
  /** Size of each source object, bytes (index = source). */
  readonly sourceBytes: readonly number[];
  /** The staging source's index (= fullIntervalDays). */
  readonly staging: number;
  /** Source bytes read from EFS and compressed: files changed since the last backup. */
  readonly freshFileBytes: number;
  /** Folders of the simulated tree, and those whose mtime changed since the previous full. */
  readonly folders?: { readonly count: number; readonly changed: number };
}

/** 32-bit seeded PRNG (mulberry32): the same inputs give the same layout, so the tables are stable. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The layout of the synthetic full at the end of one full interval, simulated file by file: each day
 * `dailyChurnPercent` of the files change, in groups of `changedFilesPerRun` neighbours at random places
 * (a later change wins); the full's day's changes are fresh, earlier ones sit in that day's
 * incremental, the rest in the previous full. A group is an addition or deletion with probability
 * `addedOrRemovedShare`: it changes the mtime of the folders its files lie in, and each folder entry
 * comes from where the folder last changed, as a file's (every archive holds every folder entry,
 * lambda/core/archiver/plan.ts `entriesToPack`). The end-of-archive is fresh.
 */
export function syntheticFullLayout(inputs: Partial<CostInputs> = {}, seed = 15): SyntheticFullLayout {
  const i: CostInputs = { ...TODAY, ...inputs };
  validate(i);
  const files = Math.max(1, Math.round(i.treeGB * i.filesPerGB));
  // Whole bytes, as the planner's ranges are.
  const fileBytes = Math.max(1, Math.round((i.treeGB * GIB * i.compressionRatio) / files));
  const days = i.fullIntervalDays;
  const lastChange = days < 2 ** 16 ? new Uint16Array(files) : undefined;
  if (!lastChange) throw new CostInputError(`\`fullIntervalDays\` must be below 65536 (got ${days})`);
  const random = seededRandom(seed);
  const folders = Math.ceil(files / i.filesPerDirectory);
  // The day each folder's mtime last changed (0: as in the previous full).
  const folderChange = new Uint16Array(folders);
  const run = Math.min(i.changedFilesPerRun, files);
  const perDay = (files * i.dailyChurnPercent) / 100 / run;
  for (let day = 1; day <= days; day += 1) {
    // Whole groups, and the fraction of one with its probability: the expected churn at any size.
    const groups = Math.floor(perDay) + (random() < perDay - Math.floor(perDay) ? 1 : 0);
    for (let g = 0; g < groups; g += 1) {
      const start = Math.floor(random() * (files - run + 1));
      lastChange.fill(day, start, start + run);
      if (random() < i.addedOrRemovedShare) {
        const first = Math.floor(start / i.filesPerDirectory);
        const last = Math.floor((start + run - 1) / i.filesPerDirectory);
        folderChange.fill(day, first, last + 1);
      }
    }
  }
  const segments = new Float64Array(files + folders + 1);
  const sources = new Uint16Array(files + folders + 1);
  const sourceBytes = new Array<number>(days + 1).fill(0);
  let n = 0;
  let freshFileBytes = 0;
  const push = (source: number, bytes: number) => {
    segments[n] = bytes;
    sources[n] = source;
    sourceBytes[source]! += bytes;
    n += 1;
  };
  for (let f = 0; f < files; f += 1) {
    if (f % i.filesPerDirectory === 0) {
      push(folderChange[f / i.filesPerDirectory]!, DIRECTORY_ENTRY_BYTES);
    }
    const day = lastChange[f]!;
    push(day, fileBytes);
    if (day === days) freshFileBytes += fileBytes / i.compressionRatio;
  }
  push(days, 64); // the end-of-archive member (1,024 zero bytes, gzipped)
  // The previous full held every file, the incrementals whatever changed on their day (later
  // changes to the same file included) and every folder entry: at least what this full takes from them.
  // The previous full: the same tree, the same size (its folder entries and end-of-archive included).
  sourceBytes[0] = segments.reduce((total, bytes) => total + bytes, 0);
  for (let day = 1; day < days; day += 1) {
    sourceBytes[day] = Math.max(
      sourceBytes[day]!,
      Math.round((i.treeGB * GIB * i.compressionRatio * i.dailyChurnPercent) / 100) +
        folders * DIRECTORY_ENTRY_BYTES,
    );
  }
  const changed = folderChange.reduce((n, day) => n + (day > 0 ? 1 : 0), 0);
  return {
    segments,
    sources,
    sourceBytes,
    staging: days,
    freshFileBytes,
    folders: { count: folders, changed },
  };
}

/** What the planner makes of a layout: parts, and bytes and ranged reads by storage class of the source. */
export interface SyntheticPlanFigures {
  readonly bytes: number;
  readonly copyParts: number;
  readonly uploadParts: number;
  /** Bytes copied server-side out of Standard-IA archives / out of the staged object (Standard). */
  readonly copiedIaBytes: number;
  readonly copiedStagingBytes: number;
  /** Bytes fetched with ranged GETs out of Standard-IA archives / out of the staged object. */
  readonly fetchedIaBytes: number;
  readonly fetchedStagingBytes: number;
  /** Ranged GETs (one per contiguous piece of a source in an upload part). */
  readonly iaRangedGets: number;
  readonly stagingRangedGets: number;
  /** The thresholds the plan ended with (raised from 5 MiB / 8 MiB while it needed > 10,000 parts). */
  readonly minCopyRunBytes: number;
  readonly targetUploadPartBytes: number;
}

/**
 * The part plan of a synthetic full, by the rules of lambda/core/synthetic/part-plan.ts
 * `planSyntheticParts` (same thresholds, the same borrowing of a copy run's head, the same search for
 * larger upload parts and then a higher copy threshold while the plan needs more than 10,000 parts);
 * only the counts, no checksums. test/unit/cost-model-planner.test.ts runs both on the same layouts.
 *
 * @returns undefined when no thresholds fit 10,000 parts: the backup then falls back to a normal full
 */
export function planSyntheticFullModel(layout: SyntheticFullLayout): SyntheticPlanFigures | undefined {
  const L = SYNTHETIC_PART_LIMITS;
  // Maximal runs of one source: [start, end) segment indices.
  const starts: number[] = [];
  for (let k = 0; k < layout.segments.length; k += 1) {
    if (k === 0 || layout.sources[k] !== layout.sources[k - 1]) starts.push(k);
  }
  starts.push(layout.segments.length);
  let bytes = 0;
  for (const b of layout.segments) bytes += b;
  const clamp = (t: number) => Math.min(L.maxPartBytes, Math.max(t, L.minPartBytes, 1));
  // As part-plan.ts: first the smallest upload part size that fits 10,000 parts (from size / 10,000
  // up, checked by building, 1.25x more when closing parts early overshoots), then, when the copies
  // alone leave no room, a doubled copy threshold.
  const baseTarget = clamp(Math.max(L.targetUploadPartBytes, Math.ceil(bytes / L.maxParts)));
  let minCopyRun: number = L.minPartBytes;
  for (;;) {
    let target = smallestFittingTarget(layout, starts, minCopyRun, baseTarget);
    for (let attempt = 0; target !== undefined && attempt < 4; attempt += 1) {
      const figures = buildModelParts(layout, starts, minCopyRun, target);
      if (figures.copyParts + figures.uploadParts <= L.maxParts) return figures;
      const next = clamp(Math.ceil(target * 1.25));
      target = next === target ? undefined : next;
    }
    const next = Math.max(minCopyRun, Math.min(L.maxPartBytes, minCopyRun * 2));
    if (next === minCopyRun) return undefined;
    minCopyRun = next;
  }
}

/** part-plan.ts `smallestFittingTarget` over the model's layout: the smallest upload part size that fits 10,000 parts. */
function smallestFittingTarget(
  layout: SyntheticFullLayout,
  starts: readonly number[],
  minCopyRun: number,
  from: number,
): number | undefined {
  const L = SYNTHETIC_PART_LIMITS;
  let copyParts = 0;
  const stretches: number[] = [];
  let stretch = 0;
  for (let run = 0; run + 1 < starts.length; run += 1) {
    let length = 0;
    for (let k = starts[run]!; k < starts[run + 1]!; k += 1) length += layout.segments[k]!;
    if (layout.sourceBytes[layout.sources[starts[run]!]!]! > L.minCopySourceBytes && length >= minCopyRun) {
      if (stretch > 0) stretches.push(stretch);
      stretch = 0;
      copyParts += Math.max(1, Math.ceil(length / L.maxPartBytes));
    } else stretch += length;
  }
  if (stretch > 0) stretches.push(stretch);
  return smallestFittingPartSize(copyParts, stretches, L, from);
}

function buildModelParts(
  layout: SyntheticFullLayout,
  starts: readonly number[],
  minCopyRun: number,
  target: number,
): SyntheticPlanFigures {
  const L = SYNTHETIC_PART_LIMITS;
  const { segments, sources, sourceBytes, staging } = layout;
  const f = {
    copyParts: 0,
    uploadParts: 0,
    copiedIaBytes: 0,
    copiedStagingBytes: 0,
    fetchedIaBytes: 0,
    fetchedStagingBytes: 0,
    iaRangedGets: 0,
    stagingRangedGets: 0,
  };
  let pending = 0;
  // The run the last piece of the pending part came from, and whether the next byte continues it.
  let pieceRun = -1;
  let pieceEnd = -1;
  const flush = () => {
    if (pending > 0) f.uploadParts += 1;
    pending = 0;
    pieceRun = -1;
  };
  const addPiece = (run: number, at: number, length: number) => {
    const fromStaging = sources[starts[run]!] === staging;
    if (pieceRun !== run || pieceEnd !== at) {
      if (fromStaging) f.stagingRangedGets += 1;
      else f.iaRangedGets += 1;
    }
    if (fromStaging) f.fetchedStagingBytes += length;
    else f.fetchedIaBytes += length;
    pieceRun = run;
    pieceEnd = at + length;
    pending += length;
  };
  /** Fetches the run's bytes from segment `seg` (+`within`); see part-plan.ts PartBuilder.fetch. */
  const fetch = (run: number, seg: number, within: number, untilMinimum: boolean): [number, number] => {
    const end = starts[run + 1]!;
    // Position of the segment in its run, for piece contiguity: bytes before it in the run.
    let at = 0;
    for (let k = starts[run]!; k < seg; k += 1) at += segments[k]!;
    while (seg < end) {
      if (untilMinimum && pending >= L.minPartBytes) break;
      const length = segments[seg]!;
      const remaining = length - within;
      const room = untilMinimum ? L.minPartBytes - pending : target - pending;
      if (remaining <= room) {
        addPiece(run, at + within, remaining);
        at += length;
        seg += 1;
        within = 0;
      } else if (pending > 0 && pending >= L.minPartBytes) {
        flush();
      } else {
        addPiece(run, at + within, room);
        within += room;
        if (!untilMinimum && pending >= target) flush();
      }
    }
    return [seg, within];
  };
  for (let run = 0; run + 1 < starts.length; run += 1) {
    const first = starts[run]!;
    const end = starts[run + 1]!;
    const source = sources[first]!;
    let length = 0;
    for (let k = first; k < end; k += 1) length += segments[k]!;
    if (!(sourceBytes[source]! > L.minCopySourceBytes && length >= minCopyRun)) {
      fetch(run, first, 0, false);
      continue;
    }
    let fetched = 0;
    if (pending > 0 && pending < L.minPartBytes) {
      const before = f.fetchedIaBytes + f.fetchedStagingBytes;
      const [seg, within] = fetch(run, first, 0, true);
      fetched = f.fetchedIaBytes + f.fetchedStagingBytes - before;
      if (length - fetched < minCopyRun) {
        fetch(run, seg, within, false);
        continue;
      }
    }
    flush();
    const copied = length - fetched;
    const parts = Math.max(1, Math.ceil(copied / L.maxPartBytes));
    f.copyParts += parts;
    if (source === staging) f.copiedStagingBytes += copied;
    else f.copiedIaBytes += copied;
  }
  flush();
  let bytes = 0;
  for (const b of segments) bytes += b;
  return { bytes, ...f, minCopyRunBytes: minCopyRun, targetUploadPartBytes: target };
}

/** One synthetic full's figures: the plan, and what it costs to make. */
export interface SyntheticFullFigures {
  /** Undefined when the plan needs more than 10,000 parts whatever the thresholds (a normal full runs). */
  readonly plan: SyntheticPlanFigures | undefined;
  /** GB read from EFS (the files changed since the last backup). */
  readonly efsReadGB: number;
  /** GB of the staged object of fresh members (S3 Standard, kept {@link STAGING_BILLED_DAYS}). */
  readonly stagedGB: number;
}

/** The figures of one synthetic full for `inputs` (see {@link syntheticFullLayout}). */
export function syntheticFullFigures(inputs: Partial<CostInputs> = {}): SyntheticFullFigures {
  const layout = syntheticFullLayout(inputs);
  return {
    plan: planSyntheticFullModel(layout),
    efsReadGB: layout.freshFileBytes / GIB,
    stagedGB: layout.sourceBytes[layout.staging]! / GIB,
  };
}

/** Monthly cost of media-backup on AWS for `inputs` (missing fields from {@link TODAY}). */
export function monthlyCost(inputs: Partial<CostInputs> = {}): CostBreakdown {
  const i: CostInputs = { ...TODAY, ...inputs };
  validate(i);
  const p = PRICES;
  const churn = i.dailyChurnPercent / 100;

  // --- what is written
  const backupRuns = DAYS_PER_MONTH; // one scheduled backup a day
  const fullRuns = DAYS_PER_MONTH / i.fullIntervalDays;
  const incrementalRuns = backupRuns - fullRuns;
  // Every `normalFullEvery`th full is normal; the others are synthetic when they are on. A synthetic
  // full writes the same archive (same storage, same verify reads), made from other reads.
  const syntheticAttempts = i.syntheticFulls ? fullRuns * (1 - 1 / i.normalFullEvery) : 0;
  const synthetic = syntheticAttempts > 0 ? syntheticFullFigures(i) : undefined;
  const plan = synthetic?.plan;
  // No plan within 10,000 parts: the attempt falls back to a normal full (its staged object stays).
  const syntheticRuns = plan ? syntheticAttempts : 0;
  const normalFullRuns = fullRuns - syntheticRuns;
  const fullGB = i.treeGB * i.compressionRatio;
  const incrementalGB = i.treeGB * churn * i.compressionRatio;
  const writtenGB = fullRuns * fullGB + incrementalRuns * incrementalGB;

  // --- S3 storage: every archive written in the last `billedDays` days is stored (steady state)
  const billedDays = archiveBilledDays(i);
  const iaBilledWrittenGB =
    fullRuns * Math.max(fullGB, IA_MIN_OBJECT_GB) +
    incrementalRuns * Math.max(incrementalGB, IA_MIN_OBJECT_GB);
  const iaGBMonth = (iaBilledWrittenGB / DAYS_PER_MONTH) * billedDays;
  const files = i.treeGB * i.filesPerGB;
  const manifestGB = (files * i.manifestBytesPerFile) / GIB;
  const smallObjectGB = 4096 / GIB; // metadata JSON (~2-4 KB)
  const stagedGBMonth =
    (syntheticAttempts * (synthetic?.stagedGB ?? 0) * STAGING_BILLED_DAYS) / DAYS_PER_MONTH;
  // one backup a day, same lifetime; plus the staged fresh members of synthetic fulls until lifecycle
  const standardGBMonth = (manifestGB + smallObjectGB) * billedDays + stagedGBMonth;
  // one a day; manifests expire with the archives (noncurrent versions are not listed)
  const committedBackups = i.retentionDays + i.fullIntervalDays;

  // --- verify: bytes read from Standard-IA
  const verifyRuns = DAYS_PER_MONTH / 7; // the weekly schedule
  const quickReads = i.verify.quick === 'download' ? 2 : 1; // a download quick check reads it once more
  const deepReadGB =
    i.verify.deep === 'latest-full-weekly'
      ? verifyRuns * fullGB // 6 h after the full, the latest backup's chain is that full alone
      : writtenGB; // each archive once in its lifetime = each byte written, once
  const iaReadGB = deepReadGB * quickReads;
  const archivesVerified = i.verify.deep === 'latest-full-weekly' ? verifyRuns : fullRuns + incrementalRuns;

  // --- EFS: a full reads the tree, an incremental the changed files, a synthetic full the files
  // changed since the last backup
  const efsReadGB =
    normalFullRuns * i.treeGB +
    syntheticRuns * (synthetic?.efsReadGB ?? 0) +
    incrementalRuns * i.treeGB * churn;
  const efsUsd = i.efsThroughputMode === 'elastic' ? efsReadGB * p.efsElasticReadGB : 0;

  // --- Lambda
  const vcpus = (mb: number) => mb / 1769;
  const backupSecondsPerGB = Math.max(
    i.backupCpuSecondsPerGB / (vcpus(i.backupMemoryMB) * i.backupParallelEfficiency),
    1000 / i.backupMaxMBPerSecond,
  );
  const scanSeconds = (files * i.scanMsPerFile) / 1000;
  // A synthetic full compresses the fresh files, moves fetched bytes through, and waits for its part
  // requests and ranged GETs; S3 copies the rest server-side.
  const syntheticSeconds = plan
    ? (synthetic?.efsReadGB ?? 0) * backupSecondsPerGB +
      (((plan.fetchedIaBytes + plan.fetchedStagingBytes) / GIB) * 1000) / i.syntheticFetchMBPerSecond +
      ((plan.copyParts + plan.uploadParts) * i.syntheticPartRequestSeconds +
        (plan.iaRangedGets + plan.stagingRangedGets) * i.rangedGetSeconds) /
        SYNTHETIC_CONCURRENCY +
      scanSeconds
    : 0;
  const backupSeconds =
    (normalFullRuns * i.treeGB + incrementalRuns * i.treeGB * churn) * backupSecondsPerGB +
    (backupRuns - syntheticRuns) * scanSeconds +
    syntheticRuns * syntheticSeconds;
  const fullRunMinutes = (i.treeGB * backupSecondsPerGB + scanSeconds) / 60;
  const syntheticRunMinutes = syntheticSeconds / 60;
  // verify is one thread: below 1 vCPU it runs slower in proportion
  const verifySeconds =
    (iaReadGB * i.verifyCpuSecondsPerGB) / Math.min(1, vcpus(i.verifyMemoryMB)) + verifyRuns * 5;
  const gbSeconds =
    (i.backupMemoryMB / 1024) * backupSeconds +
    (i.verifyMemoryMB / 1024) * verifySeconds +
    (i.monitorMemoryMB / 1024) * HOURS_PER_MONTH * i.monitorSecondsPerRun +
    (i.notifyMemoryMB / 1024) * i.notificationsPerMonth * i.notifySecondsPerRun;
  const invocations = backupRuns + verifyRuns + HOURS_PER_MONTH + i.notificationsPerMonth;
  const lambdaUsd = gbSeconds * p.lambdaArmGBSecond + (invocations / 1e6) * p.lambdaRequestsPerMillion;

  // --- S3 requests
  // A synthetic full: create + one request per part (UploadPartCopy or UploadPart) + complete, all
  // billed as Standard-IA PUTs (the destination's class); its staged object is a Standard upload.
  const syntheticParts = plan ? plan.copyParts + plan.uploadParts : 0;
  const iaPuts =
    normalFullRuns * uploadRequests(fullGB * GIB) +
    syntheticRuns * (syntheticParts + 2) +
    incrementalRuns * uploadRequests(incrementalGB * GIB);
  const stagingPuts = syntheticAttempts * uploadRequests((synthetic?.stagedGB ?? 0) * GIB);
  // Ranged GETs of fetched pieces; a HEAD to pin each source (the previous full and the interval's
  // incrementals in Standard-IA, the staged object in Standard); HEAD and 3 ranged GETs to check.
  const syntheticIaGets = plan ? plan.iaRangedGets + (i.fullIntervalDays - 1) + 1 + 4 : 0;
  const syntheticStandardGets = plan ? plan.stagingRangedGets + 1 : 0;
  // Standard-IA retrieval: every byte copied or fetched out of an archive, and the bytes checked.
  const syntheticIaReadGB = plan
    ? (plan.copiedIaBytes + plan.fetchedIaBytes + SYNTHETIC_CHECK_BYTES) / GIB
    : 0;
  const copyRetrievalGB = syntheticRuns * syntheticIaReadGB;
  // lock create + release, metadata, manifest, status (lambda/core/archiver/backup.ts), and a lock renewal
  // every ttl/3 of run time (DEFAULT_LOCK_TTL_MS: 10 min), counted below once run time is known
  const standardPutsPerBackup = 5;
  const lockRenewals = backupSeconds / 200;
  const verifyStatusPuts = verifyRuns; // status/last-verify.json
  const lists = backupRuns * 4 + verifyRuns * 2 + HOURS_PER_MONTH * 2; // full/ + incremental/ listings
  // backup: lock, status, base manifest + metadata; monitor: status, last-verify, latest manifest,
  // each committed backup's metadata; verify: manifest, metadata and HEADs per archive
  const standardGets = backupRuns * 4 + HOURS_PER_MONTH * (3 + committedBackups) + archivesVerified * 2;
  // one GET per archive body read, a HEAD per archive checked (checksum mode: GetObjectAttributes too)
  const iaGets = archivesVerified * (quickReads + 1 + (i.verify.quick === 'checksum' ? 1 : 0));
  const requestsUsd =
    (iaPuts / 1000) * p.s3StandardIaPutPer1000 +
    ((backupRuns * standardPutsPerBackup + lockRenewals + verifyStatusPuts + lists + stagingPuts) / 1000) *
      p.s3StandardPutPer1000 +
    ((standardGets + syntheticRuns * syntheticStandardGets) / 1000) * p.s3StandardGetPer1000 +
    ((iaGets + syntheticRuns * syntheticIaGets) / 1000) * p.s3StandardIaGetPer1000;

  // --- CloudWatch
  const alarmsUsd = i.alarms * p.cloudWatchAlarmMonth + i.compositeAlarms * p.cloudWatchCompositeAlarmMonth;
  const m = i.customMetrics;
  const metricHours =
    m.hourly * HOURS_PER_MONTH +
    m.perBackupRun * backupRuns +
    m.perVerifyRun * verifyRuns +
    m.perNotification * i.notificationsPerMonth;
  const metricsUsd = (metricHours / HOURS_PER_MONTH) * p.cloudWatchCustomMetricMonth;
  const dashboardUsd = i.dashboard ? p.cloudWatchDashboardMonth : 0;
  const logGB = (invocations * i.logKBPerInvocation * 1024) / GIB;
  const logsUsd =
    logGB * p.cloudWatchLogsIngestGB +
    logGB * (i.logRetentionDays / DAYS_PER_MONTH) * p.cloudWatchLogsStorageGBMonth;

  // --- SNS, SES, SQS, Scheduler: weekly digest mails, scheduled invocations; all within free tiers
  const scheduledInvocations = backupRuns + verifyRuns + HOURS_PER_MONTH + i.notificationsPerMonth;
  const messagingUsd =
    (i.notificationsPerMonth / 1000) * p.sesEmailPer1000 +
    (scheduledInvocations / 1e6) * p.schedulerInvocationsPerMillion;

  const items: CostItem[] = [
    {
      id: 's3-ia-storage',
      label: 'S3 Standard-IA storage (archives)',
      usd: iaGBMonth * p.s3StandardIaGBMonth,
      detail: `${fmt(iaBilledWrittenGB / DAYS_PER_MONTH)} GB written a day x ${billedDays} days billed = ${fmt(iaGBMonth)} GB-month x $${p.s3StandardIaGBMonth}`,
    },
    {
      id: 's3-standard-storage',
      label: 'S3 Standard storage (manifests, metadata, staged members)',
      usd: standardGBMonth * p.s3StandardGBMonth,
      detail: `${fmt(manifestGB * 1024)} MB manifest a day x ${billedDays} days + ${fmt(stagedGBMonth)} GB-month staged = ${fmt(standardGBMonth)} GB-month x $${p.s3StandardGBMonth}`,
    },
    {
      id: 's3-requests',
      label: 'S3 requests (PUT/parts, GET, LIST)',
      usd: requestsUsd,
      detail: `${fmt(iaPuts)} archive PUTs/parts, ${fmt(lists)} LISTs, ${fmt(standardGets + iaGets)} GETs/HEADs (hourly monitor included)`,
    },
    {
      id: 's3-ia-retrieval',
      label: 'S3 Standard-IA retrieval (verify)',
      usd: iaReadGB * p.s3StandardIaRetrievalGB,
      detail: `${fmt(iaReadGB)} GB read x $${p.s3StandardIaRetrievalGB}`,
    },
    {
      id: 's3-ia-retrieval-copies',
      label: 'S3 Standard-IA retrieval (synthetic full copies)',
      usd: copyRetrievalGB * p.s3StandardIaRetrievalGB,
      detail: `${fmt(syntheticRuns)} synthetic fulls x ${fmt(syntheticIaReadGB)} GB copied or fetched out of Standard-IA x $${p.s3StandardIaRetrievalGB}`,
    },
    {
      id: 'lambda',
      label: 'Lambda (arm64 GB-seconds, requests)',
      usd: lambdaUsd,
      detail: `${fmt(gbSeconds)} GB-s x $${p.lambdaArmGBSecond} + ${fmt(invocations)} requests; a full takes ~${fmt(fullRunMinutes)} min at ${i.backupMemoryMB} MB${syntheticRuns > 0 ? `, a synthetic full ~${fmt(syntheticRunMinutes)} min` : ''}`,
    },
    {
      id: 'cloudwatch-alarms',
      label: `CloudWatch alarms (${i.alarms} + ${i.compositeAlarms} composite)`,
      usd: alarmsUsd,
      detail: `${i.alarms} x $${p.cloudWatchAlarmMonth} + ${i.compositeAlarms} x $${p.cloudWatchCompositeAlarmMonth}`,
    },
    {
      id: 'cloudwatch-metrics',
      label: `CloudWatch custom metrics (${m.hourly + m.perBackupRun + m.perVerifyRun + m.perNotification}, billed per hour with data)`,
      usd: metricsUsd,
      detail: `${fmt(metricHours)} metric-hours / ${HOURS_PER_MONTH} x $${p.cloudWatchCustomMetricMonth}`,
    },
    {
      id: 'cloudwatch-dashboard',
      label: 'CloudWatch dashboard',
      usd: dashboardUsd,
      detail: i.dashboard
        ? `1 x $${p.cloudWatchDashboardMonth} (free if the account has fewer than 3)`
        : 'none',
    },
    {
      id: 'cloudwatch-logs',
      label: 'CloudWatch Logs (ingestion, storage)',
      usd: logsUsd,
      detail: `${fmt(invocations)} invocations x ${i.logKBPerInvocation} KB = ${fmt(logGB * 1024)} MB`,
    },
    {
      id: 'messaging',
      label: 'SES, SNS, SQS, Scheduler',
      usd: messagingUsd,
      detail: `${fmt(i.notificationsPerMonth)} emails, ${fmt(scheduledInvocations)} scheduled invocations`,
    },
    {
      id: 'efs-elastic-reads',
      label: 'EFS reads (Elastic throughput only)',
      usd: efsUsd,
      detail: `${fmt(efsReadGB)} GB read x $${p.efsElasticReadGB} (Bursting: $0)${syntheticRuns > 0 ? `; a synthetic full reads ${fmt(synthetic?.efsReadGB ?? 0)} GB` : ''}`,
    },
  ];
  return {
    items,
    total: items.reduce((sum, item) => sum + item.usd, 0),
    quantities: {
      billedDays,
      fullRuns,
      incrementalRuns,
      writtenGB,
      iaGBMonth,
      iaReadGB,
      efsReadGB,
      gbSeconds,
      invocations,
      metricHours,
      iaPuts,
      fullRunMinutes,
      normalFullRuns,
      syntheticRuns,
      syntheticAttempts,
      syntheticParts,
      syntheticCopyParts: plan?.copyParts ?? 0,
      syntheticUploadParts: plan?.uploadParts ?? 0,
      syntheticCopiedGB: plan ? (plan.copiedIaBytes + plan.copiedStagingBytes) / GIB : 0,
      syntheticFetchedGB: plan ? (plan.fetchedIaBytes + plan.fetchedStagingBytes) / GIB : 0,
      syntheticEfsReadGB: synthetic?.efsReadGB ?? 0,
      syntheticRunMinutes,
      copyRetrievalGB,
    },
  };
}

/**
 * AWS Backup for the same EFS tree under the same retention: daily incremental recovery points kept
 * `retentionDays`, so warm storage holds one copy of the tree plus each day's changes for the
 * retention window. Storage only: AWS Backup has no verify (a restore test is a restore, $0.02/GB),
 * restores are one-off, and its job notifications (EventBridge/SNS) cost next to nothing.
 */
export function awsBackupMonthlyCost(inputs: Partial<CostInputs> = {}): CostBreakdown {
  const i: CostInputs = { ...TODAY, ...inputs };
  validate(i);
  const storedGB = i.treeGB * (1 + (i.dailyChurnPercent / 100) * i.retentionDays);
  const item: CostItem = {
    id: 'aws-backup-storage',
    label: 'AWS Backup for EFS, warm storage',
    usd: storedGB * PRICES.awsBackupEfsWarmGBMonth,
    detail: `${fmt(i.treeGB)} GB + ${i.dailyChurnPercent}% a day x ${i.retentionDays} days = ${fmt(storedGB)} GB-month x $${PRICES.awsBackupEfsWarmGBMonth}`,
  };
  return { items: [item], total: item.usd, quantities: { storedGB } };
}

function fmt(n: number): string {
  if (n === 0) return '0';
  if (n >= 100) return Math.round(n).toLocaleString('en-US');
  if (n >= 10) return n.toFixed(1);
  return n.toPrecision(2);
}

// --- README: synthetic fulls next to normal fulls and AWS Backup ----------------------------------

/** Markers around the synthetic-fulls table in README.md (the test compares the text between them). */
export const SYNTHETIC_COST_TABLE_START = '<!-- synthetic-fulls-cost-table:start -->';
export const SYNTHETIC_COST_TABLE_END = '<!-- synthetic-fulls-cost-table:end -->';
/** Tree sizes of the synthetic-fulls table, GB. */
export const SYNTHETIC_TABLE_SIZES_GB = [50, 500] as const;

/** Dollars for a table cell: cents, `<$0.01` for a non-zero trifle (also the main tables of scripts/cost-table.ts). */
export function formatUsd(usd: number): string {
  if (usd === 0) return '$0';
  if (Math.abs(usd) < 0.005) return usd > 0 ? '<$0.01' : '>-$0.01';
  return usd < 0 ? `-$${(-usd).toFixed(2)}` : `$${usd.toFixed(2)}`;
}

/**
 * The README table of synthetic fulls: at {@link SYNTHETIC_TABLE_SIZES_GB}, normal fulls (`syntheticFulls=false`)
 * ({@link AFTER_ISSUE_12}: every full normal), with synthetic fulls ({@link WITH_SYNTHETIC_FULLS}) and
 * AWS Backup for EFS; where the money goes, and the quantities behind it. Markdown, without markers.
 */
export function renderSyntheticFullsCostTable(): string {
  const columns = SYNTHETIC_TABLE_SIZES_GB.map((treeGB) => ({
    treeGB,
    normal: monthlyCost({ ...AFTER_ISSUE_12, treeGB }),
    synthetic: monthlyCost({ ...WITH_SYNTHETIC_FULLS, treeGB }),
    awsBackup: awsBackupMonthlyCost({ ...AFTER_ISSUE_12, treeGB }),
  }));
  const usd = (bill: CostBreakdown, ...ids: CostItemId[]) =>
    bill.items.filter((item) => ids.includes(item.id)).reduce((sum, item) => sum + item.usd, 0);
  const FIXED: CostItemId[] = [
    'cloudwatch-alarms',
    'cloudwatch-metrics',
    'cloudwatch-dashboard',
    'cloudwatch-logs',
    'messaging',
  ];
  const row = (
    label: string,
    cell: (c: (typeof columns)[number], which: 'normal' | 'synthetic') => string,
    awsBackup: (c: (typeof columns)[number]) => string,
  ) =>
    `| ${label} | ${columns.map((c) => `${cell(c, 'normal')} | ${cell(c, 'synthetic')} | ${awsBackup(c)}`).join(' | ')} |`;
  const money = (label: string, ...ids: CostItemId[]) =>
    row(
      label,
      (c, which) => formatUsd(usd(c[which], ...ids)),
      () => '-',
    );
  const quantity = (label: string, value: (bill: CostBreakdown) => string) =>
    row(
      label,
      (c, which) => value(c[which]),
      () => '-',
    );
  const q = (bill: CostBreakdown, key: string) => bill.quantities[key] ?? 0;
  const s = WITH_SYNTHETIC_FULLS;
  const fullsPerMonth = DAYS_PER_MONTH / s.fullIntervalDays;

  const out = [
    `Generated from \`lib/cost-model.ts\` (\`renderSyntheticFullsCostTable\`): ${PRICE_REGION} list prices as of ${PRICES_AS_OF}, per month. ` +
      `${s.dailyChurnPercent}% of the tree changed a day, a backup a day, a full every ${s.fullIntervalDays} days, ` +
      `\`retentionDays\` ${s.retentionDays}, checksum quick verify and rotating deep verify; normal fulls = \`syntheticFulls=false\`. ` +
      `Synthetic fulls: \`normalFullEvery\` ${s.normalFullEvery}, so ${fmt(fullsPerMonth / s.normalFullEvery)} of the ` +
      `${fmt(fullsPerMonth)} fulls a month are normal.`,
    '',
    `| | ${columns.map((c) => `${c.treeGB} GB: normal fulls | ${c.treeGB} GB: synthetic fulls | ${c.treeGB} GB: AWS Backup`).join(' | ')} |`,
    `|---|${columns.map(() => '---:|---:|---:').join('|')}|`,
    money(
      'S3 storage (Standard-IA archives; manifests and staged members in Standard)',
      's3-ia-storage',
      's3-standard-storage',
    ),
    money(`EFS reads, Elastic throughput (${formatUsd(PRICES.efsElasticReadGB)}/GB)`, 'efs-elastic-reads'),
    money(
      `S3 Standard-IA retrieval, verify (${formatUsd(PRICES.s3StandardIaRetrievalGB)}/GB)`,
      's3-ia-retrieval',
    ),
    money('S3 Standard-IA retrieval, synthetic full copies', 's3-ia-retrieval-copies'),
    money('S3 requests (PUT/parts/copies, GET, LIST)', 's3-requests'),
    money('Lambda (arm64)', 'lambda'),
    money('CloudWatch, SES, SNS, SQS, Scheduler (same in both)', ...FIXED),
    row(
      `AWS Backup warm storage (${formatUsd(PRICES.awsBackupEfsWarmGBMonth)}/GB-month)`,
      () => '-',
      (c) => formatUsd(c.awsBackup.total),
    ),
    row(
      '**total, EFS Elastic throughput**',
      (c, which) => `**${formatUsd(c[which].total)}**`,
      (c) => `**${formatUsd(c.awsBackup.total)}** + EFS reads (not modeled)`,
    ),
    row(
      '**total, EFS Bursting throughput**',
      (c, which) => `**${formatUsd(c[which].total - usd(c[which], 'efs-elastic-reads'))}**`,
      (c) => `**${formatUsd(c.awsBackup.total)}**`,
    ),
    quantity('EFS read a month, GB', (b) => fmt(q(b, 'efsReadGB'))),
    quantity('Standard-IA read a month for synthetic fulls, GB', (b) => fmt(q(b, 'copyRetrievalGB'))),
    quantity('parts of one synthetic full: copies + uploads', (b) =>
      q(b, 'syntheticRuns') > 0
        ? `${fmt(q(b, 'syntheticCopyParts'))} + ${fmt(q(b, 'syntheticUploadParts'))}`
        : '-',
    ),
    quantity('one synthetic full: GB copied in S3 / fetched through Lambda / read from EFS', (b) =>
      q(b, 'syntheticRuns') > 0
        ? `${fmt(q(b, 'syntheticCopiedGB'))} / ${fmt(q(b, 'syntheticFetchedGB'))} / ${fmt(q(b, 'syntheticEfsReadGB'))}`
        : '-',
    ),
    quantity('Lambda time of one full, min (normal / synthetic)', (b) =>
      q(b, 'syntheticRuns') > 0
        ? `${fmt(q(b, 'fullRunMinutes'))} / ${fmt(q(b, 'syntheticRunMinutes'))}`
        : fmt(q(b, 'fullRunMinutes')),
    ),
  ];
  const big = columns.at(-1)!;
  const elastic = big.normal.total - big.synthetic.total;
  const bursting =
    big.synthetic.total -
    usd(big.synthetic, 'efs-elastic-reads') -
    (big.normal.total - usd(big.normal, 'efs-elastic-reads'));
  const clustered = monthlyCost({ ...WITH_SYNTHETIC_FULLS, treeGB: big.treeGB, changedFilesPerRun: 25 });
  // How much the folder entries matter: every change a rewrite in place (no folder mtime changes), or
  // every change an addition, deletion or rename.
  const fetchedWithShare = (addedOrRemovedShare: number, changedFilesPerRun: number) =>
    fmt(
      q(
        monthlyCost({ ...WITH_SYNTHETIC_FULLS, treeGB: big.treeGB, addedOrRemovedShare, changedFilesPerRun }),
        'syntheticFetchedGB',
      ),
    );
  const bigFolders = syntheticFullLayout({ ...WITH_SYNTHETIC_FULLS, treeGB: big.treeGB }).folders!;
  const invocation = (minutes: number) =>
    minutes > 15 ? 'more than one 15-minute invocation' : 'within one 15-minute invocation';
  const bigPlan = syntheticFullFigures({ ...WITH_SYNTHETIC_FULLS, treeGB: big.treeGB }).plan;
  const fetchedOnlyUsd =
    q(big.synthetic, 'syntheticRuns') *
    (((bigPlan?.fetchedIaBytes ?? 0) + SYNTHETIC_CHECK_BYTES) / GIB) *
    PRICES.s3StandardIaRetrievalGB;
  out.push(
    '',
    `At ${big.treeGB} GB, synthetic fulls ${elastic >= 0 ? 'save' : 'cost'} **${formatUsd(Math.abs(elastic))} a month with Elastic ` +
      `throughput** (EFS reads ${formatUsd(usd(big.normal, 'efs-elastic-reads'))} -> ${formatUsd(usd(big.synthetic, 'efs-elastic-reads'))}, ` +
      `for ${formatUsd(usd(big.synthetic, 's3-ia-retrieval-copies'))} of Standard-IA retrieval on the copied bytes) and ` +
      `${bursting >= 0 ? 'cost' : 'save'} **${formatUsd(Math.abs(bursting))} a month with Bursting or Provisioned throughput**, ` +
      'which do not charge per byte read: there they buy time and burst credits, not dollars (`syntheticFulls=false` turns them off).',
    '',
    'Assumptions of the synthetic fulls (inputs of `monthlyCost`; the layout is simulated file by file with a fixed seed, ' +
      'and the parts are planned by the rules of `lambda/core/synthetic/part-plan.ts`):',
    '',
    `- ${s.filesPerGB} files per GB, ${s.filesPerDirectory} per folder; each day's changes are single files at random places ` +
      `(\`changedFilesPerRun\` ${s.changedFilesPerRun}: the most copy runs broken), ${Math.round(s.addedOrRemovedShare * 100)}% of them ` +
      `(\`addedOrRemovedShare\` ${s.addedOrRemovedShare}) additions, deletions or renames, which change their folder's mtime ` +
      '(so does a rewrite through a temporary file and a rename, as rsync does by default). A folder entry whose mode and mtime ' +
      'are as in the previous full is copied with its neighbours; one that changed since is taken from the incremental of the ' +
      'day it last changed (or written fresh when that is today) and splits the copy run around it. Scattered changes touch ' +
      `${Math.round((100 * bigFolders.changed) / bigFolders.count)}% of the folders in a full interval at ${big.treeGB} GB, ` +
      'so this barely matters there: a synthetic full fetches ' +
      `${fetchedWithShare(0, s.changedFilesPerRun)} GB through the Lambda with \`addedOrRemovedShare\` 0 (every change a rewrite in place), ` +
      `${fetchedWithShare(1, s.changedFilesPerRun)} GB with 1; with changes 25 files at a time it matters more ` +
      `(${fetchedWithShare(0, 25)} GB with 0, ${fetchedWithShare(1, 25)} GB with 1). A synthetic full reads from EFS the files changed since ` +
      'the last backup (and any whose mode changed, whose archived tar header holds the old mode: not modeled).',
    '- Runs of at least 5 MiB from sources over 5 MB are copied (UploadPartCopy, parts up to 5 GiB), shorter ones fetched ' +
      'with ranged GETs into upload parts of 8 MiB (at least the archive / 10,000); above 10,000 parts the upload parts grow, then the copy threshold doubles until the plan fits, ' +
      `so more bytes are fetched: at ${big.treeGB} GB ${fmt(q(big.synthetic, 'syntheticFetchedGB'))} GB of ${big.treeGB} ` +
      `(${fmt(q(clustered, 'syntheticFetchedGB'))} GB when changes come ${25} files at a time, ` +
      `${formatUsd(clustered.total)} in all instead of ${formatUsd(big.synthetic.total)}).`,
    '- Every byte copied or fetched out of a Standard-IA archive is billed as Standard-IA retrieval ' +
      `(${formatUsd(PRICES.s3StandardIaRetrievalGB)}/GB): the S3 pricing page bills retrieval per GB read out of the ` +
      'class, and this model counts server-side copies as reads (not confirmed on a bill; if they were free, the line ' +
      `at ${big.treeGB} GB would be ${formatUsd(fetchedOnlyUsd)}). UploadPartCopy and UploadPart are Standard-IA PUTs; the staged ` +
      `fresh members are S3 Standard for ${STAGING_BILLED_DAYS} days.`,
    `- Lambda: the fresh files compressed as in a normal full, fetched bytes moved at ${s.syntheticFetchMBPerSecond} MB/s, ` +
      `${s.syntheticPartRequestSeconds} s per part request and ${s.rangedGetSeconds} s per ranged GET, ${SYNTHETIC_CONCURRENCY} at a time; ` +
      'S3 copies the rest server-side (not measured on AWS). A synthetic full writes the same tar.gz as a normal one: ' +
      'the same storage and verify reads.' +
      ` At ${big.treeGB} GB a synthetic full takes ~${fmt(q(big.synthetic, 'syntheticRunMinutes'))} min of Lambda time ` +
      `(${invocation(q(big.synthetic, 'syntheticRunMinutes'))}), ~${fmt(q(clustered, 'syntheticRunMinutes'))} min with changes ` +
      `25 files at a time (${invocation(q(clustered, 'syntheticRunMinutes'))}). A synthetic full is one archive and cannot be ` +
      'split over shards: where it does not fit, read the normal-fulls column.',
    `- AWS Backup for EFS: the first full plus each day's changes for ${s.retentionDays} days at ` +
      `${formatUsd(PRICES.awsBackupEfsWarmGBMonth)}/GB-month warm storage; a restore costs ` +
      `${formatUsd(RESTORE_PRICES.awsBackupEfsWarmRestoreGB)}/GB (not in the monthly figures); what it reads from ` +
      'EFS is not modeled.',
  );
  return out.join('\n');
}

/** `readme` with the text between the synthetic-fulls markers replaced by the generated table. */
export function replaceSyntheticFullsCostTable(
  readme: string,
  table = renderSyntheticFullsCostTable(),
): string {
  const start = readme.indexOf(SYNTHETIC_COST_TABLE_START);
  const end = readme.indexOf(SYNTHETIC_COST_TABLE_END);
  if (start < 0 || end < start) {
    throw new Error(
      `README.md has no "${SYNTHETIC_COST_TABLE_START}" ... "${SYNTHETIC_COST_TABLE_END}" pair: add both to the cost section`,
    );
  }
  return `${readme.slice(0, start + SYNTHETIC_COST_TABLE_START.length)}\n${table}\n${readme.slice(end)}`;
}
