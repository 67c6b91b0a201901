import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { describe, expect, it } from 'vitest';
import { BackupBucket, type BackupBucketProps } from '../../lib/index.js';
import { newTestApp } from './test-app.js';

// Issue 12 section 1: the backup role cannot destroy backup history. Walks every statement the
// grants produce, so a statement added later without the condition fails here.

interface Statement {
  readonly Sid?: string;
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
  readonly Condition?: Record<string, Record<string, unknown>>;
}

function synthRole(grant: (bucket: BackupBucket, role: Role) => void, props: BackupBucketProps = {}) {
  const stack = new Stack(newTestApp(), 'Test');
  const backupBucket = new BackupBucket(stack, 'BackupBucket', props);
  const role = new Role(stack, 'BackupRole', { assumedBy: new ServicePrincipal('lambda.amazonaws.com') });
  grant(backupBucket, role);
  const template = Template.fromStack(stack);
  const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap(
    (policy) =>
      (policy as { Properties: { PolicyDocument: { Statement: Statement[] } } }).Properties.PolicyDocument
        .Statement,
  );
  return { template, statements };
}

const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);

/** The object key patterns a statement's resources name (the part after the bucket ARN's `/`). */
function keyPatterns(s: Statement): string[] {
  const resources = Array.isArray(s.Resource) ? s.Resource : [s.Resource];
  return resources.map((r) => {
    const json = JSON.stringify(r);
    const m = /"\/([^"]*)"\]\]\}$/.exec(json);
    return m ? m[1] : json;
  });
}

describe('grantBackupWrite', () => {
  const { statements } = synthRole((bucket, role) => bucket.grantBackupWrite(role));
  const puts = statements.filter((s) => actionsOf(s).includes('s3:PutObject'));

  it('allows no PutObject on backup keys without the if-none-match condition (or the multipart exemption)', () => {
    const unconditioned = puts.filter((s) => {
      const onlyLockAndStatus = keyPatterns(s).every(
        (k) => k.startsWith('media-backups/locks/') || k.startsWith('media-backups/status/'),
      );
      const ifNoneMatch = s.Condition?.StringEquals?.['s3:if-none-match'] === '*';
      const noObjectCreated = s.Condition?.Bool?.['s3:ObjectCreationOperation'] === 'false';
      return !onlyLockAndStatus && !ifNoneMatch && !noObjectCreated;
    });

    expect(unconditioned).toEqual([]);
    expect(puts.length).toBe(3);
  });

  it('replaces only locks/* and status/* without a condition', () => {
    const free = puts.filter((s) => s.Condition === undefined);

    expect(free).toHaveLength(1);
    expect(keyPatterns(free[0]).sort()).toEqual(['media-backups/locks/*', 'media-backups/status/*']);
  });

  it('creates backup objects only with s3:if-none-match = *', () => {
    expect(puts.find((s) => s.Sid === 'CreateBackupObjectsOnlyIfAbsent')).toMatchObject({
      Condition: { StringEquals: { 's3:if-none-match': '*' } },
    });
  });

  it('grants no retention, legal hold, tagging, delete, ACL or wildcard action', () => {
    const actions = statements.flatMap(actionsOf);

    expect(actions.filter((a) => /\*|Retention|LegalHold|Tagging|Delete|Acl|Bypass/.test(a))).toEqual([]);
    expect(new Set(actions)).toEqual(
      new Set([
        's3:GetObject',
        's3:ListBucket',
        's3:PutObject',
        's3:AbortMultipartUpload',
        's3:ListMultipartUploadParts',
        's3:ListBucketMultipartUploads',
      ]),
    );
  });

  it('lists the bucket only under the backup prefix', () => {
    const list = statements.filter((s) => actionsOf(s).includes('s3:ListBucket'));

    expect(list).toHaveLength(1);
    expect(list[0].Condition).toEqual({ StringLike: { 's3:prefix': ['media-backups/*'] } });
  });
});

describe('grantBackupRead and grantStatusWrite', () => {
  it('a reader gets GetObject and prefix-limited listing only', () => {
    const { statements } = synthRole((bucket, role) => bucket.grantBackupRead(role));

    expect(statements.flatMap(actionsOf).sort()).toEqual(['s3:GetObject', 's3:ListBucket']);
  });

  it('verify may rewrite its own record and nothing else', () => {
    const { statements } = synthRole((bucket, role) =>
      bucket.grantStatusWrite(role, 'status/last-verify.json'),
    );

    expect(statements).toHaveLength(1);
    expect(keyPatterns(statements[0])).toEqual(['media-backups/status/last-verify.json']);
  });

  it('refuses a status key outside status/', () => {
    expect(() => synthRole((bucket, role) => bucket.grantStatusWrite(role, 'full/x'))).toThrow(
      /`statusKey` must be under status\//,
    );
  });
});

describe('Object Lock mode', () => {
  it.each([
    [undefined, 'GOVERNANCE'],
    ['GOVERNANCE', 'GOVERNANCE'],
    ['COMPLIANCE', 'COMPLIANCE'],
  ] as const)('objectLockMode %s locks in %s mode', (mode, expected) => {
    const { template } = synthRole(() => undefined, { objectLock: true, objectLockMode: mode });

    template.hasResourceProperties('AWS::S3::Bucket', {
      ObjectLockConfiguration: { Rule: { DefaultRetention: { Mode: expected, Days: 37 } } },
    });
  });

  it('refuses a mode without objectLock', () => {
    expect(() => synthRole(() => undefined, { objectLockMode: 'COMPLIANCE' })).toThrow(
      /`objectLockMode` needs `objectLock: true`/,
    );
  });
});
