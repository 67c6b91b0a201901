import { appendFile, mkdir, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DescribeFileSystemsCommand, EFSClient } from '@aws-sdk/client-efs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import {
  type HealthCheckName,
  type HealthOptions,
  type HealthReport,
  runHealthChecks,
  VERIFY_STATUS_KEY,
} from '../../lambda/core/checker/health.js';
import { type Clock, silentLogger } from '../../lambda/core/deps.js';
import { STATUS_KEY } from '../../lambda/core/repository/layout.js';
import { efsUsage } from '../../lambda/handlers/monitor.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { DAY, tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree } from '../fixtures/media-tree.js';

const HOUR = 3_600_000;
/** The ticking clock starts here; its first backup is taken one second later. */
const START = '2025-12-27T02:00:00Z';
const FIRST_BACKUP = Date.parse(START) + 1000;

const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
let clock: ReturnType<typeof tickingClock>;

beforeEach(async () => {
  source = await dirs.make('health-src-');
  storeDir = await dirs.make('health-store-');
  store = new FsObjectStore(storeDir);
  clock = tickingClock(START);
});
afterEach(() => dirs.cleanup());

const at = (ms: number): Clock => ({ now: () => new Date(ms) });
const backup = (type: 'full' | 'incremental' | 'auto' = 'auto') =>
  runBackup({ store, clock, logger: silentLogger }, { source, type });
const health = (
  now: number,
  options: HealthOptions = {},
  efs?: { usedBytes(): Promise<number | undefined> },
) => runHealthChecks({ store, clock: at(now), logger: silentLogger, efs }, options);
const check = (report: HealthReport, name: HealthCheckName) => {
  const found = report.checks.find((c) => c.name === name);
  if (!found) throw new Error(`no ${name} check in ${JSON.stringify(report.checks)}`);
  return found;
};

/** `count` files of `size` bytes each, so percentages of files and bytes are the same. */
async function uniformTree(count: number, size = 10_000): Promise<string[]> {
  const names: string[] = [];
  await mkdir(path.join(source, 'media'), { recursive: true });
  for (let i = 0; i < count; i++) {
    const name = `media/file-${String(i).padStart(3, '0')}.bin`;
    await writeFile(path.join(source, name), Buffer.alloc(size, i));
    names.push(name);
  }
  return names;
}

async function wipe(): Promise<void> {
  await rm(source, { recursive: true, force: true });
  await mkdir(source);
}

async function setMtime(key: string, ms: number): Promise<void> {
  await utimes(path.join(storeDir, key), new Date(ms), new Date(ms));
}

describe('backup-age', () => {
  it.each([
    ['ok', 8, 'ok'],
    ['warning after 26 h', 30, 'warning'],
    ['critical after 48 h', 50, 'critical'],
  ] as const)('%s', async (_label, hours, expected) => {
    await makeMediaTree(source, { files: 10 });
    await backup('full');

    const report = await health(FIRST_BACKUP + hours * HOUR);

    expect(check(report, 'backup-age')).toMatchObject({ status: expected, value: hours });
    expect(report.metrics.hoursSinceLastBackup).toBe(hours);
  });

  it('is critical when the store has no committed backup, and reports no age', async () => {
    const report = await health(FIRST_BACKUP);

    expect(check(report, 'backup-age')).toMatchObject({ status: 'critical', value: null });
    expect(check(report, 'backup-age').message).toMatch(/no committed backup/);
    expect(report.status).toBe('critical');
    expect(report.metrics.hoursSinceLastBackup).toBeNull();
  });

  it('follows maxBackupAgeHours', async () => {
    await makeMediaTree(source, { files: 10 });
    await backup('full');

    const report = await health(FIRST_BACKUP + 13 * HOUR, { maxBackupAgeHours: 12 });

    expect(check(report, 'backup-age').status).toBe('critical');
    expect(check(report, 'backup-age').message).toMatch(/more than the 12 h allowed/);
  });
});

