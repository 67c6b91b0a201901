import { readdir, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import { DescribeFileSystemsCommand, EFSClient } from '@aws-sdk/client-efs';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
  type MockInstance,
  vi,
} from 'vitest';
import { listCommittedBackups } from '../../lambda/core/repository/catalog.js';
import { handler as backupHandler } from '../../lambda/handlers/backup.js';
import { EventValidationError, HandlerConfigError, VerifyFailedError } from '../../lambda/handlers/errors.js';
import { METRICS_NAMESPACE } from '../../lambda/handlers/metrics.js';
import { handler as monitorHandler, readMonitorConfig } from '../../lambda/handlers/monitor.js';
import { handler as verifyHandler } from '../../lambda/handlers/verify.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext, succeeded } from '../fixtures/lambda-context.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';

const STACK = 'MediaBackupTest';
const FS_ID = 'fs-0123456789abcdef0';

/** One EMF document as powertools prints it on stdout. */
interface Emf {
  readonly _aws: {
    readonly CloudWatchMetrics: readonly {
      readonly Namespace: string;
      readonly Dimensions: readonly (readonly string[])[];
      readonly Metrics: readonly { readonly Name: string; readonly Unit: string }[];
    }[];
  };
  readonly [key: string]: unknown;
}

const dirs = tempDirs();
const efs = mockClient(EFSClient);
let s3: S3rverFixture;
let store: S3ObjectStore;
let media: string;
let run = 0;
let stdout: MockInstance<typeof process.stdout.write>;

beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(() => s3.stop());

beforeEach(async () => {
  efs.reset();
  const mount = await dirs.make('efs-');
  media = path.join(mount, 'media');
  run += 1;
  const prefix = `monitor-${run}/media-backups/`;
  store = s3.makeStore(prefix);
  stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix: prefix, mount: mount });
  vi.stubEnv('STACK_NAME', STACK);
  stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
});
afterEach(async () => {
  stdout.mockRestore();
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

/** The EMF documents printed since the last call. */
function emitted(): Emf[] {
  const docs = stdout.mock.calls
    .flatMap(([chunk]) => String(chunk).split('\n'))
    .filter((line) => line.startsWith('{') && line.includes('"_aws"'))
    .map((line) => JSON.parse(line) as Emf);
  stdout.mockClear();
  return docs;
}

/** Metric name -> value over the documents, after checking namespace and the single Stack dimension. */
function metricValues(docs: readonly Emf[]): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const doc of docs) {
    for (const directive of doc._aws.CloudWatchMetrics) {
      expect(directive.Namespace).toBe(METRICS_NAMESPACE);
      expect(directive.Dimensions).toEqual([['Stack']]);
      for (const metric of directive.Metrics) values[metric.Name] = doc[metric.Name];
    }
    expect(doc.Stack).toBe(STACK);
    expect(doc).not.toHaveProperty('service');
  }
  return values;
}

