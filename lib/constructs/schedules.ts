import { type CfnElement, Duration, Stack, TimeZone, Validations } from 'aws-cdk-lib';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import {
  type IScheduleTarget,
  Schedule,
  ScheduleExpression,
  ScheduleTargetInput,
} from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { parseTimeOfDay, WEEKDAYS, type Weekday } from '../config.js';
import { DEFAULT_BACKUP_TIME, localTimeConflicts } from '../local-time.js';

/** Properties of {@link BackupSchedules}. */
export interface BackupSchedulesProps {
  /** The backup function; receives `{"type":"auto"}` or `{"type":"full"}`. */
  readonly backupFunction: IFunction;

  /** The verify function; receives `{"backup":"latest","deep":true}` once a week. */
  readonly verifyFunction: IFunction;

  /**
   * Local start time of the daily backup, `HH:MM` (24 h). Refused when it falls into a
   * daylight-saving gap or repeat of `timeZone` within a year of `now` (Scheduler skips a run whose
   * time does not exist). 04:00 is clear of every zone's changes in the current zone data; 02:00 and
   * 03:30 are not (US and most of Europe, and Eastern Europe).
   *
   * @default '04:00'
   */
  readonly backupTime?: string;

  /**
   * The moment the daylight-saving check of `backupTime` (and the verify time) starts from; it looks
   * 366 days ahead.
   *
   * @default - the time of synth
   */
  readonly now?: Date;

  /**
   * The day whose backup is a `full`; the other six days run `auto` at the same time, so two
   * backups never start together.
   *
   * @default 'SUN'
   */
  readonly fullBackupDay?: Weekday;

  /**
   * IANA time zone of the schedules. Scheduler follows its daylight-saving changes.
   *
   * @default 'UTC'
   */
  readonly timeZone?: string;

  /**
   * Hours after the weekly full backup starts that the deep verify of the latest backup runs
   * (1 to 23; long enough for the full to have finished: a run lasts at most 15 minutes, but
   * a throttled invocation may wait).
   *
   * @default 6
   */
  readonly verifyDelayHours?: number;

  /**
   * How often Scheduler retries an invocation Lambda did not accept (throttling, a service
   * error) before the event goes to the dead-letter queue.
   *
   * @default 3
   */
  readonly retryAttempts?: number;

  /**
   * Functions whose failed asynchronous runs send a record to the dead-letter queue (their
   * on-failure destination, no retry). Leave out a function whose asynchronous invocation another
   * construct configures ({@link Notifications} does, to mail each failure): a function has exactly
   * one such configuration.
   *
   * @default - the backup and verify functions
   */
  readonly queueRunFailuresOf?: readonly IFunction[];
}

/** Something that builds EventBridge Scheduler targets invoking a function (see {@link BackupSchedules.invokeTarget}). */
export interface ScheduledInvoker {
  /** A target that invokes `fn` asynchronously with `event`. */
  invokeTarget(fn: IFunction, event: object): IScheduleTarget;
}

/**
 * EventBridge Scheduler schedules of the backups and the weekly deep verify, in the configured
 * time zone, and the dead-letter queue that collects every scheduled invocation that failed.
 *
 * Scheduler invokes Lambda asynchronously, so failures come in two kinds and both end in
 * {@link BackupSchedules.deadLetterQueue}: an invocation Lambda refused (retried by Scheduler's
 * retry policy first) and a run that failed or timed out (Lambda's on-failure destination; not
 * retried, because a repeated backup would find the crashed run's lock or time out again: the
 * next scheduled run catches up). With `sendRunFailuresToQueue: false` the second kind is left to
 * whoever configures the functions' asynchronous invocation ({@link Notifications}).
 *
 * {@link BackupSchedules.invokeTarget} gives other schedules (the hourly monitor, the weekly digest)
 * the same role, retries and queue.
 */
export class BackupSchedules extends Construct implements ScheduledInvoker {
  /** `auto` backup on every day except `fullBackupDay`. */
  public readonly dailyBackup: Schedule;
  /** `full` backup on `fullBackupDay`. */
  public readonly fullBackup: Schedule;
  /** Deep verify of the latest backup, `verifyDelayHours` after the full. */
  public readonly weeklyVerify: Schedule;
  /** Encrypted, TLS-only queue of failed scheduled invocations (kept 14 days). */
  public readonly deadLetterQueue: Queue;
  /** The role Scheduler assumes to invoke the functions and write to the dead-letter queue. */
  public readonly role: Role;
  private readonly retryAttempts: number;
  private readonly invoked = new Set<IFunction>();