describe('last-run', () => {
  it('is ok after a successful run', async () => {
    await makeMediaTree(source, { files: 10 });
    const result = await backup('full');

    const report = await health(FIRST_BACKUP + HOUR);

    expect(check(report, 'last-run').status).toBe('ok');
    expect(check(report, 'last-run').message).toContain(result.backupId);
  });

  it('is critical with the error when the last run failed', async () => {
    await makeMediaTree(source, { files: 10 });
    await backup('full');
    await store.put(
      STATUS_KEY,
      JSON.stringify({
        status: 'FAILED',
        startedAt: '2025-12-28T02:00:00.000Z',
        finishedAt: '2025-12-28T02:03:00.000Z',
        error: { name: 'SourceError', message: 'the media folder /mnt/efs/media cannot be read' },
      }),
    );

    const report = await health(FIRST_BACKUP + 25 * HOUR);

    expect(check(report, 'last-run').status).toBe('critical');
    expect(check(report, 'last-run').message).toMatch(
      /failed .*SourceError: the media folder \/mnt\/efs\/media cannot be read/,
    );
    expect(report.status).toBe('critical');
  });

  it('is a warning when no run was ever recorded', async () => {
    await makeMediaTree(source, { files: 10 });
    await backup('full');
    await unlink(path.join(storeDir, STATUS_KEY));

    const report = await health(FIRST_BACKUP + HOUR);

    expect(check(report, 'last-run')).toMatchObject({ status: 'warning' });
    expect(check(report, 'last-run').message).toMatch(/never run/);
  });
});

describe('integrity of the latest chain', () => {
  it('is ok when every archive is present with its recorded size, and with --hash', async () => {
    await makeMediaTree(source, { files: 10 });
    await backup('full');
    await writeFile(path.join(source, 'new.txt'), 'new');
    await backup('incremental');

    expect(check(await health(FIRST_BACKUP + HOUR), 'integrity').status).toBe('ok');
    expect(check(await health(FIRST_BACKUP + HOUR, { hashLatest: true }), 'integrity').message).toMatch(
      /and sha256/,
    );
  });

  it('is critical when an archive the latest backup needs is missing or has the wrong size', async () => {
    await makeMediaTree(source, { files: 10 });
    const full = await backup('full');
    await writeFile(path.join(source, 'new.txt'), 'new');
    const inc = await backup('incremental');
    await appendFile(path.join(storeDir, inc.archiveKey), 'garbage');
    await unlink(path.join(storeDir, full.archiveKey));

    const report = await health(FIRST_BACKUP + HOUR);

    const integrity = check(report, 'integrity');
    expect(integrity.status).toBe('critical');
    expect(integrity.message).toContain(
      `archive ${full.archiveKey}, which holds some of its files, is missing`,
    );
    expect(integrity.message).toMatch(/bytes; the metadata recorded/);
  });

  it('is a warning when only the metadata is missing (a restore still works)', async () => {
    await makeMediaTree(source, { files: 10 });
    const full = await backup('full');
    await unlink(path.join(storeDir, `${full.archiveKey}.metadata.json`));

    const report = await health(FIRST_BACKUP + HOUR);

    expect(check(report, 'integrity').status).toBe('warning');
    expect(check(report, 'integrity').message).toMatch(/metadata .* missing/);
  });
});

