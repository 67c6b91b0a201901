import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CfnElement, CfnOutput, Duration, Fn, Stack, type StackProps, Validations } from 'aws-cdk-lib';
import { Key } from 'aws-cdk-lib/aws-kms';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { VERIFY_STATUS_KEY } from '../lambda/core/repository/layout.js';
import type { MediaBackupConfig } from './config.js';
import { BackupBucket } from './constructs/backup-bucket.js';
import { BackupFunction, type BackupFunctionProps, EFS_MOUNT_PATH } from './constructs/backup-function.js';
import { MediaFileSystem } from './constructs/media-file-system.js';
import { Monitoring } from './constructs/monitoring.js';
import { Notifications } from './constructs/notifications.js';
import { ShardedRestoreStateMachine } from './constructs/restore-state-machine.js';
import { BackupSchedules } from './constructs/schedules.js';
import { ShardedBackupStateMachine } from './constructs/state-machines.js';
import { DeepVerifyStateMachine } from './constructs/verify-state-machine.js';

/** Properties of a {@link MediaBackupStack}. */
export interface MediaBackupStackProps extends StackProps {
  /** Validated deployment settings, usually from `loadConfig(app)`. */
  readonly config: MediaBackupConfig;
}

const HANDLERS_DIR = fileURLToPath(new URL('../lambda/handlers/', import.meta.url));

/** Margin before the Lambda timeout at which the backup engine aborts cleanly (ms). */
const DEADLINE_MARGIN_MS = 60_000;

/** Everything media-backup deploys into one account and region. */
export class MediaBackupStack extends Stack {
  /** The bucket holding the backup store. */
  public readonly backupBucket: BackupBucket;
  /** The EFS file system with the media tree, and its network. */
  public readonly mediaFileSystem: MediaFileSystem;
  /** Writes backups: reads EFS, puts objects under the prefix, never deletes. */
  public readonly backupFunction: BackupFunction;
  /** Restores backups: reads the bucket, reads and writes EFS. */
  public readonly restoreFunction: BackupFunction;
  /** The steps of the restore state machine: reads the bucket, reads and writes EFS. */
  public readonly restorePhaseFunction: BackupFunction;
  /** Restores a backup archive by archive (sharded backups, long chains); started by an operator. */
  public readonly restoreStateMachine: ShardedRestoreStateMachine;
  /** Verifies backups: reads the bucket only, no EFS. */
  public readonly verifyFunction: BackupFunction;
  /** Archives one shard of a sharded backup (invoked by the backup state machine). */
  public readonly shardFunction: BackupFunction;
  /** Commits a sharded backup (invoked by the backup state machine). */
  public readonly shardCommitFunction: BackupFunction;
  /** Aborts a failed sharded backup (invoked by the backup state machine). */
  public readonly shardCleanupFunction: BackupFunction;
  /** Runs a backup too big for one invocation as shards (started by the backup function). */
  public readonly backupStateMachine: ShardedBackupStateMachine;
  /** The steps of the verify state machine: reads the bucket, writes its work list and last-verify.json. */
  public readonly verifyPhaseFunction: BackupFunction;
  /** Deep-verifies archive by archive (sharded backups, many backups); started by an operator. */
  public readonly verifyStateMachine: DeepVerifyStateMachine;
  /** The backup and verify schedules and their dead-letter queue. */
  public readonly schedules: BackupSchedules;
  /** The alarm topic, its email subscription and the notify function (SES). */
  public readonly notifications: Notifications;
  /** The hourly monitor, the alarms and the dashboard. */
  public readonly monitoring: Monitoring;

  private readonly demoAvailabilityZones?: readonly string[];

