import { Duration, RemovalPolicy, Token } from 'aws-cdk-lib';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  ObjectLockRetention,
  ObjectOwnership,
} from 'aws-cdk-lib/aws-s3';
import { S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY } from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';

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
   * Create the bucket with S3 Object Lock in governance mode: every object version is
   * locked for as long as lifecycle keeps it current, so nobody without
   * `s3:BypassGovernanceRetention` can delete a backup early. Can only be chosen when the
   * bucket is created.
   *
   * @default false
   */
  readonly objectLock?: boolean;

  /**
   * Days a noncurrent object version (left behind by an overwrite, a delete or a lifecycle
   * expiration) is kept before it is permanently removed: the window for undoing a mistaken
   * delete.
   *
   * @default 7
   */
  readonly noncurrentVersionExpirationDays?: number;

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

  constructor(scope: Construct, id: string, props: BackupBucketProps = {}) {
    super(scope, id);
    // Grant log delivery with a bucket policy instead of the LogDeliveryWrite ACL, whatever the
    // app's feature flags say: ACLs are disabled on both buckets (BucketOwnerEnforced). Context
    // can only be set before the first child is added.
    this.node.setContext(S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY, true);

    const retentionDays = props.retentionDays ?? 30;
    const fullIntervalDays = props.fullIntervalDays ?? 7;
    const backupPrefix = props.backupPrefix ?? 'media-backups/';
    const noncurrentVersionExpirationDays = props.noncurrentVersionExpirationDays ?? 7;
    const accessLogExpirationDays = props.accessLogExpirationDays ?? 90;

    requireWholeDays('retentionDays', retentionDays);
    requireWholeDays('fullIntervalDays', fullIntervalDays);
    requireWholeDays('noncurrentVersionExpirationDays', noncurrentVersionExpirationDays);
    requireWholeDays('accessLogExpirationDays', accessLogExpirationDays);
    if (retentionDays < fullIntervalDays) {
      throw new Error(
        `\`retentionDays\` must be at least \`fullIntervalDays\` (got ${retentionDays} < ${fullIntervalDays})`,
      );
    }
    if (backupPrefix !== '' && !backupPrefix.endsWith('/')) {
      throw new Error(`\`backupPrefix\` must be empty or end with "/" (got ${JSON.stringify(backupPrefix)})`);
    }

    this.backupPrefix = backupPrefix;
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
            objectLockDefaultRetention: ObjectLockRetention.governance(
              Duration.days(this.archiveExpirationDays),
            ),
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
          // Bucket-wide housekeeping. Backups never overwrite an object (every key carries its
          // backup id), so noncurrent versions appear only when lifecycle expires an archive, when
          // status/last-run.json is rewritten, or when someone deletes or overwrites by mistake.
          // A week is long enough to notice and undo such a mistake, and short enough that
          // expired archives add little storage cost (7 days on top of 37).
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
