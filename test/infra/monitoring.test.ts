import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CfnElement, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { METRIC } from '../../lambda/handlers/metrics.js';
import { NOTIFICATION_FAILURES_METRIC } from '../../lambda/handlers/notify.js';
import { PANEL_ONLY_METRICS } from '../../lib/constructs/monitoring.js';
import { METRIC_NAMES, MediaBackupStack, Monitoring, parseConfig } from '../../lib/index.js';
import { newTestApp } from './test-app.js';

function synthStack(raw: Record<string, unknown> = {}) {
  const app = newTestApp();
  const stack = new MediaBackupStack(app, 'MediaBackup', { config: parseConfig(raw) });
  return { stack, template: Template.fromStack(stack) };
}

const id = (construct: IConstruct) =>
  Stack.of(construct).getLogicalId((construct.node.defaultChild ?? construct) as CfnElement);

type Resource = { Properties: Record<string, unknown> };

function alarmNamed(template: Template, name: string): Record<string, unknown> {
  const found = Object.values(template.findResources('AWS::CloudWatch::Alarm')).filter(
    (alarm) => (alarm as Resource).Properties.AlarmName === name,
  );
  expect(found).toHaveLength(1);
  return (found[0] as Resource).Properties;
}

describe('Monitoring alarms', () => {
  const { stack, template } = synthStack({ notificationEmail: 'ops@example.com' });
  const topic = { Ref: id(stack.notifications.topic) };
  const custom = (metric: string) => ({
    Namespace: 'MediaBackup',
    MetricName: metric,
    Dimensions: [{ Name: 'Stack', Value: 'MediaBackup' }],
  });

  /** The alarms that publish to the topic themselves; every other alarm is a member or a record. */
  const PAGING = [
    'MediaBackup-backup-duration',
    'MediaBackup-notification-failures',
    'MediaBackup-dead-letter-age',
    // A failed restore run of the restore state machine (not a backup failure: not in the composite).
    'MediaBackup-sharded-restore-failed',
    // A failed deep verify run of the verify state machine.
    'MediaBackup-sharded-verify-failed',
  ];
  const FAILING_MEMBERS = [
    'MediaBackup-backup-age',
    'MediaBackup-backup-failed',
    'MediaBackup-health-critical',
    'MediaBackup-backup-errors',
    'MediaBackup-dead-letter-messages',
    // A sharded run that failed, timed out or was aborted (the backup state machine).
    'MediaBackup-sharded-backup-failed',
  ];

  it('alarms when the newest backup is older than maxBackupAgeHours, and when the monitor reports nothing', () => {
    expect(alarmNamed(template, 'MediaBackup-backup-age')).toMatchObject({
      ...custom('HoursSinceLastBackup'),
      Statistic: 'Maximum',
      Period: 3600,
      Threshold: 48,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
      TreatMissingData: 'breaching',
    });
  });

  it('takes the age threshold from maxBackupAgeHours', () => {
    const { template: other } = synthStack({ maxBackupAgeHours: 72 });
    expect(alarmNamed(other, 'MediaBackup-backup-age').Threshold).toBe(72);
  });

  it.each([
    ['MediaBackup-backup-failed', 'BackupFailed', 'Sum', 300, 36],
    ['MediaBackup-verify-failures', 'VerifyFailures', 'Sum', 300, 1],
    ['MediaBackup-health-critical', 'HealthCritical', 'Maximum', 3600, 1],
    ['MediaBackup-notification-failures', 'NotificationFailures', 'Sum', 300, 1],
  ])(
    '%s: %s >= 1 (%s over %i s, %i periods), missing data not breaching',
    (name, metric, statistic, period, periods) => {
      expect(alarmNamed(template, name)).toMatchObject({
        ...custom(metric),
        Statistic: statistic,
        Period: period,
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        EvaluationPeriods: periods,
        TreatMissingData: 'notBreaching',
      });
    },
  );

  it('keeps a failed backup in ALARM for 3 hours (1 of 36 five-minute periods), until the monitor takes over', () => {
    for (const name of [
      'MediaBackup-backup-failed',
      'MediaBackup-backup-errors',
      'MediaBackup-dead-letter-messages',
    ]) {
      expect(alarmNamed(template, name)).toMatchObject({
        Period: 300,
        EvaluationPeriods: 36,
        DatapointsToAlarm: 1,
      });
    }
  });

  it('alarms when a backup run takes more than 80% of its 15-minute timeout', () => {
    expect(alarmNamed(template, 'MediaBackup-backup-duration')).toMatchObject({
      Namespace: 'AWS/Lambda',
      MetricName: 'Duration',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: id(stack.backupFunction.function) } }],
      Statistic: 'Maximum',
      Threshold: 720_000,
      ComparisonOperator: 'GreaterThanThreshold',
      AlarmActions: [topic],
    });
  });

  it.each(['backup', 'restore', 'verify', 'monitor', 'notify'])(
    'alarms on Errors and Throttles of the %s function',
    (name) => {
      for (const [suffix, metric] of [
        ['errors', 'Errors'],
        ['throttles', 'Throttles'],
      ]) {
        expect(alarmNamed(template, `MediaBackup-${name}-${suffix}`)).toMatchObject({
          Namespace: 'AWS/Lambda',
          MetricName: metric,
          Statistic: 'Sum',
          Threshold: 1,
          ComparisonOperator: 'GreaterThanOrEqualToThreshold',
          TreatMissingData: 'notBreaching',
        });
      }
    },
  );

  it('alarms on new dead letters and on a dead letter left unread for a day, not on visible messages', () => {
    const queue = {
      Name: 'QueueName',
      Value: { 'Fn::GetAtt': [id(stack.schedules.deadLetterQueue), 'QueueName'] },
    };
    expect(alarmNamed(template, 'MediaBackup-dead-letter-messages')).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'NumberOfMessagesSent',
      Dimensions: [queue],
      Statistic: 'Sum',
      Threshold: 1,
    });
    expect(alarmNamed(template, 'MediaBackup-dead-letter-age')).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateAgeOfOldestMessage',
      Dimensions: [queue],
      Statistic: 'Maximum',
      Threshold: 86_400,
      AlarmActions: [topic],
      OKActions: [topic],
    });
    const metrics = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map(
      (a) => (a as Resource).Properties.MetricName,
    );
    expect(metrics).not.toContain('ApproximateNumberOfMessagesVisible');
  });

  it('one failed backup reaches the topic once: its alarms are members of the one composite that publishes', () => {
    const composites = Object.values(template.findResources('AWS::CloudWatch::CompositeAlarm')) as Resource[];
    expect(composites).toHaveLength(1);
    const failing = composites[0]!.Properties;
    expect(failing).toMatchObject({
      AlarmName: 'MediaBackup-failing',
      AlarmActions: [topic],
      OKActions: [topic],
    });
    const rule = JSON.stringify(failing.AlarmRule);
    const alarms = Object.entries(template.findResources('AWS::CloudWatch::Alarm')) as [string, Resource][];
    const members = alarms
      .filter(([logicalId]) => rule.includes(logicalId))
      .map(([, a]) => a.Properties.AlarmName);
    expect(members.sort()).toEqual([...FAILING_MEMBERS].sort());

    // Every other alarm either pages alone (a different failure kind) or is a record only.
    const withActions = alarms
      .filter(([, a]) => ((a.Properties.AlarmActions as unknown[]) ?? []).length > 0)
      .map(([, a]) => a.Properties.AlarmName);
    expect(withActions.sort()).toEqual([...PAGING].sort());
    for (const [, alarm] of alarms) {
      for (const key of ['AlarmActions', 'OKActions']) {
        for (const action of (alarm.Properties[key] as unknown[] | undefined) ?? [])
          expect(action).toEqual(topic);
      }
    }
    // 6 metric alarms, 5 functions x (errors, throttles), 2 on the queue, 1 on each state machine.
    expect(alarms).toHaveLength(21);
  });

  it("routes a failed backup run to the queue (a member of the composite), restore and verify runs to notify's mail", () => {
    const destination = (fn: { function: IConstruct }) =>
      (
        Object.values(template.findResources('AWS::Lambda::EventInvokeConfig')).find(
          (c) =>
            JSON.stringify((c as Resource).Properties.FunctionName) ===
            JSON.stringify({ Ref: id(fn.function) }),
        ) as Resource
      ).Properties.DestinationConfig;

    expect(destination(stack.backupFunction)).toEqual({
      OnFailure: { Destination: { 'Fn::GetAtt': [id(stack.schedules.deadLetterQueue), 'Arn'] } },
    });
    const notify = {
      OnFailure: { Destination: { 'Fn::GetAtt': [id(stack.notifications.notifyFunction!.function), 'Arn'] } },
    };
    expect(destination(stack.restoreFunction)).toEqual(notify);
    expect(destination(stack.verifyFunction)).toEqual(notify);
    // No dead-letter copy of a mailed failure: it would set off dead-letter-messages, a second mail.
    for (const fn of Object.values(template.findResources('AWS::Lambda::Function')) as Resource[]) {
      expect(fn.Properties.DeadLetterConfig).toBeUndefined();
    }
  });

  it('has alarms without notificationEmail too, minus the notify function', () => {
    const { template: quiet } = synthStack();
    expect(Object.keys(quiet.findResources('AWS::CloudWatch::Alarm'))).toHaveLength(19);
    quiet.resourceCountIs('AWS::CloudWatch::CompositeAlarm', 1);
  });
});

