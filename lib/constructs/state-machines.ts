import { Duration, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import type { IGrantable, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import {
  DefinitionBody,
  DistributedMap,
  type DistributedMapProps,
  Fail,
  type IChainable,
  JitterType,
  JsonPath,
  LogLevel,
  type QueryLanguage,
  S3JsonLItemReader,
  StateMachine,
  StateMachineType,
  TaskInput,
  Timeout,
} from 'aws-cdk-lib/aws-stepfunctions';
import { LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { BackupBucket } from './backup-bucket.js';
import type { BackupFunction } from './backup-function.js';

/**
 * State names of the backup state machine. The local execution test binds the Lambda tasks to the
 * real handlers by these names, and the console shows them.
 */
export const BACKUP_STATES = {
  map: 'BackUpShards',
  shard: 'BackUpOneShard',
  commit: 'CommitBackup',
  cleanup: 'CleanUpFailedBackup',
  failed: 'BackupFailed',
} as const;

/** The Map Run label of the backup state machine (its child executions are named after it). */
export const BACKUP_MAP_LABEL = 'shards';

/**
 * Errors of the Lambda service itself, not of our code: throttling (every running shard is one
 * concurrent invocation of the account's quota) and transient service or SDK faults. The function did
 * not run, or its result was lost; retrying is always safe and usually enough.
 */
export const LAMBDA_SERVICE_ERRORS = [
  'Lambda.TooManyRequestsException',
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.ClientExecutionTimeoutException',
] as const;

/** Properties of {@link ShardedBackupStateMachine}. */
export interface ShardedBackupStateMachineProps {
  /** The backup bucket and its prefix: the Distributed Map reads `<prefix>staging/backup_<id>/shards.jsonl`. */
  readonly backupBucket: BackupBucket;

  /** Archives one shard (`{ item }` in, a small outcome out); idempotent under retries. */
  readonly shardFunction: BackupFunction;

  /** Checks every part and writes the manifest and metadata (`{ planKey }` in). */
  readonly commitFunction: BackupFunction;

  /** Aborts a failed run: records FAILED, releases the lock (`{ planKey, error }` in). */
  readonly cleanupFunction: BackupFunction;

  /**
   * Shards processed at once (the Distributed Map's MaxConcurrency), 1 to 10,000.
   *
   * @default 8
   */
  readonly maxConcurrency?: number;

  /**
   * The execution is stopped after this long (at most a year, Standard workflows' limit).
   *
   * @default Duration.hours(24)
   */
  readonly timeout?: Duration;

  /**
   * Retention of the state machine's log group.
   *
   * @default RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: RetentionDays;
}

/**
 * The backup state machine of a sharded run (Standard workflow). The backup function plans the run,
 * writes `staging/backup_<id>/shards.jsonl` (one shard per line) and starts an execution with input
 * `{ backupId, planKey, itemsKey }`; then:
 *
 * 1. `BackUpShards`: a Distributed Map reads the shard list straight from S3 (`S3JsonLItemReader`,
 *    key `$.itemsKey`: up to 10,000 shards, far more than the 256 KB execution input would hold) and
 *    runs one child workflow per shard, `maxConcurrency` at once. Each child invokes the shard
 *    function with `{ item }`. Zero tolerated failures: one failed shard fails the run, because a
 *    backup missing a range of the tree is not a backup. The children's outputs are discarded (each
 *    child returns `{}`, and the Map's ResultPath is null): 10,000 results would otherwise pass the
 *    256 KB state limit.
 * 2. `CommitBackup`: the commit function checks every part and writes the manifest (the commit marker)
 *    and the metadata, and reports success like a one-invocation backup does.
 * 3. On any failure of 1 or 2 (Catch `States.ALL`), `CleanUpFailedBackup` records FAILED (naming the
 *    failed shard when the error says it), releases the lock and reports the failure once; then
 *    `BackupFailed` fails the execution.
 *
 * Retries: Lambda's own service errors and throttling, with backoff and jitter, on every task; a
 * failed shard is retried twice more (shards are idempotent: a part a previous attempt completed is
 * kept, never written twice), the commit once.
 *
 * Logging: every event (level ALL) without execution data. The data is the shard items and results:
 * path ranges of the media tree, which need not sit in a second place with its own retention; the
 * events alone show which state failed with which error, and the input is in the execution history.
 */
export class ShardedBackupStateMachine extends Construct {
  /** The state machine. */
  public readonly stateMachine: StateMachine;
  /** Its log group. */
  public readonly logGroup: LogGroup;
  /** The Distributed Map's MaxConcurrency. */
  public readonly maxConcurrency: number;

  constructor(scope: Construct, id: string, props: ShardedBackupStateMachineProps) {
    super(scope, id);
    const maxConcurrency = requireMaxConcurrency(props.maxConcurrency);
    const timeout = props.timeout ?? Duration.hours(24);
    requireExecutionTimeout(timeout);
    this.maxConcurrency = maxConcurrency;
    const { backupBucket } = props;

    const shard = lambdaTask(this, BACKUP_STATES.shard, props.shardFunction, {
      payload: TaskInput.fromObject({ item: JsonPath.objectAt('$.item') }),
      // `{}` per child: the Map collects nothing worth keeping.
      outputPath: JsonPath.DISCARD,
    });
    retryFailedItem(shard);

    const failed = new Fail(this, BACKUP_STATES.failed, {
      error: 'ShardedBackupFailed',
      causePath: JsonPath.stringAt('$.cleanup.message'),
    });
    const cleanup = lambdaTask(this, BACKUP_STATES.cleanup, props.cleanupFunction, {
      payload: TaskInput.fromObject({
        planKey: JsonPath.stringAt('$.planKey'),
        error: JsonPath.objectAt('$.error'),
      }),
      resultSelector: { 'message.$': '$.Payload.message' },
      resultPath: '$.cleanup',
    }).next(failed);

    const commit = lambdaTask(this, BACKUP_STATES.commit, props.commitFunction, {
      payload: TaskInput.fromObject({ planKey: JsonPath.stringAt('$.planKey') }),
      resultSelector: { 'result.$': '$.Payload' },
      outputPath: '$.result',
    });
    commit.addRetry({ errors: ['States.TaskFailed'], interval: Duration.seconds(10), maxAttempts: 1 });
    commit.addCatch(cleanup, { errors: ['States.ALL'], resultPath: '$.error' });

    const shards = stagingItemsMap(this, BACKUP_STATES.map, {
      comment: 'Archive every shard of the plan into its part, up to MaxConcurrency at once',
      itemSelector: { item: JsonPath.objectAt('$$.Map.Item.Value') },
      maxConcurrency,
      label: BACKUP_MAP_LABEL,
      backupBucket,
      itemProcessor: shard,
    });
    shards.addCatch(cleanup, { errors: ['States.ALL'], resultPath: '$.error' });

    ({ stateMachine: this.stateMachine, logGroup: this.logGroup } = standardStateMachine(this, {
      comment:
        'media-backup: a sharded backup (plan written by the backup function; shards, commit, cleanup)',
      definition: shards.next(commit),
      timeout,
      logRetention: props.logRetention,
      backupBucket,
      functions: [props.shardFunction, props.commitFunction, props.cleanupFunction],
      mapLabel: BACKUP_MAP_LABEL,
    }));
  }

  /** The state machine's ARN. */
  public get stateMachineArn(): string {
    return this.stateMachine.stateMachineArn;
  }

  /** `states:StartExecution` on this state machine, and nothing else. */
  public grantStartExecution(grantee: IGrantable): void {
    this.stateMachine.grantStartExecution(grantee);
  }
}

/**
 * A Lambda task with the project's timeout and service-error retries; the result shaped by `options`.
 * @internal shared by the state machine constructs
 */
export function lambdaTask(
  scope: Construct,
  id: string,
  fn: BackupFunction,
  options: {
    payload: TaskInput;
    outputPath?: string;
    resultSelector?: Record<string, string>;
    resultPath?: string;
  },
): LambdaInvoke {
  const task = new LambdaInvoke(scope, id, {
    lambdaFunction: fn.function,
    payload: options.payload,
    // The retries below name every Lambda service error, with jitter; CDK's own list lacks throttling.
    retryOnServiceExceptions: false,
    // A minute beyond the function's own timeout: a task never outlives a hung invocation by much,
    // and the function's timeout (with its clean abort before it) always fires first.
    taskTimeout: Timeout.duration(fn.timeout.plus(Duration.minutes(1))),
    ...(options.outputPath === undefined ? {} : { outputPath: options.outputPath }),
    ...(options.resultSelector === undefined ? {} : { resultSelector: options.resultSelector }),
    ...(options.resultPath === undefined ? {} : { resultPath: options.resultPath }),
  });
  task.addRetry({
    errors: [...LAMBDA_SERVICE_ERRORS],
    interval: Duration.seconds(2),
    maxAttempts: 6,
    backoffRate: 2,
    maxDelay: Duration.seconds(60),
    jitterStrategy: JitterType.FULL,
  });
  return task;
}

/**
 * A Distributed Map whose definition states `ToleratedFailurePercentage: 0`. The service's default is
 * already 0, but CDK leaves a 0 out of the definition; written out, a reader (and the infra test)
 * sees the rule instead of having to know the default.
 */
export class ZeroToleranceDistributedMap extends DistributedMap {
  constructor(scope: Construct, id: string, props: Omit<DistributedMapProps, 'toleratedFailurePercentage'>) {
    super(scope, id, props);
  }

  public override toStateJson(queryLanguage?: QueryLanguage): object {
    return { ...super.toStateJson(queryLanguage), ToleratedFailurePercentage: 0 };
  }
}

/**
 * `S3JsonLItemReader` on the backup bucket, whose own grant (`s3:GetObject` on every object of the
 * bucket) is replaced by {@link BackupBucket.grantStagingRead}: the state machine reads
 * `<prefix>staging/*` only.
 */
export class StagingJsonLItemReader extends S3JsonLItemReader {
  constructor(props: { backupBucket: BackupBucket; key: string }) {
    super({ bucket: props.backupBucket.bucket, key: props.key });
  }

  public override providePolicyStatements(): PolicyStatement[] {
    return [];
  }
}

/** The Distributed Map's MaxConcurrency, 8 unless given; a Distributed Map runs up to 10,000 children at once. */
export function requireMaxConcurrency(maxConcurrency: number | undefined): number {
  const value = maxConcurrency ?? 8;
  if (!Number.isSafeInteger(value) || value < 1 || value > 10_000) {
    throw new Error(`\`maxConcurrency\` must be a whole number from 1 to 10000 (got ${value})`);
  }
  return value;
}

/**
 * Retries of a Distributed Map child's task that failed on its own error: every child task is
 * idempotent (a shard keeps a part already completed, an archive removes its own earlier files, a
 * check only reads), so two more attempts are safe.
 */
export function retryFailedItem(task: LambdaInvoke): void {
  task.addRetry({
    errors: ['States.TaskFailed'],
    interval: Duration.seconds(10),
    maxAttempts: 2,
    backoffRate: 3,
  });
}

/**
 * A Fail state carrying the error a Catch put at `$.error` (its `Error` and `Cause`), so the execution
 * fails with the original error.
 */
export function failWithCaughtError(scope: Construct, id: string): Fail {
  return new Fail(scope, id, {
    errorPath: JsonPath.stringAt('$.error.Error'),
    causePath: JsonPath.stringAt('$.error.Cause'),
  });
}

/**
 * The Distributed Map of every state machine here: reads its items from the JSON Lines object at
 * `$.itemsKey` under `<prefix>staging/`, runs `itemProcessor` once per item in a Standard child (a
 * child may run the full 15 minutes of its invocation, and an Express child is stopped after 5),
 * tolerates no failed child, and keeps no results in the state (10,000 results would pass the 256 KB
 * state limit).
 */
export function stagingItemsMap(
  scope: Construct,
  id: string,
  options: {
    comment: string;
    itemSelector: Record<string, unknown>;
    maxConcurrency: number;
    label: string;
    backupBucket: BackupBucket;
    itemProcessor: IChainable;
  },
): ZeroToleranceDistributedMap {
  const map = new ZeroToleranceDistributedMap(scope, id, {
    comment: options.comment,
    itemReader: new StagingJsonLItemReader({
      backupBucket: options.backupBucket,
      key: JsonPath.stringAt('$.itemsKey'),
    }),
    itemSelector: options.itemSelector,
    maxConcurrency: options.maxConcurrency,
    label: options.label,
    mapExecutionType: StateMachineType.STANDARD,
    resultPath: JsonPath.DISCARD,
  });
  map.itemProcessor(options.itemProcessor);
  return map;
}

/**
 * The Standard state machine of every construct here, with its log group: every event logged (level
 * ALL) without execution data (shard items, restored paths and results are path ranges of the media
 * tree, which need not sit in a second place with its own retention; the events alone show which
 * state failed with which error), no X-Ray, the ItemReader's read of `<prefix>staging/*` only (see
 * {@link StagingJsonLItemReader}), and the accepted cdk-nag findings.
 */
export function standardStateMachine(
  scope: Construct,
  options: {
    comment: string;
    definition: IChainable;
    timeout: Duration;
    /** @default RetentionDays.THREE_MONTHS */
    logRetention?: RetentionDays;
    backupBucket: BackupBucket;
    /** The functions of the state machine's Lambda tasks. */
    functions: readonly BackupFunction[];
    mapLabel: string;
  },
): { stateMachine: StateMachine; logGroup: LogGroup } {
  const logGroup = new LogGroup(scope, 'LogGroup', {
    retention: options.logRetention ?? RetentionDays.THREE_MONTHS,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const stateMachine = new StateMachine(scope, 'StateMachine', {
    comment: options.comment,
    stateMachineType: StateMachineType.STANDARD,
    definitionBody: DefinitionBody.fromChainable(options.definition),
    timeout: options.timeout,
    logs: { destination: logGroup, level: LogLevel.ALL, includeExecutionData: false },
    tracingEnabled: false,
  });
  options.backupBucket.grantStagingRead(stateMachine);
  acknowledgeStateMachineFindings(stateMachine, options.functions, options.backupBucket, options.mapLabel);
  return { stateMachine, logGroup };
}

/** Standard workflows run for at most a year. */
export function requireExecutionTimeout(timeout: Duration): void {
  const seconds = timeout.toSeconds();
  if (!Number.isSafeInteger(seconds) || seconds < 60 || seconds > Duration.days(365).toSeconds()) {
    throw new Error(
      `\`timeout\` must be from 1 minute to 365 days, the limit of a Standard execution (got ${timeout.toHumanString()})`,
    );
  }
}

/**
 * cdk-nag findings of a state machine that are accepted, each with its reason. Called by every state
 * machine construct of this file.
 */
export function acknowledgeStateMachineFindings(
  stateMachine: StateMachine,
  functions: readonly BackupFunction[],
  { bucket, backupPrefix }: BackupBucket,
  mapLabel: string,
): void {
  const stack = Stack.of(stateMachine);
  Validations.of(stateMachine).acknowledge({
    id: 'AwsSolutions-SF2',
    reason:
      'X-Ray would show the timeline the execution history already shows; no function of the stack is ' +
      'traced, so a trace would end at every Lambda task',
  });
  for (const fn of functions) {
    const logicalId = stack.getLogicalId(fn.function.node.defaultChild as never);
    Validations.of(stateMachine).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${logicalId}.Arn>:*]`,
      reason:
        'CDK grant for a Lambda task covers the function and its versions and aliases (ARN:*); the role ' +
        'invokes only the functions of its own tasks',
    });
  }
  const stateMachineId = stack.getLogicalId(stateMachine.node.defaultChild as never);
  // cdk-nag names the region and account as written in the template: pseudo parameters for a stack
  // without env, the literal values for one with env.
  const region = Token.isUnresolved(stack.region) ? '<AWS::Region>' : stack.region;
  const account = Token.isUnresolved(stack.account) ? '<AWS::AccountId>' : stack.account;
  const executions = `arn:<AWS::Partition>:states:${region}:${account}:execution:{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"${stateMachineId}"}]}]}`;
  const distributedMap = {
    [`${executions}:*`]:
      'CDK grant for a Distributed Map: the state machine describes and stops its own child executions, ' +
      'whose names are generated per run; only executions of this state machine are covered',
    [`${executions}/${mapLabel}:*`]:
      'CDK grant for a Distributed Map: the state machine redrives the child executions of its own labelled ' +
      'Map Run, whose names are generated per run',
  };
  for (const [resource, reason] of Object.entries(distributedMap)) {
    Validations.of(stateMachine).acknowledge({ id: `AwsSolutions-IAM5[Resource::${resource}]`, reason });
  }
  Validations.of(stateMachine).acknowledge({
    id: `AwsSolutions-IAM5[Resource::<${stack.getLogicalId(bucket.node.defaultChild as never)}.Arn>/${backupPrefix}staging/*]`,
    reason:
      "The Distributed Map's ItemReader reads each run's shard list, staging/backup_<id>/shards.jsonl, whose " +
      'key is new every run; GetObject only, and only under the staging/ folder of the prefix',
  });
  Validations.of(stateMachine).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'CloudWatch Logs delivery for Step Functions (logs:CreateLogDelivery, GetLogDelivery, ' +
      'UpdateLogDelivery, DeleteLogDelivery, ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, ' +
      'DescribeLogGroups) supports no resource-level permissions; AWS documents Resource "*" for it',
  });
}
