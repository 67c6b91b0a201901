import { Duration, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import { type IGrantable, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  type IBucket,
  ObjectLockRetention,
  ObjectOwnership,
} from 'aws-cdk-lib/aws-s3';
import { S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY } from 'aws-cdk-lib/cx-api';
import { Construct, type IConstruct } from 'constructs';

/** Properties of a {@link BackupBucket}. */
export interface BackupBucketProps {
  /**
   * Every restore point younger than this many days stays restorable.
   *
   * @default 30
   */
  readonly retentionDays?: number;

  /**
   * Maximum age, in days, of the full backup an incremental chain starts from
   * (`fullIntervalDays` of the backup engine). Archives are kept this much longer than
   * `retentionDays` so the oldest restore point's chain is still complete.
   *
   * @default 7
   */
  readonly fullIntervalDays?: number;

  /**
   * Key prefix of the backup store inside the bucket: empty, or ending in `/`.
   * Lifecycle rules apply to `<prefix>full/` and `<prefix>incremental/`.
   *
   * @default 'media-backups/'
   */
  readonly backupPrefix?: string;

  /**
   * Customer-managed KMS key for default encryption (SSE-KMS with an S3 Bucket Key, which
   * cuts KMS request costs). Readers and writers then also need grants on this key.
   *
   * @default - S3-managed keys (SSE-S3)
   */
  readonly encryptionKey?: IKey;

  /**
   * Create the bucket with S3 Object Lock: every object version is locked for as long as
   * lifecycle keeps it current. Can only be chosen when the bucket is created.
   *
   * @default false
   */
  readonly objectLock?: boolean;

  /**
   * Object Lock retention mode (with `objectLock`). `GOVERNANCE`: nobody without
   * `s3:BypassGovernanceRetention` can delete or overwrite a locked version early, but any
   * administrator with `s3:*` has it, so it protects against the backup role and mistakes, not
   * against a compromised admin. `COMPLIANCE`: nobody, not even the account root, can delete a
   * locked version or shorten its lock until it runs out; the only way out is closing the account.
   *
   * @default 'GOVERNANCE'
   */
  readonly objectLockMode?: 'GOVERNANCE' | 'COMPLIANCE';

  /**
   * Days a noncurrent object version (left behind by a lifecycle expiration, a status rewrite or
   * a delete by someone other than the backup) is kept before it is permanently removed: the
   * window for undoing a mistaken delete.
   *
   * @default 1
   */
  readonly noncurrentVersionExpirationDays?: number;

  /**
   * Days after which lifecycle expires the work objects of sharded runs under `<prefix>staging/`.
   * Longer than the longest sharded run (`shardedRunTimeoutHours`, at most 168).
   *
   * @default 7
   */
  readonly stagingExpirationDays?: number;

  /**
   * Days the server access logs are kept.
   *
   * @default 90
   */
  readonly accessLogExpirationDays?: number;
}

/**
 * The S3 bucket holding the backup store: encrypted, versioned, private, TLS-only, retained
 * when the stack is deleted, with server access logs in a separate bucket and lifecycle rules
 * that implement backup retention (docs/ARCHITECTURE.md, Retention).
 */
export class BackupBucket extends Construct {
  /** The bucket holding archives, manifests and status under {@link BackupBucket.backupPrefix}. */
  public readonly bucket: Bucket;
  /** Receives the server access logs of {@link BackupBucket.bucket}. */
  public readonly accessLogsBucket: Bucket;
  /** Key prefix of the backup store inside the bucket. */
  public readonly backupPrefix: string;
  /** Days after which lifecycle expires an archive (`retentionDays + fullIntervalDays`). */
  public readonly archiveExpirationDays: number;
  private readonly encryptionKey: IKey | undefined;

  constructor(scope: Construct, id: string, props: BackupBucketProps = {}) {
    super(scope, id);
    // Grant log delivery with a bucket policy instead of the LogDeliveryWrite ACL, whatever the
    // app's feature flags say: ACLs are disabled on both buckets (BucketOwnerEnforced). Context
    // can only be set before the first child is added.
    this.node.setContext(S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY, true);

    const retentionDays = props.retentionDays ?? 30;
    const fullIntervalDays = props.fullIntervalDays ?? 7;
    const backupPrefix = props.backupPrefix ?? 'media-backups/';
    const noncurrentVersionExpirationDays = props.noncurrentVersionExpirationDays ?? 1;
    const accessLogExpirationDays = props.accessLogExpirationDays ?? 90;
    const stagingExpirationDays = props.stagingExpirationDays ?? 7;

    requireWholeDays('retentionDays', retentionDays);
    requireWholeDays('fullIntervalDays', fullIntervalDays);
    requireWholeDays('noncurrentVersionExpirationDays', noncurrentVersionExpirationDays);
    requireWholeDays('accessLogExpirationDays', accessLogExpirationDays);
    requireWholeDays('stagingExpirationDays', stagingExpirationDays);
    if (retentionDays < fullIntervalDays) {
      throw new Error(
        `\`retentionDays\` must be at least \`fullIntervalDays\` (got ${retentionDays} < ${fullIntervalDays})`,
      );
    }
    if (backupPrefix !== '' && !backupPrefix.endsWith('/')) {
      throw new Error(`\`backupPrefix\` must be empty or end with "/" (got ${JSON.stringify(backupPrefix)})`);
    }

    if (props.objectLockMode !== undefined && !props.objectLock) {
      throw new Error('`objectLockMode` needs `objectLock: true`');
    }
    if (props.objectLockMode !== undefined && !['GOVERNANCE', 'COMPLIANCE'].includes(props.objectLockMode)) {
      throw new Error(`\`objectLockMode\` must be GOVERNANCE or COMPLIANCE (got ${props.objectLockMode})`);
    }

    this.backupPrefix = backupPrefix;
    this.encryptionKey = props.encryptionKey;
    // An incremental chain references archives up to one full interval older than its newest
    // backup (the full it starts from, then every incremental since). Keeping archives
    // `retentionDays + fullIntervalDays` therefore keeps every restore point younger than
    // `retentionDays` restorable. S3 rounds expiry up to the next midnight UTC, which absorbs
    // the minutes a scheduled run may start late.
    this.archiveExpirationDays = retentionDays + fullIntervalDays;

    // SSE-S3 on purpose: S3 server access log delivery does not support SSE-KMS default encryption
    // on the target bucket. The log bucket itself is not logged (that would need yet another
    // bucket); cdk-nag's AwsSolutions-S1 accepts a bucket that is another bucket's log target.
    this.accessLogsBucket = new Bucket(this, 'AccessLogsBucket', {
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        {
          id: 'expire-access-logs',
          expiration: Duration.days(accessLogExpirationDays),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
    });

    this.bucket = new Bucket(this, 'Bucket', {
      ...(props.encryptionKey
        ? { encryption: BucketEncryption.KMS, encryptionKey: props.encryptionKey, bucketKeyEnabled: true }
        : { encryption: BucketEncryption.S3_MANAGED }),
      versioned: true,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: RemovalPolicy.RETAIN,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'backup-bucket/',
      ...(props.objectLock
        ? {
            objectLockEnabled: true,
            // Locked exactly as long as lifecycle keeps the version current: lifecycle can then
            // place its delete marker on time, and the noncurrent version is removed
            // `noncurrentVersionExpirationDays` later, after the lock has run out.
            objectLockDefaultRetention: (props.objectLockMode === 'COMPLIANCE'
              ? ObjectLockRetention.compliance
              : ObjectLockRetention.governance)(Duration.days(this.archiveExpirationDays)),
          }
        : {}),
      lifecycleRules: [
        {
          id: 'expire-full-archives',
          prefix: `${backupPrefix}full/`,
          expiration: Duration.days(this.archiveExpirationDays),
        },
        {
          id: 'expire-incremental-archives',
          prefix: `${backupPrefix}incremental/`,
          expiration: Duration.days(this.archiveExpirationDays),
        },
        {
          // Work objects of sharded runs (plan, the Distributed Map's shards.jsonl, shard todo lists,
          // rows and results). Created once each and never deleted by the backup roles, which hold no
          // delete action; a committed or aborted run no longer reads them, and a run lasts at most
          // `shardedRunTimeoutHours` (a week at most), so a week later they are garbage.
          id: 'expire-staging',
          prefix: `${backupPrefix}staging/`,
          expiration: Duration.days(stagingExpirationDays),
        },
        {
          // Bucket-wide housekeeping. Backups never overwrite an object (archives, metadata and
          // manifests are conditional creates, and IAM enforces it: grantBackupWrite), so
          // noncurrent versions appear only when lifecycle expires an archive, when a status
          // record or the lock is rewritten, or when someone else deletes by mistake. One day
          // keeps expired archives from being billed a week longer (1 day on top of 37).
          id: 'housekeeping',
          noncurrentVersionExpiration: Duration.days(noncurrentVersionExpirationDays),
          expiredObjectDeleteMarker: true,
          // A failed or killed multipart upload leaves invisible, billed parts behind; any live
          // upload finishes within one 15-minute Lambda run.
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
    });
  }

  /** ARN pattern of objects under the backup prefix matching `pattern` (e.g. `*`, `status/*`). */
  private objects(pattern: string): string {
    return this.bucket.arnForObjects(`${this.backupPrefix}${pattern}`);
  }

  /**
   * What the restore and verify functions need: read objects under the prefix and list them.
   * Exactly `s3:GetObject` (HeadObject and GetObject with checksum mode included) and a prefix-
   * limited `s3:ListBucket`, unlike `grantRead`'s `s3:GetObject*`, `s3:GetBucket*` and `s3:List*`.
   * See {@link grantStoreRead}.
   */
  public grantBackupRead(grantee: IGrantable, options: StoreReadOptions = {}): void {
    grantStoreRead(grantee, this.bucket, this.backupPrefix, this.encryptionKey, options);
  }

  /**
   * What a sharded run's state machine needs to read its item list (the Distributed Map's
   * ItemReader: `staging/backup_<id>/shards.jsonl`): `s3:GetObject` on `<prefix>staging/*` and
   * nothing else (no listing, no archive, manifest or status object), plus `kms:Decrypt` on the key.
   */
  public grantStagingRead(grantee: IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new PolicyStatement({ actions: ['s3:GetObject'], resources: [this.objects('staging/*')] }),
    );
    this.encryptionKey?.grantDecrypt(grantee);
  }

  /**
   * Lets a read-only role (restore) write the work list of its state machine run: `s3:PutObject`
   * on `<prefix>staging/*` only, and only as a create (`s3:if-none-match` = `*`): it cannot replace
   * any object, nor write outside staging/.
   */
  public grantStagingCreate(grantee: IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new PolicyStatement({
        sid: 'CreateStagingObjectsOnlyIfAbsent',
        actions: ['s3:PutObject'],
        resources: [this.objects('staging/*')],
        conditions: { StringEquals: { 's3:if-none-match': '*' } },
      }),
    );
    this.encryptionKey?.grantEncrypt(grantee);
  }

  /** ARN pattern of the work objects of sharded runs, `<prefix>staging/*`. */
  public get stagingObjectsArn(): string {
    return this.objects('staging/*');
  }

  /**
   * Lets a role rewrite the one status record `statusKey` (e.g. `status/last-verify.json`), and
   * nothing else.
   */
  public grantStatusWrite(grantee: IGrantable, statusKey: string): void {
    if (!statusKey.startsWith('status/')) {
      throw new Error(`\`statusKey\` must be under status/ (got ${JSON.stringify(statusKey)})`);
    }
    grantee.grantPrincipal.addToPrincipalPolicy(
      new PolicyStatement({ actions: ['s3:PutObject'], resources: [this.objects(statusKey)] }),
    );
    this.encryptionKey?.grantEncrypt(grantee);
  }

  /**
   * What the backup function needs, and no more: read and list (as {@link grantBackupRead}),
   * create backup objects, replace only the lock and status records, abort its own multipart
   * uploads and sweep a killed run's. Exactly `s3:PutObject` and `s3:AbortMultipartUpload`
   * (`grantPut` adds `s3:PutObjectRetention`, `s3:PutObjectLegalHold`, tagging and `s3:Abort*`:
   * with Object Lock a legal hold keeps an object for ever). No delete action anywhere.
   *
   * Backup history cannot be overwritten: `s3:PutObject` on backup keys only with
   * `s3:if-none-match` = `*` (S3 answers 412 when the key exists). S3's "Enforce conditional
   * writes" documentation: the condition is evaluated on PutObject and CompleteMultipartUpload,
   * which are the requests that create an object; CreateMultipartUpload and UploadPart are
   * authorized as `s3:PutObject` too but take no conditional header, so they are allowed by a
   * second statement on `s3:ObjectCreationOperation` = false (true exactly for the requests that
   * create the object). Parts uploaded that way stay invisible until a conditional
   * CompleteMultipartUpload, and are aborted or expired by lifecycle otherwise.
   */
  public grantBackupWrite(grantee: IGrantable): void {
    this.grantBackupRead(grantee, { multipartUploads: true });
    const principal = grantee.grantPrincipal;
    principal.addToPrincipalPolicy(
      new PolicyStatement({
        sid: 'CreateBackupObjectsOnlyIfAbsent',
        actions: ['s3:PutObject'],
        resources: [this.objects('*')],
        conditions: { StringEquals: { 's3:if-none-match': '*' } },
      }),
    );
    principal.addToPrincipalPolicy(
      new PolicyStatement({
        sid: 'MultipartStepsThatCreateNoObject',
        actions: ['s3:PutObject'],
        resources: [this.objects('*')],
        conditions: { Bool: { 's3:ObjectCreationOperation': 'false' } },
      }),
    );
    principal.addToPrincipalPolicy(
      new PolicyStatement({
        sid: 'ReplaceLockAndStatus',
        actions: ['s3:PutObject'],
        resources: [this.objects('locks/*'), this.objects('status/*')],
      }),
    );
    // Aborts its own failed uploads and the leftovers of a killed run (AbortMultipartUpload). It
    // removes parts that never became an object, never a committed object.
    principal.addToPrincipalPolicy(
      new PolicyStatement({ actions: ['s3:AbortMultipartUpload'], resources: [this.objects('*')] }),
    );
    this.encryptionKey?.grantEncryptDecrypt(grantee);
  }

  /**
   * What a synthetic full needs on top of {@link grantBackupWrite}: `s3:GetObjectVersion` on the
   * objects it assembles the new full from ({@link SYNTHETIC_FULL_SOURCE_PATTERNS}), and nothing else.
   *
   * Why exactly this, by how S3 authorizes the requests of a synthetic full:
   * - UploadPartCopy with CopySource `<bucket>/<prefix>full/…?versionId=…` (pinned by version and
   *   `CopySourceIfMatch`, so a replaced source fails instead of copying other bytes) is authorized as
   *   `s3:PutObject` on the destination and a read of the source; naming a version makes that read
   *   `s3:GetObjectVersion`, as for GetObject (the API reference of GetObject: "If you include a
   *   versionId in your request header, you must have the s3:GetObjectVersion permission").
   *   Ranged GETs of pieces too small to copy carry the same VersionId.
   * - The destination needs nothing new: UploadPartCopy creates no object, and S3's "Enforce
   *   conditional writes" page names it beside CreateMultipartUpload and UploadPart as the multipart
   *   steps exempted with `s3:ObjectCreationOperation` = false (grantBackupWrite's
   *   MultipartStepsThatCreateNoObject); the CompleteMultipartUpload that creates the full still needs
   *   `s3:if-none-match` = `*`.
   * - With SSE-KMS, S3 decrypts the source and encrypts the part with the bucket's key: `kms:Decrypt`
   *   and `kms:GenerateDataKey`, which grantBackupWrite already gives on that key.
   *
   * The source's current version (HeadObject to pin it) stays `s3:GetObject`. Not `locks/*` or
   * `status/*`: nothing is copied from there, and their old versions are no one's business.
   */
  public grantSyntheticFullSources(grantee: IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new PolicyStatement({
        sid: 'ReadPinnedVersionsOfSyntheticFullSources',
        actions: ['s3:GetObjectVersion'],
        resources: SYNTHETIC_FULL_SOURCE_PATTERNS.map((pattern) => this.objects(pattern)),
      }),
    );
    if (isConstruct(grantee)) {
      const bucketId = Stack.of(this).getLogicalId(this.bucket.node.defaultChild as never);
      for (const pattern of SYNTHETIC_FULL_SOURCE_PATTERNS) {
        Validations.of(grantee).acknowledge({
          id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${this.backupPrefix}${pattern}]`,
          reason:
            `Synthetic fulls copy byte ranges of pinned versions of archives and staged members under ${pattern} ` +
            '(new keys every run: backup ids); read only (s3:GetObjectVersion), nothing outside the backup prefix',
        });
      }
    }
  }
}

function isConstruct(grantee: IGrantable): grantee is IGrantable & IConstruct {
  return Construct.isConstruct(grantee);
}

/**
 * Key patterns under the backup prefix a synthetic full assembles its new full from: the chain's
 * archives (`full/`, `incremental/`, with their `.part-NNNN` objects) and this run's staged fresh
 * members (`staging/backup_<id>/fresh.tar.gz`).
 */
export const SYNTHETIC_FULL_SOURCE_PATTERNS = ['full/*', 'incremental/*', 'staging/*'] as const;

/** Options of {@link grantStoreRead}. */
export interface StoreReadOptions {
  /**
   * Also list multipart uploads in progress and their parts (`s3:ListBucketMultipartUploads` on
   * the bucket, `s3:ListMultipartUploadParts` under the prefix): the health check's leftover
   * report and the backup's leftover sweep. Read only: they reveal keys, upload ids and sizes.
   *
   * @default false
   */
  readonly multipartUploads?: boolean;
}

/**
 * Read access to the backup store `<bucket>/<backupPrefix>`, and nothing more: `s3:GetObject`
 * on objects under the prefix (GetObject and HeadObject, with or without checksum mode),
 * `s3:ListBucket` limited to the prefix by an `s3:prefix` condition (ListObjectsV2), and with
 * `multipartUploads` the two multipart listings. `encryptionKey` (or the bucket's own) gets
 * `kms:Decrypt`. Unlike `bucket.grantRead`: no `s3:GetObject*` (tagging, ACL, versions,
 * attributes), no `s3:GetBucket*`, no `s3:List*`.
 */
export function grantStoreRead(
  grantee: IGrantable,
  bucket: IBucket,
  backupPrefix: string,
  encryptionKey: IKey | undefined = bucket.encryptionKey,
  options: StoreReadOptions = {},
): void {
  const principal = grantee.grantPrincipal;
  const objects = bucket.arnForObjects(`${backupPrefix}*`);
  principal.addToPrincipalPolicy(new PolicyStatement({ actions: ['s3:GetObject'], resources: [objects] }));
  principal.addToPrincipalPolicy(
    new PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [bucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${backupPrefix}*`] } },
    }),
  );
  if (options.multipartUploads) {
    // ListMultipartUploads takes no s3:prefix condition key: the bucket-wide listing reveals keys
    // and upload ids only; the code asks for the prefix's uploads.
    principal.addToPrincipalPolicy(
      new PolicyStatement({ actions: ['s3:ListBucketMultipartUploads'], resources: [bucket.bucketArn] }),
    );
    principal.addToPrincipalPolicy(
      new PolicyStatement({ actions: ['s3:ListMultipartUploadParts'], resources: [objects] }),
    );
  }
  encryptionKey?.grantDecrypt(grantee);
}

function requireWholeDays(key: string, value: number): void {
  if (Token.isUnresolved(value)) {
    throw new Error(
      `\`${key}\` must be a plain number, not a token: lifecycle days are computed at synth time`,
    );
  }
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new Error(`\`${key}\` must be a whole number of days >= 1 (got ${value})`);
  }
}
