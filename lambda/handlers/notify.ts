import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { SESv2Client, SendEmailCommand } from '@aws-sdk/client-sesv2';
import type { Context } from 'aws-lambda';
import { type HealthReport, runHealthChecks } from '../core/checker/health.js';
import { type Clock, systemClock } from '../core/deps.js';
import { errorMessage } from '../core/errors.js';
import {
  type AlarmStateChange,
  type DestinationRecord,
  type DigestCheck,
  type DigestHealth,
  type DigestInput,
  type EmailContext,
  type EmailLocations,
  formatAlarm,
  formatDigest,
  formatInvocationFailure,
  formatInvocationSuccess,
  isKnownTimeZone,
  type LastGoodBackup,
  type NotificationEmail,
} from '../core/reports/notify-format.js';
import {
  type BackupListing,
  type LastRun,
  listBackups,
  readStoreStatus,
  type StoreStatus,
} from '../core/repository/status.js';
import { openHandlerStore, readHandlerConfig } from './config.js';
import { HandlerConfigError } from './errors.js';
import { invocationMetrics } from './metrics.js';
import { invocationLogger } from './runtime.js';

/**
 * Sends the stack's notification emails through SES v2 (the function runs outside the VPC).
 *
 * Events, told apart by shape:
 * - an SNS event whose messages are CloudWatch alarm state changes (alarm topic subscription);
 * - a Lambda asynchronous-invocation destination record of the backup/restore/verify functions,
 *   directly or wrapped in an EventBridge event (`detail`): failures always mail, successes only for
 *   a restore (see `formatInvocationSuccess`);
 * - `{"kind":"digest"}`: the weekly digest (a schedule).
 *
 * It never throws for a failed send: the callers invoke it asynchronously, so a throw would only make
 * Lambda (and SNS) retry against an SES that is failing, multiplying the failures, while the backup
 * itself has long finished. Instead the failure is logged, counted in the `NotificationFailures` EMF
 * metric (namespace `MediaBackup`, dimension `Stack`), which an alarm watches, and returned as
 * `{status: 'FAILED'}`. Events it does not recognise are logged and return `{status: 'IGNORED'}`.
 */

export type NotificationKind = 'invocation-failure' | 'invocation-success' | 'alarm' | 'digest';

export type NotifyResult =
  | { readonly status: 'SENT'; readonly kind: NotificationKind; readonly messageIds: readonly string[] }
  /** Recognised, but nothing worth an email (a nightly backup's success). */
  | { readonly status: 'SKIPPED'; readonly kind: NotificationKind; readonly reason: string }
  | { readonly status: 'FAILED'; readonly kind: NotificationKind; readonly error: string }
  | { readonly status: 'IGNORED'; readonly reason: string };

/** Settings from the environment. */
export interface NotifyConfig {
  /** `SENDER_EMAIL`: an SES-verified identity (address or domain). */
  readonly senderEmail: string;
  /** `NOTIFICATION_EMAIL`: one or more recipients, comma-separated. */
  readonly recipients: readonly string[];
  /** `STACK_NAME`: subject prefix and the metric's `Stack` dimension. */
  readonly stackName: string;
  /** `AWS_REGION`: SES region (Lambda sets it), and the console links' fallback. */
  readonly region: string;
  /** `SES_ENDPOINT`: a local SES (tests); unset in AWS. */
  readonly sesEndpoint: string | undefined;
  /** `TIME_ZONE`: the stack's IANA zone; every time in the emails is shown in it, with UTC beside it. */
  readonly timeZone: string;
}

/** Also in lib/metrics.ts (`METRIC_NAMES.notify`), which the stack's alarm uses. */
export const NOTIFICATION_FAILURES_METRIC = 'NotificationFailures';
const DEFAULT_STACK_NAME = 'media-backup';
/** Reading the store for "last good backup" must not eat the time the email needs. */
const STORE_READ_BUDGET_MS = 10_000;
/** The "no committed backup in 48 h" alarm's threshold (README, Monitoring and email), for the digest's health. */
const STALE_AFTER_HOURS = 48;

type Env = Readonly<Record<string, string | undefined>>;

function value(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  return raw ? raw : undefined;
}

