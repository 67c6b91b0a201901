import { type CfnElement, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { BackupBucket, type BackupBucketProps, MediaBackupStack, parseConfig } from '../../lib/index.js';
import { newTestApp } from './test-app.js';

// Issue 12 section 1: the backup role cannot destroy backup history, and every other role gets
// exactly the S3 calls its code makes (lambda/store/s3.ts: GetObject, HeadObject, ListObjectsV2,
// PutObject and lib-storage's multipart upload, ListMultipartUploads, ListParts,
// AbortMultipartUpload). Walks every statement of the policies attached to each function's role in
// the synthesized stack, so a grant added later without the condition fails here.

const KMS_KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';

interface Statement {
  readonly Sid?: string;
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
  readonly Condition?: Record<string, Record<string, unknown>>;
}

const id = (construct: IConstruct) =>
  Stack.of(construct).getLogicalId((construct.node.defaultChild ?? construct) as CfnElement);

/** Every statement of every AWS::IAM::Policy attached to `role` in `template`. */
function roleStatements(template: Template, role: IConstruct): Statement[] {
  const roleId = id(role);
  const attached = Object.values(template.findResources('AWS::IAM::Policy')).filter((policy) =>
    (policy.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === roleId),
  );
  expect(attached.length).toBeGreaterThan(0);
  return attached.flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}

const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const s3Statements = (statements: Statement[]) =>
  statements.filter((s) => actionsOf(s).some((a) => a === '*' || a.startsWith('s3:')));
const s3Actions = (statements: Statement[]) =>
  [...new Set(s3Statements(statements).flatMap(actionsOf))].sort();

/**
 * The object key patterns a statement's resources name: the part after the bucket ARN's `/`,
 * `(bucket)` for the bucket itself, the raw JSON for anything else (e.g. `"*"`).
 */
function keyPatterns(s: Statement): string[] {
  const resources = Array.isArray(s.Resource) ? s.Resource : [s.Resource];
  return resources.map((r) => {
    const json = JSON.stringify(r);
    const object = /"\/([^"]*)"\]\]\}$/.exec(json);
    if (object) return object[1]!;
    if (/^\{"Fn::GetAtt":\["\w+","Arn"\]\}$/.test(json)) return '(bucket)';
    return json;
  });
}

/** Actions that could create or replace an object: PutObject and any wildcard covering it. */
const WRITES_OBJECTS = /^\*$|^s3:\*$|^s3:Put\*$|^s3:PutObject\*?$/;
/** Actions no backup role may have: retention, legal hold, tagging, ACL, delete, bypass, wildcards. */
const FORBIDDEN =
  /\*|Retention|LegalHold|Tagging|Acl|Delete|Bypass|Replicat|RestoreObject|PutBucket|PutLifecycle/i;

/**
 * The statements that let the role write a backup key (anything outside `locks/` and `status/`)
 * with no conditional-create condition. Empty is the rule of issue 12.
 */
function unconditionedBackupWrites(statements: Statement[], prefix = 'media-backups/'): Statement[] {
  return s3Statements(statements).filter((s) => {
    if (s.Effect !== 'Allow' || !actionsOf(s).some((a) => WRITES_OBJECTS.test(a))) return false;
    const onlyLockAndStatus = keyPatterns(s).every(
      (k) => k.startsWith(`${prefix}locks/`) || k.startsWith(`${prefix}status/`),
    );
    const ifNoneMatch =
      Object.keys(s.Condition ?? {}).length === 1 && s.Condition?.StringEquals?.['s3:if-none-match'] === '*';
    const noObjectCreated =
      Object.keys(s.Condition ?? {}).length === 1 &&
      s.Condition?.Bool?.['s3:ObjectCreationOperation'] === 'false';
    return !onlyLockAndStatus && !ifNoneMatch && !noObjectCreated;
  });
}