  constructor(scope: Construct, id: string, props: MediaBackupStackProps) {
    super(scope, id, props);
    const { config } = props;
    this.demoAvailabilityZones = config.demoAvailabilityZones;
    const encryptionKey = config.kmsKeyArn ? Key.fromKeyArn(this, 'BackupKey', config.kmsKeyArn) : undefined;

    this.backupBucket = new BackupBucket(this, 'BackupBucket', {
      retentionDays: config.retentionDays,
      fullIntervalDays: config.fullIntervalDays,
      backupPrefix: config.backupPrefix,
      objectLock: config.objectLock,
      ...(config.objectLockMode ? { objectLockMode: config.objectLockMode } : {}),
      ...(encryptionKey ? { encryptionKey } : {}),
    });
    const { bucket, backupPrefix } = this.backupBucket;

    this.mediaFileSystem = new MediaFileSystem(this, 'MediaFileSystem', {
      ...(config.existingFileSystem ? { existing: config.existingFileSystem } : {}),
      ...(config.demoAvailabilityZones ? { availabilityZones: config.demoAvailabilityZones } : {}),
      posixUid: config.posixUid,
      posixGid: config.posixGid,
      createS3GatewayEndpoint: config.createS3GatewayEndpoint,
      s3EndpointStore: { bucket, backupPrefix },
    });
    const network = {
      vpc: this.mediaFileSystem.vpc,
      vpcSubnets: this.mediaFileSystem.subnets,
      securityGroup: this.mediaFileSystem.securityGroup,
    };
    // Validated against CloudWatch's retention periods, which are exactly RetentionDays' values.
    const logRetention = config.logRetentionDays as RetentionDays;
    const common = {
      POWERTOOLS_LOG_LEVEL: 'INFO',
      // The value of the `Stack` dimension of every custom metric, which the alarms select on.
      STACK_NAME: this.stackName,
      BACKUP_PREFIX: backupPrefix,
      EFS_MOUNT: EFS_MOUNT_PATH,
      MEDIA_PATH: config.mediaPath,
      RESTORES_PATH: config.restoresPath,
      FULL_INTERVAL_DAYS: String(config.fullIntervalDays),
    };

    this.backupFunction = new BackupFunction(this, 'Backup', {
      entry: path.join(HANDLERS_DIR, 'backup.ts'),
      description: 'media-backup: tar.gz backup of the media tree on EFS into S3 (full, incremental, auto)',
      timeout: Duration.minutes(15),
      memorySize: config.backupMemoryMb,
      logRetention,
      // Opt-in: reserving fails the deploy where the account's concurrency quota is low, and the
      // store's lock already refuses a second concurrent backup.
      ...(config.reserveBackupConcurrency ? { reservedConcurrentExecutions: 1 } : {}),
      fileSystem: { accessPoint: this.mediaFileSystem.accessPoint, access: 'read' },
      ...network,
      environment: {
        ...common,
        POWERTOOLS_SERVICE_NAME: 'media-backup-backup',
        DEADLINE_MARGIN_MS: String(DEADLINE_MARGIN_MS),
        COMPRESSION_LEVEL: String(config.compressionLevel),
        ...(config.backupExclude.length > 0 ? { BACKUP_EXCLUDE: config.backupExclude.join(',') } : {}),
      },
    });
    // Creates archives, metadata and manifests only where no object exists yet (IAM requires
    // `If-None-Match: *`), replaces only the lock and status records, aborts multipart uploads and
    // reads what the diff, the lock and the leftover sweep need (BackupBucket.grantBackupWrite). No
    // delete, retention, legal hold, tagging or ACL action: only lifecycle removes backups. The
    // grant covers the KMS key too.
    this.backupFunction.addEnvironmentAndGrant('BUCKET_NAME', bucket.bucketName, (fn) =>
      this.backupBucket.grantBackupWrite(fn),
    );
    // Synthetic fulls copy byte ranges of pinned archive versions (UploadPartCopy with
    // `?versionId=`, ranged GetObject with VersionId): s3:GetObjectVersion on the archive and
    // staging keys, only when they are on. The destination side is grantBackupWrite's.
    this.backupFunction.addEnvironmentAndGrant('SYNTHETIC_FULLS', String(config.syntheticFulls), (fn) => {
      if (config.syntheticFulls) this.backupBucket.grantSyntheticFullSources(fn);
    });
    this.backupFunction.addEnvironment('NORMAL_FULL_EVERY', String(config.normalFullEvery));

    const sharded = this.addShardedBackup(config, common, network, logRetention);
    this.shardFunction = sharded.shardFunction;
    this.shardCommitFunction = sharded.commitFunction;
    this.shardCleanupFunction = sharded.cleanupFunction;
    this.backupStateMachine = sharded.stateMachine;

    this.restoreFunction = new BackupFunction(this, 'Restore', {
      entry: path.join(HANDLERS_DIR, 'restore.ts'),
      description:
        'media-backup: restore a backup into a new folder or in place on EFS, every sha256 checked',
      timeout: Duration.minutes(15),
      memorySize: config.restoreMemoryMb,
      logRetention,
      fileSystem: { accessPoint: this.mediaFileSystem.accessPoint, access: 'read-write' },
      ...network,
      environment: { ...common, POWERTOOLS_SERVICE_NAME: 'media-backup-restore' },
    });
    // Read only: GetObject (archives, manifests, metadata, status, and import/<name>.tar.gz for a
    // media import) and the prefix's listing. It writes to EFS, never to the bucket.
    this.restoreFunction.addEnvironmentAndGrant('BUCKET_NAME', bucket.bucketName, (fn) =>
      this.backupBucket.grantBackupRead(fn),
    );

    // A restore too big for one invocation runs as a state machine: the same access as the restore
    // function, plus creating its archive list under staging/ (create-only) for the Distributed Map.
    this.restorePhaseFunction = new BackupFunction(this, 'RestorePhase', {
      entry: path.join(HANDLERS_DIR, 'restore-phase.ts'),
      description:
        'media-backup: one step of the restore state machine (prepare, one archive, finish, abandon)',
      timeout: Duration.minutes(15),
      memorySize: config.restoreMemoryMb,
      logRetention,
      fileSystem: { accessPoint: this.mediaFileSystem.accessPoint, access: 'read-write' },
      ...network,
      environment: {
        ...common,
        POWERTOOLS_SERVICE_NAME: 'media-backup-restore-phase',
        DEADLINE_MARGIN_MS: String(DEADLINE_MARGIN_MS),
      },
    });
    this.restorePhaseFunction.addEnvironmentAndGrant('BUCKET_NAME', bucket.bucketName, (fn) => {
      this.backupBucket.grantBackupRead(fn);
      this.backupBucket.grantStagingCreate(fn);
    });
    this.restoreStateMachine = new ShardedRestoreStateMachine(this, 'RestoreStateMachine', {
      backupBucket: this.backupBucket,
      phaseFunction: this.restorePhaseFunction,
      maxConcurrency: config.shardMaxConcurrency,
      logRetention,
    });

    // Verify needs no EFS, but runs in the VPC anyway: the bucket is reached through the gateway
    // endpoint, and the read-only role has no reason to run on the public Lambda network.
    this.verifyFunction = new BackupFunction(this, 'Verify', {
      entry: path.join(HANDLERS_DIR, 'verify.ts'),
      description: 'media-backup: verify backups (archive sha256; deep: re-hash every file)',
      timeout: Duration.minutes(15),
      memorySize: config.verifyMemoryMb,
      logRetention,
      ...network,
      environment: { ...common, POWERTOOLS_SERVICE_NAME: 'media-backup-verify' },
    });
    // Reads (GetObject; the quick verify's HeadObject with checksum mode is s3:GetObject too) and
    // rewrites its one record, status/last-verify.json, which the rotating deep verify needs to move
    // on to older archives. No other write.
    this.verifyFunction.addEnvironmentAndGrant('BUCKET_NAME', bucket.bucketName, (fn) => {
      this.backupBucket.grantBackupRead(fn);
      this.backupBucket.grantStatusWrite(fn, VERIFY_STATUS_KEY);
    });

    // A deep verify too big for one invocation runs as a state machine: the verify function's access,
    // plus creating its work list and per-archive results under staging/ (create-only).
    this.verifyPhaseFunction = new BackupFunction(this, 'VerifyPhase', {
      entry: path.join(HANDLERS_DIR, 'verify-phase.ts'),
      description: 'media-backup: one step of the deep verify state machine (plan, one archive, record)',
      timeout: Duration.minutes(15),
      memorySize: config.verifyMemoryMb,
      logRetention,
      ...network,
      environment: { ...common, POWERTOOLS_SERVICE_NAME: 'media-backup-verify-phase' },
    });
    this.verifyPhaseFunction.addEnvironmentAndGrant('BUCKET_NAME', bucket.bucketName, (fn) => {
      this.backupBucket.grantBackupRead(fn);
      this.backupBucket.grantStatusWrite(fn, VERIFY_STATUS_KEY);
      this.backupBucket.grantStagingCreate(fn);
    });
    this.verifyStateMachine = new DeepVerifyStateMachine(this, 'VerifyStateMachine', {
      backupBucket: this.backupBucket,
      phaseFunction: this.verifyPhaseFunction,
      maxConcurrency: config.shardMaxConcurrency,
      logRetention,
    });
    // A deep verify too large for one invocation (the weekly drill of a sharded tree) is handed to
    // the state machine by the verify function. It runs the phase function, never the verify
    // function, so this grant makes no cycle.
    const verifyMachine = this.verifyStateMachine.stateMachine;
    this.verifyFunction.addEnvironmentAndGrant(
      'VERIFY_STATE_MACHINE_ARN',
      verifyMachine.stateMachineArn,
      (fn) => verifyMachine.grantStartExecution(fn),
    );

    if (encryptionKey) {
      // Grants were added with the bucket grants above; the id tells the engine to request SSE-KMS.
      for (const fn of [
        this.backupFunction,
        this.shardFunction,
        this.shardCommitFunction,
        this.shardCleanupFunction,
        this.restoreFunction,
        this.restorePhaseFunction,
        this.verifyFunction,
        this.verifyPhaseFunction,
      ]) {
        fn.addEnvironment('KMS_KEY_ID', encryptionKey.keyArn);
      }
    }

    this.schedules = new BackupSchedules(this, 'Schedules', {
      backupFunction: this.backupFunction.function,
      verifyFunction: this.verifyFunction.function,
      backupTime: config.backupSchedule,
      fullBackupDay: config.fullBackupDay,
      timeZone: config.timeZone,
      // A failed backup run is the composite alarm's (the queue's new-message alarm is one of its
      // members); with an email, failed restore and verify runs are mailed by the notify function.
      queueRunFailuresOf:
        config.notificationEmail === undefined
          ? [this.backupFunction.function, this.verifyFunction.function]
          : [this.backupFunction.function],
    });

    this.notifications = new Notifications(this, 'Notifications', {
      ...(config.notificationEmail ? { notificationEmail: config.notificationEmail } : {}),
      ...(config.senderEmail ? { senderEmail: config.senderEmail } : {}),
      useExistingSesIdentity: config.useExistingSesIdentity,
      rawAlarmEmail: config.rawAlarmEmail,
      bucket,
      backupPrefix,
      ...(encryptionKey ? { encryptionKey } : {}),
      reportFailuresOf: [this.restoreFunction, this.verifyFunction],
      deadLetterQueue: this.schedules.deadLetterQueue,
      scheduler: this.schedules,
      weeklyDigest: config.weeklyDigest,
      timeZone: config.timeZone,
      logRetention,
      environment: {
        POWERTOOLS_LOG_LEVEL: common.POWERTOOLS_LOG_LEVEL,
        STACK_NAME: common.STACK_NAME,
        // Not mounted by the notify function: the emails' advice names these folders.
        EFS_MOUNT: common.EFS_MOUNT,
        MEDIA_PATH: common.MEDIA_PATH,
        RESTORES_PATH: common.RESTORES_PATH,
      },
    });

    const notify = this.notifications.notifyFunction;
    this.monitoring = new Monitoring(this, 'Monitoring', {
      alarmTopic: this.notifications.topic,
      bucket,
      backupPrefix,
      ...(encryptionKey ? { encryptionKey } : {}),
      fileSystem: this.mediaFileSystem.fileSystem,
      scheduler: this.schedules,
      backupFunction: this.backupFunction,
      backupStateMachine: this.backupStateMachine.stateMachine,
      restoreStateMachine: this.restoreStateMachine.stateMachine,
      verifyStateMachine: this.verifyStateMachine.stateMachine,
      functions: {
        backup: this.backupFunction,
        restore: this.restoreFunction,
        verify: this.verifyFunction,
        ...(notify ? { notify } : {}),
      },
      deadLetterQueue: this.schedules.deadLetterQueue,
      maxBackupAgeHours: config.maxBackupAgeHours,
      minBackupBytes: config.minBackupBytes,
      maxShrinkPercent: config.maxShrinkPercent,
      ...(config.efsWarnBytes === undefined ? {} : { efsWarnBytes: config.efsWarnBytes }),
      retentionDays: config.retentionDays,
      memorySize: config.monitorMemoryMb,
      dashboard: config.dashboard,
      logRetention,
      environment: common,
    });

    this.acknowledgeGrantWildcards(encryptionKey !== undefined);

    this.addOutputs();
  }