describe('Monitoring: monitor function and schedule', () => {
  const { stack, template } = synthStack({ efsWarnBytes: 5_000_000_000 });
  const monitor = stack.monitoring.monitorFunction;

  it('runs the monitor hourly through the scheduler role, with retries and the dead-letter queue', () => {
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(1 hour)',
      Target: Match.objectLike({
        Arn: { 'Fn::GetAtt': [id(monitor.function), 'Arn'] },
        Input: '{}',
        RoleArn: { 'Fn::GetAtt': [id(stack.schedules.role), 'Arn'] },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [id(stack.schedules.deadLetterQueue), 'Arn'] } },
      }),
    });
  });

  it('gives the monitor the store settings and its thresholds, outside the VPC, without EFS mount', () => {
    const fn = template.findResources('AWS::Lambda::Function')[id(monitor.function)] as Resource;

    expect(fn.Properties).toMatchObject({
      MemorySize: 512,
      Timeout: 300,
      Environment: {
        Variables: expect.objectContaining({
          BUCKET_NAME: { Ref: id(stack.backupBucket.bucket) },
          BACKUP_PREFIX: 'media-backups/',
          EFS_MOUNT: '/mnt/efs',
          MEDIA_PATH: 'media',
          FULL_INTERVAL_DAYS: '7',
          RETENTION_DAYS: '30',
          MAX_BACKUP_AGE_HOURS: '48',
          MIN_BACKUP_BYTES: '1000000',
          MAX_SHRINK_PERCENT: '50',
          EFS_WARN_BYTES: '5000000000',
          FILE_SYSTEM_ID: { Ref: id(stack.mediaFileSystem.fileSystem) },
          STACK_NAME: 'MediaBackup',
        }),
      },
    });
    expect(fn.Properties.VpcConfig).toBeUndefined();
    expect(fn.Properties.FileSystemConfigs).toBeUndefined();
  });

  it('lets the monitor describe the media file system, nothing else on EFS', () => {
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: id(monitor.function.role!) }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Effect: 'Allow',
            Action: 'elasticfilesystem:DescribeFileSystems',
            Resource: { 'Fn::GetAtt': [id(stack.mediaFileSystem.fileSystem), 'Arn'] },
          },
        ]),
      },
    });
  });

  it('sets STACK_NAME, the metrics dimension, on every function', () => {
    const { template: full } = synthStack({ notificationEmail: 'ops@example.com' });
    const functions = Object.values(full.findResources('AWS::Lambda::Function')) as Resource[];

    // backup, restore, verify, monitor, notify, the sharded backup's shard, commit and cleanup, and
    // the restore and verify state machines' phase functions.
    expect(functions).toHaveLength(10);
    full.allResourcesProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ STACK_NAME: 'MediaBackup' }) },
    });
  });

  it.each([
    [{ maxShrinkPercent: 0 }, /`maxShrinkPercent` must be a whole number from 1 to 100/],
    [{ maxBackupAgeHours: 1 }, /`maxBackupAgeHours` must be a whole number >= 2/],
    [{ efsWarnBytes: 0 }, /`efsWarnBytes` must be a whole number >= 1/],
    [{ durationAlarmRatio: 1.2 }, /`durationAlarmRatio` must be between 0 and 1/],
  ])('rejects %o', (props, message) => {
    const base = {
      alarmTopic: stack.notifications.topic,
      bucket: stack.backupBucket.bucket,
      fileSystem: stack.mediaFileSystem.fileSystem,
      scheduler: stack.schedules,
      backupFunction: stack.backupFunction,
      functions: {},
    };
    expect(() => new Monitoring(stack, `Other${Object.keys(props)[0]}`, { ...base, ...props })).toThrow(
      message,
    );
  });
});