describe('deep-verify', () => {
  const record = (status: 'SUCCEEDED' | 'FAILED', checkedAt: string) =>
    store.put(
      VERIFY_STATUS_KEY,
      JSON.stringify({
        status,
        deep: true,
        checkedAt,
        backups: [
          {
            backupId: 'backup_20251227_020001',
            ok: status === 'SUCCEEDED',
            problems: status === 'FAILED' ? ['file avatars/u1.jpg has sha256 0000'] : [],
          },
        ],
      }),
    );

  beforeEach(async () => {
    await makeMediaTree(source, { files: 5 });
    await backup('full');
  });

  it('is ok, pointing at the VerifyFailures alarm, when no drill is recorded', async () => {
    const c = check(await health(FIRST_BACKUP + HOUR), 'deep-verify');
    expect(c.status).toBe('ok');
    expect(c.message).toMatch(/VerifyFailures/);
  });

  it.each([
    ['ok for a recent passed drill', 'SUCCEEDED', 2, 'ok', /passed for 1 backup/],
    ['a warning for a drill older than 8 days', 'SUCCEEDED', 9, 'warning', /not running/],
    ['critical for a failed drill', 'FAILED', 1, 'critical', /avatars\/u1\.jpg/],
  ] as const)('is %s', async (_label, status, daysAgo, expected, message) => {
    const now = FIRST_BACKUP + 10 * DAY;
    await record(status, new Date(now - daysAgo * DAY).toISOString());

    const c = check(
      await health(now, { maxBackupAgeHours: 24 * 30, warnBackupAgeHours: 24 * 30 }),
      'deep-verify',
    );

    expect(c.status).toBe(expected);
    expect(c.message).toMatch(message);
  });
});

describe('size', () => {
  it('is ok for a normal archive, and for a small archive of a tiny tree', async () => {
    await uniformTree(20);
    await backup('full');

    expect(check(await health(FIRST_BACKUP + HOUR, { minBackupBytes: 1000 }), 'size').status).toBe('ok');
    const tiny = check(await health(FIRST_BACKUP + HOUR), 'size');
    expect(tiny.status).toBe('ok');
    expect(tiny.message).toMatch(/the tree is small .* expected/);
  });

  it('is critical when the full archive is below minBackupBytes although the tree is not tiny', async () => {
    // 200 KB of zeros compresses to a few KB: below a 100 KB minimum for a tree above 50 KB.
    await uniformTree(20);
    await backup('full');

    const c = check(
      await health(FIRST_BACKUP + HOUR, { minBackupBytes: 100_000, tinyTreeBytes: 50_000 }),
      'size',
    );

    expect(c.status).toBe('critical');
    expect(c.message).toMatch(/suspiciously small/);
  });

  it('is critical when the latest backup holds no files (empty or unmounted folder)', async () => {
    await uniformTree(5);
    await backup('full');
    await wipe();
    await backup('incremental');

    const c = check(await health(FIRST_BACKUP + HOUR), 'size');

    expect(c).toMatchObject({ status: 'critical', value: 0 });
    expect(c.message).toMatch(/holds no files/);
  });

  it('is a warning when the full backup has no readable metadata', async () => {
    await uniformTree(5);
    const full = await backup('full');
    await writeFile(path.join(storeDir, `${full.archiveKey}.metadata.json`), '{not json');

    expect(check(await health(FIRST_BACKUP + HOUR), 'size').status).toBe('warning');
  });
});

describe('shrink', () => {
  it.each([
    ['ok when 2 of 20 files went away', 2, 'ok', 10],
    ['a warning when 7 of 20 went away (35%)', 7, 'warning', 35],
    ['critical when 12 of 20 went away (60%)', 12, 'critical', 60],
  ] as const)('is %s', async (_label, removed, expected, percent) => {
    const names = await uniformTree(20);
    await backup('full');
    for (const name of names.slice(0, removed)) await unlink(path.join(source, name));
    await backup('incremental');

    const c = check(await health(FIRST_BACKUP + HOUR), 'shrink');

    expect(c).toMatchObject({ status: expected, value: percent });
  });

  it('stays critical after the wiped folder is backed up again (no new normal)', async () => {
    await uniformTree(20);
    const full = await backup('full');
    await wipe();
    await backup('incremental');
    await backup('incremental');

    const c = check(await health(FIRST_BACKUP + HOUR), 'shrink');

    expect(c.status).toBe('critical');
    expect(c.message).toContain(`restore from ${full.backupId}`);
  });

  it('is ok with a single backup (nothing to compare)', async () => {
    await uniformTree(3);
    await backup('full');

    expect(check(await health(FIRST_BACKUP + HOUR), 'shrink')).toMatchObject({ status: 'ok' });
  });
});

