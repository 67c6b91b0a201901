import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../lib/app.js';
import { cdkJsonContext, testOutdir } from './test-app.js';

const CLI_ENV = { CDK_DEFAULT_ACCOUNT: '123456789012', CDK_DEFAULT_REGION: 'eu-west-1' };

function synthApp(context: Record<string, unknown>) {
  const { app, stack } = buildApp(CLI_ENV, {
    outdir: testOutdir(),
    context: { ...cdkJsonContext, ...context, 'aws:cdk:bundling-stacks': [] },
  });
  const assembly = app.synth();
  return { assembly, template: Template.fromStack(stack).toJSON() };
}

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;
const subnetZones = (template: Record<string, unknown>) =>
  Object.values(template.Resources as Resources)
    .filter((r) => r.Type === 'AWS::EC2::Subnet')
    .map((r) => r.Properties.AvailabilityZone);

describe('synth with CDK_DEFAULT_ACCOUNT set (as the CDK CLI does with credentials around)', () => {
  it('needs no lookup: the demo VPC takes its zones from Fn::GetAZs, not from an AWS call', () => {
    const { assembly, template } = synthApp({});

    // A lookup shows up as missing context, which the CLI would resolve with an AWS call.
    expect(assembly.manifest.missing ?? []).toEqual([]);
    expect(subnetZones(template)).toEqual([
      { 'Fn::Select': [0, { 'Fn::GetAZs': '' }] },
      { 'Fn::Select': [1, { 'Fn::GetAZs': '' }] },
    ]);
  });

  it('puts the demo VPC into the zones given as demoAvailabilityZones', () => {
    const { assembly, template } = synthApp({ demoAvailabilityZones: 'eu-west-1b,eu-west-1c' });

    expect(assembly.manifest.missing ?? []).toEqual([]);
    expect(subnetZones(template)).toEqual(['eu-west-1b', 'eu-west-1c']);
  });
});
