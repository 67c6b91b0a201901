import { readFileSync } from 'node:fs';
import { type App, type CfnElement, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import {
  BackupFunction,
  BackupSchedules,
  MediaBackupStack,
  MediaFileSystem,
  parseConfig,
} from '../../lib/index.js';
import { newTestApp } from './test-app.js';

const KMS_KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const EXISTING = {
  fileSystemId: 'fs-0123456789abcdef0',
  accessPointId: 'fsap-0123456789abcdef0',
  securityGroupId: 'sg-0123456789abcdef0',
  vpcId: 'vpc-0123456789abcdef0',
  privateSubnetIds: 'subnet-0123456789abcdef0,subnet-0123456789abcdef1',
  availabilityZones: 'eu-west-1a,eu-west-1b',
};

// Bundling skipped for every stack (synth.test.ts runs the real esbuild bundling).
function newApp(): App {
  return newTestApp();
}

function synthStack(raw: Record<string, unknown> = {}) {
  const app = newApp();
  const stack = new MediaBackupStack(app, 'MediaBackup', { config: parseConfig(raw) });
  return { app, stack, template: Template.fromStack(stack) };
}

const id = (construct: IConstruct) =>
  Stack.of(construct).getLogicalId((construct.node.defaultChild ?? construct) as CfnElement);

type Statement = { Action: string | string[]; Effect: string; Resource?: unknown };

/** Every statement of every AWS::IAM::Policy attached to the role of `fn`. */
function roleStatements(template: Template, fn: BackupFunction): Statement[] {
  const roleId = id(fn.function.role!);
  const policies = template.findResources('AWS::IAM::Policy');
  const attached = Object.values(policies).filter((policy) =>
    (policy.Properties.Roles as { Ref: string }[]).some((role) => role.Ref === roleId),
  );
  expect(attached.length).toBeGreaterThan(0);
  return attached.flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}

const actionsOf = (statements: Statement[]) =>
  statements.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));

