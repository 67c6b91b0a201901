import { Annotations, RemovalPolicy, Validations } from 'aws-cdk-lib';
import {
  GatewayVpcEndpointAwsService,
  type ISecurityGroup,
  type IVpc,
  SecurityGroup,
  type SubnetSelection,
  SubnetType,
  Vpc,
} from 'aws-cdk-lib/aws-ec2';
import {
  AccessPoint,
  FileSystem,
  type IAccessPoint,
  type IFileSystem,
  PerformanceMode,
  ThroughputMode,
} from 'aws-cdk-lib/aws-efs';
import { AccountRootPrincipal, AnyPrincipal, PolicyDocument, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { ExistingFileSystemConfig } from '../config.js';

/** Properties of a {@link MediaFileSystem}. */
export interface MediaFileSystemProps {
  /**
   * The existing file system, access point, security group and network to use. Nothing is
   * looked up: every id comes from here, so synth works offline.
   *
   * @default - a demo VPC (private isolated subnets in two zones, no NAT gateway) with an
   * encrypted EFS file system and an access point are created
   */
  readonly existing?: ExistingFileSystemConfig;

  /**
   * Availability zones of the created VPC (two or more). Ignored with `existing`.
   *
   * @default - the stack's first two availability zones
   */
  readonly availabilityZones?: readonly string[];

  /**
   * POSIX user id of the created access point: every file operation through it runs as this
   * user, and its root directory is created owned by it. Ignored with `existing` (the existing
   * access point decides).
   *
   * @default 1000
   */
  readonly posixUid?: number;

  /**
   * POSIX group id of the created access point. Ignored with `existing`.
   *
   * @default 1000
   */
  readonly posixGid?: number;

  /**
   * Root directory of the created access point on the file system; the functions see it at
   * their mount path. Ignored with `existing`.
   *
   * @default '/app'
   */
  readonly accessPointPath?: string;

  /**
   * Add an S3 gateway endpoint (free, unlike a NAT gateway) to the route tables of the
   * functions' subnets. With `existing`, needs `existing.privateSubnetRouteTableIds`.
   *
   * @default - true for a created VPC, false for an existing one
   */
  readonly createS3GatewayEndpoint?: boolean;

  /**
   * The backup store the functions reach through the S3 gateway endpoint. When the endpoint is
   * created in the demo VPC, its policy then allows only the S3 actions the functions call
   * (lambda/store/s3.ts), on this bucket and the objects under `backupPrefix`: nothing in the VPC
   * can copy data to another bucket through it. In an existing VPC the endpoint keeps the default
   * full-access policy: it serves every S3 request of the route tables' subnets, including other
   * workloads'.
   *
   * @default - the default full-access endpoint policy
   */
  readonly s3EndpointStore?: { readonly bucket: IBucket; readonly backupPrefix: string };

  /**
   * What happens to the created file system when it leaves the stack. Ignored with `existing`.
   *
   * @default RemovalPolicy.RETAIN (it holds the media)
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The EFS file system holding the media tree and the network the functions reach it through:
 * either an existing one imported by id, or a self-contained demo (VPC without NAT, encrypted
 * EFS, access point, S3 gateway endpoint).
 */
export class MediaFileSystem extends Construct {
  /** The VPC of the mount targets; the functions run in it. */
  public readonly vpc: IVpc;
  /** The private subnets the functions run in. */
  public readonly subnets: SubnetSelection;
  /** The file system holding the media tree. */
  public readonly fileSystem: IFileSystem;
  /** The access point the functions mount. */
  public readonly accessPoint: IAccessPoint;
  /** The security group of the functions; the mount targets admit it on NFS (TCP 2049). */
  public readonly securityGroup: ISecurityGroup;
  /** Whether the file system, access point and network are imported (true) or created here. */
  public readonly imported: boolean;

  constructor(scope: Construct, id: string, props: MediaFileSystemProps = {}) {
    super(scope, id);
    const posixUid = props.posixUid ?? 1000;
    const posixGid = props.posixGid ?? 1000;
    const accessPointPath = props.accessPointPath ?? '/app';
    requirePosixId('posixUid', posixUid);
    requirePosixId('posixGid', posixGid);
    if (!/^\/[^\s]*[^/\s]$/.test(accessPointPath) || accessPointPath.split('/').includes('..')) {
      throw new Error(
        `\`accessPointPath\` must be an absolute path without a trailing "/" or "..", like "/app" (got ${JSON.stringify(accessPointPath)})`,
      );
    }

    const existing = props.existing;
    this.imported = existing !== undefined;
    const createEndpoint = props.createS3GatewayEndpoint ?? existing === undefined;

    if (existing) {
      if (existing.privateSubnetIds.length !== existing.availabilityZones.length) {
        throw new Error('`privateSubnetIds` and `availabilityZones` must have the same length');
      }
      if (createEndpoint && !existing.privateSubnetRouteTableIds) {
        throw new Error('`createS3GatewayEndpoint` with an existing VPC needs `privateSubnetRouteTableIds`');
      }
      this.vpc = Vpc.fromVpcAttributes(this, 'Vpc', {
        vpcId: existing.vpcId,
        availabilityZones: [...existing.availabilityZones],
        privateSubnetIds: [...existing.privateSubnetIds],
        ...(existing.privateSubnetRouteTableIds
          ? { privateSubnetRouteTableIds: [...existing.privateSubnetRouteTableIds] }
          : {}),
      });
      this.subnets = { subnets: this.vpc.privateSubnets };
      // Not mutable: the stack never edits a security group it does not own. The operator has
      // already allowed this group into the mount targets.
      this.securityGroup = SecurityGroup.fromSecurityGroupId(
        this,
        'SecurityGroup',
        existing.securityGroupId,
        {
          mutable: false,
        },
      );
      this.fileSystem = FileSystem.fromFileSystemAttributes(this, 'FileSystem', {
        fileSystemId: existing.fileSystemId,
        securityGroup: this.securityGroup,
      });
      this.accessPoint = AccessPoint.fromAccessPointAttributes(this, 'AccessPoint', {
        accessPointId: existing.accessPointId,
        fileSystem: this.fileSystem,
      });
    } else {
      if (props.availabilityZones !== undefined && props.availabilityZones.length < 2) {
        throw new Error(
          `\`availabilityZones\` must list at least two zones (got ${props.availabilityZones.join(',') || 'none'})`,
        );
      }
      const vpc = new Vpc(this, 'Vpc', {
        ...(props.availabilityZones ? { availabilityZones: [...props.availabilityZones] } : { maxAzs: 2 }),
        natGateways: 0,
        subnetConfiguration: [{ name: 'private', subnetType: SubnetType.PRIVATE_ISOLATED, cidrMask: 24 }],
      });
      Validations.of(vpc).acknowledge({
        id: 'AwsSolutions-VPC7',
        reason:
          'Demo VPC without internet or NAT gateway: its only traffic is Lambda to EFS over NFS and to S3 ' +
          'through the gateway endpoint, so flow logs would add cost without insight; an existing VPC keeps its own',
      });
      this.vpc = vpc;
      this.subnets = { subnetType: SubnetType.PRIVATE_ISOLATED };

      this.securityGroup = new SecurityGroup(this, 'FunctionSecurityGroup', {
        vpc,
        description: 'media-backup functions: NFS to the media file system, HTTPS to S3',
        allowAllOutbound: true,
      });
      // Lambda's EFS wiring asks for an NFS egress rule, which allowAllOutbound already covers.
      Annotations.of(this.securityGroup).acknowledgeWarning(
        '@aws-cdk/aws-ec2:ipv4IgnoreEgressRule',
        'allowAllOutbound already admits NFS to the mount targets',
      );
      const fileSystem = new FileSystem(this, 'FileSystem', {
        vpc,
        vpcSubnets: this.subnets,
        encrypted: true,
        performanceMode: PerformanceMode.GENERAL_PURPOSE,
        // Backups read the whole tree in a burst once a day: pay per byte, not for provisioned throughput.
        throughputMode: ThroughputMode.ELASTIC,
        removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
        // Without a file system policy EFS lets every client that reaches a mount target read and
        // write. This one defers to IAM in this account, so the backup role (ClientMount only)
        // really mounts read-only and only the restore role can write.
        fileSystemPolicy: new PolicyDocument({
          statements: [
            new PolicyStatement({
              principals: [new AccountRootPrincipal()],
              actions: ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientWrite'],
              resources: ['*'],
              conditions: { Bool: { 'elasticfilesystem:AccessedViaMountTarget': 'true' } },
            }),
          ],
        }),
      });
      fileSystem.connections.allowDefaultPortFrom(this.securityGroup, 'media-backup functions (NFS)');
      this.fileSystem = fileSystem;
      this.accessPoint = fileSystem.addAccessPoint('AccessPoint', {
        path: accessPointPath,
        posixUser: { uid: String(posixUid), gid: String(posixGid) },
        // EFS creates the root directory on first mount, owned by the same user as the access point.
        createAcl: { ownerUid: String(posixUid), ownerGid: String(posixGid), permissions: '750' },
      });
    }

    if (createEndpoint) {
      const endpoint = this.vpc.addGatewayEndpoint('S3Endpoint', {
        service: GatewayVpcEndpointAwsService.S3,
        subnets: [this.subnets],
      });
      const store = props.s3EndpointStore;
      if (store && !existing) {
        // The union of what the functions' roles may do (each role is limited further by IAM).
        endpoint.addToPolicy(
          new PolicyStatement({
            sid: 'BackupStoreObjects',
            principals: [new AnyPrincipal()],
            actions: S3_ENDPOINT_OBJECT_ACTIONS,
            resources: [store.bucket.arnForObjects(`${store.backupPrefix}*`)],
          }),
        );
        endpoint.addToPolicy(
          new PolicyStatement({
            sid: 'BackupStoreListing',
            principals: [new AnyPrincipal()],
            actions: S3_ENDPOINT_BUCKET_ACTIONS,
            resources: [store.bucket.bucketArn],
          }),
        );
      }
    }
  }
}

/**
 * Object actions the functions call through the S3 endpoint: GetObject (and HeadObject),
 * GetObjectVersion (a synthetic full's UploadPartCopy and ranged GETs of pinned versions: without it
 * the endpoint would deny them in the demo VPC although the role allows them), PutObject (and the
 * multipart upload steps), AbortMultipartUpload, ListParts.
 */
export const S3_ENDPOINT_OBJECT_ACTIONS = [
  's3:GetObject',
  's3:GetObjectVersion',
  's3:PutObject',
  's3:AbortMultipartUpload',
  's3:ListMultipartUploadParts',
];
/** Bucket actions the functions call through the S3 endpoint: ListObjectsV2, ListMultipartUploads. */
export const S3_ENDPOINT_BUCKET_ACTIONS = ['s3:ListBucket', 's3:ListBucketMultipartUploads'];

function requirePosixId(key: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > 4294967295) {
    throw new Error(`\`${key}\` must be a whole number from 0 to 4294967295 (got ${value})`);
  }
}
