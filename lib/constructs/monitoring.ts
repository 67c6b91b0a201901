import { fileURLToPath } from 'node:url';
import { ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import {
  Alarm,
  AlarmRule,
  AlarmState,
  AlarmStatusWidget,
  ComparisonOperator,
  CompositeAlarm,
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { IFileSystem } from 'aws-cdk-lib/aws-efs';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Schedule, ScheduleExpression } from 'aws-cdk-lib/aws-scheduler';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { type BackupMetricName, BackupMetrics } from '../metrics.js';
import { grantStoreRead } from './backup-bucket.js';
import { BackupFunction } from './backup-function.js';
import type { ScheduledInvoker } from './schedules.js';

const MONITOR_ENTRY = fileURLToPath(new URL('../../lambda/handlers/monitor.ts', import.meta.url));

/**
 * Custom metrics that no alarm uses, only dashboard panels. With `dashboard: false` the handlers
 * still publish them, on purpose: the handlers do not know whether a dashboard exists, and a switch
 * for it would be one more setting to keep in step. They cost little: CloudWatch bills a custom
 * metric only for the hours it receives data, so the five backup metrics (one data point a day)
 * cost ~1/24 of $0.30 a month each and HealthWarning (hourly) $0.30 (see lib/cost-model.ts): about
 * $0.36 a month, against the dashboard's $3. They stay queryable in the console (HealthWarning is
 * the only trend of the monitor's warnings), and a dashboard switched back on shows their history.
 * test/infra/monitoring.test.ts checks this list against the synthesized alarms and panels.
 */
export const PANEL_ONLY_METRICS = [
  'BackupSucceeded',
  'ArchiveBytes',
  'SourceBytes',
  'ChangedFiles',
  'DurationSeconds',
  'HealthWarning',
] as const satisfies readonly BackupMetricName[];

/** Properties of {@link Monitoring}. */
export interface MonitoringProps {
  /** The topic every alarm (and, where useful, its return to OK) publishes to. */
  readonly alarmTopic: ITopic;

  /** The backup bucket the monitor reads (metadata, manifests, status). */
  readonly bucket: IBucket;

  /**
   * Key prefix of the backup store in `bucket`.
   *
   * @default 'media-backups/'
   */
  readonly backupPrefix?: string;

  /**
   * The bucket's customer-managed key (handed to the monitor as `KMS_KEY_ID`; `the read grant covers it).
   *
   * @default - SSE-S3
   */
  readonly encryptionKey?: IKey;

  /** The media file system: the monitor reads its metered size (`DescribeFileSystems`), never its files. */
  readonly fileSystem: IFileSystem;

  /** Builds the hourly schedule's target (the backup schedules' role, retries and queue). */
  readonly scheduler: ScheduledInvoker;

  /** The backup function: its run time is alarmed against its timeout. */
  readonly backupFunction: BackupFunction;

  /**
   * Every function whose `Errors` and `Throttles` are alarmed, by a short name used in alarm names
   * (`backup`, `restore`, ...). The monitor function is added by this construct.
   */
  readonly functions: Readonly<Record<string, BackupFunction>>;

  /**
   * The state machine running sharded backups: an execution that failed, timed out or was aborted is
   * a member of the `<stack>-failing` composite. Its cleanup step already publishes `BackupFailed`
   * for a failed run (the composite mails once for both); a timed-out or aborted execution runs no
   * cleanup, so this alarm is the only news of it.
   *
   * @default - no state machine alarm
   */
  readonly backupStateMachine?: IStateMachine;

  /**
   * The restore state machine: a run that failed, timed out or was aborted pages (one email per run;
   * a failed restore is not a backup failure, so it stays out of the composite).
   *
   * @default - no restore state machine alarm
   */
  readonly restoreStateMachine?: IStateMachine;

  /**
   * The deep verify state machine: a run that failed (damage found, or the store unreadable), timed
   * out or was aborted pages, one email per run.
   *
   * @default - no verify state machine alarm
   */
  readonly verifyStateMachine?: IStateMachine;

  /**
   * The dead-letter queue of failed scheduled invocations and runs: alarmed when it holds a message.
   *
   * @default - no queue alarm
   */
  readonly deadLetterQueue?: IQueue;

  /**
   * The age alarm fires when the newest committed backup is older than this (and when the
   * monitor reports nothing at all: no backup exists, or the monitor is dead).
   *
   * @default 48
   */
  readonly maxBackupAgeHours?: number;

  /**
   * The monitor reports a backup with a smaller archive as critical (`MIN_BACKUP_BYTES`).
   *
   * @default 1000000
   */
  readonly minBackupBytes?: number;

  /**
   * The monitor warns when a full's source shrank by more than this percentage (`MAX_SHRINK_PERCENT`).
   *
   * @default 50
   */
  readonly maxShrinkPercent?: number;

  /**
   * The monitor warns when the file system's metered size exceeds this (`EFS_WARN_BYTES`).
   *
   * @default - no size warning
   */
  readonly efsWarnBytes?: number;

  /**
   * Retention of the store (`RETENTION_DAYS`), for the monitor's retention checks.
   *
   * @default 30
   */
  readonly retentionDays?: number;

  /**
   * Fraction of the backup function's timeout whose crossing (Maximum `Duration`) raises an alarm.
   *
   * @default 0.8
   */
  readonly durationAlarmRatio?: number;

  /**
   * Environment shared with the other functions (store and EFS settings, `STACK_NAME`, log level).
   *
   * @default - none
   */
  readonly environment?: Readonly<Record<string, string>>;

  /**
   * Create the CloudWatch dashboard. Without it the alarms and the metrics stay the same: the
   * metrics that only panels use (see {@link PANEL_ONLY_METRICS}) are still published.
   *
   * @default true
   */
  readonly dashboard?: boolean;

  /**
   * Memory of the monitor function in MB.
   *
   * @default 512
   */
  readonly memorySize?: number;

  /**
   * Log retention of the monitor function.
   *
   * @default RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: RetentionDays;

  /**
   * The monitor handler module.
   *
   * @default - lambda/handlers/monitor.ts
   */
  readonly entry?: string;
}

/** How one alarm is built; see {@link Monitoring}. */
interface AlarmSpec {
  readonly description: string;
  readonly metric: IMetric;
  readonly threshold: number;
  readonly comparisonOperator?: ComparisonOperator;
  readonly evaluationPeriods?: number;
  readonly datapointsToAlarm?: number;
  readonly treatMissingData?: TreatMissingData;
  /**
   * Who tells a person (one owner per failure kind, so one failure gives one email):
   * - `page`: the alarm publishes to the topic itself (`notifyOk`: its return to OK too);
   * - `failing`: a member of the composite `<stack>-failing` alarm, which publishes once for all of
   *   them (a failed backup sets off several at once);
   * - `record`: no action: another path already reports this failure (a Lambda on-failure
   *   destination, the dead-letter queue, or the composite through the monitor); the alarm keeps the
   *   state for the dashboard and the console.
   */
  readonly owner: 'page' | 'failing' | 'record';
  /** With `page`: also publish the return to OK (for conditions that last, not for single events). */
  readonly notifyOk?: boolean;
}

/**
 * Health monitoring of a media-backup deployment: the monitor function run hourly by EventBridge
 * Scheduler, alarms on its metrics, on the backup and verify metrics and on every function, all
 * publishing to one SNS topic, and a CloudWatch dashboard (unless `dashboard: false`).
 *
 * The monitor runs **outside the VPC**: it mounts nothing (it reads the store and the file
 * system's metered size through the EFS API), and the demo VPC's isolated subnets have no route to
 * the EFS API (an interface endpoint would cost about as much as the backup storage); a
 * `DescribeFileSystems` call hanging there until the timeout would silence the monitor every hour.
 */
export class Monitoring extends Construct {
  /** The hourly health check. */
  public readonly monitorFunction: BackupFunction;
  /** Its hourly schedule. */
  public readonly hourlyHealthCheck: Schedule;
  /** The custom metrics the alarms and the dashboard use. */
  public readonly metrics: BackupMetrics;
  /** No committed backup within `maxBackupAgeHours`, or no report from the monitor at all. */
  public readonly backupAgeAlarm: Alarm;
  /** Every metric alarm created here, by name. */
  public readonly alarms: Readonly<Record<string, Alarm>>;
  /**
   * `<stack>-failing`: in ALARM while any backup-failure alarm is (failed run, backup errors, stale or
   * critical health, new dead letters). The one alarm a failed backup mails about, and its recovery.
   */
  public readonly failingAlarm: CompositeAlarm;
  /** The dashboard; absent with `dashboard: false`. */
  public readonly dashboard?: Dashboard;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const maxBackupAgeHours = props.maxBackupAgeHours ?? 48;
    const minBackupBytes = props.minBackupBytes ?? 1_000_000;
    const maxShrinkPercent = props.maxShrinkPercent ?? 50;
    const retentionDays = props.retentionDays ?? 30;
    const durationAlarmRatio = props.durationAlarmRatio ?? 0.8;
    const backupPrefix = props.backupPrefix ?? 'media-backups/';
    requireWhole('maxBackupAgeHours', maxBackupAgeHours, 2);
    requireWhole('minBackupBytes', minBackupBytes, 0);
    requireWhole('retentionDays', retentionDays, 1);
    if (!Number.isSafeInteger(maxShrinkPercent) || maxShrinkPercent < 1 || maxShrinkPercent > 100) {
      throw new Error(`\`maxShrinkPercent\` must be a whole number from 1 to 100 (got ${maxShrinkPercent})`);
    }
    if (props.efsWarnBytes !== undefined) requireWhole('efsWarnBytes', props.efsWarnBytes, 1);
    if (!(durationAlarmRatio > 0 && durationAlarmRatio < 1)) {
      throw new Error(`\`durationAlarmRatio\` must be between 0 and 1 (got ${durationAlarmRatio})`);
    }

    const stackName = Stack.of(this).stackName;
    this.metrics = new BackupMetrics(stackName);

    this.monitorFunction = new BackupFunction(this, 'Monitor', {
      entry: props.entry ?? MONITOR_ENTRY,
      description: 'media-backup: hourly health check of the backups (age, size, integrity) with metrics',
      timeout: Duration.minutes(5),
      memorySize: props.memorySize ?? 512,
      ...(props.logRetention === undefined ? {} : { logRetention: props.logRetention }),
      environment: {
        ...props.environment,
        POWERTOOLS_SERVICE_NAME: 'media-backup-monitor',
        BACKUP_PREFIX: backupPrefix,
        MAX_BACKUP_AGE_HOURS: String(maxBackupAgeHours),
        MIN_BACKUP_BYTES: String(minBackupBytes),
        MAX_SHRINK_PERCENT: String(maxShrinkPercent),
        RETENTION_DAYS: String(retentionDays),
        ...(props.efsWarnBytes === undefined ? {} : { EFS_WARN_BYTES: String(props.efsWarnBytes) }),
        ...(props.encryptionKey ? { KMS_KEY_ID: props.encryptionKey.keyArn } : {}),
      },
    });
    // Read only: the health checks get and list the store, and list multipart uploads a killed run
    // left behind (the orphans check).
    this.monitorFunction.addEnvironmentAndGrant('BUCKET_NAME', props.bucket.bucketName, (fn) =>
      grantStoreRead(fn, props.bucket, backupPrefix, props.encryptionKey, { multipartUploads: true }),
    );
    this.monitorFunction.addEnvironmentAndGrant('FILE_SYSTEM_ID', props.fileSystem.fileSystemId, (fn) =>
      props.fileSystem.grant(fn, 'elasticfilesystem:DescribeFileSystems'),
    );

    this.hourlyHealthCheck = new Schedule(this, 'HourlyHealthCheck', {
      description: 'media-backup: hourly health check of the backups',
      schedule: ScheduleExpression.rate(Duration.hours(1)),
      target: props.scheduler.invokeTarget(this.monitorFunction.function, {}),
    });

    // Every alarm of this construct is named `<stack>-<key>`, so one ARN pattern covers them all.
    const alarmNamePrefix = `${stackName}-`;
    this.allowAlarmsToPublish(props.alarmTopic, alarmNamePrefix);
    const action = new SnsAction(props.alarmTopic);
    const alarms: Record<string, Alarm> = {};
    const failing: [string, Alarm][] = [];
    const alarm = (key: string, spec: AlarmSpec): Alarm => {
      const created = new Alarm(this, `${pascal(key)}Alarm`, {
        alarmName: `${alarmNamePrefix}${key}`,
        alarmDescription: spec.description,
        metric: spec.metric,
        threshold: spec.threshold,
        comparisonOperator: spec.comparisonOperator ?? ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: spec.evaluationPeriods ?? 1,
        ...(spec.datapointsToAlarm === undefined ? {} : { datapointsToAlarm: spec.datapointsToAlarm }),
        treatMissingData: spec.treatMissingData ?? TreatMissingData.NOT_BREACHING,
      });
      if (spec.owner === 'page') {
        created.addAlarmAction(action);
        if (spec.notifyOk) created.addOkAction(action);
      } else if (spec.owner === 'failing') {
        failing.push([key, created]);
      }
      alarms[key] = created;
      return created;
    };

    // The monitor runs hourly; a Scheduler rate drifts by seconds, so an hour bucket can be empty
    // once in a while: two missing hours in a row, not one, mean the monitor is dead.
    this.backupAgeAlarm = alarm('backup-age', {
      description:
        `No committed media backup in the last ${maxBackupAgeHours} hours, or the hourly monitor reported ` +
        'nothing (no backup exists yet, or the monitor itself fails). Check the backup and monitor logs and ' +
        'status/last-run.json, then run a backup by hand.',
      metric: this.metrics.hoursSinceLastBackup(),
      threshold: maxBackupAgeHours,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 2,
      datapointsToAlarm: 2,
      treatMissingData: TreatMissingData.BREACHING,
      owner: 'failing',
    });
    // A failed run stays in ALARM for 3 hours (1 of 36 five-minute periods), long enough for the
    // hourly monitor's health-critical to take over, so the composite does not flap to OK and back.
    const stayFailed = { evaluationPeriods: 36, datapointsToAlarm: 1 };
    alarm('backup-failed', {
      description: 'A media backup run failed. Read the backup function log and status/last-run.json.',
      metric: this.metrics.backupFailed(),
      threshold: 1,
      ...stayFailed,
      owner: 'failing',
    });
    alarm('verify-failures', {
      description:
        'A verify run found a damaged or unreadable backup. Read the verify log; run a full backup so a ' +
        'good restore point exists.',
      metric: this.metrics.verifyFailures(),
      threshold: 1,
      // The failed verify run itself is mailed (notify destination) or queued (dead-letter alarm).
      owner: 'record',
    });
    alarm('health-critical', {
      description:
        'The hourly monitor found a critical problem (stale, empty or broken backups). Its log lists the findings.',
      metric: this.metrics.healthCritical(),
      threshold: 1,
      owner: 'failing',
    });
    alarm('notification-failures', {
      description:
        'The notify function could not send an email (SES identity unverified, sandbox, quota). Read its log.',
      metric: this.metrics.notificationFailures(),
      threshold: 1,
      // The formatted mail of this alarm goes through the failing notify function too: rawAlarmEmail
      // (or another subscription on the topic) is what reaches a person when SES is the problem.
      owner: 'page',
    });
    const backupTimeout = props.backupFunction.timeout;
    const durationThresholdMs = Math.round(backupTimeout.toMilliseconds() * durationAlarmRatio);
    alarm('backup-duration', {
      description:
        `A backup run took more than ${Math.round(durationAlarmRatio * 100)}% of its ` +
        `${backupTimeout.toHumanString()} timeout: the tree is outgrowing one Lambda run (see "Size limit of one run" in the README).`,
      metric: props.backupFunction.function.metricDuration({
        statistic: 'Maximum',
        period: Duration.hours(1),
      }),
      threshold: durationThresholdMs,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      owner: 'page',
    });

    const functions = { ...props.functions, monitor: this.monitorFunction };
    for (const [name, fn] of Object.entries(functions)) {
      // Backup errors belong to the composite. The other functions' failed runs are mailed by the
      // notify destination or queued (dead-letter alarm); a dead monitor stops HoursSinceLastBackup,
      // which backup-age treats as breaching; throttled asynchronous invocations are retried by Lambda.
      alarm(`${name}-errors`, {
        description: `The media-backup ${name} function failed (an error or a timeout). Read its log.`,
        metric: fn.function.metricErrors({ statistic: 'Sum', period: Duration.minutes(5) }),
        threshold: 1,
        ...(name === 'backup' ? { ...stayFailed, owner: 'failing' as const } : { owner: 'record' as const }),
      });
      alarm(`${name}-throttles`, {
        description: `The media-backup ${name} function was throttled (for backup: a second run while one was running).`,
        metric: fn.function.metricThrottles({ statistic: 'Sum', period: Duration.minutes(5) }),
        threshold: 1,
        owner: 'record',
      });
    }

    const unsuccessfulExecutions = (sm: IStateMachine) => {
      const period = Duration.minutes(5);
      return new MathExpression({
        expression: 'failed + timedOut + aborted',
        usingMetrics: {
          failed: sm.metricFailed({ statistic: 'Sum', period }),
          timedOut: sm.metricTimedOut({ statistic: 'Sum', period }),
          aborted: sm.metricAborted({ statistic: 'Sum', period }),
        },
        period,
      });
    };
    if (props.restoreStateMachine) {
      alarm('sharded-restore-failed', {
        description:
          'A restore run of the restore state machine failed, timed out or was aborted: the target is as it was. ' +
          'Open the execution in the Step Functions console (its failed state and error).',
        metric: unsuccessfulExecutions(props.restoreStateMachine),
        threshold: 1,
        owner: 'page',
      });
    }
    if (props.verifyStateMachine) {
      alarm('sharded-verify-failed', {
        description:
          'A deep verify run of the verify state machine failed: a backup is damaged (status/last-verify.json names ' +
          'it and the execution lists the problems), or the store could not be read. Take a new full backup.',
        metric: unsuccessfulExecutions(props.verifyStateMachine),
        threshold: 1,
        owner: 'page',
      });
    }
    if (props.backupStateMachine) {
      alarm('sharded-backup-failed', {
        description:
          'A sharded backup run (the backup state machine) failed, timed out or was aborted: nothing was committed. ' +
          'Open the execution in the Step Functions console (its failed state and error) and read status/last-run.json.',
        metric: unsuccessfulExecutions(props.backupStateMachine),
        threshold: 1,
        ...stayFailed,
        owner: 'failing',
      });
    }

    if (props.deadLetterQueue) {
      // New messages, not visible ones: a message stays visible for up to 14 days, and an alarm on
      // it would sit in ALARM all that time, hiding every later failure.
      alarm('dead-letter-messages', {
        description:
          'A scheduled media-backup invocation or an asynchronous run failed (new message in the dead-letter ' +
          'queue). Read the message and the function logs, then run the backup by hand.',
        metric: props.deadLetterQueue.metricNumberOfMessagesSent({
          period: Duration.minutes(5),
          statistic: 'Sum',
        }),
        threshold: 1,
        ...stayFailed,
        owner: 'failing',
      });
      alarm('dead-letter-age', {
        description:
          'A failure record has waited in the media-backup dead-letter queue for more than a day. Read it, act ' +
          'on it, then purge the queue (messages expire after 14 days).',
        metric: props.deadLetterQueue.metricApproximateAgeOfOldestMessage({
          period: Duration.minutes(15),
          statistic: 'Maximum',
        }),
        threshold: Duration.days(1).toSeconds(),
        owner: 'page',
        notifyOk: true,
      });
    }
    this.alarms = alarms;

    this.failingAlarm = new CompositeAlarm(this, 'FailingAlarm', {
      compositeAlarmName: `${alarmNamePrefix}failing`,
      alarmDescription:
        'media-backup is failing: a backup run failed, the backup function errored, the hourly monitor found ' +
        'stale or critical backups, or a scheduled run was dead-lettered. The member alarms ' +
        `(${failing.map(([key]) => key).join(', ')}) and status/last-run.json say which; returns to OK ` +
        'when all of them are.',
      alarmRule: AlarmRule.anyOf(...failing.map(([, a]) => AlarmRule.fromAlarm(a, AlarmState.ALARM))),
    });
    this.failingAlarm.addAlarmAction(action);
    this.failingAlarm.addOkAction(action);

    if (props.dashboard ?? true) {
      this.dashboard = this.createDashboard(stackName, maxBackupAgeHours, props.backupFunction, functions);
    }
  }

  /**
   * A topic policy replaces SNS's default policy (the topic's `enforceSSL` writes one holding only
   * the deny-non-TLS statement), and then nothing lets CloudWatch publish: every alarm action fails
   * with "not authorized to perform: SNS:Publish". Allow exactly this account's alarms named
   * `<alarmNamePrefix>*` (confused-deputy conditions on both the account and the alarm ARN).
   * A KMS-encrypted topic would also need its key policy to let `cloudwatch.amazonaws.com` use the
   * key (the AWS-managed SNS key cannot be used by CloudWatch at all); the alarm topic is unencrypted.
   */
  private allowAlarmsToPublish(topic: ITopic, alarmNamePrefix: string): void {
    const stack = Stack.of(this);
    topic.addToResourcePolicy(
      new PolicyStatement({
        sid: 'AllowThisStacksAlarmsToPublish',
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: {
          StringEquals: { 'aws:SourceAccount': stack.account },
          ArnLike: {
            'aws:SourceArn': stack.formatArn({
              service: 'cloudwatch',
              resource: 'alarm',
              resourceName: `${alarmNamePrefix}*`,
              arnFormat: ArnFormat.COLON_RESOURCE_NAME,
            }),
          },
        },
      }),
    );
  }

  private createDashboard(
    stackName: string,
    maxBackupAgeHours: number,
    backupFunction: BackupFunction,
    functions: Readonly<Record<string, BackupFunction>>,
  ): Dashboard {
    const m = this.metrics;
    const day = Duration.days(1);
    const dashboard = new Dashboard(this, 'Dashboard', {
      dashboardName: `${stackName}-media-backup`,
      defaultInterval: Duration.days(14),
    });
    dashboard.addWidgets(
      new AlarmStatusWidget({
        title: 'Alarms',
        alarms: [this.failingAlarm, ...Object.values(this.alarms)],
        width: 24,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Hours since the last committed backup',
        left: [m.hoursSinceLastBackup()],
        leftAnnotations: [{ value: maxBackupAgeHours, label: 'alarm' }],
        width: 12,
      }),
      new GraphWidget({
        title: 'Backup runs',
        left: [m.backupSucceeded(day), m.backupFailed(day)],
        width: 12,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Archive and source size (bytes)',
        left: [
          m.metric('ArchiveBytes', { statistic: 'Maximum', period: day }),
          m.metric('SourceBytes', { statistic: 'Maximum', period: day }),
        ],
        width: 12,
      }),
      new GraphWidget({
        title: 'Changed files per backup',
        left: [m.metric('ChangedFiles', { statistic: 'Maximum', period: day })],
        width: 12,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Backup duration (s)',
        left: [m.metric('DurationSeconds', { statistic: 'Maximum', period: day })],
        leftAnnotations: [{ value: backupFunction.timeout.toSeconds(), label: 'timeout' }],
        width: 12,
      }),
      new GraphWidget({
        title: 'Function duration (ms, max)',
        left: Object.entries(functions).map(([name, fn]) =>
          fn.function.metricDuration({ statistic: 'Maximum', period: Duration.hours(1), label: name }),
        ),
        width: 12,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Verify failures',
        left: [m.verifyFailures(day)],
        width: 8,
      }),
      new GraphWidget({
        title: 'Health findings (hourly monitor)',
        left: [m.healthCritical(), m.healthWarning()],
        width: 8,
      }),
      new GraphWidget({
        title: 'Notification failures',
        left: [m.notificationFailures(day)],
        width: 8,
      }),
    );
    return dashboard;
  }
}

function pascal(key: string): string {
  return key
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}

function requireWhole(key: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new Error(`\`${key}\` must be a whole number >= ${min} (got ${value})`);
  }
}