  constructor(scope: Construct, id: string, props: BackupSchedulesProps) {
    super(scope, id);
    const backupTime = props.backupTime ?? DEFAULT_BACKUP_TIME;
    const fullBackupDay = props.fullBackupDay ?? 'SUN';
    const timeZone = TimeZone.of(props.timeZone ?? 'UTC');
    const verifyDelayHours = props.verifyDelayHours ?? 6;
    const retryAttempts = props.retryAttempts ?? 3;
    this.retryAttempts = retryAttempts;

    const time = parseTimeOfDay(backupTime);
    if (!time) {
      throw new Error(`\`backupTime\` must be a time of day HH:MM (got ${JSON.stringify(backupTime)})`);
    }
    if (!WEEKDAYS.includes(fullBackupDay)) {
      throw new Error(
        `\`fullBackupDay\` must be one of ${WEEKDAYS.join(', ')} (got ${JSON.stringify(fullBackupDay)})`,
      );
    }
    if (!Number.isSafeInteger(verifyDelayHours) || verifyDelayHours < 1 || verifyDelayHours > 23) {
      throw new Error(`\`verifyDelayHours\` must be a whole number from 1 to 23 (got ${verifyDelayHours})`);
    }
    if (!Number.isSafeInteger(retryAttempts) || retryAttempts < 0 || retryAttempts > 185) {
      throw new Error(`\`retryAttempts\` must be a whole number from 0 to 185 (got ${retryAttempts})`);
    }
    const now = props.now ?? new Date();
    requireUnambiguous('backupTime', time, timeZone.timezoneName, now);
    requireUnambiguous(
      'backupTime + verifyDelayHours',
      { hour: (time.hour + verifyDelayHours) % 24, minute: time.minute },
      timeZone.timezoneName,
      now,
    );

    this.deadLetterQueue = new Queue(this, 'DeadLetterQueue', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        "This queue is itself the dead-letter queue of the schedules and of the functions' failed async " +
        'invocations; cdk-nag recognises only SQS redrive policies as DLQ use',
    });

    // One role for every target, assumable only by Scheduler on behalf of this account (confused deputy).
    const account = Stack.of(this).account;
    this.role = new Role(this, 'SchedulerRole', {
      description: 'EventBridge Scheduler: invoke the media-backup functions, send failures to the DLQ',
      assumedBy: new ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': account } },
      }),
    });

    const minute = String(time.minute);
    const hour = String(time.hour);
    const fullDayIndex = WEEKDAYS.indexOf(fullBackupDay);
    const otherDays = WEEKDAYS.filter((day) => day !== fullBackupDay).join(',');
    // The verify may fall on the next day when the delay crosses midnight.
    const verifyHour = time.hour + verifyDelayHours;
    const verifyDay = WEEKDAYS[(fullDayIndex + Math.floor(verifyHour / 24)) % 7];

    const target = (fn: IFunction, event: object) => this.invokeTarget(fn, event);

    this.dailyBackup = new Schedule(this, 'DailyBackup', {
      description: `media-backup: "auto" backup at ${backupTime} ${timeZone.timezoneName} except ${fullBackupDay}`,
      schedule: ScheduleExpression.cron({ minute, hour, weekDay: otherDays, timeZone }),
      target: target(props.backupFunction, { type: 'auto' }),
    });
    this.fullBackup = new Schedule(this, 'FullBackup', {
      description: `media-backup: "full" backup at ${backupTime} ${timeZone.timezoneName} on ${fullBackupDay}`,
      schedule: ScheduleExpression.cron({ minute, hour, weekDay: fullBackupDay, timeZone }),
      target: target(props.backupFunction, { type: 'full' }),
    });
    this.weeklyVerify = new Schedule(this, 'WeeklyVerify', {
      description: `media-backup: deep verify of the latest backup, ${verifyDelayHours} h after the weekly full`,
      schedule: ScheduleExpression.cron({
        minute,
        hour: String(verifyHour % 24),
        weekDay: verifyDay,
        timeZone,
      }),
      target: target(props.verifyFunction, { backup: 'latest', deep: true }),
    });

    for (const fn of props.queueRunFailuresOf ?? [props.backupFunction, props.verifyFunction]) {
      fn.configureAsyncInvoke({
        retryAttempts: 0,
        maxEventAge: Duration.hours(6),
        onFailure: new SqsDestination(this.deadLetterQueue),
      });
    }
  }

  /**
   * A Scheduler target that invokes `fn` with `event` the way every media-backup schedule does:
   * this construct's role, `retryAttempts` retries within an hour, then the dead-letter queue.
   */
  public invokeTarget(fn: IFunction, event: object): IScheduleTarget {
    if (!this.invoked.has(fn)) {
      this.invoked.add(fn);
      Validations.of(this.role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${logicalId(fn)}.Arn>:*]`,
        reason:
          'CDK grantInvoke covers the function and its versions (ARN:*); the role can invoke nothing but the ' +
          'media-backup functions it schedules',
      });
    }
    return new LambdaInvoke(fn, {
      role: this.role,
      input: ScheduleTargetInput.fromObject(event),
      deadLetterQueue: this.deadLetterQueue,
      retryAttempts: this.retryAttempts,
      maxEventAge: Duration.hours(1),
    });
  }
}

/** Thrown when a schedule's local time falls into a daylight-saving gap or repeat. */
export class ScheduleTimeError extends Error {
  override readonly name = 'ScheduleTimeError';
}

function requireUnambiguous(
  key: string,
  time: { hour: number; minute: number },
  timeZone: string,
  now: Date,
): void {
  const conflicts = localTimeConflicts(time, timeZone, now);
  if (conflicts.length === 0) return;
  const hhmm = `${String(time.hour).padStart(2, '0')}:${String(time.minute).padStart(2, '0')}`;
  const days = conflicts
    .map(
      (c) =>
        `${c.date} (${c.kind === 'gap' ? 'skipped: clocks jump past it' : 'passes twice: clocks go back'})`,
    )
    .join(', ');
  throw new ScheduleTimeError(
    `\`${key}\` ${hhmm} in ${timeZone} falls into a daylight-saving change on ${days}: EventBridge Scheduler ` +
      'skips a run whose local time does not exist, so that day would have no backup. Choose a time outside ' +
      `the change, e.g. ${DEFAULT_BACKUP_TIME} (clear of every zone's changes), or set \`timeZone\` to UTC.`,
  );
}

function logicalId(fn: IFunction): string {
  return Stack.of(fn).getLogicalId(fn.node.defaultChild as CfnElement);
}
