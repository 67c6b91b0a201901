import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import {
  DefinitionBody,
  Fail,
  JsonPath,
  LogLevel,
  StateMachine,
  StateMachineType,
  TaskInput,
} from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { BackupBucket } from './backup-bucket.js';
import type { BackupFunction } from './backup-function.js';
import {
  acknowledgeStateMachineFindings,
  lambdaTask,
  requireExecutionTimeout,
  StagingJsonLItemReader,
  ZeroToleranceDistributedMap,
} from './state-machines.js';

/** State names of the restore state machine (the local execution test binds tasks by them). */
export const RESTORE_STATES = {
  prepare: 'PrepareRestore',
  map: 'RestoreArchives',
  archive: 'RestoreOneArchive',
  finish: 'FinishRestore',
  abandon: 'AbandonRestore',
  failed: 'RestoreFailed',
} as const;

/** The Map Run label of the restore state machine. */
export const RESTORE_MAP_LABEL = 'archives';

/** Properties of {@link ShardedRestoreStateMachine}. */
export interface ShardedRestoreStateMachineProps {
  /** The backup bucket: the Distributed Map reads the job's archive list from `<prefix>staging/`. */
  readonly backupBucket: BackupBucket;

  /**
   * The restore phase function (lambda/handlers/restore-phase.ts): `{ phase: 'prepare' | 'archive' |
   * 'finish' | 'abandon', ... }`, EFS mounted read-write.
   */
  readonly phaseFunction: BackupFunction;

  /**
   * Archives extracted at once (the Distributed Map's MaxConcurrency), 1 to 10,000.
   *
   * @default 8
   */
  readonly maxConcurrency?: number;

  /**
   * The execution is stopped after this long.
   *
   * @default Duration.hours(12) (the restore job's lock lasts as long: RESTORE_JOB_LOCK_TTL_MS)
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
 * The restore of a backup too big for one restore invocation (a sharded backup's parts, or a long
 * chain), as a Standard workflow. Input: the restore function's event (`{ backup, at?, paths?,
 * target?, mode? }`; no `dryRun` or `import`: those stay the restore function's).
 *
 * 1. `PrepareRestore`: resolves the backup, checks the target, takes the target's restore lock for
 *    the whole run, creates the staging folder beside the target with the job in it, and writes the
 *    archive list to `<prefix>staging/restore-<jobId>/archives.jsonl` (the job's size is not bounded
 *    by the 256 KB state limit). A failure here leaves nothing behind and ends the run.
 * 2. `RestoreArchives`: a Distributed Map reads that list and extracts each archive into the staging
 *    folder in its own child (`maxConcurrency` at once). Retries are safe: an archive's retry first
 *    removes its own earlier files; a finished archive is not read again. The live tree is untouched.
 * 3. `FinishRestore`: every archive done and every file present with its size, folder modes and
 *    times last, then the swap (`replace` keeps the previous tree beside it) and the lock released.
 * 4. Any failure of 2 or 3: `AbandonRestore` removes the staging folder and releases the lock (the
 *    live tree as it was), then `RestoreFailed` fails the execution with the original error.
 */
export class ShardedRestoreStateMachine extends Construct {
  /** The state machine. */
  public readonly stateMachine: StateMachine;
  /** Its log group. */
  public readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: ShardedRestoreStateMachineProps) {
    super(scope, id);
    const maxConcurrency = props.maxConcurrency ?? 8;
    const timeout = props.timeout ?? Duration.hours(12);
    if (!Number.isSafeInteger(maxConcurrency) || maxConcurrency < 1 || maxConcurrency > 10_000) {
      throw new Error(`\`maxConcurrency\` must be a whole number from 1 to 10000 (got ${maxConcurrency})`);
    }
    requireExecutionTimeout(timeout);
    const { backupBucket, phaseFunction } = props;

    const failed = new Fail(this, RESTORE_STATES.failed, {
      errorPath: JsonPath.stringAt('$.error.Error'),
      causePath: JsonPath.stringAt('$.error.Cause'),
    });

    const prepare = lambdaTask(this, RESTORE_STATES.prepare, phaseFunction, {
      payload: TaskInput.fromObject({ phase: 'prepare', request: JsonPath.objectAt('$') }),
      resultSelector: {
        'job.$': '$.Payload.job',
        'backupId.$': '$.Payload.backupId',
        'itemsKey.$': '$.Payload.itemsKey',
      },
    });
    // prepareRestore undoes its own partial work: nothing to abandon.
    prepare.addCatch(failed, { errors: ['States.ALL'], resultPath: '$.error' });

    const abandon = lambdaTask(this, RESTORE_STATES.abandon, phaseFunction, {
      payload: TaskInput.fromObject({
        phase: 'abandon',
        job: JsonPath.objectAt('$.job'),
        error: JsonPath.objectAt('$.error'),
      }),
      resultPath: JsonPath.DISCARD,
    }).next(failed);

    const archive = lambdaTask(this, RESTORE_STATES.archive, phaseFunction, {
      payload: TaskInput.fromObject({
        phase: 'archive',
        job: JsonPath.objectAt('$.job'),
        archiveKey: JsonPath.stringAt('$.archive.key'),
      }),
      outputPath: JsonPath.DISCARD,
    });
    archive.addRetry({
      errors: ['States.TaskFailed'],
      interval: Duration.seconds(10),
      maxAttempts: 2,
      backoffRate: 3,
    });

    const archives = new ZeroToleranceDistributedMap(this, RESTORE_STATES.map, {
      comment: 'Extract every archive of the backup into the staging folder, up to MaxConcurrency at once',
      itemReader: new StagingJsonLItemReader({ backupBucket, key: JsonPath.stringAt('$.itemsKey') }),
      itemSelector: { job: JsonPath.objectAt('$.job'), archive: JsonPath.objectAt('$$.Map.Item.Value') },
      maxConcurrency,
      label: RESTORE_MAP_LABEL,
      mapExecutionType: StateMachineType.STANDARD,
      resultPath: JsonPath.DISCARD,
    });
    archives.itemProcessor(archive);
    archives.addCatch(abandon, { errors: ['States.ALL'], resultPath: '$.error' });

    // Not retried on its own errors: a finish that failed before the swap put the target back, and
    // one that failed after it must not swap again.
    const finish = lambdaTask(this, RESTORE_STATES.finish, phaseFunction, {
      payload: TaskInput.fromObject({ phase: 'finish', job: JsonPath.objectAt('$.job') }),
      resultSelector: { 'result.$': '$.Payload' },
      outputPath: '$.result',
    });
    finish.addCatch(abandon, { errors: ['States.ALL'], resultPath: '$.error' });

    this.logGroup = new LogGroup(this, 'LogGroup', {
      retention: props.logRetention ?? RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      comment: 'media-backup: restore a backup archive by archive (prepare, extract each archive, finish)',
      stateMachineType: StateMachineType.STANDARD,
      definitionBody: DefinitionBody.fromChainable(prepare.next(archives).next(finish)),
      timeout,
      // Execution data would put restored paths (the --path selection) into the logs: left out.
      logs: { destination: this.logGroup, level: LogLevel.ALL, includeExecutionData: false },
      tracingEnabled: false,
    });
    backupBucket.grantStagingRead(this.stateMachine);
    acknowledgeStateMachineFindings(this.stateMachine, [phaseFunction], backupBucket, RESTORE_MAP_LABEL);
  }

  /** The state machine's ARN. */
  public get stateMachineArn(): string {
    return this.stateMachine.stateMachineArn;
  }
}