/** Reads and checks the environment; messages name the variable. */
export function readNotifyConfig(env: Env = process.env): NotifyConfig {
  const senderEmail = value(env, 'SENDER_EMAIL');
  if (senderEmail === undefined || !senderEmail.includes('@')) {
    throw new HandlerConfigError(
      `environment variable SENDER_EMAIL must be the SES-verified address the emails are sent from (got ${JSON.stringify(env.SENDER_EMAIL ?? null)})`,
    );
  }
  const recipients = (value(env, 'NOTIFICATION_EMAIL') ?? '')
    .split(',')
    .map((address) => address.trim())
    .filter((address) => address !== '');
  if (recipients.length === 0 || recipients.some((address) => !address.includes('@'))) {
    throw new HandlerConfigError(
      `environment variable NOTIFICATION_EMAIL must be one or more email addresses, comma-separated (got ${JSON.stringify(env.NOTIFICATION_EMAIL ?? null)})`,
    );
  }
  const region = value(env, 'AWS_REGION');
  if (region === undefined) {
    throw new HandlerConfigError(
      'environment variable AWS_REGION is not set: it names the SES region (Lambda sets it)',
    );
  }
  const timeZone = value(env, 'TIME_ZONE') ?? 'UTC';
  if (!isKnownTimeZone(timeZone)) {
    throw new HandlerConfigError(
      `environment variable TIME_ZONE must be an IANA time zone such as Europe/Berlin or UTC (got ${JSON.stringify(timeZone)})`,
    );
  }
  return {
    senderEmail,
    recipients,
    stackName: value(env, 'STACK_NAME') ?? DEFAULT_STACK_NAME,
    region,
    sesEndpoint: value(env, 'SES_ENDPOINT'),
    timeZone,
  };
}

/**
 * The real mount, media folder and store the advice names, from the same variables the backup
 * functions read (EFS_MOUNT, MEDIA_PATH, RESTORES_PATH, BUCKET_NAME, BACKUP_PREFIX). Undefined when
 * they are not usable: the advice then names the variables.
 */
export function emailLocations(env: Env = process.env): EmailLocations | undefined {
  try {
    const config = readHandlerConfig(env);
    return {
      mount: config.efsMount,
      mediaPath: config.mediaPath,
      restoresPath: config.restoresPath,
      store: `s3://${config.bucketName}/${config.backupPrefix}`,
    };
  } catch {
    return undefined;
  }
}

function isRecord(input: unknown): input is Record<string, unknown> {
  return typeof input === 'object' && input !== null && !Array.isArray(input);
}

const CONDITIONS = new Set(['Success', 'RetriesExhausted', 'EventAgeExceeded']);

function isDestinationRecord(input: unknown): input is DestinationRecord {
  if (!isRecord(input) || !isRecord(input.requestContext)) return false;
  const { functionArn, condition } = input.requestContext;
  return typeof functionArn === 'string' && typeof condition === 'string' && CONDITIONS.has(condition);
}

function isAlarmStateChange(input: unknown): input is AlarmStateChange {
  return isRecord(input) && typeof input.AlarmName === 'string' && typeof input.NewStateValue === 'string';
}

interface SnsAlarm {
  readonly alarm: AlarmStateChange;
  readonly topicArn: string | undefined;
}

type Classified =
  | { readonly kind: 'alarm'; readonly alarms: readonly SnsAlarm[] }
  | { readonly kind: 'invocation'; readonly record: DestinationRecord }
  | { readonly kind: 'digest' }
  | { readonly kind: 'unknown'; readonly reason: string };

/** Tells the event kinds apart by shape; never throws. */
export function classifyNotifyEvent(event: unknown): Classified {
  if (!isRecord(event)) return { kind: 'unknown', reason: 'the event is not a JSON object' };
  if (Array.isArray(event.Records)) {
    const alarms: SnsAlarm[] = [];
    for (const record of event.Records) {
      const sns = isRecord(record) && isRecord(record.Sns) ? record.Sns : undefined;
      if (typeof sns?.Message !== 'string') continue;
      let message: unknown;
      try {
        message = JSON.parse(sns.Message);
      } catch {
        continue;
      }
      if (isAlarmStateChange(message)) {
        alarms.push({
          alarm: message,
          topicArn: typeof sns.TopicArn === 'string' ? sns.TopicArn : undefined,
        });
      }
    }
    return alarms.length > 0
      ? { kind: 'alarm', alarms }
      : { kind: 'unknown', reason: 'no SNS record holds a CloudWatch alarm state change' };
  }
  if (isDestinationRecord(event)) return { kind: 'invocation', record: event };
  // A destination of type EventBridge wraps the same record in `detail`.
  if (isDestinationRecord(event.detail)) return { kind: 'invocation', record: event.detail };
  if (event.kind === 'digest') return { kind: 'digest' };
  return {
    kind: 'unknown',
    reason:
      'not an SNS alarm notification, a Lambda destination record, nor {"kind":"digest"} (got keys ' +
      `${JSON.stringify(Object.keys(event).slice(0, 10))})`,
  };
}

type PowertoolsLogger = ReturnType<typeof invocationLogger>['powertools'];