function synthStack(raw: Record<string, unknown> = {}) {
  const stack = new MediaBackupStack(newTestApp(), 'MediaBackup', { config: parseConfig(raw) });
  return { stack, template: Template.fromStack(stack) };
}

describe.each([
  ['the default config', {}],
  [
    'KMS and Object Lock (COMPLIANCE)',
    { kmsKeyArn: KMS_KEY_ARN, objectLock: 'true', objectLockMode: 'COMPLIANCE' },
  ],
])('the deployed roles with %s', (_case, raw) => {
  const { stack, template } = synthStack(raw);
  const backup = roleStatements(template, stack.backupFunction.function.role!);
  const puts = s3Statements(backup).filter((s) => actionsOf(s).includes('s3:PutObject'));

  it('the bucket is locked in the configured objectLockMode, or not at all', () => {
    const bucket = template.findResources('AWS::S3::Bucket')[id(stack.backupBucket.bucket)]!;

    expect(bucket.Properties.ObjectLockConfiguration).toEqual(
      'objectLock' in raw
        ? { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 37 } } }
        : undefined,
    );
  });

  it('backup role: no PutObject on backup keys without s3:if-none-match = * (or the multipart exemption)', () => {
    expect(unconditionedBackupWrites(backup)).toEqual([]);
    expect(puts).toHaveLength(3);
  });

  it('backup role: creates backup objects only with s3:if-none-match = *', () => {
    expect(puts.find((s) => s.Sid === 'CreateBackupObjectsOnlyIfAbsent')).toMatchObject({
      Condition: { StringEquals: { 's3:if-none-match': '*' } },
    });
    expect(keyPatterns(puts.find((s) => s.Sid === 'CreateBackupObjectsOnlyIfAbsent')!)).toEqual([
      'media-backups/*',
    ]);
  });

  it('backup role: replaces only locks/* and status/* without a condition', () => {
    const free = puts.filter((s) => s.Condition === undefined);

    expect(free).toHaveLength(1);
    expect(keyPatterns(free[0]!).sort()).toEqual(['media-backups/locks/*', 'media-backups/status/*']);
  });

  it('backup role: no retention, legal hold, tagging, ACL, delete, bypass or wildcard S3 action', () => {
    expect(s3Actions(backup).filter((a) => FORBIDDEN.test(a))).toEqual([]);
    expect(s3Actions(backup)).toEqual([
      's3:AbortMultipartUpload',
      's3:GetObject',
      // Synthetic fulls copy pinned versions (test/infra/synthetic-fulls.test.ts).
      's3:GetObjectVersion',
      's3:ListBucket',
      's3:ListBucketMultipartUploads',
      's3:ListMultipartUploadParts',
      's3:PutObject',
    ]);
  });

  it('backup role: every S3 object permission is under the backup prefix, listing is prefix-limited', () => {
    for (const s of s3Statements(backup)) {
      for (const key of keyPatterns(s))
        expect(key === '(bucket)' || key.startsWith('media-backups/')).toBe(true);
    }
    const list = s3Statements(backup).filter((s) => actionsOf(s).includes('s3:ListBucket'));
    expect(list).toHaveLength(1);
    expect(list[0]!.Condition).toEqual({ StringLike: { 's3:prefix': ['media-backups/*'] } });
  });

  it('restore role: reads only, no s3:Put*, Delete* or Abort*', () => {
    const restore = roleStatements(template, stack.restoreFunction.function.role!);

    expect(s3Actions(restore).filter((a) => /^s3:(Put|Delete|Abort)|\*/.test(a))).toEqual([]);
    expect(s3Actions(restore)).toEqual(['s3:GetObject', 's3:ListBucket']);
  });

  it('verify role: reads, and writes exactly status/last-verify.json', () => {
    const verify = roleStatements(template, stack.verifyFunction.function.role!);
    const writes = s3Statements(verify).filter((s) =>
      actionsOf(s).some((a) => a !== 's3:GetObject' && a !== 's3:ListBucket'),
    );

    expect(s3Actions(verify)).toEqual(['s3:GetObject', 's3:ListBucket', 's3:PutObject']);
    expect(writes).toHaveLength(1);
    expect(actionsOf(writes[0]!)).toEqual(['s3:PutObject']);
    expect(keyPatterns(writes[0]!)).toEqual(['media-backups/status/last-verify.json']);
  });

  it('monitor role: reads and lists multipart uploads (the orphans check), writes nothing', () => {
    const monitor = roleStatements(template, stack.monitoring.monitorFunction.function.role!);

    expect(s3Actions(monitor)).toEqual([
      's3:GetObject',
      's3:ListBucket',
      's3:ListBucketMultipartUploads',
      's3:ListMultipartUploadParts',
    ]);
  });
});