  /**
   * The sharded backup: the shard, commit and cleanup functions and the state machine running them.
   *
   * Who starts it: the backup function, not the schedule. The nightly schedule keeps invoking the
   * backup function, and a tree whose run fits one invocation (the time model decides, after the
   * scan) is backed up there as before: no Step Functions cost and no new ways to fail for small
   * trees. A run that does not fit is planned by the backup function, which writes the plan and
   * starts this state machine with `{ backupId, planKey, itemsKey }` (`BACKUP_STATE_MACHINE_ARN`;
   * `states:StartExecution` on this state machine only) and hands it the lock for
   * `SHARDED_RUN_TIMEOUT_SECONDS`. The state machine invokes the shard, commit and cleanup
   * functions, never the backup function, so the backup function's grant on it makes no cycle.
   */
  private addShardedBackup(
    config: MediaBackupConfig,
    common: Readonly<Record<string, string>>,
    network: Pick<BackupFunctionProps, 'vpc' | 'vpcSubnets' | 'securityGroup'>,
    logRetention: RetentionDays,
  ): {
    shardFunction: BackupFunction;
    commitFunction: BackupFunction;
    cleanupFunction: BackupFunction;
    stateMachine: ShardedBackupStateMachine;
  } {
    const { bucket } = this.backupBucket;
    // Same mount, memory and timeout as the backup function: a shard is a slice of its work, sized by
    // the same time model to finish inside one invocation.
    const shardFunction = new BackupFunction(this, 'Shard', {
      entry: path.join(HANDLERS_DIR, 'shard.ts'),
      description: 'media-backup: archive one shard of a sharded backup into its part (backup state machine)',
      timeout: Duration.minutes(15),
      memorySize: config.backupMemoryMb,
      logRetention,
      fileSystem: { accessPoint: this.mediaFileSystem.accessPoint, access: 'read' },
      ...network,
      environment: {
        ...common,
        POWERTOOLS_SERVICE_NAME: 'media-backup-shard',
        DEADLINE_MARGIN_MS: String(DEADLINE_MARGIN_MS),
        COMPRESSION_LEVEL: String(config.compressionLevel),
      },
    });
    // Commit and cleanup read and write the store only: no EFS. In the VPC like verify (the bucket
    // through the gateway endpoint).
    const commitFunction = new BackupFunction(this, 'ShardCommit', {
      entry: path.join(HANDLERS_DIR, 'shard-commit.ts'),
      description: 'media-backup: check every part of a sharded backup, write its manifest and metadata',
      timeout: Duration.minutes(15),
      memorySize: 1024,
      logRetention,
      ...network,
      environment: { ...common, POWERTOOLS_SERVICE_NAME: 'media-backup-shard-commit' },
    });
    const cleanupFunction = new BackupFunction(this, 'ShardCleanup', {
      entry: path.join(HANDLERS_DIR, 'shard-cleanup.ts'),
      description:
        'media-backup: abort a failed sharded backup (record FAILED, abort uploads, release the lock)',
      timeout: Duration.minutes(15),
      memorySize: 1024,
      logRetention,
      ...network,
      environment: { ...common, POWERTOOLS_SERVICE_NAME: 'media-backup-shard-cleanup' },
    });
    // The three continue the backup function's run: the same create-only write grant (no delete, no
    // overwrite of backup history). The shard needs less (no lock or status record), but its access
    // pattern is the engine's, and a narrower grant would fail only in AWS, never in the tests.
    for (const fn of [shardFunction, commitFunction, cleanupFunction]) {
      fn.addEnvironmentAndGrant('BUCKET_NAME', bucket.bucketName, (grantee) =>
        this.backupBucket.grantBackupWrite(grantee),
      );
    }

    const timeout = Duration.hours(config.shardedRunTimeoutHours);
    const stateMachine = new ShardedBackupStateMachine(this, 'BackupStateMachine', {
      backupBucket: this.backupBucket,
      shardFunction,
      commitFunction,
      cleanupFunction,
      maxConcurrency: config.shardMaxConcurrency,
      timeout,
      logRetention,
    });
    this.backupFunction.addEnvironmentAndGrant(
      'BACKUP_STATE_MACHINE_ARN',
      stateMachine.stateMachineArn,
      (fn) => stateMachine.grantStartExecution(fn),
    );
    this.backupFunction.addEnvironment('SHARDED_RUN_TIMEOUT_SECONDS', String(timeout.toSeconds()));
    return { shardFunction, commitFunction, cleanupFunction, stateMachine };
  }

