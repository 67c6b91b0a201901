/**
 * Monthly AWS cost of a media-backup deployment, from list prices, for a given tree size and policy;
 * and the cost of AWS Backup for EFS under the same retention, for comparison.
 *
 * Pure and dependency-free: `scripts/cost-table.ts` turns it into the README's cost tables (`npm run
 * costs`), and `test/unit/cost-model.test.ts` checks its arithmetic and that the README matches.
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

  // https://aws.amazon.com/backup/pricing/ (Amazon EFS)
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
  const standardGBMonth = (manifestGB + smallObjectGB) * billedDays; // one backup a day, same lifetime
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

  // --- EFS: a full reads the tree, an incremental the changed files
  const efsReadGB = fullRuns * i.treeGB + incrementalRuns * i.treeGB * churn;
  const efsUsd = i.efsThroughputMode === 'elastic' ? efsReadGB * p.efsElasticReadGB : 0;

  // --- Lambda
  const vcpus = (mb: number) => mb / 1769;
  const backupSecondsPerGB = Math.max(
    i.backupCpuSecondsPerGB / (vcpus(i.backupMemoryMB) * i.backupParallelEfficiency),
    1000 / i.backupMaxMBPerSecond,
  );
  const scanSeconds = (files * i.scanMsPerFile) / 1000;
  const backupSeconds =
    (fullRuns * i.treeGB + incrementalRuns * i.treeGB * churn) * backupSecondsPerGB +
    backupRuns * scanSeconds;
  const fullRunMinutes = (i.treeGB * backupSecondsPerGB + scanSeconds) / 60;
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
  const iaPuts =
    fullRuns * uploadRequests(fullGB * GIB) + incrementalRuns * uploadRequests(incrementalGB * GIB);
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
    ((backupRuns * standardPutsPerBackup + lockRenewals + verifyStatusPuts + lists) / 1000) *
      p.s3StandardPutPer1000 +
    (standardGets / 1000) * p.s3StandardGetPer1000 +
    (iaGets / 1000) * p.s3StandardIaGetPer1000;

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
      label: 'S3 Standard storage (manifests, metadata)',
      usd: standardGBMonth * p.s3StandardGBMonth,
      detail: `${fmt(manifestGB * 1024)} MB manifest a day x ${billedDays} days = ${fmt(standardGBMonth)} GB-month x $${p.s3StandardGBMonth}`,
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
      id: 'lambda',
      label: 'Lambda (arm64 GB-seconds, requests)',
      usd: lambdaUsd,
      detail: `${fmt(gbSeconds)} GB-s x $${p.lambdaArmGBSecond} + ${fmt(invocations)} requests; a full takes ~${fmt(fullRunMinutes)} min at ${i.backupMemoryMB} MB`,
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
      detail: `${fmt(efsReadGB)} GB read x $${p.efsElasticReadGB} (Bursting: $0)`,
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
  if (n >= 100) return Math.round(n).toLocaleString('en-US');
  if (n >= 10) return n.toFixed(1);
  return n.toPrecision(2);
}