describe('MediaBackupStack functions', () => {
  const { stack, template } = synthStack();

  it.each([
    ['backupFunction', 3538, 'media-backup-backup'],
    ['restoreFunction', 2048, 'media-backup-restore'],
    ['verifyFunction', 1024, 'media-backup-verify'],
  ] as const)(
    'runs %s on Node.js 24, ARM64, 15 minutes, %i MB, with the contract environment',
    (key, memory, service) => {
      const fn = stack[key];

      template.hasResourceProperties('AWS::Lambda::Function', {
        FunctionName: Match.absent(),
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Timeout: 900,
        MemorySize: memory,
        Handler: 'index.handler',
        LoggingConfig: { LogFormat: 'JSON', LogGroup: { Ref: id(fn.logGroup) } },
        Environment: {
          Variables: Match.objectEquals({
            NODE_OPTIONS: '--enable-source-maps',
            UV_THREADPOOL_SIZE: '64',
            BUCKET_NAME: { Ref: id(stack.backupBucket.bucket) },
            BACKUP_PREFIX: 'media-backups/',
            EFS_MOUNT: '/mnt/efs',
            MEDIA_PATH: 'media',
            RESTORES_PATH: 'restores',
            FULL_INTERVAL_DAYS: '7',
            POWERTOOLS_SERVICE_NAME: service,
            POWERTOOLS_LOG_LEVEL: 'INFO',
            STACK_NAME: 'MediaBackup',
            ...(key === 'backupFunction'
              ? {
                  DEADLINE_MARGIN_MS: '60000',
                  COMPRESSION_LEVEL: '5',
                  // The sharded backup it starts when a run does not fit (test/infra/state-machines.test.ts).
                  BACKUP_STATE_MACHINE_ARN: { Ref: id(stack.backupStateMachine.stateMachine) },
                  SHARDED_RUN_TIMEOUT_SECONDS: '86400',
                  SYNTHETIC_FULLS: 'true',
                  NORMAL_FULL_EVERY: '4',
                }
              : {}),
            ...(key === 'verifyFunction'
              ? {
                  // The deep verify state machine it hands a deep verify too large for it to.
                  VERIFY_STATE_MACHINE_ARN: { Ref: id(stack.verifyStateMachine.stateMachine) },
                }
              : {}),
          }),
        },
      });
      expect(Object.keys(template.findResources('AWS::Lambda::Function'))).toContain(id(fn.function));
    },
  );

  it('times out as the README says: backup, restore, verify 15 min; monitor 300 s; notify 120 s', () => {
    const { stack: withEmail, template: t } = synthStack({ notificationEmail: 'ops@example.com' });
    const timeout = (fn: BackupFunction) =>
      (t.findResources('AWS::Lambda::Function')[id(fn.function)] as { Properties: { Timeout: number } })
        .Properties.Timeout;

    expect({
      backup: timeout(withEmail.backupFunction),
      restore: timeout(withEmail.restoreFunction),
      verify: timeout(withEmail.verifyFunction),
      monitor: timeout(withEmail.monitoring.monitorFunction),
      notify: timeout(withEmail.notifications.notifyFunction!),
    }).toEqual({ backup: 900, restore: 900, verify: 900, monitor: 300, notify: 120 });
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8').replace(/\s+/g, ' ');
    expect(readme).toContain(
      'timeouts of 15 minutes for `backup`, `restore` and `verify`, 300 s for `monitor` and 120 s for `notify`',
    );
  });

  it('sizes the libuv thread pool for EFS on every function (UV_THREADPOOL_SIZE 64, not 4)', () => {
    const { stack: withEmail, template: t } = synthStack({ notificationEmail: 'ops@example.com' });
    const threads = (fn: BackupFunction) =>
      (
        t.findResources('AWS::Lambda::Function')[id(fn.function)] as {
          Properties: { Environment: { Variables: Record<string, unknown> } };
        }
      ).Properties.Environment.Variables.UV_THREADPOOL_SIZE;
    expect({
      backup: threads(withEmail.backupFunction),
      restore: threads(withEmail.restoreFunction),
      verify: threads(withEmail.verifyFunction),
      monitor: threads(withEmail.monitoring.monitorFunction),
      notify: threads(withEmail.notifications.notifyFunction!),
    }).toEqual({ backup: '64', restore: '64', verify: '64', monitor: '64', notify: '64' });
  });

  it('gives every function its own log group with the configured retention', () => {
    // backup, restore, verify, monitor, shard, shard commit, shard cleanup, restore phase, verify
    // phase and the three state machines (notify only with notificationEmail).
    template.resourceCountIs('AWS::Logs::LogGroup', 12);
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 90 });
    const { template: longer } = synthStack({ logRetentionDays: 365 });
    longer.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 365 });
  });

  const reserved = (t: Template) =>
    Object.values(t.findResources('AWS::Lambda::Function')).filter(
      (fn) => fn.Properties.ReservedConcurrentExecutions !== undefined,
    );

  it('reserves no concurrency by default (a low account quota would fail the deploy)', () => {
    expect(reserved(template)).toEqual([]);
  });

  it('reserves a concurrency of 1 for the backup function only with reserveBackupConcurrency', () => {
    const { template: opted } = synthStack({ reserveBackupConcurrency: true });

    opted.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('tar.gz backup'),
      ReservedConcurrentExecutions: 1,
    });
    expect(reserved(opted)).toHaveLength(1);
  });

  it('mounts the access point at /mnt/efs in the backup and restore functions, not in verify', () => {
    const mount = {
      FileSystemConfigs: [
        {
          LocalMountPath: '/mnt/efs',
          Arn: Match.objectLike({
            'Fn::Join': Match.arrayWith([Match.arrayWith([{ Ref: id(stack.mediaFileSystem.accessPoint) }])]),
          }),
        },
      ],
    };
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('tar.gz backup'),
      ...mount,
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('restore a backup'),
      ...mount,
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('verify backups'),
      FileSystemConfigs: Match.absent(),
    });
  });

  it('runs backup, restore and verify in the private subnets with the media security group, monitor outside', () => {
    const subnets = stack.mediaFileSystem.vpc.isolatedSubnets.map((subnet) => ({ Ref: id(subnet) }));
    expect(subnets).toHaveLength(2);
    const functions = template.findResources('AWS::Lambda::Function');
    for (const fn of [stack.backupFunction, stack.restoreFunction, stack.verifyFunction]) {
      expect(functions[id(fn.function)]!.Properties.VpcConfig).toEqual({
        SubnetIds: subnets,
        SecurityGroupIds: [{ 'Fn::GetAtt': [id(stack.mediaFileSystem.securityGroup), 'GroupId'] }],
      });
    }
    // The monitor mounts nothing and calls the EFS API, which the isolated subnets cannot reach.
    expect(functions[id(stack.monitoring.monitorFunction.function)]!.Properties.VpcConfig).toBeUndefined();
  });

  it('adds KMS_KEY_ID and key grants only when a key is configured', () => {
    expect(JSON.stringify(template.toJSON())).not.toContain('KMS_KEY_ID');

    const { stack: keyed, template: withKey } = synthStack({ kmsKeyArn: KMS_KEY_ARN });
    withKey.allResourcesProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ KMS_KEY_ID: KMS_KEY_ARN }) },
    });
    expect(actionsOf(roleStatements(withKey, keyed.backupFunction))).toEqual(
      expect.arrayContaining(['kms:GenerateDataKey*', 'kms:Decrypt']),
    );
    expect(actionsOf(roleStatements(withKey, keyed.restoreFunction))).toContain('kms:Decrypt');
    expect(actionsOf(roleStatements(withKey, keyed.restoreFunction))).not.toContain('kms:GenerateDataKey*');
  });

  it('passes compressionLevel to the backup function as COMPRESSION_LEVEL (default 5)', () => {
    const { template } = synthStack();
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('tar.gz backup'),
      Environment: { Variables: Match.objectLike({ COMPRESSION_LEVEL: '5' }) },
    });
    const { template: fastest } = synthStack({ compressionLevel: '1' });
    fastest.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('tar.gz backup'),
      Environment: { Variables: Match.objectLike({ COMPRESSION_LEVEL: '1' }) },
    });
  });

  it('passes backupExclude as a comma-separated BACKUP_EXCLUDE to the backup function', () => {
    const { template: excluding } = synthStack({ backupExclude: ['*.tmp', 'cache/**'] });
    excluding.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ BACKUP_EXCLUDE: '*.tmp,cache/**' }) },
    });
  });
});

