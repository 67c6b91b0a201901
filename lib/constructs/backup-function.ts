import { Duration, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import type { ISecurityGroup, IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import type { IAccessPoint } from 'aws-cdk-lib/aws-efs';
import type { IGrantable } from 'aws-cdk-lib/aws-iam';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Architecture, type CfnFunction, FileSystem, LoggingFormat, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** Where every function mounts the media file system's access point. */
export const EFS_MOUNT_PATH = '/mnt/efs';

/** Lambda's hard limit for one invocation. */
const MAX_TIMEOUT = Duration.minutes(15);

/** How a function may use the media file system. */
export type EfsAccess = 'read' | 'read-write';

/** The media file system mount of a {@link BackupFunction}. */
export interface BackupFunctionFileSystem {
  /** The access point mounted at {@link EFS_MOUNT_PATH}. */
  readonly accessPoint: IAccessPoint;
  /**
   * `read` grants `elasticfilesystem:ClientMount` only; `read-write` adds
   * `elasticfilesystem:ClientWrite`. Both are scoped to this access point. EFS enforces them
   * when the file system policy defers to IAM (the default policy CDK writes for a created file
   * system does; for an existing one it depends on its policy).
   */
  readonly access: EfsAccess;
}

/** Properties of a {@link BackupFunction}. */
export interface BackupFunctionProps {
  /** Path of the TypeScript handler module (exporting `handler`), bundled with esbuild. */
  readonly entry: string;

  /** What the function does, shown in the console. */
  readonly description: string;

  /**
   * Invocation timeout, at most 15 minutes (Lambda's limit).
   *
   * @default Duration.minutes(15)
   */
  readonly timeout?: Duration;

  /**
   * Memory in MB (128 to 10,240). Lambda allots CPU in proportion: 1,769 MB is one full vCPU.
   *
   * @default 1024
   */
  readonly memorySize?: number;

  /**
   * How long the function's log group keeps its logs.
   *
   * @default RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: RetentionDays;

  /**
   * Mount the media file system at {@link EFS_MOUNT_PATH} (needs `vpc`).
   *
   * @default - no file system
   */
  readonly fileSystem?: BackupFunctionFileSystem;

  /**
   * The VPC to run in (required with `fileSystem`: EFS is reachable only from inside it).
   *
   * @default - outside any VPC
   */
  readonly vpc?: IVpc;

  /**
   * The subnets to run in, inside `vpc`.
   *
   * @default - the VPC's private subnets
   */
  readonly vpcSubnets?: SubnetSelection;

  /**
   * The security group of the function inside `vpc`.
   *
   * @default - a new security group
   */
  readonly securityGroup?: ISecurityGroup;

  /**
   * Reserved concurrency: `1` makes a second concurrent invocation fail with throttling.
   *
   * @default - unreserved
   */
  readonly reservedConcurrentExecutions?: number;

  /**
   * Environment variables, besides those added with
   * {@link BackupFunction.addEnvironmentAndGrant}.
   *
   * @default - none
   */
  readonly environment?: Readonly<Record<string, string>>;
}

/**
 * A media-backup Lambda function. Fixed for every function:
 * - Node.js 24 (`Runtime.NODEJS_24_X`, the newest this aws-cdk-lib knows) on ARM64 (Graviton:
 *   about 20% cheaper per GB-second, and fast zlib);
 * - bundled by esbuild (locally, no Docker) with source maps (`--enable-source-maps`) and
 *   **everything** bundled, the AWS SDK included (`externalModules: []`): `@aws-sdk/lib-storage` is
 *   not in the runtime, and a bundled SDK pins the version the tests ran against;
 * - an explicit log group (retention `logRetention`, default 3 months), JSON log format;
 * - timeout 15 minutes unless given (never more), memory 1024 MB unless given;
 * - the media file system's access point mounted at `/mnt/efs` when `fileSystem` is given, with
 *   IAM for exactly the requested access (`read` or `read-write`);
 * - VPC, subnets and security group when given.
 */
export class BackupFunction extends Construct {
  /** The function. */
  public readonly function: NodejsFunction;
  /** Its log group. */
  public readonly logGroup: LogGroup;
  /** Its invocation timeout. */
  public readonly timeout: Duration;

  constructor(scope: Construct, id: string, props: BackupFunctionProps) {
    super(scope, id);
    const timeout = props.timeout ?? MAX_TIMEOUT;
    this.timeout = timeout;
    const memorySize = props.memorySize ?? 1024;
    if (!Token.isUnresolved(timeout.toSeconds()) && timeout.toSeconds() > MAX_TIMEOUT.toSeconds()) {
      throw new Error(
        `\`timeout\` must be at most 15 minutes, Lambda's limit (got ${timeout.toHumanString()})`,
      );
    }
    if (!Number.isSafeInteger(memorySize) || memorySize < 128 || memorySize > 10240) {
      throw new Error(`\`memorySize\` must be a whole number of MB from 128 to 10240 (got ${memorySize})`);
    }
    if (props.fileSystem && !props.vpc) {
      throw new Error(
        '`vpc` is required with `fileSystem`: EFS mount targets are reachable only inside the VPC',
      );
    }
    if (
      props.reservedConcurrentExecutions !== undefined &&
      (!Number.isSafeInteger(props.reservedConcurrentExecutions) || props.reservedConcurrentExecutions < 0)
    ) {
      throw new Error(
        `\`reservedConcurrentExecutions\` must be a whole number >= 0 (got ${props.reservedConcurrentExecutions})`,
      );
    }

    this.logGroup = new LogGroup(this, 'LogGroup', {
      retention: props.logRetention ?? RetentionDays.THREE_MONTHS,
      // Logs are diagnostics, not backups: they go with the stack.
      removalPolicy: RemovalPolicy.DESTROY,
    });

    this.function = new NodejsFunction(this, 'Function', {
      entry: props.entry,
      handler: 'handler',
      description: props.description,
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      timeout,
      memorySize,
      logGroup: this.logGroup,
      loggingFormat: LoggingFormat.JSON,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        // libuv's pool of 4 threads caps async fs calls in flight at 4: the backup's read-ahead and the
        // restore's concurrent writes on EFS (a network round trip per call) need many more. Measured on
        // a latency fs: 201 files/s with 4 threads, 463 with 64. Read once, when the pool starts.
        UV_THREADPOOL_SIZE: '64',
        ...props.environment,
      },
      bundling: {
        format: OutputFormat.CJS,
        target: 'node24',
        sourceMap: true,
        minify: true,
        externalModules: [],
      },
      ...(props.reservedConcurrentExecutions === undefined
        ? {}
        : { reservedConcurrentExecutions: props.reservedConcurrentExecutions }),
      ...(props.vpc
        ? {
            vpc: props.vpc,
            vpcSubnets: props.vpcSubnets ?? { subnets: props.vpc.privateSubnets },
            ...(props.securityGroup ? { securityGroups: [props.securityGroup] } : {}),
          }
        : {}),
      ...(props.fileSystem
        ? { filesystem: new MediaMount(props.fileSystem.accessPoint, props.fileSystem.access) }
        : {}),
    });

    // AWS-managed policies that Lambda attaches to every execution role (the VPC one only in a VPC).
    const managedPolicies: Record<string, string> = {
      AWSLambdaBasicExecutionRole:
        'AWS-maintained minimum that lets the function write its own log streams; scoped by AWS, updated when Lambda changes',
      ...(props.vpc
        ? {
            AWSLambdaVPCAccessExecutionRole:
              'AWS-maintained minimum a function in a VPC needs to create, describe and delete its own network ' +
              'interfaces (EC2 offers no resource scoping for them); updated by AWS when Lambda changes',
          }
        : {}),
    };
    for (const [policy, reason] of Object.entries(managedPolicies)) {
      Validations.of(this.function).acknowledge({
        id: `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/${policy}]`,
        reason,
      });
    }
  }

  /** The function's name. */
  public get functionName(): string {
    return this.function.functionName;
  }

  /** The principal of the function's execution role. */
  public get grantPrincipal(): IGrantable['grantPrincipal'] {
    return this.function.grantPrincipal;
  }

  /**
   * Set environment variable `name` to `value` and grant what the function needs to use it, so a
   * setting and its permission always travel together:
   * `fn.addEnvironmentAndGrant('BUCKET_NAME', bucket.bucketName, (g) => bucket.grantRead(g, 'prefix/*'))`.
   */
  public addEnvironmentAndGrant(name: string, value: string, grant: (grantee: IGrantable) => unknown): this {
    this.function.addEnvironment(name, value);
    grant(this.function);
    return this;
  }

  /**
   * Keep the event of every asynchronous invocation that finally failed in `queue` (the function's
   * dead-letter queue), and grant sending to it. Lambda delivers to a dead-letter queue in addition
   * to an on-failure destination, so both can be configured: the destination gets a record with the
   * error, the queue keeps the original event for inspection or replay.
   */
  public keepFailedEventsIn(queue: IQueue): this {
    // The L2 takes a dead-letter queue only at construction; the queue is created later, with the schedules.
    (this.function.node.defaultChild as CfnFunction).deadLetterConfig = { targetArn: queue.queueArn };
    queue.grantSendMessages(this.function);
    return this;
  }

  /** Set environment variable `name` to `value` (for settings that need no permission). */
  public addEnvironment(name: string, value: string): this {
    this.function.addEnvironment(name, value);
    return this;
  }
}

/**
 * `lambda.FileSystem.fromEfsAccessPoint` always grants `ClientWrite` too; this mount grants
 * `ClientWrite` only for `read-write`. Otherwise identical: NFS from the function's security group
 * into the mount targets' (when that group is mutable), and a dependency on the mount targets.
 */
class MediaMount extends FileSystem {
  constructor(accessPoint: IAccessPoint, access: EfsAccess) {
    const fileSystemArn = Stack.of(accessPoint).formatArn({
      service: 'elasticfilesystem',
      resource: 'file-system',
      resourceName: accessPoint.fileSystem.fileSystemId,
    });
    const onThisAccessPoint = {
      StringEquals: { 'elasticfilesystem:AccessPointArn': accessPoint.accessPointArn },
    };
    super({
      localMountPath: EFS_MOUNT_PATH,
      arn: accessPoint.accessPointArn,
      dependency: [accessPoint.fileSystem.mountTargetsAvailable],
      connections: accessPoint.fileSystem.connections,
      policies: [
        new PolicyStatement({
          actions: [
            'elasticfilesystem:ClientMount',
            ...(access === 'read-write' ? ['elasticfilesystem:ClientWrite'] : []),
          ],
          resources: [fileSystemArn],
          conditions: onThisAccessPoint,
        }),
      ],
    });
  }
}
