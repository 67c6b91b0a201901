import { type CfnElement, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { BackupBucket, DEFAULT_CONFIG, MediaBackupStack, parseConfig } from '../../lib/index.js';
import { render } from './delivery-rules.js';
import { newTestApp } from './test-app.js';

// Issue 15: the settings of synthetic fulls and the permissions their server-side copies need.
// AWS's runtime rules for the requests of a synthetic full are written down below as requests
// (`uploadPartCopy`, `completeMultipartUpload`, ...) and evaluated against the statements of the
// synthesized backup role, so a grant that is too narrow fails here and not in AWS, and one that is
// too broad fails the denials.

const KMS_KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON is untyped.
type Json = any;
interface Statement {
  readonly Sid?: string;
  readonly Effect: 'Allow' | 'Deny';
  readonly Action: string | string[];
  readonly Resource: Json;
  readonly Condition?: Record<string, Record<string, Json>>;
}

const id = (construct: IConstruct) =>
  Stack.of(construct).getLogicalId((construct.node.defaultChild ?? construct) as CfnElement);
const list = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

function synthStack(raw: Record<string, unknown> = {}) {
  const stack = new MediaBackupStack(newTestApp(), 'MediaBackup', { config: parseConfig(raw) });
  return { stack, template: Template.fromStack(stack) };
}

/** Every statement of the policies attached to `role`. */
function roleStatements(template: Template, role: IConstruct): Statement[] {
  const attached = Object.values(template.findResources('AWS::IAM::Policy')).filter((policy) =>
    (policy.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === id(role)),
  );
  expect(attached.length).toBeGreaterThan(0);
  return attached.flatMap((policy) => list(policy.Properties.PolicyDocument.Statement) as Statement[]);
}

// --- IAM as S3 evaluates it ----------------------------------------------------------------------

/** One authorization check: an action on a resource with the request's condition keys. */
interface Check {
  readonly action: string;
  readonly resource: string;
  readonly context?: Readonly<Record<string, string>>;
}

const glob = (pattern: string) =>
  new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );

/** Conditions as IAM evaluates them: a key the request does not carry makes its condition false. */
function conditionsHold(conditions: Statement['Condition'], context: Readonly<Record<string, string>>) {
  return Object.entries(conditions ?? {}).every(([operator, entries]) =>
    Object.entries(entries).every(([key, expected]) => {
      const actual = context[key];
      if (actual === undefined) return false;
      const values = list(expected).map(String);
      if (operator === 'StringEquals' || operator === 'Bool') return values.includes(actual);
      if (operator === 'StringLike') return values.some((v) => glob(v).test(actual));
      throw new Error(`condition operator ${operator} is not modelled here: extend conditionsHold`);
    }),
  );
}

/** IAM's verdict for one check under an identity policy (no Deny statements here: any Allow). */
function allows(statements: Statement[], check: Check): boolean {
  if (statements.some((s) => s.Effect === 'Deny')) throw new Error('Deny statements are not modelled here');
  return statements.some(
    (s) =>
      list(s.Action).some((a) => glob(a.toLowerCase()).test(check.action.toLowerCase())) &&
      list(s.Resource).some((r) => r === '*' || glob(render(r)).test(check.resource)) &&
      conditionsHold(s.Condition, check.context ?? {}),
  );
}

/** An S3 request and the checks S3 makes for it; allowed when every check passes. */
interface S3Request {
  readonly name: string;
  readonly checks: readonly Check[];
}

/**
 * UploadPartCopy: `s3:PutObject` on the destination (a multipart step: it carries
 * `s3:ObjectCreationOperation` = false and no conditional header), and the read of the source:
 * `s3:GetObject`, plus `s3:GetObjectVersion` when CopySource names a version.
 */
function uploadPartCopy(destination: string, source: string, versionId?: string): S3Request {
  return {
    name: `UploadPartCopy ${source}${versionId ? `?versionId=${versionId}` : ''} -> ${destination}`,
    checks: [
      { action: 's3:PutObject', resource: destination, context: { 's3:ObjectCreationOperation': 'false' } },
      { action: 's3:GetObject', resource: source },
      ...(versionId ? [{ action: 's3:GetObjectVersion', resource: source }] : []),
    ],
  };
}

