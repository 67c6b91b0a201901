import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Alarm, Metric } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { describe, expect, it } from 'vitest';
import { MediaBackupStack, parseConfig } from '../../lib/index.js';
import { checkDelivery } from './delivery-rules.js';
import { newTestApp } from './test-app.js';

const KMS_KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const EMAIL = { notificationEmail: 'ops@example.com' };
const EXISTING = {
  fileSystemId: 'fs-0123456789abcdef0',
  accessPointId: 'fsap-0123456789abcdef0',
  securityGroupId: 'sg-0123456789abcdef0',
  vpcId: 'vpc-0123456789abcdef0',
  privateSubnetIds: 'subnet-0123456789abcdef0,subnet-0123456789abcdef1',
  availabilityZones: 'eu-west-1a,eu-west-1b',
};
const ENV = { account: '123456789012', region: 'eu-west-1' };

type Resources = Record<string, { Type: string; Properties?: Record<string, unknown> }>;
const count = (resources: Resources, ...types: string[]) =>
  Object.values(resources).filter((r) => types.includes(r.Type)).length;

describe('delivery rules on the synthesized stack', () => {
  it.each([
    ['defaults (no email)', {}, undefined],
    ['with email', EMAIL, undefined],
    ['with email and a KMS key', { ...EMAIL, kmsKeyArn: KMS_KEY_ARN }, undefined],
    ['existing EFS, Object Lock, email, explicit env', { ...EMAIL, ...EXISTING, objectLock: true }, ENV],
  ] as const)('every alarm, schedule, destination and subscription delivers: %s', (_name, raw, env) => {
    const stack = new MediaBackupStack(newTestApp(), 'MediaBackup', {
      config: parseConfig(raw),
      ...(env ? { env } : {}),
    });
    const template = Template.fromStack(stack).toJSON();
    const resources = template.Resources as Resources;

    const { problems, walked } = checkDelivery(template, env ?? {});

    expect(problems).toEqual([]);
    // Not vacuous: every alarm and schedule of the template was walked, and there are many.
    const alarms = count(resources, 'AWS::CloudWatch::Alarm', 'AWS::CloudWatch::CompositeAlarm');
    expect(alarms).toBeGreaterThanOrEqual(10);
    expect(walked.alarms).toBe(alarms);
    const actions = Object.values(resources)
      .filter((r) => r.Type.startsWith('AWS::CloudWatch::') && r.Type.endsWith('Alarm'))
      .flatMap((r) =>
        ['AlarmActions', 'OKActions', 'InsufficientDataActions'].flatMap(
          (k) => (r.Properties?.[k] as unknown[]) ?? [],
        ),
      );
    expect(walked.alarmActions).toBe(actions.length);
    expect(walked.alarmActions).toBeGreaterThanOrEqual(5);
    expect(walked.schedules).toBe(count(resources, 'AWS::Scheduler::Schedule'));
    expect(walked.schedules).toBeGreaterThanOrEqual(4);
    expect(walked.scheduleDeadLetterQueues).toBe(walked.schedules);
    expect(walked.functionDestinations).toBeGreaterThanOrEqual(2);
    expect(walked.lambdaSubscriptions).toBe('notificationEmail' in raw ? 1 : 0);
  });
});

