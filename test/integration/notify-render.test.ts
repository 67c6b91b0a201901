import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type AlarmStateChange,
  CHART_DAYS,
  type DestinationRecord,
  type EmailContext,
  formatAlarm,
  formatDigest,
  formatInvocationFailure,
  formatInvocationSuccess,
  MAIL_WIDTH_PX,
  type NotificationEmail,
} from '../../lambda/core/reports/notify-format.js';
import type { BackupListing } from '../../lambda/core/repository/status.js';
import { chromiumUnavailable, type LayoutReport, renderHtml } from '../fixtures/chromium.js';

// Issue 11, "Emails a tired operator reads at a glance": every email rendered by headless Chromium
// at a 600 px mail width. The PNGs stay outside git, in the OS temp folder (path below), to look at.

const why = chromiumUnavailable();
if (why) console.warn(`email rendering tests skipped: ${why}`);

/** Where the screenshots go (kept after the run). */
const RENDER_DIR = path.join(tmpdir(), 'media-backup-email-renders');

const ctx: EmailContext = {
  stackName: 'MediaBackupStack',
  timeZone: 'Europe/Berlin',
  locations: {
    mount: '/mnt/efs',
    mediaPath: 'media',
    restoresPath: 'restores',
    store: 's3://mediabackupstack-backupbucket-1x2y3z4a5b6c/media-backups/',
  },
};
const RED = 'rgb(179, 38, 30)';
const AMBER = 'rgb(138, 83, 0)';
const GREEN = 'rgb(27, 110, 42)';
const NOW = new Date('2026-11-23T08:00:00.000Z');
const RESTORE_ARN =
  'arn:aws:lambda:eu-central-1:123456789012:function:MediaBackupStack-RestoreFunction7A2B9C1D-AbCdEfGhIjKl:$LATEST';

function restoreFailure(): DestinationRecord {
  return {
    version: '1.0',
    timestamp: '2026-11-23T09:00:00.000Z',
    requestContext: {
      requestId: 'c0ffee00-1111-2222-3333-444455556666',
      functionArn: RESTORE_ARN,
      condition: 'RetriesExhausted',
      approximateInvokeCount: 1,
    },
    requestPayload: {
      backup: 'latest',
      mode: 'replace',
      paths: ['photos/2026/a-very-long-album-name-without-any-spaces-at-all-that-goes-on-and-on'],
    },
    responseContext: { statusCode: 200, functionError: 'Unhandled' },
    responsePayload: {
      errorType: 'RestoreTargetError',
      errorMessage: `cannot write /mnt/efs/media/.restore-staging-backup_20261122_030000/${'x'.repeat(180)}.jpg: no space left on device (ENOSPC); the live media folder is untouched`,
      trace: [
        'RestoreTargetError: cannot write /mnt/efs/media/.restore-staging-backup_20261122_030000/...',
        `    at writeEntry (file:///var/task/index.mjs:1:${'9'.repeat(120)})`,
      ],
    },
  };
}

function listing(
  backupId: string,
  type: 'full' | 'incremental',
  archiveBytes: number,
  changedFiles: number,
  baseBackupId: string | null,
): BackupListing {
  const m = /^backup_(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})$/.exec(backupId)!;
  return {
    backupId,
    type,
    createdAt: `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.000Z`,
    baseBackupId,
    archiveKey: `${type}/${backupId}.tar.gz`,
    archiveBytes,
    files: 48_211,
    bytes: 212 * 1024 ** 3,
    changedFiles,
    skipped: 0,
  };
}

/** 20 days of history: fulls every 7 days, two missed nights, two runs on one day. */
function history(): BackupListing[] {
  const out: BackupListing[] = [];
  let base: string | null = null;
  for (let day = 4; day <= 23; day += 1) {
    const d = String(day).padStart(2, '0');
    if (day === 14 || day === 15) continue; // missed nights: gaps
    const full = day === 8 || day === 16 || day === 22;
    const id = `backup_202611${d}_030000`;
    out.push(
      listing(
        id,
        full ? 'full' : 'incremental',
        full ? 180 * 1024 ** 3 : (day % 5) * 900 * 1024 ** 2 + 40 * 1024 ** 2,
        full ? 48_211 : 120 + day * 17,
        full ? null : base,
      ),
    );
    base = id;
    if (day === 19) {
      const extra = 'backup_20261119_141500';
      out.push(listing(extra, 'incremental', 3 * 1024 ** 3, 2_040, base));
      base = extra;
    }
  }
  return out;
}

