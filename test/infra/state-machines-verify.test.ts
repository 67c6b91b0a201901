import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { LAMBDA_SERVICE_ERRORS } from '../../lib/constructs/state-machines.js';
import { VERIFY_MAP_LABEL, VERIFY_STATES } from '../../lib/constructs/verify-state-machine.js';
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

describe('verify state machine definition', () => {
  const { stack, json } = synthStack({ shardMaxConcurrency: 5 });
  const definition = definitionOf(json, id(stack.verifyStateMachine.stateMachine));
  const states = allStates(definition);
  const plan = states[VERIFY_STATES.plan];
  const map = states[VERIFY_STATES.map];
  const check = states[VERIFY_STATES.check];
  const record = states[VERIFY_STATES.record];
  const phaseFunction = functionArn(id(stack.verifyPhaseFunction.function));

  it('plans, checks every archive in a Distributed Map, then records', () => {
    expect(definition.StartAt).toBe(VERIFY_STATES.plan);
    expect(plan).toMatchObject({ Type: 'Task', Next: VERIFY_STATES.map });
    expect(map).toMatchObject({
      Type: 'Map',
      Next: VERIFY_STATES.record,
      Label: VERIFY_MAP_LABEL,
      MaxConcurrency: 5,
    });
    expect(record).toMatchObject({ Type: 'Task', End: true, OutputPath: '$.result' });
    for (const task of [plan, check, record]) {
      expect(task.Resource).toBe('arn:aws:states:::lambda:invoke');
      expect(task.Parameters.FunctionName).toBe(phaseFunction);
      expect(task.Retry[0]).toMatchObject({
        ErrorEquals: [...LAMBDA_SERVICE_ERRORS],
        JitterStrategy: 'FULL',
      });
    }
  });

  it('reads the check list from S3, passes run id, index and item to each child, and keeps no results in the state', () => {
    expect(map.ItemReader).toEqual(expectedItemReader(stack, json));
    expect(map.ItemSelector).toEqual({
      'runId.$': '$.runId',
      'index.$': '$$.Map.Item.Index',
      'item.$': '$$.Map.Item.Value',
    });
    expect(map.ToleratedFailurePercentage).toBe(0);
    expect(map.ResultPath).toBeNull();
    expect(check.OutputPath).toBeNull();
    expect(check.Retry[1]).toMatchObject({ ErrorEquals: ['States.TaskFailed'], MaxAttempts: 2 });
    expect(record.Parameters.Payload).toEqual({
      phase: 'record',
      'runId.$': '$.runId',
      'items.$': '$.items',
      'rotating.$': '$.rotating',
    });
  });

  it('fails with the original error from any step (nothing to undo)', () => {
    const toFailed = [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: VERIFY_STATES.failed }];
    for (const state of [plan, map, record]) expect(state.Catch).toEqual(toFailed);
    expect(states[VERIFY_STATES.failed]).toEqual({
      Type: 'Fail',
      ErrorPath: '$.error.Error',
      CausePath: '$.error.Cause',
    });
  });

  it('is valid ASL (asl-validator, JSONPaths and ARNs checked)', () => {
    expect(validateAsl(definition)).toEqual({ isValid: true, errors: '' });
  });
});

describe('IAM of the verify state machine', () => {
  const { stack, json } = synthStack();
  const smRole = statementsOfRole(json, id(stack.verifyStateMachine.stateMachine.role));
  const phaseRole = statementsOfRole(json, id(stack.verifyPhaseFunction.function.role!));
  const bucketArn = resolveIntrinsics({ 'Fn::GetAtt': [id(stack.backupBucket.bucket), 'Arn'] }, json);
  const ifNoneMatch = (condition: Json) => condition?.StringEquals?.['s3:if-none-match'] === '*';
  const key = (rest: string) => `${bucketArn}/media-backups/${rest}`;

  it('lets the state machine invoke exactly the verify phase function and read only staging/', () => {
    const invoked = smRole
      .filter((s) => list(s.Action).includes('lambda:InvokeFunction'))
      .flatMap((s) => list(s.Resource))
      .map((arn) => arn.replace(/:\*$/, ''));
    expect([...new Set(invoked)]).toEqual([functionArn(id(stack.verifyPhaseFunction.function))]);
    expect(allows(smRole, 's3:GetObject', key('staging/verify-20261201T040000-0a1b2c3d/items.jsonl'))).toBe(
      true,
    );
    expect(allows(smRole, 's3:GetObject', key('full/backup_20261201_040000.part-0001.tar.gz'))).toBe(false);
  });

  it('lets the phase function create under staging/ and rewrite last-verify.json, and nothing else', () => {
    expect(allows(phaseRole, 's3:PutObject', key('staging/verify-x/result-00001.json'), ifNoneMatch)).toBe(
      true,
    );
    expect(allows(phaseRole, 's3:PutObject', key('staging/verify-x/result-00001.json'))).toBe(false);
    expect(allows(phaseRole, 's3:PutObject', key('status/last-verify.json'))).toBe(true);
    for (const other of ['status/last-run.json', 'full/backup_20261201_040000.tar.gz', 'locks/backup.json']) {
      expect(allows(phaseRole, 's3:PutObject', key(other), ifNoneMatch), other).toBe(false);
    }
    const actions = phaseRole.flatMap((s) => list(s.Action));
    expect(actions.filter((a) => /^s3:Delete|^s3:Abort|^s3:\*|^elasticfilesystem:/.test(a))).toEqual([]);
  });

  it('outputs how to start a deep verify', () => {
    const template = Template.fromJSON(json as never);
    const output = template.findOutputs('StartDeepVerifyCommand').StartDeepVerifyCommand;
    expect(resolveIntrinsics(output?.Value, json)).toBe(
      `aws stepfunctions start-execution --region us-east-1 --state-machine-arn arn:aws:states:us-east-1:123456789012:stateMachine:${id(stack.verifyStateMachine.stateMachine)} --input '{"backup":"latest","deep":true}'`,
    );
  });
});