describe('chain completeness', () => {
  it('is ok when every retained manifest has its archives', async () => {
    await makeMediaTree(source, { files: 10 });
    await backup('full');
    await writeFile(path.join(source, 'new.txt'), 'new');
    await backup('incremental');

    expect(check(await health(FIRST_BACKUP + HOUR), 'chain')).toMatchObject({ status: 'ok', value: 0 });
  });

  it('is critical when a backup within retention references a missing archive', async () => {
    await makeMediaTree(source, { files: 10 });
    const full = await backup('full');
    await writeFile(path.join(source, 'new.txt'), 'new');
    const inc = await backup('incremental');
    await unlink(path.join(storeDir, full.archiveKey));

    const c = check(await health(FIRST_BACKUP + HOUR), 'chain');

    expect(c).toMatchObject({ status: 'critical', value: 2 });
    expect(c.message).toContain(`${inc.backupId} needs missing ${full.archiveKey}`);
  });

  it('is a warning when only backups past retention are incomplete (the lifecycle is removing them)', async () => {
    await makeMediaTree(source, { files: 10 });
    const full = await backup('full');
    await unlink(path.join(storeDir, full.archiveKey));

    const c = check(await health(FIRST_BACKUP + 31 * DAY, { retentionDays: 30 }), 'chain');

    expect(c.status).toBe('warning');
    expect(c.message).toMatch(/older than 30 days/);
  });
});

describe('orphans', () => {
  const orphanKey = 'full/backup_20251226_020000.tar.gz';

  beforeEach(async () => {
    await makeMediaTree(source, { files: 5 });
    await backup('full');
  });

  it('is ok without uncommitted archives', async () => {
    expect(check(await health(FIRST_BACKUP + HOUR), 'orphans')).toMatchObject({ status: 'ok', value: 0 });
  });

  it('is a warning for an archive without a manifest older than a day', async () => {
    const now = FIRST_BACKUP + HOUR;
    await store.put(orphanKey, Buffer.alloc(5000));
    await setMtime(orphanKey, now - 25 * HOUR);

    const c = check(await health(now), 'orphans');

    expect(c).toMatchObject({ status: 'warning', value: 1 });
    expect(c.message).toContain('backup_20251226_020000');
    expect(c.message).toContain('5.0 KB');
  });

  it('is a warning naming the partial file a killed run left, once nothing has written it for 30 min', async () => {
    const now = FIRST_BACKUP + HOUR;
    const partial = 'full/backup_20251227_030000.tar.gz.partial-0a1b2c';
    await writeFile(path.join(storeDir, partial), Buffer.alloc(7000));
    await setMtime(partial, now - 31 * 60_000);

    const c = check(await health(now), 'orphans');

    expect(c).toMatchObject({ status: 'warning', value: 1 });
    expect(c.message).toContain(partial);
    expect(c.message).toContain('7.0 KB');
    expect(c.message).toMatch(/next backup removes them/);
  });

  it('ignores a partial file still being written (fresh mtime)', async () => {
    const now = FIRST_BACKUP + HOUR;
    const partial = 'full/backup_20251227_030000.tar.gz.partial-0a1b2c';
    await writeFile(path.join(storeDir, partial), Buffer.alloc(7000));
    await setMtime(partial, now - 60_000);

    expect(check(await health(now), 'orphans')).toMatchObject({ status: 'ok', value: 0 });
  });

  it('is ok for a recent one (a run may be in progress)', async () => {
    const now = FIRST_BACKUP + HOUR;
    await store.put(orphanKey, Buffer.alloc(5000));
    await setMtime(orphanKey, now - HOUR);

    const c = check(await health(now), 'orphans');

    expect(c.status).toBe('ok');
    expect(c.message).toMatch(/run in progress/);
  });
});