describe('Monitoring dashboard', () => {
  it('graphs backup age, sizes, changed files, durations, verify failures and health counts', () => {
    const { template } = synthStack();
    const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard')) as Resource[];

    expect(dashboards).toHaveLength(1);
    expect(dashboards[0]!.Properties.DashboardName).toBe('MediaBackup-media-backup');
    const body = JSON.stringify(dashboards[0]!.Properties.DashboardBody);
    for (const name of [...METRIC_NAMES.backup, ...METRIC_NAMES.verify, ...METRIC_NAMES.monitor]) {
      expect(body).toContain(`\\"${name}\\"`);
    }
    expect(body).toContain('MediaBackup');
    expect(body).toContain('alarm');
  });
});

/** The text of a `Fn::Join` of strings and tokens, each token as `TOKEN` (they all sit inside JSON strings). */
function joined(value: unknown): string {
  const join = (value as { 'Fn::Join': [string, unknown[]] })['Fn::Join'];
  return join[1].map((part) => (typeof part === 'string' ? part : 'TOKEN')).join(join[0]);
}

/** MediaBackup metric names an alarm of `template` watches. */
function alarmedMetrics(template: Template): Set<string> {
  const names = new Set<string>();
  for (const alarm of Object.values(template.findResources('AWS::CloudWatch::Alarm')) as Resource[]) {
    const p = alarm.Properties as {
      Namespace?: string;
      MetricName?: string;
      Metrics?: { MetricStat?: { Metric: { Namespace: string; MetricName: string } } }[];
    };
    if (p.Namespace === 'MediaBackup' && p.MetricName) names.add(p.MetricName);
    for (const query of p.Metrics ?? []) {
      const metric = query.MetricStat?.Metric;
      if (metric?.Namespace === 'MediaBackup') names.add(metric.MetricName);
    }
  }
  return names;
}

