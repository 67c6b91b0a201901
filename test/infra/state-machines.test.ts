import { Duration, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { DefinitionBody, Pass, StateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import {
  BACKUP_MAP_LABEL,
  BACKUP_STATES,
  LAMBDA_SERVICE_ERRORS,
  ShardedBackupStateMachine,
} from '../../lib/constructs/state-machines.js';
import { ConfigError, MediaBackupStack, parseConfig } from '../../lib/index.js';
import {
  allows,
  allStates,
  definitionOf,
  functionArn,
  glob,
  type Json,
  list,
  resolveIntrinsics,
  rolesAllowing,
  stateMachineArn,
  statementsOfRole,
  validateAsl,
} from '../fixtures/local-sfn.js';
import { expectedItemReader, logicalId as id, synthStack } from '../fixtures/stack-synth.js';
import { cdkJsonContext, newTestApp } from './test-app.js';

const KMS_KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';

describe('backup state machine definition', () => {
  const { stack, json } = synthStack();
  const smId = id(stack.backupStateMachine.stateMachine);
  const definition = definitionOf(json, smId);
  const states = allStates(definition);
  const map = definition.States[BACKUP_STATES.map];
  const shard = states[BACKUP_STATES.shard];
  const commit = definition.States[BACKUP_STATES.commit];
  const cleanup = definition.States[BACKUP_STATES.cleanup];

  it('starts with the Distributed Map, then commits', () => {
    expect(definition.StartAt).toBe(BACKUP_STATES.map);
    expect(map).toMatchObject({ Type: 'Map', Next: BACKUP_STATES.commit });
    expect(map.ItemProcessor.ProcessorConfig).toEqual({ Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' });
    expect(commit).toMatchObject({ Type: 'Task', End: true });
  });

  it('reads the shard list with the JSONL S3 ItemReader from the backup bucket, key from $.itemsKey', () => {
    expect(map.ItemReader).toEqual(expectedItemReader(stack, json));
    // Each child gets `{ item: <one line of shards.jsonl> }`.
    expect(map.ItemSelector).toEqual({ 'item.$': '$$.Map.Item.Value' });
    expect(map.Label).toBe(BACKUP_MAP_LABEL);
  });

  it.each([
    ['the default', {}, 8],
    ['shardMaxConcurrency=3 (a -c string)', { shardMaxConcurrency: '3' }, 3],
    ['shardMaxConcurrency=40', { shardMaxConcurrency: 40 }, 40],
  ])('takes MaxConcurrency from context: %s', (_case, raw, expected) => {
    const synthesized = synthStack(raw);
    const def = definitionOf(synthesized.json, id(synthesized.stack.backupStateMachine.stateMachine));
    expect(def.States[BACKUP_STATES.map].MaxConcurrency).toBe(expected);
  });

  it('fails on the first failed shard and keeps no child results (256 KB state limit)', () => {
    expect(map.ToleratedFailurePercentage).toBe(0);
    expect(map).not.toHaveProperty('ToleratedFailureCount');
    // The Map's result is discarded: its output is its input ({ backupId, planKey, itemsKey }).
    expect(map.ResultPath).toBeNull();
    // Each child's output is {} (OutputPath null), so even the results Step Functions holds while the
    // Map runs stay far below 256 KB at the 10,000-child limit.
    expect(shard.OutputPath).toBeNull();
    expect(JSON.stringify(Array.from({ length: 10_000 }, () => ({}))).length).toBeLessThan(256 * 1024);
    expect(shard.Parameters.Payload).toEqual({ 'item.$': '$.item' });
  });

  it('retries Lambda service errors with backoff and jitter on every task, a failed shard twice, the commit once', () => {
    for (const task of [shard, commit, cleanup]) {
      const [service] = task.Retry;
      expect(service).toMatchObject({
        ErrorEquals: [...LAMBDA_SERVICE_ERRORS],
        JitterStrategy: 'FULL',
        MaxAttempts: expect.any(Number),
      });
      expect(service.BackoffRate).toBeGreaterThan(1);
      expect(service.MaxAttempts).toBeGreaterThanOrEqual(3);
      // A retrier matching every error would have to come last (ASL), and would retry our own bugs.
      expect(task.Retry.flatMap((r: Json) => r.ErrorEquals)).not.toContain('States.ALL');
    }
    expect(LAMBDA_SERVICE_ERRORS).toEqual(
      expect.arrayContaining(['Lambda.TooManyRequestsException', 'Lambda.ServiceException']),
    );
    expect(shard.Retry[1]).toMatchObject({ ErrorEquals: ['States.TaskFailed'], MaxAttempts: 2 });
    expect(commit.Retry[1]).toMatchObject({ ErrorEquals: ['States.TaskFailed'], MaxAttempts: 1 });
    // The cleanup is not retried on its own errors: it runs once, or the execution fails (alarmed).
    expect(cleanup.Retry).toHaveLength(1);
  });

  it('catches every error of the Map and of the commit into the cleanup, which ends in a Fail state', () => {
    const toCleanup = [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: BACKUP_STATES.cleanup }];
    expect(map.Catch).toEqual(toCleanup);
    expect(commit.Catch).toEqual(toCleanup);
    expect(cleanup).toMatchObject({
      Type: 'Task',
      Next: BACKUP_STATES.failed,
      ResultPath: '$.cleanup',
      ResultSelector: { 'message.$': '$.Payload.message' },
    });
    expect(cleanup.Parameters.Payload).toEqual({ 'planKey.$': '$.planKey', 'error.$': '$.error' });
    expect(cleanup).not.toHaveProperty('Catch');
    expect(definition.States[BACKUP_STATES.failed]).toEqual({
      Type: 'Fail',
      Error: 'ShardedBackupFailed',
      CausePath: '$.cleanup.message',
    });
    // The shard task itself catches nothing: a failed shard must fail its child, and so the Map.
    expect(shard).not.toHaveProperty('Catch');
  });

  it('invokes the shard, commit and cleanup functions through the Lambda integration', () => {
    const invoked = (task: Json) => ({ resource: task.Resource, fn: task.Parameters.FunctionName });
    const integration = 'arn:aws:states:::lambda:invoke';
    expect(invoked(shard)).toEqual({
      resource: integration,
      fn: functionArn(id(stack.shardFunction.function)),
    });
    expect(invoked(commit)).toEqual({
      resource: integration,
      fn: functionArn(id(stack.shardCommitFunction.function)),
    });
    expect(invoked(cleanup)).toEqual({
      resource: integration,
      fn: functionArn(id(stack.shardCleanupFunction.function)),
    });
    expect(commit.Parameters.Payload).toEqual({ 'planKey.$': '$.planKey' });
  });

  it("gives every task a minute beyond its function's timeout, and the execution shardedRunTimeoutHours", () => {
    for (const task of [shard, commit, cleanup]) expect(task.TimeoutSeconds).toBe(15 * 60 + 60);
    expect(definition.TimeoutSeconds).toBe(24 * 3600);
    const short = synthStack({ shardedRunTimeoutHours: 6 });
    expect(definitionOf(short.json, id(short.stack.backupStateMachine.stateMachine)).TimeoutSeconds).toBe(
      6 * 3600,
    );
  });

  it('is a Standard workflow that logs every event without execution data', () => {
    const template = Template.fromJSON(json as never);
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      LoggingConfiguration: {
        Level: 'ALL',
        IncludeExecutionData: false,
        Destinations: [
          {
            CloudWatchLogsLogGroup: {
              LogGroupArn: { 'Fn::GetAtt': [id(stack.backupStateMachine.logGroup), 'Arn'] },
            },
          },
        ],
      },
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 90 });
  });

  it('is valid ASL (asl-validator, JSONPaths and ARNs checked)', () => {
    const verdict = validateAsl(definition);
    expect(verdict.errors).toBe('');
    expect(verdict.isValid).toBe(true);
  });

  it('asl-validator rejects a broken copy (the check can fail)', () => {
    const broken = structuredClone(definition);
    broken.States[BACKUP_STATES.cleanup].Next = 'NoSuchState';
    delete broken.States[BACKUP_STATES.map].ItemProcessor.StartAt;
    const verdict = validateAsl(broken);
    expect(verdict.isValid).toBe(false);
    expect(verdict.errors).toMatch(/StartAt|NoSuchState/);
  });
});

describe('IAM of the sharded backup', () => {
  const { stack, json } = synthStack();
  const sm = stack.backupStateMachine.stateMachine;
  const smRole = statementsOfRole(json, id(sm.role));
  const smArn = stateMachineArn(id(sm));
  const bucketArn = resolveIntrinsics({ 'Fn::GetAtt': [id(stack.backupBucket.bucket), 'Arn'] }, json);

  it('lets the state machine invoke exactly its shard, commit and cleanup functions', () => {
    const invoked = smRole
      .filter((s) => list(s.Action).includes('lambda:InvokeFunction'))
      .flatMap((s) => list(s.Resource))
      .map((arn) => arn.replace(/:\*$/, ''));
    expect([...new Set(invoked)].sort()).toEqual(
      [stack.shardFunction, stack.shardCommitFunction, stack.shardCleanupFunction]
        .map((fn) => functionArn(id(fn.function)))
        .sort(),
    );
    expect(smRole.flatMap((s) => list(s.Action)).filter((a) => a.startsWith('lambda:'))).toEqual(
      Array(3).fill('lambda:InvokeFunction'),
    );
    for (const fn of [stack.backupFunction, stack.restoreFunction, stack.verifyFunction]) {
      expect(allows(smRole, 'lambda:InvokeFunction', functionArn(id(fn.function)))).toBe(false);
    }
  });

  it("lets the ItemReader read a run's shards.jsonl under staging/, and nothing else of the bucket", () => {
    const key = 'media-backups/staging/backup_20261201_040000/shards.jsonl';
    expect(allows(smRole, 's3:GetObject', `${bucketArn}/${key}`)).toBe(true);
    for (const other of [
      'media-backups/full/backup_20261201_040000.tar.gz',
      'media-backups/status/last-run.json',
      'other-app/staging/x',
    ]) {
      expect(allows(smRole, 's3:GetObject', `${bucketArn}/${other}`), other).toBe(false);
    }
    expect(
      smRole
        .flatMap((s) => list(s.Action))
        .filter((a) => a.startsWith('s3:'))
        .sort(),
    ).toEqual(['s3:GetObject']);
  });

  it('lets the state machine start, describe, stop and redrive only its own executions (Distributed Map)', () => {
    // The statements of AWS's "IAM policies for using Distributed Map states" example, added by CDK.
    expect(allows(smRole, 'states:StartExecution', smArn)).toBe(true);
    const own = `arn:aws:states:us-east-1:123456789012:execution:${id(sm)}:run-1`;
    expect(allows(smRole, 'states:DescribeExecution', own)).toBe(true);
    expect(allows(smRole, 'states:StopExecution', own)).toBe(true);
    const child = `arn:aws:states:us-east-1:123456789012:execution:${id(sm)}/${BACKUP_MAP_LABEL}:child-1`;
    expect(allows(smRole, 'states:RedriveExecution', child)).toBe(true);
    const foreign = 'arn:aws:states:us-east-1:123456789012:execution:SomeoneElse:run-1';
    expect(allows(smRole, 'states:StopExecution', foreign)).toBe(false);
    expect(allows(smRole, 'states:StartExecution', stateMachineArn('SomeoneElse'))).toBe(false);
  });

  it('lets the backup function start executions of exactly this state machine, and no other role but its own', () => {
    const backupRole = statementsOfRole(json, id(stack.backupFunction.function.role!));
    const starts = backupRole.filter((s) =>
      list(s.Action).some((a) => glob(a).test('states:StartExecution')),
    );
    expect(starts).toEqual([{ Effect: 'Allow', Action: 'states:StartExecution', Resource: smArn }]);
    // Besides, each state machine starts (and stops) only its own Distributed Map children.
    const others = [stack.restoreStateMachine.stateMachine, stack.verifyStateMachine.stateMachine];
    expect(rolesAllowing(json, 'states:StartExecution').sort()).toEqual(
      [
        id(stack.backupFunction.function.role!),
        id(stack.verifyFunction.function.role!),
        id(sm.role),
        ...others.map((o) => id(o.role)),
      ].sort(),
    );
    // The verify function hands a deep verify too large for it to the deep verify state machine only.
    const verifyRole = statementsOfRole(json, id(stack.verifyFunction.function.role!));
    const verifyStarts = verifyRole.filter((s) =>
      list(s.Action).some((a) => glob(a).test('states:StartExecution')),
    );
    expect(verifyStarts).toEqual([
      {
        Effect: 'Allow',
        Action: 'states:StartExecution',
        Resource: stateMachineArn(id(stack.verifyStateMachine.stateMachine)),
      },
    ]);
    expect(allows(verifyRole, 'states:StartExecution', smArn)).toBe(false);
    for (const other of others) {
      const role = statementsOfRole(json, id(other.role));
      expect(allows(role, 'states:StartExecution', smArn)).toBe(false);
      expect(allows(role, 'states:StartExecution', stateMachineArn(id(other)))).toBe(true);
    }
    expect(rolesAllowing(json, 'states:StopExecution').sort()).toEqual(
      [id(sm.role), ...others.map((o) => id(o.role))].sort(),
    );
  });

  it('tells the backup function the state machine and the lock time it hands over', () => {
    Template.fromJSON(json as never).hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('^media-backup: tar.gz backup'),
      Environment: {
        Variables: Match.objectLike({
          BACKUP_STATE_MACHINE_ARN: { Ref: id(sm) },
          SHARDED_RUN_TIMEOUT_SECONDS: String(24 * 3600),
        }),
      },
    });
  });

  it('runs the shard function like the backup function: EFS read-only, same memory and timeout', () => {
    const template = Template.fromJSON(json as never);
    const shardProps = json.Resources[id(stack.shardFunction.function)]?.Properties;
    const backupProps = json.Resources[id(stack.backupFunction.function)]?.Properties;
    expect(shardProps?.MemorySize).toBe(backupProps?.MemorySize);
    expect(shardProps?.Timeout).toBe(900);
    expect(shardProps?.FileSystemConfigs).toEqual(backupProps?.FileSystemConfigs);
    expect(shardProps?.VpcConfig).toEqual(backupProps?.VpcConfig);
    const shardRole = statementsOfRole(json, id(stack.shardFunction.function.role!));
    const efs = shardRole.flatMap((s) => list(s.Action)).filter((a) => a.startsWith('elasticfilesystem:'));
    expect(efs).toEqual(['elasticfilesystem:ClientMount']);
    // Commit and cleanup never touch the media tree.
    for (const fn of [stack.shardCommitFunction, stack.shardCleanupFunction]) {
      expect(json.Resources[id(fn.function)]?.Properties?.FileSystemConfigs).toBeUndefined();
    }
    template.resourceCountIs('AWS::StepFunctions::StateMachine', 3);
  });

  it('gives shard, commit and cleanup no delete action and no unconditional create of backup objects', () => {
    for (const fn of [stack.shardFunction, stack.shardCommitFunction, stack.shardCleanupFunction]) {
      const statements = statementsOfRole(json, id(fn.function.role!));
      const actions = statements.flatMap((s) => list(s.Action));
      expect(actions.filter((a) => /^s3:Delete|^s3:\*|^s3:PutObject(Retention|LegalHold)/.test(a))).toEqual(
        [],
      );
      // Unconditional PutObject only on the lock and status records.
      const unconditionalPuts = statements
        .filter((s) => list(s.Action).includes('s3:PutObject') && s.Condition === undefined)
        .flatMap((s) => list(s.Resource));
      expect(unconditionalPuts.sort()).toEqual(
        [`${bucketArn}/media-backups/locks/*`, `${bucketArn}/media-backups/status/*`].sort(),
      );
    }
  });

  it('with a customer key, lets the state machine decrypt the shard list with it', () => {
    const kms = synthStack({ kmsKeyArn: KMS_KEY_ARN });
    const role = statementsOfRole(kms.json, id(kms.stack.backupStateMachine.stateMachine.role));
    expect(allows(role, 'kms:Decrypt', KMS_KEY_ARN)).toBe(true);
    expect(role.flatMap((s) => list(s.Action)).filter((a) => a.startsWith('kms:'))).toEqual(['kms:Decrypt']);
  });
});

