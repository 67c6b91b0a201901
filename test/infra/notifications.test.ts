import { type App, type CfnElement, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { MediaBackupStack, Notifications, parseConfig } from '../../lib/index.js';
import { newTestApp } from './test-app.js';

const KMS_KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const EMAIL = { notificationEmail: 'ops@example.com', senderEmail: 'backup@example.com' };

function newApp(): App {
  return newTestApp();
}

function synthStack(raw: Record<string, unknown> = EMAIL) {
  const stack = new MediaBackupStack(newApp(), 'MediaBackup', { config: parseConfig(raw) });
  return { stack, template: Template.fromStack(stack) };
}

const id = (construct: IConstruct) =>
  Stack.of(construct).getLogicalId((construct.node.defaultChild ?? construct) as CfnElement);

type Resource = { Properties: Record<string, unknown> };

describe('Notifications', () => {
  const { stack, template } = synthStack();
  const notify = stack.notifications.notifyFunction!;
  const topic = { Ref: id(stack.notifications.topic) };
  const notifyArn = { 'Fn::GetAtt': [id(notify.function), 'Arn'] };

  it("has one TLS-only topic that this stack's alarms may publish to, with a Lambda subscription only", () => {
    template.resourceCountIs('AWS::SNS::Topic', 1);
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [topic],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: 'sns:Publish',
            Resource: topic,
            Condition: {
              StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
              ArnLike: {
                'aws:SourceArn': {
                  'Fn::Join': [
                    '',
                    [
                      'arn:',
                      { Ref: 'AWS::Partition' },
                      ':cloudwatch:',
                      { Ref: 'AWS::Region' },
                      ':',
                      { Ref: 'AWS::AccountId' },
                      ':alarm:MediaBackup-*',
                    ],
                  ],
                },
              },
            },
          }),
        ]),
      },
    });
    // One failure, one formatted mail: the raw SNS email is opt-in (rawAlarmEmail).
    expect(
      Object.values(template.findResources('AWS::SNS::Subscription')).map(
        (s) => (s as Resource).Properties.Protocol,
      ),
    ).toEqual(['lambda']);
    template.hasResourceProperties('AWS::SNS::Subscription', {
      TopicArn: topic,
      Protocol: 'lambda',
      Endpoint: notifyArn,
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'sns.amazonaws.com',
      SourceArn: topic,
    });
  });

  it('runs the notify function outside the VPC with the sender, recipient, store and stack', () => {
    const fn = template.findResources('AWS::Lambda::Function')[id(notify.function)] as Resource;

    expect(fn.Properties.VpcConfig).toBeUndefined();
    expect(fn.Properties.FileSystemConfigs).toBeUndefined();
    expect((fn.Properties.Environment as { Variables: object }).Variables).toMatchObject({
      SENDER_EMAIL: 'backup@example.com',
      NOTIFICATION_EMAIL: 'ops@example.com',
      STACK_NAME: 'MediaBackup',
      BUCKET_NAME: { Ref: id(stack.backupBucket.bucket) },
      BACKUP_PREFIX: 'media-backups/',
    });
  });

  it('subscribes notificationEmail to the raw alarm text as well with rawAlarmEmail', () => {
    const { template: raw } = synthStack({ ...EMAIL, rawAlarmEmail: true });

    raw.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
    raw.resourceCountIs('AWS::SNS::Subscription', 2);
  });

  it('uses an existing SES identity by name with useExistingSesIdentity (no AWS::SES::EmailIdentity)', () => {
    const { template: existing } = synthStack({ ...EMAIL, useExistingSesIdentity: true });

    existing.resourceCountIs('AWS::SES::EmailIdentity', 0);
    const ses = Object.values(existing.findResources('AWS::IAM::Policy'))
      .flatMap(
        (p) =>
          ((p as Resource).Properties.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement,
      )
      .filter((s) => JSON.stringify(s.Action).includes('ses:'));
    expect(ses).toHaveLength(1);
    expect(JSON.stringify(ses[0]!.Resource)).toContain(':identity/backup@example.com');
  });

  it('creates an SES identity for the sender and allows sending only as that identity', () => {
    template.hasResourceProperties('AWS::SES::EmailIdentity', { EmailIdentity: 'backup@example.com' });
    template.resourceCountIs('AWS::SES::EmailIdentity', 1);

    const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap(
      (policy) => (policy as Resource).Properties.PolicyDocument as { Statement: Record<string, unknown>[] },
    );
    const ses = statements
      .flatMap((document) => document.Statement)
      .filter((s) => JSON.stringify(s.Action).includes('ses:'));
    expect(ses).toHaveLength(1);
    expect(ses[0]).toMatchObject({ Effect: 'Allow', Action: ['ses:SendEmail', 'ses:SendRawEmail'] });
    const resource = JSON.stringify(ses[0]!.Resource);
    expect(resource).toContain(':identity/');
    expect(resource).toContain(id(stack.notifications.senderIdentity!));
    expect(resource).not.toContain('*');
  });

  it('gives the notify function read-only access to the store', () => {
    const roleId = id(notify.function.role!);
    const actions = Object.values(template.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify((p as Resource).Properties.Roles).includes(roleId))
      .flatMap(
        (p) => ((p as Resource).Properties.PolicyDocument as { Statement: { Action: unknown }[] }).Statement,
      )
      .flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])) as string[];

    expect(actions.filter((a) => a.startsWith('s3:')).sort()).toEqual([
      's3:GetObject',
      's3:ListBucket',
      's3:ListBucketMultipartUploads',
      's3:ListMultipartUploadParts',
    ]);
  });

  it.each(['restoreFunction', 'verifyFunction'] as const)(
    'reports failed async runs of %s to the notify function only (no dead-letter copy: one failure, one mail)',
    (key) => {
      const fn = stack[key].function;

      template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
        FunctionName: { Ref: id(fn) },
        MaximumRetryAttempts: 0,
        DestinationConfig: { OnFailure: { Destination: notifyArn } },
      });
      expect(
        (template.findResources('AWS::Lambda::Function')[id(fn)] as Resource).Properties.DeadLetterConfig,
      ).toBeUndefined();
    },
  );

  it("sends the notify function's own failures, after two retries, to the dead-letter queue", () => {
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: id(notify.function) },
      MaximumRetryAttempts: 2,
      DestinationConfig: {
        OnFailure: { Destination: { 'Fn::GetAtt': [id(stack.schedules.deadLetterQueue), 'Arn'] } },
      },
    });
    template.resourceCountIs('AWS::Lambda::EventInvokeConfig', 4);
  });

  it('invokes the notify function with {"kind":"digest"} every Monday at 09:00 in the time zone', () => {
    const { template: berlin } = synthStack({ ...EMAIL, timeZone: 'Europe/Berlin' });

    berlin.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 9 ? * MON *)',
      ScheduleExpressionTimezone: 'Europe/Berlin',
      Target: Match.objectLike({ Arn: Match.anyValue(), Input: '{"kind":"digest"}' }),
    });
  });

  it('leaves out the digest with weeklyDigest false', () => {
    const { template: noDigest } = synthStack({ ...EMAIL, weeklyDigest: false });
    const inputs = Object.values(noDigest.findResources('AWS::Scheduler::Schedule')).map(
      (s) => ((s as Resource).Properties.Target as { Input: string }).Input,
    );

    expect(inputs).not.toContain('{"kind":"digest"}');
    expect(inputs).toHaveLength(4);
  });

  it('sends from notificationEmail when senderEmail is not set', () => {
    const { template: single } = synthStack({ notificationEmail: 'ops@example.com' });

    single.hasResourceProperties('AWS::SES::EmailIdentity', { EmailIdentity: 'ops@example.com' });
    single.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          SENDER_EMAIL: 'ops@example.com',
          NOTIFICATION_EMAIL: 'ops@example.com',
        }),
      },
    });
  });

  it('keeps failed runs in the dead-letter queue as before without notificationEmail', () => {
    const { stack: quiet, template: quietTemplate } = synthStack({});

    quietTemplate.resourceCountIs('AWS::Lambda::EventInvokeConfig', 2);
    quietTemplate.allResourcesProperties('AWS::Lambda::EventInvokeConfig', {
      DestinationConfig: {
        OnFailure: { Destination: { 'Fn::GetAtt': [id(quiet.schedules.deadLetterQueue), 'Arn'] } },
      },
    });
    expect(quiet.notifications.notifyFunction).toBeUndefined();
  });

  it.each([
    [{ senderEmail: 'a@example.com' }, /`senderEmail` needs `notificationEmail`/],
    [{ notificationEmail: 'ops' }, /`notificationEmail` must be an email address/],
    [{ notificationEmail: 'ops@example.com', digestTime: '9am' }, /`digestTime` must be a time of day/],
    [{ notificationEmail: 'ops@example.com', digestDay: 'XYZ' }, /`digestDay` must be one of/],
  ])('rejects %o', (props, message) => {
    const { stack: host } = synthStack({});
    const base = {
      bucket: host.backupBucket.bucket,
      reportFailuresOf: [],
      deadLetterQueue: host.schedules.deadLetterQueue,
      scheduler: host.schedules,
    };
    expect(() => new Notifications(host, 'Other', { ...base, ...(props as object) })).toThrow(message);
  });
});

describe('cdk-nag with monitoring and notifications', () => {
  it.each([
    ['email, separate sender and KMS', { ...EMAIL, kmsKeyArn: KMS_KEY_ARN, efsWarnBytes: 1_000_000_000 }],
    ['email without digest', { notificationEmail: 'ops@example.com', weeklyDigest: false }],
  ])('finds nothing unacknowledged with %s', (_case, raw) => {
    const app = newApp();
    new MediaBackupStack(app, 'MediaBackup', { config: parseConfig(raw) });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));

    expect(new AwsSolutionsChecks().validateScope(app)).toEqual({ success: true, violations: [] });
    expect(() => app.synth()).not.toThrow();
  });
});
