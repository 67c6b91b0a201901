import { fileURLToPath } from 'node:url';
import { type CfnElement, Duration, Stack, TimeZone, Validations } from 'aws-cdk-lib';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import { LambdaDestination, SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Schedule, ScheduleExpression } from 'aws-cdk-lib/aws-scheduler';
import { EmailIdentity, Identity, type IEmailIdentity } from 'aws-cdk-lib/aws-ses';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription, LambdaSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { parseTimeOfDay, WEEKDAYS, type Weekday } from '../config.js';
import { grantStoreRead } from './backup-bucket.js';
import { BackupFunction } from './backup-function.js';
import type { ScheduledInvoker } from './schedules.js';

const NOTIFY_ENTRY = fileURLToPath(new URL('../../lambda/handlers/notify.ts', import.meta.url));
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Properties of {@link Notifications}. */
export interface NotificationsProps {
  /**
   * Where alarm emails go: an SNS email subscription (raw alarm text, works even when SES does
   * not) and the notify function's formatted emails. Without it only the topic is created.
   *
   * @default - no email, no notify function, no SES identity
   */
  readonly notificationEmail?: string;

  /**
   * The address the notify function sends from; an SES email identity is created for it (SES mails
   * a verification link to it after deploy).
   *
   * @default - `notificationEmail`
   */
  readonly senderEmail?: string;

  /**
   * The sender address is already an SES identity in this account and region: grant sending from it
   * instead of creating an `AWS::SES::EmailIdentity` (whose creation fails with AlreadyExists then).
   *
   * @default false
   */
  readonly useExistingSesIdentity?: boolean;

  /**
   * Subscribe `notificationEmail` to the topic directly as well: raw SNS alarm text, a second mail per
   * alarm that still arrives when SES or the notify function fails.
   *
   * @default false
   */
  readonly rawAlarmEmail?: boolean;

  /** The backup bucket: the notify function reads the store for "last good backup" and the digest. */
  readonly bucket: IBucket;

  /**
   * Key prefix of the backup store in `bucket`.
   *
   * @default 'media-backups/'
   */
  readonly backupPrefix?: string;

  /**
   * The bucket's customer-managed key (its id is handed to the function as `KMS_KEY_ID`).
   *
   * @default - SSE-S3
   */
  readonly encryptionKey?: IKey;

  /**
   * Functions whose failed asynchronous runs are mailed by the notify function (restore, verify). The
   * backup function is not one of them: its failures are the `<stack>-failing` composite alarm's.
   */
  readonly reportFailuresOf: readonly BackupFunction[];

  /** Keeps the notify function's own failures (its on-failure destination). */
  readonly deadLetterQueue: IQueue;

  /** Builds the weekly digest's Scheduler target (the backup schedules' role, retries and queue). */
  readonly scheduler: ScheduledInvoker;

  /**
   * Invoke the notify function with `{"kind":"digest"}` once a week.
   *
   * @default true
   */
  readonly weeklyDigest?: boolean;

  /**
   * Day of the weekly digest.
   *
   * @default 'MON'
   */
  readonly digestDay?: Weekday;

  /**
   * Local time of the weekly digest, `HH:MM`.
   *
   * @default '09:00'
   */
  readonly digestTime?: string;

  /**
   * IANA time zone of the digest schedule and of every time in the emails (`TIME_ZONE`).
   *
   * @default 'UTC'
   */
  readonly timeZone?: string;

  /**
   * Extra environment of the notify function (`STACK_NAME`, log level, and `EFS_MOUNT`, `MEDIA_PATH`,
   * `RESTORES_PATH` so that the emails' advice names the real folders).
   *
   * @default - none
   */
  readonly environment?: Readonly<Record<string, string>>;

  /**
   * Log retention of the notify function.
   *
   * @default RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: RetentionDays;

  /**
   * The notify handler module.
   *
   * @default - lambda/handlers/notify.ts
   */
  readonly entry?: string;
}

/**
 * Where media-backup's bad news goes: the one SNS topic every alarm publishes to (TLS only), an email
 * subscription (opt-in), and the notify function (outside the VPC: it needs SES and S3 only) that
 * turns alarm messages, failed-run records and the weekly digest into readable SES emails.
 *
 * Failed asynchronous runs of `reportFailuresOf` go to the notify function only (on-failure
 * destination, no retry; the record carries the request): one failure, one mail. A copy in the
 * dead-letter queue would set off its alarm and a second mail. The notify function's own failures
 * (after Lambda's two retries) land in the queue, whose alarm reaches the topic.
 */
export class Notifications extends Construct {
  /** The topic every media-backup alarm publishes to. */
  public readonly topic: Topic;
  /** Sends the emails; absent without `notificationEmail`. */
  public readonly notifyFunction?: BackupFunction;
  /** The SES identity of the sender address (created, or imported by name); absent without `notificationEmail`. */
  public readonly senderIdentity?: IEmailIdentity;
  /** The weekly digest schedule; absent without `notificationEmail` or with `weeklyDigest` false. */
  public readonly weeklyDigest?: Schedule;