/** A (ranged) GetObject: with a VersionId it is `s3:GetObjectVersion` (GetObject's API reference). */
function getObject(key: string, versionId?: string): S3Request {
  return {
    name: `GetObject ${key}${versionId ? ` VersionId ${versionId}` : ''}`,
    checks: [{ action: versionId ? 's3:GetObjectVersion' : 's3:GetObject', resource: key }],
  };
}

/** CompleteMultipartUpload creates the object: `s3:ObjectCreationOperation` = true, with or without If-None-Match. */
function completeMultipartUpload(destination: string, ifNoneMatch: boolean): S3Request {
  return {
    name: `CompleteMultipartUpload ${destination}${ifNoneMatch ? ' If-None-Match: *' : ''}`,
    checks: [
      {
        action: 's3:PutObject',
        resource: destination,
        context: {
          's3:ObjectCreationOperation': 'true',
          ...(ifNoneMatch ? { 's3:if-none-match': '*' } : {}),
        },
      },
    ],
  };
}

function putObject(key: string, ifNoneMatch: boolean): S3Request {
  return {
    ...completeMultipartUpload(key, ifNoneMatch),
    name: `PutObject ${key}${ifNoneMatch ? ' If-None-Match: *' : ''}`,
  };
}

const deleteObject = (key: string, versionId?: string): S3Request => ({
  name: `DeleteObject ${key}`,
  checks: [{ action: versionId ? 's3:DeleteObjectVersion' : 's3:DeleteObject', resource: key }],
});

const permits = (statements: Statement[], request: S3Request) =>
  request.checks.every((check) => allows(statements, check));

// --- Settings ------------------------------------------------------------------------------------

describe('settings: syntheticFulls and normalFullEvery', () => {
  it('default to synthetic fulls on, with every 4th full a normal one', () => {
    expect(parseConfig({})).toMatchObject({ syntheticFulls: true, normalFullEvery: 4 });
    expect(DEFAULT_CONFIG).toMatchObject({ syntheticFulls: true, normalFullEvery: 4 });
  });

  it.each([
    [{ syntheticFulls: 'false' }, { syntheticFulls: false }],
    [
      { syntheticFulls: false, normalFullEvery: '1' },
      { syntheticFulls: false, normalFullEvery: 1 },
    ],
    [{ normalFullEvery: 52 }, { normalFullEvery: 52 }],
    [{ normalFullEvery: ' 8 ' }, { normalFullEvery: 8 }],
  ])('reads %o (cdk.json values and -c strings)', (raw, expected) => {
    expect(parseConfig(raw)).toMatchObject(expected);
  });

  it.each([
    [{ syntheticFulls: 'yes' }, /`syntheticFulls` must be true or false \(got "yes"\)/],
    [{ syntheticFulls: 1 }, /`syntheticFulls` must be true or false \(got 1\)/],
    [{ normalFullEvery: 0 }, /`normalFullEvery` must be a whole number from 1 to 52 \(got 0\)/],
    [{ normalFullEvery: 53 }, /`normalFullEvery` must be a whole number from 1 to 52 \(got 53\)/],
    [{ normalFullEvery: 2.5 }, /`normalFullEvery` must be a whole number from 1 to 52 \(got 2.5\)/],
    [
      { normalFullEvery: 'monthly' },
      /`normalFullEvery` must be a whole number from 1 to 52 \(got "monthly"\)/,
    ],
  ])('refuses %o, naming the key', (raw, message) => {
    expect(() => parseConfig(raw)).toThrow(message);
  });

  it('reports a bad syntheticFulls and a bad normalFullEvery together', () => {
    expect(() => parseConfig({ syntheticFulls: 'on', normalFullEvery: -1 })).toThrow(
      /`syntheticFulls` must be true or false[\s\S]*`normalFullEvery` must be a whole number from 1 to 52/,
    );
  });

  it.each([
    [{}, 'true', '4'],
    [{ syntheticFulls: 'false' }, 'false', '4'],
    [{ normalFullEvery: '1' }, 'true', '1'],
  ])(
    'with %o the backup function gets SYNTHETIC_FULLS=%s, NORMAL_FULL_EVERY=%s; no other function does',
    (raw, synthetic, every) => {
      const { stack, template } = synthStack(raw);
      const functions = template.findResources('AWS::Lambda::Function');

      expect(functions[id(stack.backupFunction.function)]!.Properties.Environment.Variables).toMatchObject({
        SYNTHETIC_FULLS: synthetic,
        NORMAL_FULL_EVERY: every,
      });
      const others = Object.entries(functions).filter(
        ([logicalId]) => logicalId !== id(stack.backupFunction.function),
      );
      expect(others.length).toBeGreaterThan(5);
      for (const [, fn] of others) {
        expect(Object.keys(fn.Properties.Environment?.Variables ?? {})).not.toContain('SYNTHETIC_FULLS');
        expect(Object.keys(fn.Properties.Environment?.Variables ?? {})).not.toContain('NORMAL_FULL_EVERY');
      }
    },
  );
});

