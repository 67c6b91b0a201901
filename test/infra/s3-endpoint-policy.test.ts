import { type CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { MediaBackupStack, parseConfig } from '../../lib/index.js';
import { newTestApp } from './test-app.js';

// Issue 12 section 1: the S3 gateway endpoint the demo VPC creates is limited to the backup bucket
// and to what the functions call, so nothing in the VPC can copy data to another bucket through it.

const EXISTING = {
  fileSystemId: 'fs-0123456789abcdef0',
  accessPointId: 'fsap-0123456789abcdef0',
  securityGroupId: 'sg-0123456789abcdef0',
  vpcId: 'vpc-0123456789abcdef0',
  privateSubnetIds: 'subnet-0123456789abcdef0,subnet-0123456789abcdef1',
  availabilityZones: 'eu-west-1a,eu-west-1b',
};

const id = (construct: IConstruct) =>
  Stack.of(construct).getLogicalId((construct.node.defaultChild ?? construct) as CfnElement);

function synth(raw: Record<string, unknown> = {}) {
  const stack = new MediaBackupStack(newTestApp(), 'MediaBackup', { config: parseConfig(raw) });
  const template = Template.fromStack(stack);
  const endpoints = Object.values(template.findResources('AWS::EC2::VPCEndpoint'));
  expect(endpoints).toHaveLength(1);
  return { stack, template, endpoint: endpoints[0]!.Properties };
}

const asList = (value: unknown) => (Array.isArray(value) ? value : [value]);

describe('the demo VPC S3 gateway endpoint', () => {
  const { stack, template, endpoint } = synth({ notificationEmail: 'ops@example.com' });
  const bucketArn = { 'Fn::GetAtt': [id(stack.backupBucket.bucket), 'Arn'] };

  it('allows only the backup bucket and its objects under the prefix', () => {
    expect(endpoint.PolicyDocument).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'BackupStoreObjects',
          Effect: 'Allow',
          Principal: { AWS: '*' },
          Action: [
            's3:GetObject',
            // A synthetic full's copies and ranged reads of pinned versions.
            's3:GetObjectVersion',
            's3:PutObject',
            's3:AbortMultipartUpload',
            's3:ListMultipartUploadParts',
          ],
          Resource: { 'Fn::Join': ['', [bucketArn, '/media-backups/*']] },
        },
        {
          Sid: 'BackupStoreListing',
          Effect: 'Allow',
          Principal: { AWS: '*' },
          Action: ['s3:ListBucket', 's3:ListBucketMultipartUploads'],
          Resource: bucketArn,
        },
      ],
    });
  });

  it("allows exactly the S3 actions the functions' roles have", () => {
    const roleActions = Object.values(template.findResources('AWS::IAM::Policy'))
      .flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: unknown }[])
      .flatMap((s) => asList(s.Action) as string[])
      .filter((a) => a.startsWith('s3:'));
    const endpointActions = (endpoint.PolicyDocument.Statement as { Action: unknown }[]).flatMap(
      (s) => asList(s.Action) as string[],
    );

    expect([...new Set(endpointActions)].sort()).toEqual([...new Set(roleActions)].sort());
  });

  it('follows a configured backup prefix', () => {
    const { endpoint: custom } = synth({ backupPrefix: 'team/media/' });

    expect(JSON.stringify(custom.PolicyDocument.Statement[0].Resource)).toContain('"/team/media/*"');
  });
});

it("keeps the default policy of an endpoint added to an existing VPC (it serves other workloads' S3 traffic too)", () => {
  const { endpoint } = synth({
    ...EXISTING,
    createS3GatewayEndpoint: 'true',
    privateSubnetRouteTableIds: 'rtb-0123456789abcdef0,rtb-0123456789abcdef1',
  });

  expect(endpoint.PolicyDocument).toBeUndefined();
  expect(endpoint.RouteTableIds).toEqual(['rtb-0123456789abcdef0', 'rtb-0123456789abcdef1']);
});