describe('MediaBackupStack least privilege', () => {
  it.each([
    ['the default config', {}],
    ['KMS and Object Lock', { kmsKeyArn: KMS_KEY_ARN, objectLock: 'true' }],
  ])('gives the backup role no delete and no bucket configuration action with %s', (_case, raw) => {
    const { stack, template } = synthStack(raw);
    const actions = actionsOf(roleStatements(template, stack.backupFunction));

    expect(actions.filter((action) => /Delete/i.test(action))).toEqual([]);
    expect(
      actions.filter((action) => /^s3:(Put|Delete)(Bucket|Lifecycle)|^s3:\*$|^s3:Bypass/.test(action)),
    ).toEqual([]);
    expect(actions).toEqual(
      expect.arrayContaining(['s3:PutObject', 's3:AbortMultipartUpload', 's3:GetObject']),
    );
  });

  it('limits backup object writes to the backup prefix (backup-role-iam.test.ts checks their conditions)', () => {
    const { stack, template } = synthStack();
    const puts = roleStatements(template, stack.backupFunction).filter((s) =>
      actionsOf([s]).includes('s3:PutObject'),
    );
    const under = (key: string) => ({
      'Fn::Join': ['', [{ 'Fn::GetAtt': [id(stack.backupBucket.bucket), 'Arn'] }, `/media-backups/${key}`]],
    });

    expect(puts.map((s) => s.Resource)).toEqual([
      under('*'),
      under('*'),
      [under('locks/*'), under('status/*')],
    ]);
  });

  it.each(['restoreFunction', 'verifyFunction'] as const)(
    'gives the %s role no S3 write or delete (verify: its one status record)',
    (key) => {
      const { stack, template } = synthStack({ kmsKeyArn: KMS_KEY_ARN });
      const s3Actions = actionsOf(roleStatements(template, stack[key])).filter((a) => a.startsWith('s3:'));

      const writes = roleStatements(template, stack[key]).filter((s) =>
        actionsOf([s]).some((a) => /^s3:(Put|Delete|Abort|Replicate|Restore)/.test(a)),
      );

      expect(s3Actions.length).toBeGreaterThan(0);
      // Verify rewrites its own record (status/last-verify.json) and nothing else.
      expect(
        writes.map((s) => [
          s.Action,
          JSON.stringify(s.Resource).includes('/media-backups/status/last-verify.json"'),
        ]),
      ).toEqual(key === 'verifyFunction' ? [['s3:PutObject', true]] : []);
    },
  );

  it('lets the backup mount EFS read-only and the restore mount it read-write, on the access point only', () => {
    const { stack, template } = synthStack();
    const efs = (key: 'backupFunction' | 'restoreFunction') =>
      roleStatements(template, stack[key]).filter((s) =>
        actionsOf([s]).some((a) => a.startsWith('elasticfilesystem:')),
      );
    const onAccessPoint = {
      StringEquals: {
        'elasticfilesystem:AccessPointArn': Match.objectLike({
          'Fn::Join': Match.arrayWith([Match.arrayWith([{ Ref: id(stack.mediaFileSystem.accessPoint) }])]),
        }),
      },
    };

    expect(actionsOf(efs('backupFunction'))).toEqual(['elasticfilesystem:ClientMount']);
    expect(actionsOf(efs('restoreFunction'))).toEqual([
      'elasticfilesystem:ClientMount',
      'elasticfilesystem:ClientWrite',
    ]);
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Action: 'elasticfilesystem:ClientMount', Condition: onAccessPoint }),
        ]),
      },
    });
    expect(
      actionsOf(roleStatements(template, stack.verifyFunction)).some((a) => a.startsWith('elastic')),
    ).toBe(false);
  });
});