it('notify role (with an email): reads and lists multipart uploads, writes nothing', () => {
  const { stack, template } = synthStack({ notificationEmail: 'ops@example.com' });
  const notify = roleStatements(template, stack.notifications.notifyFunction!.function.role!);

  expect(s3Actions(notify)).toEqual([
    's3:GetObject',
    's3:ListBucket',
    's3:ListBucketMultipartUploads',
    's3:ListMultipartUploadParts',
  ]);
});

describe('the checks themselves', () => {
  // The grants the stack used before issue 12: these checks must reject them.
  function synthRole(grant: (bucket: BackupBucket, role: Role) => void, props: BackupBucketProps = {}) {
    const stack = new Stack(newTestApp(), 'Test');
    const backupBucket = new BackupBucket(stack, 'BackupBucket', props);
    const role = new Role(stack, 'BackupRole', { assumedBy: new ServicePrincipal('lambda.amazonaws.com') });
    grant(backupBucket, role);
    const template = Template.fromStack(stack);
    return { template, statements: roleStatements(template, role) };
  }

  it("reject CDK's grantPut and grantRead (the old backup grants)", () => {
    const { statements } = synthRole((b, role) => {
      b.bucket.grantPut(role, 'media-backups/*');
      b.bucket.grantRead(role, 'media-backups/*');
    });

    expect(unconditionedBackupWrites(statements)).toHaveLength(1);
    expect(s3Actions(statements).filter((a) => FORBIDDEN.test(a))).toEqual(
      expect.arrayContaining(['s3:Abort*', 's3:PutObjectLegalHold', 's3:PutObjectRetention', 's3:List*']),
    );
  });

  it('reject a PutObject whose condition is not the conditional create', () => {
    const statements: Statement[] = [
      {
        Effect: 'Allow',
        Action: 's3:PutObject',
        Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': ['B', 'Arn'] }, '/media-backups/*']] },
        Condition: { StringEquals: { 's3:if-match': '*' } },
      },
      { Effect: 'Allow', Action: 's3:*', Resource: '*' },
    ];

    expect(unconditionedBackupWrites(statements)).toHaveLength(2);
  });

  it('grantStatusWrite refuses a key outside status/', () => {
    expect(() => synthRole((bucket, role) => bucket.grantStatusWrite(role, 'full/x'))).toThrow(
      /`statusKey` must be under status\//,
    );
  });

  it.each([
    [undefined, 'GOVERNANCE'],
    ['GOVERNANCE', 'GOVERNANCE'],
    ['COMPLIANCE', 'COMPLIANCE'],
  ] as const)('BackupBucket objectLockMode %s locks in %s mode', (mode, expected) => {
    const { template } = synthRole((b, role) => b.grantBackupRead(role), {
      objectLock: true,
      objectLockMode: mode,
    });

    template.hasResourceProperties('AWS::S3::Bucket', {
      ObjectLockConfiguration: { Rule: { DefaultRetention: { Mode: expected, Days: 37 } } },
    });
  });

  it('BackupBucket refuses a mode without objectLock', () => {
    expect(() => synthRole(() => undefined, { objectLockMode: 'COMPLIANCE' })).toThrow(
      /`objectLockMode` needs `objectLock: true`/,
    );
  });
});
