import { type App, type CfnElement, Stack, Token, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { BackupBucket, type BackupBucketProps, MediaBackupStack, parseConfig } from '../../lib/index.js';
import { cdkJsonContext, newTestApp } from './test-app.js';

const KMS_KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';

// Synthesize with the same context (feature flags, settings) as `cdk synth` does. "inmemory" makes a
// validation failure throw with the full report in the message instead of only printing it.

// No stack is bundled: the Lambda code does not matter to these assertions (synth.test.ts bundles).
function newApp(context: Record<string, unknown> = cdkJsonContext): App {
  return newTestApp(context);
}

function logicalId(construct: Bucket): string {
  return Stack.of(construct).getLogicalId(construct.node.defaultChild as CfnElement);
}

function synthBucket(props?: BackupBucketProps | ((stack: Stack) => BackupBucketProps), app = newApp()) {
  const stack = new Stack(app, 'Test');
  const backupBucket = new BackupBucket(
    stack,
    'BackupBucket',
    typeof props === 'function' ? props(stack) : props,
  );
  return {
    backupBucket,
    template: Template.fromStack(stack),
    bucketId: logicalId(backupBucket.bucket),
    logsId: logicalId(backupBucket.accessLogsBucket),
  };
}

const lifecycleRules = (rules: object[]) => ({
  LifecycleConfiguration: { Rules: Match.arrayWith(rules.map((rule) => Match.objectLike(rule))) },
});

describe('BackupBucket', () => {
  it('encrypts both buckets with S3-managed keys by default', () => {
    const { template } = synthBucket();

    template.resourceCountIs('AWS::S3::Bucket', 2);
    template.allResourcesProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
    });
  });

  it('encrypts the backup bucket with the given KMS key and an S3 Bucket Key', () => {
    const { template, bucketId, logsId } = synthBucket((stack) => ({
      encryptionKey: Key.fromKeyArn(stack, 'Key', KMS_KEY_ARN),
    }));

    template.hasResourceProperties('AWS::S3::Bucket', {
      LoggingConfiguration: { DestinationBucketName: { Ref: logsId } },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            BucketKeyEnabled: true,
            ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: KMS_KEY_ARN },
          },
        ],
      },
    });
    // Log delivery supports only SSE-S3 on the target bucket.
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
    });
    expect(bucketId).not.toBe(logsId);
  });

  it('versions the backup bucket', () => {
    const { template, logsId } = synthBucket();

    template.hasResourceProperties('AWS::S3::Bucket', {
      LoggingConfiguration: { DestinationBucketName: { Ref: logsId } },
      VersioningConfiguration: { Status: 'Enabled' },
    });
  });

  it('blocks all public access and disables ACLs on both buckets', () => {
    const { template } = synthBucket();

    template.allResourcesProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
      AccessControl: Match.absent(),
    });
  });

  it('denies every request without TLS on both buckets', () => {
    const { template, bucketId, logsId } = synthBucket();
    const denyInsecureTransport = (id: string) => ({
      Bucket: { Ref: id },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            Resource: Match.arrayWith([{ 'Fn::GetAtt': [id, 'Arn'] }]),
          }),
        ]),
      },
    });

    template.resourceCountIs('AWS::S3::BucketPolicy', 2);
    template.hasResourceProperties('AWS::S3::BucketPolicy', denyInsecureTransport(bucketId));
    template.hasResourceProperties('AWS::S3::BucketPolicy', denyInsecureTransport(logsId));
  });

  it('retains both buckets when the stack is deleted or the bucket replaced', () => {
    const { template } = synthBucket();

    template.allResources('AWS::S3::Bucket', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
  });

  it.each([
    // retentionDays, fullIntervalDays, backupPrefix, expected archive lifetime
    [30, 7, 'media-backups/', 37],
    [14, 14, '', 28],
    [90, 1, 'team/media/', 91],
  ])(
    'expires archives after retention %i + full interval %i days under prefix "%s" (%i days)',
    (retentionDays, fullIntervalDays, backupPrefix, days) => {
      const { template, backupBucket } = synthBucket({ retentionDays, fullIntervalDays, backupPrefix });

      expect(backupBucket.archiveExpirationDays).toBe(days);
      template.hasResourceProperties(
        'AWS::S3::Bucket',
        lifecycleRules([
          { Prefix: `${backupPrefix}full/`, ExpirationInDays: days, Status: 'Enabled' },
          { Prefix: `${backupPrefix}incremental/`, ExpirationInDays: days, Status: 'Enabled' },
        ]),
      );
    },
  );

  it('never expires current objects outside the archive prefixes (status/last-run.json stays)', () => {
    const { template, logsId } = synthBucket();

    template.hasResourceProperties('AWS::S3::Bucket', {
      LoggingConfiguration: { DestinationBucketName: { Ref: logsId } },
      LifecycleConfiguration: {
        Rules: Match.not(
          Match.arrayWith([Match.objectLike({ ExpirationInDays: Match.anyValue(), Prefix: Match.absent() })]),
        ),
      },
    });
    template.hasResourceProperties(
      'AWS::S3::Bucket',
      lifecycleRules([{ Prefix: 'media-backups/full/' }, { Prefix: 'media-backups/incremental/' }]),
    );
  });

  it('aborts incomplete multipart uploads after 1 day and expires noncurrent versions after 1 day', () => {
    const { template } = synthBucket();

    template.hasResourceProperties(
      'AWS::S3::Bucket',
      lifecycleRules([
        {
          Prefix: Match.absent(),
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
          NoncurrentVersionExpiration: { NoncurrentDays: 1 },
          ExpiredObjectDeleteMarker: true,
        },
      ]),
    );
  });

  it('writes server access logs to a separate bucket that admits only S3 log delivery from it', () => {
    const { template, bucketId, logsId } = synthBucket();

    template.hasResourceProperties('AWS::S3::Bucket', {
      VersioningConfiguration: { Status: 'Enabled' },
      LoggingConfiguration: { DestinationBucketName: { Ref: logsId }, LogFilePrefix: 'backup-bucket/' },
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: logsId },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Action: 's3:PutObject',
            Principal: { Service: 'logging.s3.amazonaws.com' },
            Condition: Match.objectLike({
              ArnLike: { 'aws:SourceArn': { 'Fn::GetAtt': [bucketId, 'Arn'] } },
            }),
          }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::S3::Bucket', {
      LoggingConfiguration: Match.absent(),
      ...lifecycleRules([
        { ExpirationInDays: 90, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } },
      ]),
    });
  });

  it('grants log delivery by bucket policy even when the app lacks the feature flag', () => {
    const { template } = synthBucket(undefined, newApp({}));

    template.allResourcesProperties('AWS::S3::Bucket', { AccessControl: Match.absent() });
  });

  it('locks every version in governance mode for the archive lifetime when objectLock is set', () => {
    const { template } = synthBucket({ objectLock: true, retentionDays: 20, fullIntervalDays: 5 });

    template.hasResourceProperties('AWS::S3::Bucket', {
      ObjectLockEnabled: true,
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 25 } },
      },
    });
  });

  it('does not enable Object Lock by default', () => {
    const { template } = synthBucket();

    template.allResourcesProperties('AWS::S3::Bucket', {
      ObjectLockEnabled: Match.absent(),
      ObjectLockConfiguration: Match.absent(),
    });
  });

  it.each<[string, BackupBucketProps, RegExp]>([
    ['zero retention', { retentionDays: 0 }, /`retentionDays` must be a whole number of days >= 1 \(got 0\)/],
    [
      'fractional interval',
      { fullIntervalDays: 1.5 },
      /`fullIntervalDays` must be a whole number of days >= 1/,
    ],
    ['negative interval', { fullIntervalDays: -7 }, /`fullIntervalDays` must be a whole number of days >= 1/],
    [
      'retention shorter than the full interval',
      { retentionDays: 5, fullIntervalDays: 7 },
      /`retentionDays` must be at least `fullIntervalDays` \(got 5 < 7\)/,
    ],
    [
      'prefix without trailing slash',
      { backupPrefix: 'media' },
      /`backupPrefix` must be empty or end with "\/"/,
    ],
    [
      'zero noncurrent version days',
      { noncurrentVersionExpirationDays: 0 },
      /`noncurrentVersionExpirationDays` must be a whole number of days >= 1/,
    ],
    [
      'zero access log days',
      { accessLogExpirationDays: 0 },
      /`accessLogExpirationDays` must be a whole number/,
    ],
    [
      'token retention',
      { retentionDays: Token.asNumber({ Ref: 'Days' }) },
      /`retentionDays` must be a plain number/,
    ],
  ])('rejects %s', (_case, props, message) => {
    const stack = new Stack(newApp(), 'Test');

    expect(() => new BackupBucket(stack, 'BackupBucket', props)).toThrow(message);
  });
});