// --- Permissions ---------------------------------------------------------------------------------

describe.each([
  ['the default config', {}],
  [
    'KMS, Object Lock and another prefix',
    { kmsKeyArn: KMS_KEY_ARN, objectLock: 'true', backupPrefix: 'vault/' },
  ],
])('the backup role of a synthetic full, with %s', (_case, raw) => {
  const { stack, template } = synthStack(raw);
  const prefix = stack.backupBucket.backupPrefix;
  const backup = roleStatements(template, stack.backupFunction.function.role!);
  const bucketArn = `\${${id(stack.backupBucket.bucket)}.Arn}`;
  const key = (k: string) => `${bucketArn}/${prefix}${k}`;
  const newFull = key('full/backup_20261206_040000.tar.gz');

  it('has s3:GetObjectVersion in one statement on exactly <prefix>full/*, incremental/* and staging/*', () => {
    const versioned = backup.filter((s) => list(s.Action).some((a) => glob(a).test('s3:GetObjectVersion')));

    expect(versioned).toHaveLength(1);
    expect(versioned[0]).toMatchObject({ Effect: 'Allow', Action: 's3:GetObjectVersion' });
    expect(versioned[0]!.Condition).toBeUndefined();
    expect(list(versioned[0]!.Resource).map(render).sort()).toEqual(
      [key('full/*'), key('incremental/*'), key('staging/*')].sort(),
    );
  });

  it.each([
    ['the previous full', 'full/backup_20261129_040000.tar.gz'],
    ['a part of a sharded full', 'full/backup_20261129_040000.part-0003.tar.gz'],
    ['an incremental', 'incremental/backup_20261203_040000.tar.gz'],
    ["this run's staged fresh members", 'staging/backup_20261206_040000/fresh.tar.gz'],
  ])('may copy a pinned range of %s into the new full (UploadPartCopy ?versionId=)', (_what, source) => {
    expect(permits(backup, uploadPartCopy(newFull, key(source), '3HL4kqtJvjVBH40Nrjfkd'))).toBe(true);
    expect(permits(backup, getObject(key(source), '3HL4kqtJvjVBH40Nrjfkd'))).toBe(true);
  });

  it('commits the new full only with If-None-Match: * (CompleteMultipartUpload)', () => {
    expect(permits(backup, completeMultipartUpload(newFull, true))).toBe(true);
    expect(permits(backup, completeMultipartUpload(newFull, false))).toBe(false);
  });

  it.each([
    ['another bucket', 'arn:aws:s3:::someone-elses-bucket/media-backups/full/backup_1.tar.gz'],
    ['another prefix of this bucket', `${bucketArn}/elsewhere/full/backup_20261129_040000.tar.gz`],
    ['the lock', key('locks/backup.json')],
    ['a status record', key('status/last-run.json')],
  ])('may not copy a pinned version from %s', (_where, source) => {
    expect(permits(backup, uploadPartCopy(newFull, source, 'v1'))).toBe(false);
    expect(permits(backup, getObject(source, 'v1'))).toBe(false);
  });

  it('may not copy into another bucket or outside the prefix', () => {
    const source = key('full/backup_20261129_040000.tar.gz');
    expect(permits(backup, uploadPartCopy('arn:aws:s3:::someone-elses-bucket/x.tar.gz', source, 'v1'))).toBe(
      false,
    );
    expect(permits(backup, uploadPartCopy(`${bucketArn}/elsewhere/x.tar.gz`, source, 'v1'))).toBe(false);
  });

  it.each([
    'full/backup_20261129_040000.tar.gz',
    'incremental/backup_20261203_040000.tar.gz',
    'staging/x/fresh.tar.gz',
  ])('still cannot delete %s (any version) or overwrite it without If-None-Match: *', (k) => {
    expect(permits(backup, deleteObject(key(k)))).toBe(false);
    expect(permits(backup, deleteObject(key(k), 'v1'))).toBe(false);
    expect(permits(backup, putObject(key(k), false))).toBe(false);
    expect(permits(backup, putObject(key(k), true))).toBe(true);
  });

  it('restore, verify and the sharded functions get no s3:GetObjectVersion', () => {
    for (const fn of [
      stack.restoreFunction,
      stack.restorePhaseFunction,
      stack.verifyFunction,
      stack.verifyPhaseFunction,
      stack.shardFunction,
      stack.shardCommitFunction,
      stack.shardCleanupFunction,
    ]) {
      const statements = roleStatements(template, fn.function.role!);
      expect(
        statements.flatMap((s) => list(s.Action)).filter((a) => glob(a).test('s3:GetObjectVersion')),
      ).toEqual([]);
    }
  });

  if ('kmsKeyArn' in raw) {
    it('with SSE-KMS: kms:Decrypt (source) and kms:GenerateDataKey (destination parts) on the bucket key only', () => {
      for (const action of ['kms:Decrypt', 'kms:GenerateDataKey']) {
        expect(allows(backup, { action, resource: KMS_KEY_ARN }), action).toBe(true);
        expect(
          allows(backup, {
            action,
            resource: 'arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000',
          }),
          `${action} on another key`,
        ).toBe(false);
      }
    });
  }
});