const EMAILS: Record<string, { email: () => NotificationEmail; tone: string; label: string }> = {
  'restore-failure': {
    email: () =>
      formatInvocationFailure(
        restoreFailure(),
        { backupId: 'backup_20261122_030000', createdAt: '2026-11-22T03:00:00.000Z' },
        ctx,
      ),
    tone: RED,
    label: 'RESTORE FAILED',
  },
  'alarm-backup-failed': {
    email: () =>
      formatAlarm(
        {
          AlarmName: 'MediaBackupStack-failing',
          AlarmDescription:
            'A backup failed, errored, is overdue, or health is critical. One mail per failure: open the alarm for the child that fired.',
          NewStateValue: 'ALARM',
          OldStateValue: 'OK',
          NewStateReason:
            'MediaBackupStack-backup-failed transitioned to ALARM at Monday 23 November, 2026 03:05:00 UTC',
          StateChangeTime: '2026-11-23T03:05:12.000+0000',
          AlarmArn: 'arn:aws:cloudwatch:eu-central-1:123456789012:alarm:MediaBackupStack-failing',
        } satisfies AlarmStateChange,
        {
          defaultRegion: 'eu-central-1',
          lastRun: {
            status: 'FAILED',
            startedAt: '2026-11-23T03:00:00.000Z',
            finishedAt: '2026-11-23T03:00:04.000Z',
            error: {
              name: 'SourceError',
              message:
                'source folder /mnt/efs/media does not exist. Fix the mount: ...; nothing was backed up.',
            },
          },
        },
        ctx,
      ),
    tone: RED,
    label: 'ALARM',
  },
  'restore-finished': {
    email: () => {
      const email = formatInvocationSuccess(
        {
          ...restoreFailure(),
          requestContext: { ...restoreFailure().requestContext, condition: 'Success' },
          requestPayload: { backup: 'latest' },
          responsePayload: {
            backupId: 'backup_20261122_030000',
            targetPath: 'restores/backup_20261122_030000',
            mode: 'new-folder',
            files: 48_211,
            bytes: 212 * 1024 ** 3,
            verified: true,
          },
        },
        ctx,
      );
      if (!email) throw new Error('a finished restore sends an email');
      return email;
    },
    tone: GREEN,
    label: 'RESTORE FINISHED',
  },
  'digest-warning': {
    email: () =>
      formatDigest(
        {
          now: NOW,
          backups: history(),
          store: ctx.locations?.store,
          health: {
            status: 'warning',
            checks: [
              {
                name: 'backup-age',
                status: 'ok',
                message: 'The latest backup (backup_20261123_030000) is 5 hours old.',
              },
              { name: 'last-run', status: 'ok', message: 'The last run succeeded.' },
              { name: 'integrity', status: 'ok', message: 'The latest backup chain is complete.' },
              {
                name: 'deep-verify',
                status: 'warning',
                message:
                  'The last deep verify ran 12 days ago (more than 8): run "media-backup verify --deep" or check the weekly verify schedule.',
              },
              { name: 'shrink', status: 'ok', message: 'No shrink beyond 25% in 7 days.' },
            ],
          },
        },
        ctx,
      ),
    tone: AMBER,
    label: 'WARNING',
  },
  'digest-unreadable': {
    email: () => formatDigest({ now: NOW, backups: 'unknown' }, ctx),
    tone: RED,
    label: 'STORE UNREADABLE',
  },
};

async function render(name: string): Promise<LayoutReport> {
  mkdirSync(RENDER_DIR, { recursive: true });
  return renderHtml(EMAILS[name].email().html, {
    width: MAIL_WIDTH_PX,
    height: 1400,
    png: path.join(RENDER_DIR, `${name}.png`),
  });
}

function expectReadableAt600(report: LayoutReport, name: string): void {
  expect(report.innerWidth).toBe(MAIL_WIDTH_PX);
  expect(report.scrollWidth, 'a horizontal scroll bar').toBeLessThanOrEqual(MAIL_WIDTH_PX);
  expect(report.overflowing, 'elements past the 600 px edge or overflowing their box').toEqual([]);
  expect(report.mailWidth).toBeLessThanOrEqual(MAIL_WIDTH_PX);
  expect(report.active, 'no scripts, images or stylesheets').toEqual({ scripts: 0, images: 0, links: 0 });
  // The banner is the first thing: colored by outcome, with its label and verdict.
  expect(report.banner).not.toBeNull();
  expect(report.banner!.top).toBeLessThan(40);
  expect(report.banner!.background).toBe(EMAILS[name].tone);
  expect(report.banner!.color).toBe('rgb(255, 255, 255)');
  expect(report.banner!.text.startsWith(EMAILS[name].label)).toBe(true);
}

describe.skipIf(why !== undefined)('emails rendered by headless Chromium at 600 px', () => {
  it('measures for real: a page wider than 600 px is reported as overflowing', async () => {
    mkdirSync(RENDER_DIR, { recursive: true });
    const report = await renderHtml(
      '<!DOCTYPE html><html><body style="margin:0"><table class="mail" style="width:700px"><tr><td>wide</td></tr></table></body></html>',
      { width: MAIL_WIDTH_PX, height: 200, png: path.join(RENDER_DIR, 'self-check.png') },
    );
    expect(report.scrollWidth).toBeGreaterThan(MAIL_WIDTH_PX);
    expect(report.overflowing.join(' ')).toContain('table.mail');
    expect(report.banner).toBeNull();
  }, 60_000);

  it.each(['restore-failure', 'alarm-backup-failed', 'restore-finished'])(
    '%s: banner on top, nothing wider than the mail',
    async (name) => {
      expectReadableAt600(await render(name), name);
    },
    60_000,
  );

  it('weekly digest: one chart row per day, gaps and fulls marked, bars to scale, the checks', async () => {
    const report = await render('digest-warning');
    expectReadableAt600(report, 'digest-warning');
    // 10 Nov .. 23 Nov in Europe/Berlin: 14 rows, the two missed nights as gaps, the fulls of the 16th and 22nd.
    expect(report.chartDays).toHaveLength(CHART_DAYS);
    expect(report.chartDays[0]).toBe('2026-11-10');
    expect(report.chartDays.at(-1)).toBe('2026-11-23');
    expect(report.chartGaps).toBe(2);
    expect(report.chartFulls).toBe(2);
    // Two bars (archive, changed files) per day with a backup; a full fills the archive column.
    expect(report.barWidths).toHaveLength(2 * (CHART_DAYS - 2));
    const archive = report.barWidths.filter((_, i) => i % 2 === 0);
    expect(Math.max(...archive)).toBeGreaterThan(150);
    expect(Math.min(...archive)).toBeLessThan(Math.max(...archive) / 20);
    expect(report.checks).toBe(5);
  }, 60_000);

  it('weekly digest of an unreadable store: red banner, no chart', async () => {
    const report = await render('digest-unreadable');
    expectReadableAt600(report, 'digest-unreadable');
    expect(report.chartDays).toEqual([]);
  }, 60_000);
});