/** Resolves to `fallback` when `work` takes longer than `ms`; `work` is left to settle on its own. */
async function within<T>(work: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Reads the backup store (BUCKET_NAME / BACKUP_PREFIX). Any failure (unset variables, S3 errors,
 * slowness) is logged and yields undefined: the email then says "unknown" rather than not going out.
 */
async function readStore<T>(
  logger: PowertoolsLogger,
  context: Context,
  read: (store: ReturnType<typeof openHandlerStore>) => Promise<T>,
): Promise<T | undefined> {
  const budgetMs = Math.max(1_000, Math.min(STORE_READ_BUDGET_MS, context.getRemainingTimeInMillis() / 3));
  let store: ReturnType<typeof openHandlerStore> | undefined;
  try {
    store = openHandlerStore(readHandlerConfig());
    const outcome = await within(
      read(store).then((data) => ({ data })),
      budgetMs,
      undefined,
    );
    if (outcome === undefined) {
      logger.warn('reading the backup store took too long; the email says "unknown"', { budgetMs });
      return undefined;
    }
    return outcome.data;
  } catch (error) {
    logger.warn('could not read the backup store; the email says "unknown"', {
      error: errorMessage(error),
      errorName: (error as Error)?.name,
    });
    return undefined;
  } finally {
    store?.client.destroy();
  }
}

async function lastGoodBackup(logger: PowertoolsLogger, context: Context): Promise<LastGoodBackup> {
  const backups = await readStore(logger, context, listBackups);
  if (backups === undefined) return 'unknown';
  const latest = backups.at(-1);
  return latest ? { backupId: latest.backupId, createdAt: latest.createdAt } : 'none';
}

/**
 * Health for the digest from the store's status alone (when the monitor's checks cannot run): the
 * last run and the age of the latest backup, the facts the monitor alarms on first.
 */
export function digestHealth(status: StoreStatus): DigestHealth {
  const { lastRun, latestBackup, hoursSinceLastBackup } = status;
  const checks: DigestCheck[] = [];
  if (lastRun === null) {
    checks.push({
      name: 'last-run',
      status: 'critical',
      message: 'No backup run is recorded (status/last-run.json is missing or unreadable).',
    });
  } else if (lastRun.status === 'FAILED') {
    checks.push({
      name: 'last-run',
      status: 'critical',
      message: `The last backup run failed (finished ${lastRun.finishedAt})${lastRun.error ? `: ${lastRun.error.name}: ${lastRun.error.message}` : ''}.`,
    });
  } else {
    checks.push({
      name: 'last-run',
      status: 'ok',
      message: `The last backup run succeeded (finished ${lastRun.finishedAt}).`,
    });
  }
  if (latestBackup === null) {
    checks.push({
      name: 'backup-age',
      status: 'critical',
      message: 'The store holds no committed backup: nothing can be restored.',
    });
  } else if (hoursSinceLastBackup !== null && hoursSinceLastBackup > STALE_AFTER_HOURS) {
    checks.push({
      name: 'backup-age',
      status: 'critical',
      message: `The latest committed backup (${latestBackup.backupId}) is ${hoursSinceLastBackup} hours old, more than ${STALE_AFTER_HOURS}.`,
    });
  } else {
    checks.push({
      name: 'backup-age',
      status: 'ok',
      message: `The latest committed backup (${latestBackup.backupId}) is ${hoursSinceLastBackup} hours old.`,
    });
  }
  return { status: worst(checks), checks };
}

/** The monitor's checks as the digest shows them. */
export function reportHealth(report: HealthReport): DigestHealth {
  return {
    status: report.status,
    checks: report.checks.map((c) => ({ name: c.name, status: c.status, message: c.message })),
  };
}

function worst(checks: readonly DigestCheck[]): DigestHealth['status'] {
  if (checks.some((c) => c.status === 'critical')) return 'critical';
  return checks.some((c) => c.status === 'warning') ? 'warning' : 'ok';
}

async function digestInput(logger: PowertoolsLogger, context: Context, clock: Clock): Promise<DigestInput> {
  const now = clock.now();
  // Two reads, each within its own time budget: slow health checks (a large manifest) fall back to
  // the status object's facts instead of turning the whole digest into "store unreadable".
  const [read, report] = await Promise.all([
    readStore(logger, context, async (store) => {
      const [backups, status] = await Promise.all([listBackups(store), readStoreStatus(store, now)]);
      return { backups, status, url: store.url };
    }),
    // The hourly monitor's checks, the verdicts its alarms are built on; without the EFS usage (the
    // notify function has no EFS permission) and without re-reading any archive.
    readStore(logger, context, (store) => runHealthChecks({ store, clock, logger }, { hashLatest: false })),
  ]);
  if (read === undefined) return { now, backups: 'unknown' };
  if (report === undefined)
    logger.warn("health checks did not finish; the digest shows the status object's facts");
  return {
    now,
    backups: read.backups as readonly BackupListing[],
    health: report ? reportHealth(report) : digestHealth(read.status),
    store: read.url,
  };
}

/** status/last-run.json for an alarm mail; undefined when the store cannot be read. */
async function lastRunFor(logger: PowertoolsLogger, context: Context): Promise<LastRun | null | undefined> {
  const status = await readStore(logger, context, (store) => readStoreStatus(store, systemClock.now()));
  return status?.lastRun;
}

export const handler = async (event: unknown, context: Context): Promise<NotifyResult> => {
  const { powertools: logger } = invocationLogger(context, 'notify');
  const classified = classifyNotifyEvent(event);
  if (classified.kind === 'unknown') {
    // Not counted as a failure: nothing was asked of SES. The warning shows a wiring mistake.
    logger.warn('event ignored', { reason: classified.reason });
    return { status: 'IGNORED', reason: classified.reason };
  }
  const kind: NotificationKind =
    classified.kind === 'invocation'
      ? classified.record.requestContext.condition === 'Success'
        ? 'invocation-success'
        : 'invocation-failure'
      : classified.kind;
  const metrics = invocationMetrics();
  try {
    let config: NotifyConfig;
    try {
      config = readNotifyConfig();
    } catch (error) {
      return failed(logger, metrics, kind, error, 'notification not sent: the function is misconfigured');
    }
    const ctx: EmailContext = {
      stackName: config.stackName,
      timeZone: config.timeZone,
      locations: emailLocations(),
    };

    let emails: NotificationEmail[];
    if (classified.kind === 'alarm') {
      // An alarm about a failed backup carries the run's error and the advice for it.
      const lastRun = classified.alarms.some(({ alarm }) => alarm.NewStateValue === 'ALARM')
        ? await lastRunFor(logger, context)
        : undefined;
      emails = classified.alarms.map(({ alarm, topicArn }) =>
        formatAlarm(alarm, { topicArn, defaultRegion: config.region, lastRun }, ctx),
      );
    } else if (classified.kind === 'digest') {
      emails = [formatDigest(await digestInput(logger, context, systemClock), ctx)];
    } else if (kind === 'invocation-success') {
      const email = formatInvocationSuccess(classified.record, ctx);
      if (email === null) {
        logger.info('success record: no email for this operation', {
          functionArn: classified.record.requestContext.functionArn,
        });
        metrics.addMetric(NOTIFICATION_FAILURES_METRIC, MetricUnit.Count, 0);
        return { status: 'SKIPPED', kind, reason: 'only a finished restore is mailed on success' };
      }
      emails = [email];
    } else {
      const lastGood = await lastGoodBackup(logger, context);
      emails = [formatInvocationFailure(classified.record, lastGood, ctx)];
    }

    const ses = new SESv2Client({ region: config.region, endpoint: config.sesEndpoint });
    try {
      const messageIds: string[] = [];
      for (const email of emails) {
        try {
          const response = await ses.send(
            new SendEmailCommand({
              FromEmailAddress: config.senderEmail,
              Destination: { ToAddresses: [...config.recipients] },
              Content: {
                Simple: {
                  Subject: { Data: email.subject, Charset: 'UTF-8' },
                  Body: {
                    Text: { Data: email.text, Charset: 'UTF-8' },
                    Html: { Data: email.html, Charset: 'UTF-8' },
                  },
                },
              },
            }),
          );
          messageIds.push(response.MessageId ?? '');
          logger.info('notification sent', { kind, subject: email.subject, messageId: response.MessageId });
        } catch (error) {
          // One failed email fails the invocation's result; the other emails still go out.
          return failed(logger, metrics, kind, error, 'notification not sent: SES refused or failed', {
            subject: email.subject,
            sentBefore: messageIds.length,
          });
        }
      }
      metrics.addMetric(NOTIFICATION_FAILURES_METRIC, MetricUnit.Count, 0);
      return { status: 'SENT', kind, messageIds };
    } finally {
      ses.destroy();
    }
  } catch (error) {
    // A formatting bug or anything unforeseen: same treatment, never a retry loop.
    return failed(logger, metrics, kind, error, 'notification not sent: unexpected error');
  } finally {
    metrics.publishStoredMetrics();
  }
};

function failed(
  logger: PowertoolsLogger,
  metrics: Metrics,
  kind: NotificationKind,
  error: unknown,
  message: string,
  extra: Record<string, unknown> = {},
): NotifyResult {
  logger.error(message, {
    kind,
    ...extra,
    errorName: (error as Error)?.name,
    error: errorMessage(error),
  });
  metrics.addMetric(NOTIFICATION_FAILURES_METRIC, MetricUnit.Count, 1);
  return { status: 'FAILED', kind, error: errorMessage(error) };
}