it('syntheticFulls=false grants no s3:GetObjectVersion; versioned copies are then refused', () => {
  const { stack, template } = synthStack({ syntheticFulls: 'false' });
  const backup = roleStatements(template, stack.backupFunction.function.role!);
  const key = (k: string) => `\${${id(stack.backupBucket.bucket)}.Arn}/media-backups/${k}`;

  expect(backup.flatMap((s) => list(s.Action))).not.toContain('s3:GetObjectVersion');
  expect(permits(backup, uploadPartCopy(key('full/b.tar.gz'), key('full/a.tar.gz'), 'v1'))).toBe(false);
});

describe('the evaluator itself', () => {
  it("notices a broader grant: CDK's grantRead (s3:GetObject*) would let the role read old versions of the lock", () => {
    const stack = new Stack(newTestApp(), 'Test');
    const bucket = new BackupBucket(stack, 'BackupBucket');
    const role = new Role(stack, 'Role', { assumedBy: new ServicePrincipal('lambda.amazonaws.com') });
    bucket.bucket.grantRead(role, 'media-backups/*');
    const statements = roleStatements(Template.fromStack(stack), role);
    const lock = `\${${id(bucket.bucket)}.Arn}/media-backups/locks/backup.json`;

    // The denial the synthetic-full grant passes (no versioned read of locks/) fails for grantRead.
    expect(permits(statements, getObject(lock, 'v1'))).toBe(true);
  });

  it('refuses a copy whose destination check fails even when the source may be read', () => {
    const statements: Statement[] = [
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:GetObjectVersion'], Resource: 'arn:aws:s3:::b/p/*' },
      {
        Effect: 'Allow',
        Action: 's3:PutObject',
        Resource: 'arn:aws:s3:::b/p/*',
        Condition: { StringEquals: { 's3:if-none-match': '*' } },
      },
    ];
    // UploadPartCopy carries no If-None-Match: without the ObjectCreationOperation exemption it fails.
    expect(permits(statements, uploadPartCopy('arn:aws:s3:::b/p/new', 'arn:aws:s3:::b/p/old', 'v1'))).toBe(
      false,
    );
    expect(permits(statements, completeMultipartUpload('arn:aws:s3:::b/p/new', true))).toBe(true);
  });
});

describe('cdk-nag AwsSolutions checks', () => {
  it.each([
    ['synthetic fulls on (default)', {}],
    ['synthetic fulls on, KMS and another prefix', { kmsKeyArn: KMS_KEY_ARN, backupPrefix: 'vault/' }],
    ['synthetic fulls off', { syntheticFulls: 'false' }],
  ])(
    'find nothing unacknowledged with %s (the source patterns are acknowledged where they are granted)',
    (_case, raw) => {
      const app = newTestApp();
      new MediaBackupStack(app, 'MediaBackup', { config: parseConfig(raw) });
      Validations.of(app).addPlugins(new AwsSolutionsChecks(app));

      expect(new AwsSolutionsChecks().validateScope(app)).toEqual({ success: true, violations: [] });
    },
  );
});