describe('monitor handler against s3rver', () => {
  it('reports a fresh backup as healthy and publishes the age metrics', async () => {
    await makeMediaTree(media, { files: 12, seed: 5 });
    succeeded(await backupHandler({ type: 'full' }, makeLambdaContext()));
    emitted();

    const report = await monitorHandler({}, makeLambdaContext());

    expect(report.status).toBe('ok');
    expect(report.checks.filter((c) => c.status !== 'ok').map((c) => c.name)).toEqual([]);
    expect(report.store).toBe(store.url);
    const metrics = metricValues(emitted());
    expect(metrics).toEqual({
      HoursSinceLastBackup: report.metrics.hoursSinceLastBackup,
      HealthCritical: 0,
      HealthWarning: 0,
    });
    expect(report.metrics.hoursSinceLastBackup).toBeLessThan(1);
  });

  it('does not throw for an empty store: it reports critical and leaves out HoursSinceLastBackup', async () => {
    const report = await monitorHandler(undefined, makeLambdaContext());

    expect(report.status).toBe('critical');
    expect(report.checks.find((c) => c.name === 'backup-age')?.status).toBe('critical');
    const metrics = metricValues(emitted());
    expect(metrics).not.toHaveProperty('HoursSinceLastBackup');
    expect(metrics.HealthCritical).toBe(1);
    expect(metrics.HealthWarning).toBe(1);
  });

  it('finds a broken chain in S3', async () => {
    await makeMediaTree(media, { files: 12, seed: 6 });
    const full = succeeded(await backupHandler({ type: 'full' }, makeLambdaContext()));
    await unlink(path.join(media, (await listFiles(media))[0]));
    succeeded(await backupHandler({ type: 'incremental' }, makeLambdaContext()));
    // Stands in for an operator's mistake: the backup role itself cannot delete.
    await store.client.send(
      new DeleteObjectCommand({ Bucket: s3.bucket, Key: `${store.prefix}${full.archiveKey}` }),
    );
    emitted();

    const report = await monitorHandler({}, makeLambdaContext());

    const byName = Object.fromEntries(report.checks.map((c) => [c.name, c.status]));
    expect(byName).toMatchObject({ 'last-run': 'ok', integrity: 'critical', chain: 'critical' });
    expect(report.status).toBe('critical');
    expect(metricValues(emitted()).HealthCritical).toBe(2);
  });

  it('measures the file system through EFS DescribeFileSystems when FILE_SYSTEM_ID is set', async () => {
    vi.stubEnv('FILE_SYSTEM_ID', FS_ID);
    vi.stubEnv('EFS_WARN_BYTES', '1000000000');
    efs
      .on(DescribeFileSystemsCommand, { FileSystemId: FS_ID })
      .resolves({ FileSystems: [{ SizeInBytes: { Value: 2_500_000_000 } } as never] });
    await makeMediaTree(media, { files: 3 });
    succeeded(await backupHandler({ type: 'full' }, makeLambdaContext()));

    const report = await monitorHandler({}, makeLambdaContext());

    expect(report.checks.find((c) => c.name === 'efs-usage')).toMatchObject({
      status: 'warning',
      value: 2_500_000_000,
    });
    expect(report.metrics.efsBytes).toBe(2_500_000_000);
    expect(efs.commandCalls(DescribeFileSystemsCommand)).toHaveLength(1);
  });

  it('rejects an event with fields, and bad settings naming the variable', async () => {
    await expect(monitorHandler({ deep: true }, makeLambdaContext())).rejects.toThrow(EventValidationError);
    await expect(monitorHandler({ deep: true }, makeLambdaContext())).rejects.toThrow(
      /unknown field `deep`: the monitor takes no fields/,
    );
    vi.stubEnv('MAX_BACKUP_AGE_HOURS', 'two days');
    await expect(monitorHandler({}, makeLambdaContext())).rejects.toThrow(HandlerConfigError);
    await expect(monitorHandler({}, makeLambdaContext())).rejects.toThrow(/MAX_BACKUP_AGE_HOURS/);
  });

  it('reads its thresholds from the environment', () => {
    expect(
      readMonitorConfig({
        MAX_BACKUP_AGE_HOURS: '30',
        MIN_BACKUP_BYTES: '5000000',
        MAX_SHRINK_PERCENT: '20',
        RETENTION_DAYS: '14',
        EFS_WARN_BYTES: '1000',
        FILE_SYSTEM_ID: FS_ID,
      }),
    ).toEqual({
      fileSystemId: FS_ID,
      health: {
        maxBackupAgeHours: 30,
        minBackupBytes: 5_000_000,
        maxShrinkPercent: 20,
        retentionDays: 14,
        efsWarnBytes: 1000,
      },
    });
    expect(() => readMonitorConfig({ FILE_SYSTEM_ID: 'my-fs' })).toThrow(/FILE_SYSTEM_ID/);
  });
});

describe('backup and verify metrics', () => {
  it('backup: BackupSucceeded, sizes and duration on success; BackupFailed when it fails', async () => {
    await makeMediaTree(media, { files: 10, seed: 7 });
    const result = succeeded(await backupHandler({ type: 'full' }, makeLambdaContext()));

    const ok = metricValues(emitted());
    expect(ok).toMatchObject({
      BackupSucceeded: 1,
      BackupFailed: 0,
      ArchiveBytes: result.archiveBytes,
      SourceBytes: result.bytes,
      ChangedFiles: 10,
    });
    expect(ok.DurationSeconds).toEqual(expect.any(Number));

    await rm(media, { recursive: true, force: true });
    await expect(backupHandler({ type: 'auto' }, makeLambdaContext())).rejects.toThrow();
    expect(metricValues(emitted())).toMatchObject({ BackupSucceeded: 0, BackupFailed: 1 });
  });

  it('verify: VerifyFailures 0 when the backup checks out, the failed count when not', async () => {
    await makeMediaTree(media, { files: 6, seed: 8 });
    succeeded(await backupHandler({ type: 'full' }, makeLambdaContext()));
    emitted();

    await verifyHandler({ deep: true }, makeLambdaContext());
    expect(metricValues(emitted())).toEqual({ VerifyFailures: 0 });

    const [latest] = await listCommittedBackups(store);
    await store.put(latest.archiveKey, Buffer.from('not the archive'), { tier: 'archive' });
    await expect(verifyHandler({}, makeLambdaContext())).rejects.toThrow(VerifyFailedError);
    expect(metricValues(emitted())).toEqual({ VerifyFailures: 1 });
  });
});

async function listFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
}