  constructor(scope: Construct, id: string, props: NotificationsProps) {
    super(scope, id);
    const { notificationEmail } = props;
    const senderEmail = props.senderEmail ?? notificationEmail;
    const digestDay = props.digestDay ?? 'MON';
    const digestTime = props.digestTime ?? '09:00';
    const time = parseTimeOfDay(digestTime);
    if (notificationEmail !== undefined && !EMAIL.test(notificationEmail)) {
      throw new Error(
        `\`notificationEmail\` must be an email address (got ${JSON.stringify(notificationEmail)})`,
      );
    }
    if (props.senderEmail !== undefined && notificationEmail === undefined) {
      throw new Error('`senderEmail` needs `notificationEmail`');
    }
    if (senderEmail !== undefined && !EMAIL.test(senderEmail)) {
      throw new Error(`\`senderEmail\` must be an email address (got ${JSON.stringify(senderEmail)})`);
    }
    if (!time) {
      throw new Error(`\`digestTime\` must be a time of day HH:MM (got ${JSON.stringify(digestTime)})`);
    }
    if (!WEEKDAYS.includes(digestDay)) {
      throw new Error(
        `\`digestDay\` must be one of ${WEEKDAYS.join(', ')} (got ${JSON.stringify(digestDay)})`,
      );
    }

    this.topic = new Topic(this, 'AlarmTopic', {
      displayName: 'media-backup alarms',
      enforceSSL: true,
    });
    Validations.of(this.topic).acknowledge({
      id: 'AwsSolutions-SNS2',
      reason:
        'The topic carries only alarm state changes, no backup data; CloudWatch cannot publish to a topic ' +
        'under the AWS-managed SNS key, and a customer key for alarm text is not worth its monthly cost',
    });

    if (notificationEmail === undefined || senderEmail === undefined) return;

    // One failure, one formatted mail (from the notify function); the raw SNS text is opt-in.
    if (props.rawAlarmEmail ?? false) this.topic.addSubscription(new EmailSubscription(notificationEmail));

    this.senderIdentity =
      (props.useExistingSesIdentity ?? false)
        ? EmailIdentity.fromEmailIdentityName(this, 'SenderIdentity', senderEmail)
        : new EmailIdentity(this, 'SenderIdentity', { identity: Identity.email(senderEmail) });

    const notify = new BackupFunction(this, 'Notify', {
      entry: props.entry ?? NOTIFY_ENTRY,
      description: 'media-backup: email failed runs, alarms and the weekly digest through SES',
      timeout: Duration.minutes(2),
      // The digest runs the monitor's health checks (manifests in memory): the monitor's memory.
      memorySize: 512,
      ...(props.logRetention === undefined ? {} : { logRetention: props.logRetention }),
      // No VPC: SES has no gateway endpoint, and the demo VPC has no NAT.
      environment: {
        ...props.environment,
        POWERTOOLS_SERVICE_NAME: 'media-backup-notify',
        NOTIFICATION_EMAIL: notificationEmail,
        BACKUP_PREFIX: props.backupPrefix ?? 'media-backups/',
        // Every time in the emails is shown in the stack's zone, with UTC beside it.
        TIME_ZONE: props.timeZone ?? 'UTC',
        ...(props.encryptionKey ? { KMS_KEY_ID: props.encryptionKey.keyArn } : {}),
      },
    });
    this.notifyFunction = notify;
    const identity = this.senderIdentity;
    // grantSendEmail: ses:SendEmail and ses:SendRawEmail on this identity's ARN only.
    notify.addEnvironmentAndGrant('SENDER_EMAIL', senderEmail, (fn) => identity.grantSendEmail(fn));
    // Read only: the emails' store status and health report (which lists a killed run's multipart
    // uploads) read the store; nothing is written.
    notify.addEnvironmentAndGrant('BUCKET_NAME', props.bucket.bucketName, (fn) =>
      grantStoreRead(fn, props.bucket, props.backupPrefix ?? 'media-backups/', props.encryptionKey, {
        multipartUploads: true,
      }),
    );

    this.topic.addSubscription(new LambdaSubscription(notify.function));
    // SNS, the destinations and Scheduler all invoke asynchronously: two retries for a transient SES
    // error, then the queue (whose alarm still reaches the email subscription).
    notify.function.configureAsyncInvoke({
      retryAttempts: 2,
      maxEventAge: Duration.hours(6),
      onFailure: new SqsDestination(props.deadLetterQueue),
    });

    const notifyId = Stack.of(this).getLogicalId(notify.function.node.defaultChild as CfnElement);
    for (const fn of props.reportFailuresOf) {
      fn.function.configureAsyncInvoke({
        // Not retried: a repeated backup would find the crashed run's lock or time out again, and a
        // repeated restore could swap twice. The next scheduled run catches up.
        retryAttempts: 0,
        maxEventAge: Duration.hours(6),
        onFailure: new LambdaDestination(notify.function),
      });
      Validations.of(fn.function).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${notifyId}.Arn>:*]`,
        reason:
          'CDK grant for the on-failure destination covers the notify function and its versions (ARN:*); ' +
          'the role can invoke nothing else',
      });
    }

    if (props.weeklyDigest ?? true) {
      const timeZone = TimeZone.of(props.timeZone ?? 'UTC');
      this.weeklyDigest = new Schedule(this, 'WeeklyDigest', {
        description: `media-backup: weekly digest email, ${digestDay} ${digestTime} ${timeZone.timezoneName}`,
        schedule: ScheduleExpression.cron({
          minute: String(time.minute),
          hour: String(time.hour),
          weekDay: digestDay,
          timeZone,
        }),
        target: props.scheduler.invokeTarget(notify.function, { kind: 'digest' }),
      });
    }
  }
}