  /**
   * The zones the demo VPC uses. Never a lookup: CDK's default looks the zones up (an AWS call at
   * synth) as soon as the stack has an explicit account and region, e.g. when `CDK_DEFAULT_ACCOUNT`
   * is set, and then synth fails without credentials. The configured `demoAvailabilityZones`, or the
   * region's first two zones resolved by CloudFormation (`Fn::GetAZs`), as for a stack without env.
   */
  override get availabilityZones(): string[] {
    if (this.demoAvailabilityZones) return [...this.demoAvailabilityZones];
    const zones = Fn.getAzs();
    return [Fn.select(0, zones), Fn.select(1, zones)];
  }

  private acknowledgeGrantWildcards(withKey: boolean): void {
    const { bucket, backupPrefix } = this.backupBucket;
    const objects = (pattern: string) =>
      `Resource::<${this.getLogicalId(bucket.node.defaultChild as CfnElement)}.Arn>/${backupPrefix}${pattern}`;
    const reader: Record<string, string> = {
      [objects('*')]:
        'Backup objects get new keys every run (backup ids) under the configured prefix, so GetObject (and, ' +
        'for the backup role, conditional-create PutObject, AbortMultipartUpload and ListMultipartUploadParts) ' +
        'must cover the prefix with a wildcard; nothing outside the prefix is granted',
    };
    const writer: Record<string, string> = {
      [objects('locks/*')]:
        'The backup lock is replaced under If-Match by the run holding it; one object per lock name, ' +
        'only under locks/, where no backup history lives',
      [objects('status/*')]:
        'The backup rewrites its run summaries (status/last-run.json and the like) every run; status ' +
        'records are not backup history, and archives, metadata and manifests stay create-only',
    };
    // grantDecrypt is kms:Decrypt only; writers (backup, verify's status record) also encrypt.
    const kms: Record<string, string> = {
      'Action::kms:GenerateDataKey*':
        'SSE-KMS needs data keys for every object written, only on the configured backup key',
      'Action::kms:ReEncrypt*': 'CDK key grant for SSE-KMS objects, restricted to the configured backup key',
    };
    const notify = this.notifications.notifyFunction;
    const grants: [BackupFunction, Record<string, string>][] = [
      [this.backupFunction, { ...reader, ...writer, ...(withKey ? kms : {}) }],
      [this.shardFunction, { ...reader, ...writer, ...(withKey ? kms : {}) }],
      [this.shardCommitFunction, { ...reader, ...writer, ...(withKey ? kms : {}) }],
      [this.shardCleanupFunction, { ...reader, ...writer, ...(withKey ? kms : {}) }],
      [this.restoreFunction, reader],
      [
        this.restorePhaseFunction,
        {
          ...reader,
          [objects('staging/*')]:
            'The restore state machine writes each job its archive list under staging/restore-<jobId>/, a new key ' +
            'per job; create-only (s3:if-none-match), nothing outside staging/',
          ...(withKey ? kms : {}),
        },
      ],
      [this.verifyFunction, { ...reader, ...(withKey ? kms : {}) }],
      [
        this.verifyPhaseFunction,
        {
          ...reader,
          [objects('staging/*')]:
            'The verify state machine writes each run its check list and one result per archive under ' +
            'staging/verify-<runId>/, new keys per run; create-only (s3:if-none-match), nothing outside staging/',
          ...(withKey ? kms : {}),
        },
      ],
      [this.monitoring.monitorFunction, reader],
      ...(notify ? [[notify, reader] as [BackupFunction, Record<string, string>]] : []),
    ];
    for (const [fn, entries] of grants) {
      for (const [finding, reason] of Object.entries(entries)) {
        Validations.of(fn.function).acknowledge({ id: `AwsSolutions-IAM5[${finding}]`, reason });
      }
    }
  }