describe('storage and EFS usage', () => {
  beforeEach(async () => {
    await makeMediaTree(source, { files: 5 });
    await backup('full');
  });

  it('reports store bytes by type', async () => {
    const report = await health(FIRST_BACKUP + HOUR);

    const c = check(report, 'storage');
    expect(c.status).toBe('ok');
    expect(c.message).toMatch(/full .*metadata .*manifests .*status/);
    expect(c.value).toBe(report.metrics.storeBytes);
    expect(report.metrics.storeBytes).toBeGreaterThan(0);
  });

  it.each([
    ['ok below the threshold', 5_000, 'ok'],
    ['a warning above it', 50_000, 'warning'],
  ] as const)('EFS usage is %s', async (_label, used, expected) => {
    const report = await health(
      FIRST_BACKUP + HOUR,
      { efsWarnBytes: 10_000 },
      { usedBytes: async () => used },
    );

    expect(check(report, 'efs-usage')).toMatchObject({ status: expected, value: used });
    expect(report.metrics.efsBytes).toBe(used);
  });

  it('omits the EFS check without a source and says so when the size is unavailable', async () => {
    expect((await health(FIRST_BACKUP + HOUR)).checks.map((c) => c.name)).not.toContain('efs-usage');
    const report = await health(FIRST_BACKUP + HOUR, {}, { usedBytes: async () => undefined });
    expect(check(report, 'efs-usage')).toMatchObject({ status: 'ok', value: null });
    expect(report.metrics.efsBytes).toBeNull();
  });

  it('is a warning, not a failed monitor, when EFS cannot be asked', async () => {
    const report = await health(
      FIRST_BACKUP + HOUR,
      {},
      {
        usedBytes: () => Promise.reject(new Error('AccessDenied: elasticfilesystem:DescribeFileSystems')),
      },
    );

    expect(check(report, 'efs-usage').status).toBe('warning');
    expect(check(report, 'efs-usage').message).toMatch(/AccessDenied/);
  });
});

describe('EFS DescribeFileSystems source', () => {
  const efs = mockClient(EFSClient);
  beforeEach(() => efs.reset());

  it('reads SizeInBytes.Value of the file system', async () => {
    efs
      .on(DescribeFileSystemsCommand, { FileSystemId: 'fs-0123456789abcdef0' })
      .resolves({ FileSystems: [{ SizeInBytes: { Value: 123_456_789 } } as never] });

    await expect(efsUsage(new EFSClient({}), 'fs-0123456789abcdef0').usedBytes()).resolves.toBe(123_456_789);
  });

  it('is undefined when the file system reports no size', async () => {
    efs.on(DescribeFileSystemsCommand).resolves({ FileSystems: [] });

    await expect(efsUsage(new EFSClient({}), 'fs-0123456789abcdef0').usedBytes()).resolves.toBeUndefined();
  });

  it('rejects when the call fails', async () => {
    efs.on(DescribeFileSystemsCommand).rejects(new Error('FileSystemNotFound'));

    await expect(efsUsage(new EFSClient({}), 'fs-0123456789abcdef0').usedBytes()).rejects.toThrow(
      /FileSystemNotFound/,
    );
  });
});

describe('overall report', () => {
  it('takes the worst status and counts warnings and criticals', async () => {
    await makeMediaTree(source, { files: 10 });
    await backup('full');

    const ok = await health(FIRST_BACKUP + HOUR, { minBackupBytes: 1 });
    // A fresh, healthy store has nothing to warn about.
    expect(ok.status).toBe('ok');
    expect(ok.checks.filter((c) => c.status !== 'ok').map((c) => c.name)).toEqual([]);
    expect(ok.metrics).toMatchObject({ critical: 0, warning: 0, hoursSinceLastBackup: 1 });

    const late = await health(FIRST_BACKUP + 60 * HOUR);
    expect(late.status).toBe('critical');
    expect(late.metrics).toMatchObject({ critical: 1, warning: 0 });
    expect(late.checkedAt).toBe(new Date(FIRST_BACKUP + 60 * HOUR).toISOString());
  });
});