/** MediaBackup metric names a panel of the dashboard of `template` graphs (none without a dashboard). */
function panelMetrics(template: Template): Set<string> {
  const names = new Set<string>();
  for (const dashboard of Object.values(template.findResources('AWS::CloudWatch::Dashboard')) as Resource[]) {
    const body = JSON.parse(joined(dashboard.Properties.DashboardBody)) as {
      widgets: { properties: { metrics?: unknown[][] } }[];
    };
    for (const widget of body.widgets) {
      for (const line of widget.properties.metrics ?? []) {
        if (line[0] === 'MediaBackup' && typeof line[1] === 'string') names.add(line[1]);
      }
    }
  }
  return names;
}

/**
 * Every metric name the functions publish: each `addMetric(` call in lambda/ names its metric
 * through `METRIC.<key>` (lambda/handlers/metrics.ts) or `NOTIFICATION_FAILURES_METRIC` (notify).
 */
function emittedMetrics(): Set<string> {
  const root = fileURLToPath(new URL('../../lambda/', import.meta.url));
  const names = new Set<string>();
  for (const file of readdirSync(root, { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts')) continue;
    const source = readFileSync(join(root, file), 'utf8');
    for (const [, argument] of source.matchAll(/\.addMetric\(\s*([^,]+),/g)) {
      const key = /^METRIC\.(\w+)$/.exec(argument!.trim())?.[1];
      const name =
        key !== undefined
          ? (METRIC as Record<string, string>)[key]
          : argument!.trim() === 'NOTIFICATION_FAILURES_METRIC'
            ? NOTIFICATION_FAILURES_METRIC
            : undefined;
      expect(
        name,
        `lambda/${file}: addMetric(${argument}) names its metric in a way this test cannot read`,
      ).toBeDefined();
      names.add(name!);
    }
  }
  return names;
}

describe('Monitoring: every published metric is used', () => {
  const { template } = synthStack({ notificationEmail: 'ops@example.com' });
  const published = [...Object.values(METRIC_NAMES).flat()].sort();

  it('lib/metrics.ts METRIC_NAMES lists exactly the metrics the functions publish', () => {
    expect([...emittedMetrics()].sort()).toEqual(published);
  });

  it('publishes no metric that no alarm and no dashboard panel uses', () => {
    const used = new Set([...alarmedMetrics(template), ...panelMetrics(template)]);
    expect(published.filter((name) => !used.has(name))).toEqual([]);
  });

  it('PANEL_ONLY_METRICS are exactly the published metrics no alarm uses (kept with dashboard=false)', () => {
    const alarmed = alarmedMetrics(template);
    expect(published.filter((name) => !alarmed.has(name))).toEqual([...PANEL_ONLY_METRICS].sort());
  });
});

describe('Monitoring: dashboard context key', () => {
  it('synthesizes the dashboard and its DashboardName output by default', () => {
    const { template } = synthStack();
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    expect(Object.keys(template.findOutputs('DashboardName'))).toHaveLength(1);
  });

  it('synthesizes no dashboard and no DashboardName output with dashboard=false, with the same alarms', () => {
    const { template: without } = synthStack({ dashboard: 'false' });
    const { template: withDashboard } = synthStack();
    without.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
    expect(without.findOutputs('DashboardName')).toEqual({});
    expect(Object.keys(without.findResources('AWS::CloudWatch::Alarm')).sort()).toEqual(
      Object.keys(withDashboard.findResources('AWS::CloudWatch::Alarm')).sort(),
    );
    without.resourceCountIs('AWS::CloudWatch::CompositeAlarm', 1);
  });
});
