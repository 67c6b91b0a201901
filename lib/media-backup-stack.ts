import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import { Key } from 'aws-cdk-lib/aws-kms';
import type { Construct } from 'constructs';
import type { MediaBackupConfig } from './config.js';
import { BackupBucket } from './constructs/backup-bucket.js';

/** Properties of a {@link MediaBackupStack}. */
export interface MediaBackupStackProps extends StackProps {
  /** Validated deployment settings, usually from `loadConfig(app)`. */
  readonly config: MediaBackupConfig;
}

/** Everything media-backup deploys into one account and region. */
export class MediaBackupStack extends Stack {
  /** The bucket holding the backup store. */
  public readonly backupBucket: BackupBucket;

  constructor(scope: Construct, id: string, props: MediaBackupStackProps) {
    super(scope, id, props);
    const { config } = props;

    this.backupBucket = new BackupBucket(this, 'BackupBucket', {
      retentionDays: config.retentionDays,
      fullIntervalDays: config.fullIntervalDays,
      backupPrefix: config.backupPrefix,
      objectLock: config.objectLock,
      ...(config.kmsKeyArn ? { encryptionKey: Key.fromKeyArn(this, 'BackupKey', config.kmsKeyArn) } : {}),
    });

    new CfnOutput(this, 'BackupBucketName', {
      description: 'S3 bucket holding the backup store (archives, manifests, status)',
      value: this.backupBucket.bucket.bucketName,
    });
  }
}
