import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { RESTORE_MAP_LABEL, RESTORE_STATES } from '../../lib/constructs/restore-state-machine.js';
import { LAMBDA_SERVICE_ERRORS } from '../../lib/constructs/state-machines.js';
import {
  allows,
  allStates,
  definitionOf,
  functionArn,
  type Json,
  list,
  resolveIntrinsics,
  statementsOfRole,
  validateAsl,
} from '../fixtures/local-sfn.js';
import { expectedItemReader, logicalId as id, synthStack } from '../fixtures/stack-synth.js';

describe('restore state machine definition', () => {
  const { stack, json } = synthStack();
  const definition = definitionOf(json, id(stack.restoreStateMachine.stateMachine));
  const states = allStates(definition);
  const [prepare, map, archive, finish, abandon, failed] = [
    RESTORE_STATES.prepare,
    RESTORE_STATES.map,
    RESTORE_STATES.archive,
    RESTORE_STATES.finish,
    RESTORE_STATES.abandon,
    RESTORE_STATES.failed,
  ].map((name) => states[name]);
  const phaseFunction = functionArn(id(stack.restorePhaseFunction.function));

  it('prepares, extracts every archive in a Distributed Map, then finishes', () => {
    expect(definition.StartAt).toBe(RESTORE_STATES.prepare);
    expect(prepare).toMatchObject({ Type: 'Task', Next: RESTORE_STATES.map });
    expect(prepare.Parameters).toEqual({
      FunctionName: phaseFunction,
      Payload: { phase: 'prepare', 'request.$': '$' },
    });
    expect(map).toMatchObject({ Type: 'Map', Next: RESTORE_STATES.finish, Label: RESTORE_MAP_LABEL });
    expect(map.ItemProcessor.ProcessorConfig).toEqual({ Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' });
    expect(finish).toMatchObject({ Type: 'Task', End: true, OutputPath: '$.result' });
    for (const task of [prepare, archive, finish, abandon]) {
      expect(task.Resource).toBe('arn:aws:states:::lambda:invoke');
      expect(task.Parameters.FunctionName).toBe(phaseFunction);
    }
  });

  it("reads the job's archive list with the JSONL S3 ItemReader, key from $.itemsKey, and passes the job to every child", () => {
    expect(map.ItemReader).toEqual(expectedItemReader(stack, json));
    expect(map.ItemSelector).toEqual({ 'job.$': '$.job', 'archive.$': '$$.Map.Item.Value' });
    expect(archive.Parameters.Payload).toEqual({
      phase: 'archive',
      'job.$': '$.job',
      'archiveKey.$': '$.archive.key',
    });
    expect(prepare.ResultSelector).toEqual({
      'job.$': '$.Payload.job',
      'backupId.$': '$.Payload.backupId',
      'itemsKey.$': '$.Payload.itemsKey',
    });
  });

  it.each([
    [{}, 8],
    [{ shardMaxConcurrency: 3 }, 3],
  ])('takes MaxConcurrency from shardMaxConcurrency (%j)', (raw, expected) => {
    const synthesized = synthStack(raw);
    const def = definitionOf(synthesized.json, id(synthesized.stack.restoreStateMachine.stateMachine));
    expect(def.States[RESTORE_STATES.map].MaxConcurrency).toBe(expected);
  });

  it('fails on the first failed archive and keeps no child results', () => {
    expect(map.ToleratedFailurePercentage).toBe(0);
    expect(map.ResultPath).toBeNull();
    expect(archive.OutputPath).toBeNull();
  });

  it('retries Lambda service errors on every step, a failed archive twice, never a failed finish', () => {
    for (const task of [prepare, archive, finish, abandon]) {
      expect(task.Retry[0]).toMatchObject({
        ErrorEquals: [...LAMBDA_SERVICE_ERRORS],
        JitterStrategy: 'FULL',
      });
    }
    expect(archive.Retry[1]).toMatchObject({ ErrorEquals: ['States.TaskFailed'], MaxAttempts: 2 });
    expect(finish.Retry).toHaveLength(1);
    expect(prepare.Retry).toHaveLength(1);
  });

  it('abandons the job on any failure of the Map or the finish; a failed prepare ends the run at once', () => {
    const toAbandon = [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: RESTORE_STATES.abandon }];
    expect(map.Catch).toEqual(toAbandon);
    expect(finish.Catch).toEqual(toAbandon);
    expect(prepare.Catch).toEqual([
      { ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: RESTORE_STATES.failed },
    ]);
    expect(abandon).toMatchObject({ Next: RESTORE_STATES.failed, ResultPath: null });
    expect(abandon.Parameters.Payload).toEqual({ phase: 'abandon', 'job.$': '$.job', 'error.$': '$.error' });
    expect(failed).toEqual({ Type: 'Fail', ErrorPath: '$.error.Error', CausePath: '$.error.Cause' });
  });

  it('stops the execution after 12 hours, as long as the restore job holds its lock', () => {
    expect(definition.TimeoutSeconds).toBe(12 * 3600);
  });

  it('is valid ASL (asl-validator, JSONPaths and ARNs checked)', () => {
    expect(validateAsl(definition)).toEqual({ isValid: true, errors: '' });
  });
});

describe('IAM of the restore state machine', () => {
  const { stack, json } = synthStack();
  const sm = stack.restoreStateMachine.stateMachine;
  const smRole = statementsOfRole(json, id(sm.role));
  const phaseRole = statementsOfRole(json, id(stack.restorePhaseFunction.function.role!));
  const bucketArn = resolveIntrinsics({ 'Fn::GetAtt': [id(stack.backupBucket.bucket), 'Arn'] }, json);
  const ifNoneMatch = (condition: Json) => condition?.StringEquals?.['s3:if-none-match'] === '*';

  it('lets the state machine invoke exactly the restore phase function and read only staging/', () => {
    const invoked = smRole
      .filter((s) => list(s.Action).includes('lambda:InvokeFunction'))
      .flatMap((s) => list(s.Resource))
      .map((arn) => arn.replace(/:\*$/, ''));
    expect([...new Set(invoked)]).toEqual([functionArn(id(stack.restorePhaseFunction.function))]);
    const items = `${bucketArn}/media-backups/staging/restore-0123456789abcdef/archives.jsonl`;
    expect(allows(smRole, 's3:GetObject', items)).toBe(true);
    expect(
      allows(
        smRole,
        's3:GetObject',
        `${bucketArn}/media-backups/full/backup_20261201_040000.part-0001.tar.gz`,
      ),
    ).toBe(false);
  });

  it('lets the phase function create its archive list under staging/ only, never replace or delete', () => {
    const items = `${bucketArn}/media-backups/staging/restore-0123456789abcdef/archives.jsonl`;
    expect(allows(phaseRole, 's3:PutObject', items, ifNoneMatch)).toBe(true);
    expect(allows(phaseRole, 's3:PutObject', items)).toBe(false);
    for (const other of ['full/backup_20261201_040000.tar.gz', 'status/last-run.json', 'locks/backup.json']) {
      expect(
        allows(phaseRole, 's3:PutObject', `${bucketArn}/media-backups/${other}`, ifNoneMatch),
        other,
      ).toBe(false);
    }
    const actions = phaseRole.flatMap((s) => list(s.Action));
    expect(actions.filter((a) => /^s3:Delete|^s3:Abort|^s3:\*/.test(a))).toEqual([]);
    // It writes the restored tree: EFS read-write, like the restore function.
    expect(actions.filter((a) => a.startsWith('elasticfilesystem:')).sort()).toEqual([
      'elasticfilesystem:ClientMount',
      'elasticfilesystem:ClientWrite',
    ]);
  });

  it('outputs how to start a sharded restore', () => {
    const template = Template.fromJSON(json as never);
    const output = template.findOutputs('StartShardedRestoreCommand').StartShardedRestoreCommand;
    const command = resolveIntrinsics(output?.Value, json) as string;
    expect(command).toBe(
      `aws stepfunctions start-execution --region us-east-1 --state-machine-arn arn:aws:states:us-east-1:123456789012:stateMachine:${id(sm)} --input '{"backup":"latest"}'`,
    );
    template.hasOutput('RestoreStateMachineArn', { Value: { Ref: id(sm) } });
  });
});