describe('delivery rules: each rule catches its failure', () => {
  /** An alarm publishing to a topic, built as the stack built it before the fix. */
  function alarmToTopic(configure: (stack: Stack, topic: Topic) => void = () => {}, topicProps = {}) {
    const stack = new Stack(newTestApp({}), 'Test');
    const topic = new Topic(stack, 'Topic', { enforceSSL: true, ...topicProps });
    configure(stack, topic);
    new Alarm(stack, 'Alarm', {
      alarmName: 'Test-backup-failed',
      metric: new Metric({ namespace: 'Test', metricName: 'Failed', period: Duration.minutes(5) }),
      threshold: 1,
      evaluationPeriods: 1,
    }).addAlarmAction(new SnsAction(topic));
    return checkDelivery(Template.fromStack(stack).toJSON());
  }
  const allowAlarms = (resourceName: string) => (stack: Stack, topic: Topic) => {
    topic.addToResourcePolicy(
      new PolicyStatement({
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: {
          StringEquals: { 'aws:SourceAccount': stack.account },
          ArnLike: {
            'aws:SourceArn': `arn:${stack.partition}:cloudwatch:${stack.region}:${stack.account}:alarm:${resourceName}`,
          },
        },
      }),
    );
  };

  it('finds that an enforceSSL topic policy leaves CloudWatch no Allow (the original bug)', () => {
    const { problems, walked } = alarmToTopic();

    expect(walked.alarmActions).toBe(1);
    expect(problems).toEqual([
      expect.stringMatching(
        /has no Allow of sns:Publish for cloudwatch\.amazonaws\.com from arn:.*:alarm:Test-backup-failed/,
      ),
    ]);
  });

  it('accepts an Allow for this account whose alarm ARN pattern covers the alarm', () => {
    expect(alarmToTopic(allowAlarms('Test-*')).problems).toEqual([]);
  });

  it('refuses an Allow whose aws:SourceArn pattern misses the alarm name', () => {
    expect(alarmToTopic(allowAlarms('Other-*')).problems).toEqual([
      expect.stringMatching(/has no Allow of sns:Publish/),
    ]);
  });

  it('requires the key policy of an encrypted topic to let CloudWatch use the key', () => {
    const stack = new Stack(newTestApp({}), 'Encrypted');
    const topic = new Topic(stack, 'Topic', { enforceSSL: true, masterKey: new Key(stack, 'Key') });
    allowAlarms('Test-*')(stack, topic);
    new Alarm(stack, 'Alarm', {
      alarmName: 'Test-x',
      metric: new Metric({ namespace: 'Test', metricName: 'X' }),
      threshold: 1,
      evaluationPeriods: 1,
    }).addAlarmAction(new SnsAction(topic));

    expect(checkDelivery(Template.fromStack(stack).toJSON()).problems).toEqual([
      expect.stringMatching(/policy does not let cloudwatch\.amazonaws\.com kms:Decrypt/),
      expect.stringMatching(/policy does not let cloudwatch\.amazonaws\.com kms:GenerateDataKey/),
    ]);
  });

  // Raw templates: the smallest shapes that break one rule each.
  const fn = (role = 'FnRole') => ({
    Type: 'AWS::Lambda::Function',
    Properties: { Role: { 'Fn::GetAtt': [role, 'Arn'] } },
  });
  const role = (service: string, statements: object[] = []) => ({
    Type: 'AWS::IAM::Role',
    Properties: {
      AssumeRolePolicyDocument: {
        Statement: [{ Effect: 'Allow', Principal: { Service: service }, Action: 'sts:AssumeRole' }],
      },
      Policies: [{ PolicyName: 'p', PolicyDocument: { Statement: statements } }],
    },
  });
  const arn = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });
  const queue = { Type: 'AWS::SQS::Queue', Properties: { SqsManagedSseEnabled: true } };
  const schedule = {
    Type: 'AWS::Scheduler::Schedule',
    Properties: {
      Target: { Arn: arn('Fn'), RoleArn: arn('SchedulerRole'), DeadLetterConfig: { Arn: arn('Dlq') } },
    },
  };
  const invoke = { Effect: 'Allow', Action: 'lambda:InvokeFunction', Resource: [arn('Fn')] };
  const send = { Effect: 'Allow', Action: 'sqs:SendMessage', Resource: arn('Dlq') };

  it('requires the Scheduler execution role to invoke the target and send to the DLQ', () => {
    const base = { Fn: fn(), FnRole: role('lambda.amazonaws.com'), Dlq: queue, Schedule: schedule };

    expect(
      checkDelivery({
        Resources: { ...base, SchedulerRole: role('scheduler.amazonaws.com', [invoke, send]) },
      }).problems,
    ).toEqual([]);
    expect(
      checkDelivery({ Resources: { ...base, SchedulerRole: role('scheduler.amazonaws.com', [invoke]) } })
        .problems,
    ).toEqual([
      expect.stringMatching(/dead-letter queue: role SchedulerRole has no Allow of sqs:SendMessage/),
    ]);
    expect(
      checkDelivery({ Resources: { ...base, SchedulerRole: role('scheduler.amazonaws.com', [send]) } })
        .problems,
    ).toEqual([
      expect.stringMatching(/schedule Schedule: role SchedulerRole has no Allow of lambda:InvokeFunction/),
    ]);
    expect(
      checkDelivery({ Resources: { ...base, SchedulerRole: role('events.amazonaws.com', [invoke, send]) } })
        .problems,
    ).toEqual([expect.stringMatching(/does not let scheduler\.amazonaws\.com assume it/)]);
  });

  it('requires a queue policy not to deny the DLQ write (TLS-only deny is fine)', () => {
    const tlsOnly = {
      Type: 'AWS::SQS::QueuePolicy',
      Properties: {
        Queues: [{ Ref: 'Dlq' }],
        PolicyDocument: {
          Statement: [
            {
              Effect: 'Deny',
              Principal: { AWS: '*' },
              Action: 'sqs:*',
              Resource: arn('Dlq'),
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            },
          ],
        },
      },
    };
    const denyAll = structuredClone(tlsOnly);
    delete (denyAll.Properties.PolicyDocument.Statement[0] as { Condition?: unknown }).Condition;
    const base = {
      Fn: fn(),
      FnRole: role('lambda.amazonaws.com'),
      Dlq: queue,
      Schedule: schedule,
      SchedulerRole: role('scheduler.amazonaws.com', [invoke, send]),
    };

    expect(checkDelivery({ Resources: { ...base, Policy: tlsOnly } }).problems).toEqual([]);
    expect(checkDelivery({ Resources: { ...base, Policy: denyAll } }).problems).toEqual([
      expect.stringMatching(/resource policy of .*Dlq.* denies sqs:SendMessage/),
    ]);
  });

  it("requires a Lambda destination and dead-letter queue to be granted to the function's role", () => {
    const config = {
      Type: 'AWS::Lambda::EventInvokeConfig',
      Properties: {
        FunctionName: { Ref: 'Fn' },
        DestinationConfig: { OnFailure: { Destination: arn('Notify') } },
      },
    };
    const withDlq = {
      ...fn(),
      Properties: { ...fn().Properties, DeadLetterConfig: { TargetArn: arn('Dlq') } },
    };
    const base = {
      Fn: withDlq,
      Notify: fn('NotifyRole'),
      NotifyRole: role('lambda.amazonaws.com'),
      Dlq: queue,
      Config: config,
    };
    const invokeNotify = { Effect: 'Allow', Action: 'lambda:InvokeFunction', Resource: arn('Notify') };

    const granted = checkDelivery({
      Resources: { ...base, FnRole: role('lambda.amazonaws.com', [invokeNotify, send]) },
    });
    expect(granted.problems).toEqual([]);
    expect(granted.walked.functionDestinations).toBe(2);
    expect(checkDelivery({ Resources: { ...base, FnRole: role('lambda.amazonaws.com') } }).problems).toEqual([
      expect.stringMatching(
        /function Fn OnFailure destination: role FnRole has no Allow of lambda:InvokeFunction/,
      ),
      expect.stringMatching(/function Fn dead-letter queue: role FnRole has no Allow of sqs:SendMessage/),
    ]);
  });

  it('requires a Lambda permission for SNS, from this topic, for a lambda subscription', () => {
    const base = {
      Topic: { Type: 'AWS::SNS::Topic' },
      Fn: fn(),
      FnRole: role('lambda.amazonaws.com'),
      Subscription: {
        Type: 'AWS::SNS::Subscription',
        Properties: { Protocol: 'lambda', Endpoint: arn('Fn'), TopicArn: { Ref: 'Topic' } },
      },
    };
    const permission = (sourceArn: unknown) => ({
      Type: 'AWS::Lambda::Permission',
      Properties: {
        Action: 'lambda:InvokeFunction',
        FunctionName: arn('Fn'),
        Principal: 'sns.amazonaws.com',
        SourceArn: sourceArn,
      },
    });

    expect(
      checkDelivery({ Resources: { ...base, Permission: permission({ Ref: 'Topic' }) } }).problems,
    ).toEqual([]);
    expect(checkDelivery({ Resources: base }).problems).toEqual([
      expect.stringMatching(/no AWS::Lambda::Permission lets sns\.amazonaws\.com invoke/),
    ]);
    expect(
      checkDelivery({
        Resources: { ...base, Permission: permission('arn:aws:sns:eu-west-1:123456789012:other') },
      }).problems,
    ).toHaveLength(1);
  });
});