describe('MediaFileSystem', () => {
  it('creates a VPC without NAT, an encrypted EFS deferring to IAM, an access point and an S3 gateway endpoint', () => {
    const { stack, template } = synthStack({ posixUid: 33, posixGid: 44 });

    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::InternetGateway', 0);
    template.resourceCountIs('AWS::EC2::Subnet', 2);
    template.hasResourceProperties('AWS::EFS::FileSystem', {
      Encrypted: true,
      ThroughputMode: 'elastic',
      FileSystemPolicy: {
        Statement: [
          Match.objectLike({
            Effect: 'Allow',
            Action: ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientWrite'],
            Condition: { Bool: { 'elasticfilesystem:AccessedViaMountTarget': 'true' } },
          }),
        ],
      },
    });
    template.hasResource('AWS::EFS::FileSystem', { DeletionPolicy: 'Retain' });
    template.hasResourceProperties('AWS::EFS::AccessPoint', {
      PosixUser: { Uid: '33', Gid: '44' },
      RootDirectory: { Path: '/app', CreationInfo: { OwnerUid: '33', OwnerGid: '44', Permissions: '750' } },
    });
    template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      VpcEndpointType: 'Gateway',
      ServiceName: { 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, '.s3']] },
      RouteTableIds: Match.arrayWith([Match.objectLike({ Ref: Match.stringLikeRegexp('RouteTable') })]),
    });
    // NFS from the functions' security group into the file system's.
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      IpProtocol: 'tcp',
      FromPort: 2049,
      ToPort: 2049,
      SourceSecurityGroupId: { 'Fn::GetAtt': [id(stack.mediaFileSystem.securityGroup), 'GroupId'] },
    });
  });

  it('imports an existing file system, access point, security group and subnets without creating any', () => {
    const { template } = synthStack(EXISTING);

    for (const type of [
      'AWS::EC2::VPC',
      'AWS::EC2::Subnet',
      'AWS::EC2::SecurityGroup',
      'AWS::EFS::FileSystem',
    ]) {
      template.resourceCountIs(type, 0);
    }
    template.resourceCountIs('AWS::EFS::AccessPoint', 0);
    template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0);
    template.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
    template.hasResourceProperties('AWS::Lambda::Function', {
      VpcConfig: {
        SubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'],
        SecurityGroupIds: ['sg-0123456789abcdef0'],
      },
      FileSystemConfigs: [
        {
          LocalMountPath: '/mnt/efs',
          Arn: {
            'Fn::Join': [
              '',
              Match.arrayWith([':elasticfilesystem:', ':access-point/fsap-0123456789abcdef0']),
            ],
          },
        },
      ],
    });
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: 'elasticfilesystem:ClientMount',
            Resource: { 'Fn::Join': ['', Match.arrayWith([':file-system/fs-0123456789abcdef0'])] },
          }),
        ]),
      },
    });
  });

  it('adds the gateway endpoint to the given route tables of an existing VPC', () => {
    const { template } = synthStack({
      ...EXISTING,
      createS3GatewayEndpoint: 'true',
      privateSubnetRouteTableIds: 'rtb-0123456789abcdef0,rtb-0123456789abcdef1',
    });

    template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      VpcId: 'vpc-0123456789abcdef0',
      VpcEndpointType: 'Gateway',
      RouteTableIds: ['rtb-0123456789abcdef0', 'rtb-0123456789abcdef1'],
    });
  });

  it('leaves out the gateway endpoint when told to', () => {
    synthStack({ createS3GatewayEndpoint: false }).template.resourceCountIs('AWS::EC2::VPCEndpoint', 0);
  });

  it.each([
    [{ posixUid: -1 }, /`posixUid` must be a whole number/],
    [{ accessPointPath: 'app' }, /`accessPointPath` must be an absolute path/],
    [{ accessPointPath: '/app/' }, /`accessPointPath` must be an absolute path/],
  ])('rejects %o', (props, message) => {
    expect(() => new MediaFileSystem(new Stack(newApp(), 'Test'), 'Media', props)).toThrow(message);
  });
});

