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

/** State names of the verify state machine. */
export const VERIFY_STATES = {
  plan: 'PlanArchiveChecks',
  map: 'CheckArchives',
  check: 'CheckOneArchive',
  record: 'RecordChecks',
  failed: 'VerifyFailed',
} as const;

/** The Map Run label of the verify state machine. */
export const VERIFY_MAP_LABEL = 'checks';

/** Properties of {@link DeepVerifyStateMachine}. */
export interface DeepVerifyStateMachineProps {
  /** The backup bucket: the Distributed Map reads the run's check list from `<prefix>staging/`. */
  readonly backupBucket: BackupBucket;

  /** The verify phase function (lambda/handlers/verify-phase.ts): `{ phase: 'plan' | 'check' | 'record', ... }`. */
  readonly phaseFunction: BackupFunction;

  /**
   * Archives checked at once (the Distributed Map's MaxConcurrency), 1 to 10,000.
   *
   * @default 8
   */
  readonly maxConcurrency?: number;

  /**
   * The execution is stopped after this long.
   *
   * @default Duration.hours(12)
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
 * A deep verify too big for one verify invocation (a sharded backup's parts, many backups), as a
 * Standard workflow. Input: the verify function's event (`{ backup?, all?, deep: true }`).
 *
 * 1. `PlanArchiveChecks`: one check per archive the target backups need (plus, for `latest`, the
 *    rotation slice of archives not checked for longest), written to
 *    `<prefix>staging/verify-<runId>/items.jsonl`.
 * 2. `CheckArchives`: a Distributed Map, one child per archive: downloads it once, checks its size and
 *    sha256 and every file it holds against the manifest; the result goes to
 *    `staging/verify-<runId>/result-<n>.json` (not through the state: 10,000 results would pass 256 KB).
 *    A damaged archive is a result, not a failed child; a child fails only when the store cannot be
 *    read, and is retried.
 * 3. `RecordChecks`: reads every result, records status/last-verify.json as the verify function does
 *    (chain checks, health and the next rotation read it), publishes `VerifyFailures`, and fails the
 *    execution listing every problem when a backup is damaged.
 *
 * Nothing needs undoing on failure (the work objects expire with staging/), so every Catch goes
 * straight to `VerifyFailed`, carrying the original error.
 */
export class DeepVerifyStateMachine extends Construct {
  /** The state machine. */
  public readonly stateMachine: StateMachine;
  /** Its log group. */
  public readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: DeepVerifyStateMachineProps) {
    super(scope, id);
    const maxConcurrency = requireMaxConcurrency(props.maxConcurrency);
    const timeout = props.timeout ?? Duration.hours(12);
    requireExecutionTimeout(timeout);
    const { backupBucket, phaseFunction } = props;

    const failed = failWithCaughtError(this, VERIFY_STATES.failed);
    const toFailed = { errors: ['States.ALL'], resultPath: '$.error' };

    const plan = lambdaTask(this, VERIFY_STATES.plan, phaseFunction, {
      payload: TaskInput.fromObject({ phase: 'plan', request: JsonPath.objectAt('$') }),
      resultSelector: {
        'runId.$': '$.Payload.runId',
        'items.$': '$.Payload.items',
        'itemsKey.$': '$.Payload.itemsKey',
        'rotating.$': '$.Payload.rotating',
      },
    });
    plan.addCatch(failed, toFailed);

    const check = lambdaTask(this, VERIFY_STATES.check, phaseFunction, {
      payload: TaskInput.fromObject({
        phase: 'check',
        runId: JsonPath.stringAt('$.runId'),
        index: JsonPath.numberAt('$.index'),
        item: JsonPath.objectAt('$.item'),
      }),
      outputPath: JsonPath.DISCARD,
    });
    retryFailedItem(check);

    const checks = stagingItemsMap(this, VERIFY_STATES.map, {
      comment: 'Deep-check every planned archive, up to MaxConcurrency at once',
      itemSelector: {
        runId: JsonPath.stringAt('$.runId'),
        index: JsonPath.numberAt('$$.Map.Item.Index'),
        item: JsonPath.objectAt('$$.Map.Item.Value'),
      },
      maxConcurrency,
      label: VERIFY_MAP_LABEL,
      backupBucket,
      itemProcessor: check,
    });
    checks.addCatch(failed, toFailed);

    const record = lambdaTask(this, VERIFY_STATES.record, phaseFunction, {
      payload: TaskInput.fromObject({
        phase: 'record',
        runId: JsonPath.stringAt('$.runId'),
        items: JsonPath.numberAt('$.items'),
        rotating: JsonPath.objectAt('$.rotating'),
      }),
      resultSelector: { 'result.$': '$.Payload' },
      outputPath: '$.result',
    });
    record.addCatch(failed, toFailed);

    ({ stateMachine: this.stateMachine, logGroup: this.logGroup } = standardStateMachine(this, {
      comment: 'media-backup: deep verify archive by archive (plan, check each archive, record)',
      definition: plan.next(checks).next(record),
      timeout,
      logRetention: props.logRetention,
      backupBucket,
      functions: [phaseFunction],
      mapLabel: VERIFY_MAP_LABEL,
    }));
  }

  /** The state machine's ARN. */
  public get stateMachineArn(): string {
    return this.stateMachine.stateMachineArn;
  }
}