describe('staging objects, alarms and outputs', () => {
  const { stack, json } = synthStack();
  const template = Template.fromJSON(json as never);

  it('expires <prefix>staging/ after 7 days', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          { Id: 'expire-staging', Prefix: 'media-backups/staging/', ExpirationInDays: 7, Status: 'Enabled' },
        ]),
      },
    });
  });

  it('counts a failed, timed-out or aborted execution in the failing composite alarm', () => {
    const alarmId = id(stack.monitoring.alarms['sharded-backup-failed']!);
    const alarm = json.Resources[alarmId]?.Properties;
    const metrics = ((alarm?.Metrics ?? []) as Json[]).filter((m) => m.MetricStat);
    expect(metrics.map((m) => m.MetricStat.Metric.MetricName).sort()).toEqual([
      'ExecutionsAborted',
      'ExecutionsFailed',
      'ExecutionsTimedOut',
    ]);
    for (const m of metrics) {
      expect(m.MetricStat.Metric.Dimensions).toEqual([
        { Name: 'StateMachineArn', Value: { Ref: id(stack.backupStateMachine.stateMachine) } },
      ]);
    }
    expect(alarm?.AlarmActions).toBeUndefined();
    const composite = JSON.stringify(
      json.Resources[id(stack.monitoring.failingAlarm)]?.Properties?.AlarmRule,
    );
    expect(composite).toContain(alarmId);
  });

  it('outputs the backup state machine', () => {
    template.hasOutput('BackupStateMachineArn', {
      Value: { Ref: id(stack.backupStateMachine.stateMachine) },
    });
  });
});