describe('BackupSchedules', () => {
  const scheduleFor = (template: Template, input: object) => {
    const found = Object.values(template.findResources('AWS::Scheduler::Schedule')).filter(
      (s) => s.Properties.Target.Input === JSON.stringify(input),
    );
    expect(found).toHaveLength(1);
    return found[0]!.Properties;
  };

  it('runs auto daily except on the full day, full on that day at the same time, in the time zone', () => {
    const { template } = synthStack({
      backupSchedule: '03:15',
      fullBackupDay: 'WED',
      timeZone: 'Europe/Berlin',
    });

    // daily, full, weekly verify and the hourly monitor (the digest needs notificationEmail).
    template.resourceCountIs('AWS::Scheduler::Schedule', 4);
    template.allResourcesProperties('AWS::Scheduler::Schedule', {
      FlexibleTimeWindow: { Mode: 'OFF' },
      State: 'ENABLED',
    });
    const crons = Object.values(template.findResources('AWS::Scheduler::Schedule')).filter((schedule) =>
      String(schedule.Properties.ScheduleExpression).startsWith('cron('),
    );
    expect(crons).toHaveLength(3);
    for (const cron of crons) expect(cron.Properties.ScheduleExpressionTimezone).toBe('Europe/Berlin');
    expect(scheduleFor(template, { type: 'auto' }).ScheduleExpression).toBe(
      'cron(15 3 ? * MON,TUE,THU,FRI,SAT,SUN *)',
    );
    expect(scheduleFor(template, { type: 'full' }).ScheduleExpression).toBe('cron(15 3 ? * WED *)');
  });

  it('schedules by default auto at 04:00 UTC Monday to Saturday, full on Sunday, deep verify at 10:00 Sunday', () => {
    const { template } = synthStack();

    expect(scheduleFor(template, { type: 'auto' })).toMatchObject({
      ScheduleExpression: 'cron(0 4 ? * MON,TUE,WED,THU,FRI,SAT *)',
      ScheduleExpressionTimezone: 'UTC',
    });
    expect(scheduleFor(template, { type: 'full' }).ScheduleExpression).toBe('cron(0 4 ? * SUN *)');
    expect(scheduleFor(template, { backup: 'latest', deep: true }).ScheduleExpression).toBe(
      'cron(0 10 ? * SUN *)',
    );
  });

  it('moves the deep verify to the next day when the delay crosses midnight', () => {
    const { template } = synthStack({ backupSchedule: '22:30', fullBackupDay: 'SUN' });

    expect(scheduleFor(template, { backup: 'latest', deep: true }).ScheduleExpression).toBe(
      'cron(30 4 ? * MON *)',
    );
  });

  it('targets the right functions, retries, and sends what finally fails to an encrypted TLS-only DLQ', () => {
    const { stack, template } = synthStack();
    const dlq = id(stack.schedules.deadLetterQueue);

    template.allResourcesProperties('AWS::Scheduler::Schedule', {
      Target: Match.objectLike({
        RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 3600 },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [dlq, 'Arn'] } },
        RoleArn: { 'Fn::GetAtt': [id(stack.schedules.role), 'Arn'] },
      }),
    });
    expect(scheduleFor(template, { type: 'full' }).Target.Arn).toEqual({
      'Fn::GetAtt': [id(stack.backupFunction.function), 'Arn'],
    });
    expect(scheduleFor(template, { backup: 'latest', deep: true }).Target.Arn).toEqual({
      'Fn::GetAtt': [id(stack.verifyFunction.function), 'Arn'],
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 1209600,
    });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
    // Runs that fail inside Lambda (async invocations) land in the same queue, without a blind retry.
    template.resourceCountIs('AWS::Lambda::EventInvokeConfig', 2);
    template.allResourcesProperties('AWS::Lambda::EventInvokeConfig', {
      MaximumRetryAttempts: 0,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [dlq, 'Arn'] } } },
    });
  });

  it('lets only Scheduler in this account assume the scheduler role', () => {
    const { stack, template } = synthStack();

    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({
            Principal: { Service: 'scheduler.amazonaws.com' },
            Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
          }),
        ],
      },
    });
    expect(id(stack.schedules.role)).toMatch(/SchedulerRole/);
  });

  it.each([
    [{ backupTime: '25:00' }, /`backupTime` must be a time of day/],
    [{ verifyDelayHours: 0 }, /`verifyDelayHours` must be a whole number from 1 to 23/],
    [{ retryAttempts: 200 }, /`retryAttempts` must be a whole number from 0 to 185/],
  ])('rejects %o', (props, message) => {
    const { stack } = synthStack();
    const functions = {
      backupFunction: stack.backupFunction.function,
      verifyFunction: stack.verifyFunction.function,
    };
    expect(() => new BackupSchedules(stack, 'Other', { ...functions, ...props })).toThrow(message);
  });
});