describe('MediaBackupStack', () => {
  it('builds the bucket from the config and outputs its name', () => {
    const stack = new MediaBackupStack(newApp(), 'MediaBackup', {
      config: parseConfig({ retentionDays: '60', fullIntervalDays: '7', kmsKeyArn: KMS_KEY_ARN }),
    });
    const template = Template.fromStack(stack);
    const bucketId = logicalId(stack.backupBucket.bucket);

    template.hasOutput('BackupBucketName', { Value: { Ref: bucketId } });
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          Match.objectLike({
            ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: KMS_KEY_ARN },
          }),
        ],
      },
      ...lifecycleRules([{ Prefix: 'media-backups/full/', ExpirationInDays: 67 }]),
    });
  });
});

describe('cdk-nag AwsSolutions checks', () => {
  // Wired exactly like bin/app.ts.
  function naggedApp(rawConfig: Record<string, unknown>) {
    const app = newApp();
    const stack = new MediaBackupStack(app, 'MediaBackup', { config: parseConfig(rawConfig) });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    return { app, stack };
  }

  it.each([
    ['the default config', {}],
    ['KMS and Object Lock', { kmsKeyArn: KMS_KEY_ARN, objectLock: 'true', backupPrefix: '' }],
  ])('finds nothing unacknowledged in the MediaBackup stack with %s', (_case, rawConfig) => {
    const { app } = naggedApp(rawConfig);

    // synth runs the plugin and throws on any unacknowledged error or warning.
    expect(() => app.synth()).not.toThrow();
    expect(new AwsSolutionsChecks().validateScope(app)).toEqual({ success: true, violations: [] });
  });

  it('reports findings on a bucket built without BackupBucket (proves the check can fail)', () => {
    const { app, stack } = naggedApp({});
    new Bucket(stack, 'UnsafeBucket');

    const report = new AwsSolutionsChecks().validateScope(app);

    expect(report.success).toBe(false);
    expect(report.violations.map((violation) => violation.ruleName)).toEqual(
      expect.arrayContaining(['AwsSolutions-S1', 'AwsSolutions-S10']),
    );
    expect(report.violations.flatMap((v) => v.violatingResources.map((r) => r.constructPath))).toEqual(
      expect.arrayContaining(['MediaBackup/UnsafeBucket/Resource']),
    );
    expect(() => app.synth()).toThrow(/AwsSolutions-S10/);
  });

  it('gives every acknowledgement a real reason', () => {
    const { app } = naggedApp({});
    const acknowledgements = app.node
      .findAll()
      .flatMap((construct) => construct.node.metadata)
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) => Object.entries(entry.data as Record<string, string>));

    // Lambda managed policies, S3 prefix wildcards, the demo VPC's flow logs, the DLQ: each says why.
    expect(acknowledgements.length).toBeGreaterThan(0);
    for (const [id, reason] of acknowledgements) {
      expect(reason, id).toMatch(/\w+(\s+\w+){4,}/);
      expect(reason, id).not.toMatch(/\b(todo|tbd|fixme|n\/a)\b/i);
    }
  });
});
