import { Duration } from 'aws-cdk-lib';
import type { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { JsonPath, type StateMachine, TaskInput } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { BackupBucket } from './backup-bucket.js';
import type { BackupFunction } from './backup-function.js';
import {
  failWithCaughtError,
  lambdaTask,
  requireExecutionTimeout,
  requireMaxConcurrency,
  retryFailedItem,
  stagingItemsMap,
  standardStateMachine,
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
    const maxConcurrency = requireMaxConcurrency(props.maxConcurrency);
    const timeout = props.timeout ?? Duration.hours(12);
    requireExecutionTimeout(timeout);
    const { backupBucket, phaseFunction } = props;

    const failed = failWithCaughtError(this, RESTORE_STATES.failed);

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
    retryFailedItem(archive);

    const archives = stagingItemsMap(this, RESTORE_STATES.map, {
      comment: 'Extract every archive of the backup into the staging folder, up to MaxConcurrency at once',
      itemSelector: { job: JsonPath.objectAt('$.job'), archive: JsonPath.objectAt('$$.Map.Item.Value') },
      maxConcurrency,
      label: RESTORE_MAP_LABEL,
      backupBucket,
      itemProcessor: archive,
    });
    archives.addCatch(abandon, { errors: ['States.ALL'], resultPath: '$.error' });

    // Not retried on its own errors: a finish that failed before the swap put the target back, and
    // one that failed after it must not swap again.
    const finish = lambdaTask(this, RESTORE_STATES.finish, phaseFunction, {
      payload: TaskInput.fromObject({ phase: 'finish', job: JsonPath.objectAt('$.job') }),
      resultSelector: { 'result.$': '$.Payload' },
      outputPath: '$.result',
    });
    finish.addCatch(abandon, { errors: ['States.ALL'], resultPath: '$.error' });

    // Execution data would put restored paths (the --path selection) into the logs: left out.
    ({ stateMachine: this.stateMachine, logGroup: this.logGroup } = standardStateMachine(this, {
      comment: 'media-backup: restore a backup archive by archive (prepare, extract each archive, finish)',
      definition: prepare.next(archives).next(finish),
      timeout,
      logRetention: props.logRetention,
      backupBucket,
      functions: [phaseFunction],
      mapLabel: RESTORE_MAP_LABEL,
    }));
  }

  /** The state machine's ARN. */
  public get stateMachineArn(): string {
    return this.stateMachine.stateMachineArn;
  }
}