  private addOutputs(): void {
    const region = this.region;
    // AWS_MAX_ATTEMPTS=1: the CLI never retries the call. A retry after a dropped connection (a
    // NAT or proxy idle timeout during a 15-minute run) would invoke the function a second time, and
    // --cli-read-timeout 0 alone does not stop that. If the connection drops, the run goes on: follow
    // it with the FollowLogsCommand output instead of invoking again.
    const invoke = (fn: BackupFunction, payload: object) =>
      Fn.join('', [
        'AWS_MAX_ATTEMPTS=1 aws lambda invoke --region ',
        region,
        ' --function-name ',
        fn.functionName,
        ` --cli-read-timeout 0 --cli-binary-format raw-in-base64-out --payload '${JSON.stringify(payload)}' /dev/stdout`,
      ]);

    new CfnOutput(this, 'BackupBucketName', {
      description: 'S3 bucket holding the backup store (archives, manifests, status)',
      value: this.backupBucket.bucket.bucketName,
    });
    new CfnOutput(this, 'BackupStoreUrl', {
      description: 'The backup store as the CLI takes it (--store): bucket and prefix',
      value: `s3://${this.backupBucket.bucket.bucketName}/${this.backupBucket.backupPrefix}`,
    });
    new CfnOutput(this, 'BackupFunctionName', { value: this.backupFunction.functionName });
    new CfnOutput(this, 'RestoreFunctionName', { value: this.restoreFunction.functionName });
    new CfnOutput(this, 'VerifyFunctionName', { value: this.verifyFunction.functionName });
    new CfnOutput(this, 'MonitorFunctionName', { value: this.monitoring.monitorFunction.functionName });
    new CfnOutput(this, 'AlarmTopicArn', {
      description: 'SNS topic every alarm publishes to: subscribe more endpoints here',
      value: this.notifications.topic.topicArn,
    });
    if (this.monitoring.dashboard) {
      new CfnOutput(this, 'DashboardName', { value: this.monitoring.dashboard.dashboardName });
    }
    new CfnOutput(this, 'BackupStateMachineArn', {
      description:
        'State machine of sharded backups (runs too big for one invocation); the backup function starts it',
      value: this.backupStateMachine.stateMachineArn,
    });
    new CfnOutput(this, 'ShardedBackupRunsCommand', {
      description:
        'List the sharded backup runs (a backup invocation that returned STARTED goes on there; status/last-run.json has the outcome)',
      value: Fn.join('', [
        'aws stepfunctions list-executions --region ',
        region,
        ' --max-results 10 --state-machine-arn ',
        this.backupStateMachine.stateMachineArn,
      ]),
    });
    new CfnOutput(this, 'RestoreStateMachineArn', {
      description: 'State machine restoring a backup archive by archive (for sharded backups)',
      value: this.restoreStateMachine.stateMachineArn,
    });
    new CfnOutput(this, 'StartShardedRestoreCommand', {
      description:
        'Restore a sharded backup (parts extracted in parallel) into restores/<backupId>; the input takes the ' +
        "restore function's fields (backup, at, paths, target, mode). Small backups: RestoreLatestCommand",
      value: Fn.join('', [
        'aws stepfunctions start-execution --region ',
        region,
        ' --state-machine-arn ',
        this.restoreStateMachine.stateMachineArn,
        ` --input '${JSON.stringify({ backup: 'latest' })}'`,
      ]),
    });
    new CfnOutput(this, 'VerifyStateMachineArn', {
      description: 'State machine deep-verifying archive by archive (for sharded backups)',
      value: this.verifyStateMachine.stateMachineArn,
    });
    new CfnOutput(this, 'StartDeepVerifyCommand', {
      description:
        'Deep-verify the latest backup archive by archive (parts checked in parallel) and record the outcome; ' +
        "the input takes the verify function's fields (backup, all)",
      value: Fn.join('', [
        'aws stepfunctions start-execution --region ',
        region,
        ' --state-machine-arn ',
        this.verifyStateMachine.stateMachineArn,
        ` --input '${JSON.stringify({ backup: 'latest', deep: true })}'`,
      ]),
    });
    new CfnOutput(this, 'ManualBackupCommand', {
      description: 'Run a full backup now and print its result (waits up to 15 minutes)',
      value: invoke(this.backupFunction, { type: 'full' }),
    });
    new CfnOutput(this, 'RestoreLatestCommand', {
      description: 'Restore the latest backup into restores/<backupId> beside the media tree',
      value: invoke(this.restoreFunction, { backup: 'latest' }),
    });
    new CfnOutput(this, 'RestoreDryRunCommand', {
      description: 'Download and verify the latest backup, writing nothing',
      value: invoke(this.restoreFunction, { backup: 'latest', dryRun: true }),
    });
    new CfnOutput(this, 'QuickVerifyCommand', {
      description: 'Check the latest backup (archive sha256) and print the result',
      value: invoke(this.verifyFunction, { backup: 'latest' }),
    });
    new CfnOutput(this, 'FollowLogsCommand', {
      description:
        'Follow the backup function log (a run whose invoke command lost its connection goes on here)',
      value: Fn.join('', [
        'aws logs tail --region ',
        region,
        ' --follow --since 20m ',
        this.backupFunction.logGroup.logGroupName,
      ]),
    });
    new CfnOutput(this, 'LastRunCommand', {
      description: 'Print the outcome of the last backup run (status/last-run.json)',
      value: Fn.join('', [
        'aws s3 cp --region ',
        region,
        ' s3://',
        this.backupBucket.bucket.bucketName,
        `/${this.backupBucket.backupPrefix}status/last-run.json -`,
      ]),
    });
  }
}