describe('settings of the sharded runs', () => {
  it.each([
    ['0', 0],
    ['1001', 1001],
    ['"eight"', 'eight'],
    ['2.5', 2.5],
  ])('refuses shardMaxConcurrency %s, naming the key', (_case, value) => {
    expect(() => parseConfig({ shardMaxConcurrency: value })).toThrow(ConfigError);
    expect(() => parseConfig({ shardMaxConcurrency: value })).toThrow(
      /`shardMaxConcurrency` must be a whole number from 1 to 1000 \(got /,
    );
  });

  it.each([0, 169])('refuses shardedRunTimeoutHours %s, naming the key', (value) => {
    expect(() => parseConfig({ shardedRunTimeoutHours: value })).toThrow(
      /`shardedRunTimeoutHours` must be a whole number from 1 to 168 \(got /,
    );
  });

  it('repeats the defaults in cdk.json', () => {
    expect(cdkJsonContext).toMatchObject({ shardMaxConcurrency: 8, shardedRunTimeoutHours: 24 });
    expect(parseConfig({})).toMatchObject({ shardMaxConcurrency: 8, shardedRunTimeoutHours: 24 });
  });

  it('ShardedBackupStateMachine refuses a bad maxConcurrency or timeout, naming the prop', () => {
    const { stack } = synthStack();
    const props = {
      backupBucket: stack.backupBucket,
      shardFunction: stack.shardFunction,
      commitFunction: stack.shardCommitFunction,
      cleanupFunction: stack.shardCleanupFunction,
    };
    expect(() => new ShardedBackupStateMachine(stack, 'Zero', { ...props, maxConcurrency: 0 })).toThrow(
      /`maxConcurrency` must be a whole number from 1 to 10000 \(got 0\)/,
    );
    expect(
      () => new ShardedBackupStateMachine(stack, 'Long', { ...props, timeout: Duration.days(400) }),
    ).toThrow(/`timeout` must be from 1 minute to 365 days/);
  });
});

describe('cdk-nag', () => {
  function naggedApp(raw: Record<string, unknown>) {
    const app = newTestApp();
    const stack = new MediaBackupStack(app, 'MediaBackup', { config: parseConfig(raw) });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    return { app, stack };
  }

  it.each([
    ['the default config', {}],
    ['KMS, no prefix', { kmsKeyArn: KMS_KEY_ARN, backupPrefix: '' }],
  ])('finds nothing unacknowledged with %s', (_case, raw) => {
    const { app } = naggedApp(raw);
    expect(new AwsSolutionsChecks().validateScope(app)).toEqual({ success: true, violations: [] });
  });

  it('acknowledges each finding of the state machine with a reason, and finds an unlogged one', () => {
    const { app, stack } = naggedApp({});
    const sm = stack.backupStateMachine.stateMachine;
    const acknowledged = sm.node.metadata
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) => Object.entries(entry.data as Record<string, string>));
    expect(acknowledged.map(([rule]) => rule)).toEqual(
      expect.arrayContaining([
        'Annotation::AwsSolutions-SF2',
        expect.stringMatching(/^Annotation::AwsSolutions-IAM5\[Resource::.*staging\/\*\]$/),
      ]),
    );
    for (const [rule, reason] of acknowledged) expect(reason, rule).toMatch(/\w+(\s+\w+){4,}/);

    // A state machine without logging, outside the construct, is reported (SF1).
    new StateMachine(stack, 'Unlogged', {
      definitionBody: DefinitionBody.fromChainable(new Pass(stack, 'Nothing')),
    });
    const report = new AwsSolutionsChecks().validateScope(app);
    expect(report.violations.map((v) => v.ruleName)).toContain('AwsSolutions-SF1');
  });
});