describe('BackupFunction', () => {
  it.each([
    [{ timeout: Duration.minutes(16) }, /`timeout` must be at most 15 minutes/],
    [{ memorySize: 100 }, /`memorySize` must be a whole number of MB from 128 to 10240/],
    [{ reservedConcurrentExecutions: -1 }, /`reservedConcurrentExecutions` must be a whole number >= 0/],
  ])('rejects %o', (props, message) => {
    const stack = new Stack(newApp(), 'Test');
    expect(
      () =>
        new BackupFunction(stack, 'Fn', { entry: 'lambda/handlers/verify.ts', description: 'x', ...props }),
    ).toThrow(message);
  });

  it('requires a VPC with a file system', () => {
    const { stack } = synthStack();
    expect(
      () =>
        new BackupFunction(stack, 'Fn', {
          entry: 'lambda/handlers/verify.ts',
          description: 'x',
          fileSystem: { accessPoint: stack.mediaFileSystem.accessPoint, access: 'read' },
        }),
    ).toThrow(/`vpc` is required with `fileSystem`/);
  });
});

describe('MediaBackupStack outputs', () => {
  it('outputs the bucket, the function names and ready-to-run invoke commands', () => {
    const { stack, template } = synthStack();

    template.hasOutput('BackupBucketName', { Value: { Ref: id(stack.backupBucket.bucket) } });
    template.hasOutput('BackupFunctionName', { Value: { Ref: id(stack.backupFunction.function) } });
    template.hasOutput('BackupStoreUrl', {
      Value: { 'Fn::Join': ['', ['s3://', { Ref: id(stack.backupBucket.bucket) }, '/media-backups/']] },
    });
    template.hasOutput('RestoreFunctionName', { Value: { Ref: id(stack.restoreFunction.function) } });
    template.hasOutput('VerifyFunctionName', { Value: { Ref: id(stack.verifyFunction.function) } });
    const command = (name: string) => JSON.stringify(template.findOutputs(name)[name]!.Value);
    expect(command('ManualBackupCommand')).toContain(
      `--cli-read-timeout 0 --cli-binary-format raw-in-base64-out --payload '{\\"type\\":\\"full\\"}'`,
    );
    expect(command('RestoreLatestCommand')).toContain(`--payload '{\\"backup\\":\\"latest\\"}'`);
    expect(command('RestoreDryRunCommand')).toContain(
      `--payload '{\\"backup\\":\\"latest\\",\\"dryRun\\":true}'`,
    );
  });

  it('prints invoke commands that cannot run twice: AWS_MAX_ATTEMPTS=1, and how to follow a dropped run', () => {
    const { stack, template } = synthStack();
    const outputs = template.findOutputs('*');
    const invokes = Object.entries(outputs).filter(([, o]) =>
      JSON.stringify(o.Value).includes('aws lambda invoke'),
    );

    expect(invokes.map(([name]) => name).sort()).toEqual([
      'ManualBackupCommand',
      'QuickVerifyCommand',
      'RestoreDryRunCommand',
      'RestoreLatestCommand',
    ]);
    for (const [, output] of invokes) {
      // The CLI retries a dropped call by default, which re-invokes the function.
      expect((output.Value as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1][0]).toBe(
        'AWS_MAX_ATTEMPTS=1 aws lambda invoke --region ',
      );
    }
    expect(outputs.FollowLogsCommand!.Value).toEqual({
      'Fn::Join': [
        '',
        [
          'aws logs tail --region ',
          { Ref: 'AWS::Region' },
          ' --follow --since 20m ',
          { Ref: id(stack.backupFunction.logGroup) },
        ],
      ],
    });
    expect(JSON.stringify(outputs.LastRunCommand!.Value)).toContain('/media-backups/status/last-run.json -');
  });
});

