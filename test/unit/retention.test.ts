import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { lifecycleExpiry, readRetention, retentionReport } from '../../lambda/core/repository/retention.js';
import { classifyObject, usageReport } from '../../lambda/core/repository/usage.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree } from '../fixtures/media-tree.js';

const object = (key: string, size: number, lastModified: string) =>
  classifyObject({ key, size, lastModified: new Date(lastModified) });

/** A full on Dec 1, an incremental on Dec 2, an aborted run on Dec 20, and the status object. */
const LISTING = [
  object('full/backup_20251201_020000.tar.gz', 5_000_000, '2025-12-01T02:05:00Z'),
  object('full/backup_20251201_020000.tar.gz.metadata.json', 1_000, '2025-12-01T02:05:01Z'),
  object('full/backup_20251201_020000.manifest.jsonl.gz', 2_000, '2025-12-01T02:05:02Z'),
  object('incremental/backup_20251202_020000.tar.gz', 300_000, '2025-12-02T02:01:00Z'),
  object('incremental/backup_20251202_020000.tar.gz.metadata.json', 1_000, '2025-12-02T02:01:01Z'),
  object('incremental/backup_20251202_020000.manifest.jsonl.gz', 2_100, '2025-12-02T02:01:02Z'),
  object('incremental/backup_20251220_020000.tar.gz', 70_000, '2025-12-20T02:01:00Z'),
  object('status/last-run.json', 400, '2025-12-20T02:01:03Z'),
];

describe('lifecycleExpiry', () => {
  it.each([
    ['2025-12-01T02:05:00Z', 37, '2026-01-08T00:00:00.000Z'],
    ['2025-12-01T23:59:59Z', 1, '2025-12-03T00:00:00.000Z'],
    ['2025-12-01T00:00:00Z', 1, '2025-12-03T00:00:00.000Z'],
  ])('%s + %i days rounds up to the next midnight UTC: %s', (created, days, expected) => {
    expect(lifecycleExpiry(new Date(created), days).toISOString()).toBe(expected);
  });
});

describe('retentionReport (cleanup simulation)', () => {
  const now = new Date('2026-01-05T12:00:00Z');
  const references = new Map([
    ['backup_20251201_020000', ['full/backup_20251201_020000.tar.gz']],
    [
      'backup_20251202_020000',
      ['full/backup_20251201_020000.tar.gz', 'incremental/backup_20251202_020000.tar.gz'],
    ],
  ]);

  it('dates each backup by retention + full interval after its objects were written', () => {
    const report = retentionReport('file:///store', LISTING, now, {}, references);

    expect(report).toMatchObject({ retentionDays: 30, fullIntervalDays: 7, expireAfterDays: 37 });
    expect(report.backups).toEqual([
      {
        backupId: 'backup_20251201_020000',
        type: 'full',
        committed: true,
        createdAt: '2025-12-01T02:00:00.000Z',
        objects: 3,
        bytes: 5_003_000,
        expiresAt: '2026-01-08T00:00:00.000Z',
        daysLeft: 2.5,
        restorableUntil: '2026-01-08T00:00:00.000Z',
      },
      {
        backupId: 'backup_20251202_020000',
        type: 'incremental',
        committed: true,
        createdAt: '2025-12-02T02:00:00.000Z',
        objects: 3,
        bytes: 303_100,
        expiresAt: '2026-01-09T00:00:00.000Z',
        daysLeft: 3.5,
        // Its files in the full's archive go a day earlier than its own objects.
        restorableUntil: '2026-01-08T00:00:00.000Z',
      },
      {
        backupId: 'backup_20251220_020000',
        type: 'incremental',
        committed: false,
        createdAt: '2025-12-20T02:00:00.000Z',
        objects: 1,
        bytes: 70_000,
        expiresAt: '2026-01-27T00:00:00.000Z',
        daysLeft: 21.5,
        restorableUntil: null,
      },
    ]);
    expect(report.expiringSoon).toEqual({
      horizonDays: 7,
      backups: ['backup_20251201_020000', 'backup_20251202_020000'],
      bytes: 5_306_100,
    });
    expect(report.kept).toEqual({ objects: 1, bytes: 400 });
  });

  it('follows the retention settings and the horizon', () => {
    const report = retentionReport('file:///store', LISTING, now, {
      retentionDays: 60,
      fullIntervalDays: 14,
      horizonDays: 30,
    });

    expect(report.expireAfterDays).toBe(74);
    expect(report.backups[0].expiresAt).toBe('2026-02-14T00:00:00.000Z');
    expect(report.expiringSoon.backups).toEqual([]);
    // Without references the restore horizon is unknown.
    expect(report.backups[0].restorableUntil).toBeNull();
  });

  it('marks objects past their expiry as due (0 or fewer days left)', () => {
    const report = retentionReport('file:///store', LISTING, new Date('2026-01-10T00:00:00Z'));

    expect(report.backups.map((b) => b.daysLeft)).toEqual([-2, -1, 17]);
  });
});

describe('readRetention over a real store', () => {
  const dirs = tempDirs();
  afterEach(() => dirs.cleanup());

  it('reads the manifests so an incremental is restorable only while its full lives', async () => {
    const source = await dirs.make('ret-src-');
    const store = new FsObjectStore(await dirs.make('ret-store-'));
    const clock = tickingClock();
    await makeMediaTree(source, { files: 8 });
    const full = await runBackup({ store, clock, logger: silentLogger }, { source, type: 'full' });
    await writeFile(path.join(source, 'new.txt'), 'new');
    const inc = await runBackup({ store, clock, logger: silentLogger }, { source, type: 'incremental' });

    const report = await readRetention({ store }, new Date(), { retentionDays: 30, fullIntervalDays: 7 });

    const [f, i] = report.backups;
    expect(f.backupId).toBe(full.backupId);
    expect(i.backupId).toBe(inc.backupId);
    expect(i.restorableUntil).not.toBeNull();
    expect(Date.parse(i.restorableUntil ?? '')).toBeLessThanOrEqual(Date.parse(f.expiresAt));
  });
});

describe('usageReport', () => {
  it('sums bytes by type, by month, and for the last 7 days', () => {
    const report = usageReport('file:///store', LISTING, new Date('2025-12-21T00:00:00Z'));

    expect(report.total).toEqual({ objects: 8, bytes: 5_376_500 });
    expect(report.byType).toEqual({
      full: { objects: 1, bytes: 5_000_000 },
      incremental: { objects: 2, bytes: 370_000 },
      metadata: { objects: 2, bytes: 2_000 },
      manifests: { objects: 2, bytes: 4_100 },
      status: { objects: 1, bytes: 400 },
      other: { objects: 0, bytes: 0 },
    });
    expect(report.byMonth.map((m) => [m.month, m.total.bytes])).toEqual([['2025-12', 5_376_500]]);
    expect(report.lastWeek).toEqual({ objects: 2, bytes: 70_400 });
  });

  it('splits by the month objects were written', () => {
    const report = usageReport(
      'file:///store',
      [...LISTING, object('full/backup_20260104_020000.tar.gz', 6_000_000, '2026-01-04T02:10:00Z')],
      new Date('2026-01-05T00:00:00Z'),
    );

    expect(report.byMonth.map((m) => [m.month, m.byType.full.bytes])).toEqual([
      ['2025-12', 5_000_000],
      ['2026-01', 6_000_000],
    ]);
  });
});