describe('cdk-nag AwsSolutions checks on the whole stack', () => {
  it.each([
    ['the demo network', {}],
    [
      'an existing EFS and network, KMS, Object Lock and an email',
      {
        ...EXISTING,
        kmsKeyArn: KMS_KEY_ARN,
        objectLock: 'true',
        notificationEmail: 'ops@example.com',
        createS3GatewayEndpoint: 'true',
        privateSubnetRouteTableIds: 'rtb-0123456789abcdef0,rtb-0123456789abcdef1',
      },
    ],
  ])('finds nothing unacknowledged with %s', (_case, raw) => {
    const app = newApp();
    new MediaBackupStack(app, 'MediaBackup', { config: parseConfig(raw) });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));

    expect(new AwsSolutionsChecks().validateScope(app)).toEqual({ success: true, violations: [] });
    expect(() => app.synth()).not.toThrow();
  });
});

describe('failure notification', () => {
  it('emails notificationEmail through an SSL-only topic when a new message reaches the dead-letter queue', () => {
    const { stack, template } = synthStack({ notificationEmail: 'ops@example.com', rawAlarmEmail: true });

    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'NumberOfMessagesSent',
      Dimensions: [
        { Name: 'QueueName', Value: { 'Fn::GetAtt': [id(stack.schedules.deadLetterQueue), 'QueueName'] } },
      ],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
    // Through the composite alarm, which publishes to the topic (members: monitoring.test.ts).
    template.hasResourceProperties('AWS::CloudWatch::CompositeAlarm', {
      AlarmName: 'MediaBackup-failing',
      AlarmActions: [{ Ref: Match.stringLikeRegexp('AlarmTopic') }],
    });
  });

  it('creates the alarm topic but no subscription, notify function or SES identity without notificationEmail', () => {
    const { template } = synthStack();

    template.resourceCountIs('AWS::SNS::Topic', 1);
    template.resourceCountIs('AWS::SNS::Subscription', 0);
    template.resourceCountIs('AWS::SES::EmailIdentity', 0);
    // backup, restore, verify, monitor, shard, shard commit, shard cleanup, restore and verify phase.
    template.resourceCountIs('AWS::Lambda::Function', 9);
  });
});
