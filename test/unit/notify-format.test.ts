import { describe, expect, it } from 'vitest';
import {
  type AlarmStateChange,
  alarmConsoleUrl,
  alarmRegion,
  CHART_DAYS,
  chartDays,
  type DestinationRecord,
  type DigestCheck,
  escapeHtml,
  formatAlarm,
  formatBytes,
  formatDigest,
  formatInvocationFailure,
  formatInvocationSuccess,
  formatTime,
  inferOperation,
  oldestRestorePoint,
  retryCommand,
} from '../../lambda/core/reports/notify-format.js';
import type { BackupListing } from '../../lambda/core/repository/status.js';
import { classifyNotifyEvent, digestHealth, readNotifyConfig } from '../../lambda/handlers/notify.js';

const ctx = { stackName: 'MediaBackupStack' };
const OK_CHECK: DigestCheck = { name: 'backup-age', status: 'ok', message: 'fresh' };
const BACKUP_ARN =
  'arn:aws:lambda:eu-west-1:123456789012:function:MediaBackupStack-BackupFunction-AbC123:$LATEST';
const RESTORE_ARN = 'arn:aws:lambda:eu-west-1:123456789012:function:MediaBackupStack-RestoreFunction-XyZ9';

function failureRecord(overrides: Partial<DestinationRecord> = {}): DestinationRecord {
  return {
    version: '1.0',
    timestamp: '2025-12-28T02:14:03.123Z',
    requestContext: {
      requestId: 'c0ffee00-1111-2222-3333-444455556666',
      functionArn: BACKUP_ARN,
      condition: 'RetriesExhausted',
      approximateInvokeCount: 3,
    },
    requestPayload: { type: 'auto' },
    responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
    responsePayload: {
      errorType: 'SourceError',
      errorMessage: 'the media folder /mnt/efs/media does not exist',
      trace: ['SourceError: the media folder /mnt/efs/media does not exist', '    at resolveSourceRoot'],
    },
    ...overrides,
  };
}

function listing(backupId: string, createdAt: string, archiveBytes: number): BackupListing {
  return {
    backupId,
    type: backupId.endsWith('020000') ? 'full' : 'incremental',
    createdAt,
    baseBackupId: null,
    archiveKey: `full/${backupId}.tar.gz`,
    archiveBytes,
    files: 120,
    bytes: 5 * 1024 * 1024,
    changedFiles: 7,
    skipped: 0,
  };
}

describe('escapeHtml', () => {
  it('escapes the five HTML-significant characters', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe(
      '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;',
    );
  });
});

describe('inferOperation', () => {
  it.each([
    ['MediaBackupStack-RestoreFunction-XyZ9', { backup: 'latest' }, 'restore'],
    ['MediaBackupStack-VerifyFunction-1', { backup: 'latest' }, 'verify'],
    ['MediaBackupStack-BackupFunction-1', { type: 'full' }, 'backup'],
    ['media-backup-backup', {}, 'backup'],
    ['some-function', { target: 'restores/x', dryRun: true }, 'restore'],
    ['some-function', { type: 'auto' }, 'backup'],
    ['some-function', {}, undefined],
  ])('%s with %j is %s', (name, payload, expected) => {
    expect(inferOperation(name, payload)).toBe(expected);
  });
});

describe('retryCommand', () => {
  it('invokes the same function with the original payload, single quotes escaped for the shell', () => {
    expect(retryCommand('fn', { backup: "it's", dryRun: true })).toBe(
      `aws lambda invoke --function-name fn --cli-binary-format raw-in-base64-out --payload '{"backup":"it'\\''s","dryRun":true}' out.json`,
    );
  });
});

describe('formatInvocationFailure', () => {
  it('says what failed, the error, the last good backup, what to do and how to retry', () => {
    const email = formatInvocationFailure(
      failureRecord(),
      { backupId: 'backup_20251227_020000', createdAt: '2025-12-27T02:00:00.000Z' },
      ctx,
    );

    expect(email.subject).toBe(
      '[MediaBackupStack] Backup FAILED: SourceError (MediaBackupStack-BackupFunction-AbC123)',
    );
    for (const body of [email.text, email.html]) {
      expect(body).toContain('MediaBackupStack-BackupFunction-AbC123');
      expect(body).toContain('SourceError: the media folder /mnt/efs/media does not exist');
      expect(body).toContain('backup_20251227_020000 (taken Sat 27 Dec 2025 02:00 UTC)');
      expect(body).toContain('RetriesExhausted after 3 attempt(s)');
      expect(body).toContain('c0ffee00-1111-2222-3333-444455556666');
      // Without locations (the variables were unreadable) the advice can only name the variables.
      expect(body).toContain('check that the file system is mounted at EFS_MOUNT');
    }
    expect(email.text.split('\n')[0]).toBe(
      'BACKUP FAILED: Backup failed with SourceError. Last good backup: backup_20251227_020000, 24 hours ago.',
    );
    expect(email.html).toContain('class="banner banner-failed"');
    // The qualifier ($LATEST) is not part of the function name.
    expect(email.text).toContain(
      `aws lambda invoke --function-name MediaBackupStack-BackupFunction-AbC123 --cli-binary-format raw-in-base64-out --payload '{"type":"auto"}' out.json`,
    );
    expect(email.html).toContain(
      'aws lambda invoke --function-name MediaBackupStack-BackupFunction-AbC123 --cli-binary-format raw-in-base64-out --payload &#39;{&quot;type&quot;:&quot;auto&quot;}&#39; out.json',
    );
    expect(email.text).toContain('at resolveSourceRoot');
  });

  it('escapes every interpolated value in the HTML part', () => {
    const email = formatInvocationFailure(
      failureRecord({
        requestPayload: { backup: 'latest', target: '<img src=x onerror=alert(1)>' },
        requestContext: { ...failureRecord().requestContext, functionArn: RESTORE_ARN },
        responsePayload: { errorType: 'Error', errorMessage: 'bad name <script>alert("x")</script> & more' },
      }),
      'none',
      ctx,
    );

    expect(email.html).not.toContain('<script>');
    expect(email.html).not.toContain('<img');
    expect(email.html).toContain('bad name &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more');
    expect(email.text).toContain('bad name <script>alert("x")</script> & more');
    expect(email.subject).toBe(
      '[MediaBackupStack] Restore FAILED: Error (MediaBackupStack-RestoreFunction-XyZ9)',
    );
    expect(email.text).toContain('Last good backup: none: the store holds no committed backup');
    expect(email.text).toContain('"dryRun": true');
    expect(email.text).toContain(
      `--payload '{"backup":"latest","target":"<img src=x onerror=alert(1)>"}' out.json`,
    );
  });

  it('keeps the subject on one line whatever the error type holds', () => {
    const email = formatInvocationFailure(
      failureRecord({ responsePayload: { errorType: 'Bad\r\nBcc: victim@example.com', errorMessage: 'x' } }),
      'unknown',
      ctx,
    );

    expect(email.subject).not.toMatch(/[\r\n]/);
    expect(email.text).toContain('Last good backup: unknown: the backup store could not be read');
  });

  it('explains an event that expired before the function ran', () => {
    const email = formatInvocationFailure(
      failureRecord({
        requestContext: { ...failureRecord().requestContext, condition: 'EventAgeExceeded' },
        responseContext: undefined,
        responsePayload: undefined,
      }),
      'none',
      ctx,
    );

    expect(email.subject).toBe(
      '[MediaBackupStack] Backup FAILED: EventAgeExceeded (MediaBackupStack-BackupFunction-AbC123)',
    );
    expect(email.text).toContain('the function may not have run at all');
    expect(email.text).toContain("check the function's throttles and concurrency");
  });
});

describe('formatInvocationSuccess', () => {
  it('sends nothing for a successful backup: the digest and the alarms cover those', () => {
    const record = failureRecord({
      requestContext: { ...failureRecord().requestContext, condition: 'Success' },
      responsePayload: { status: 'SUCCEEDED', backupId: 'backup_20251228_020000' },
    });

    expect(formatInvocationSuccess(record, ctx)).toBeNull();
  });

  it('reports a finished restore', () => {
    const record = failureRecord({
      requestContext: { ...failureRecord().requestContext, functionArn: RESTORE_ARN, condition: 'Success' },
      requestPayload: { backup: 'latest' },
      responsePayload: {
        status: 'SUCCEEDED',
        backupId: 'backup_20251227_020000',
        targetPath: 'restores/backup_20251227_020000',
        mode: 'new-folder',
        dryRun: false,
        files: 42,
        bytes: 4096,
        verified: true,
        previousTree: null,
      },
    });

    const email = formatInvocationSuccess(record, ctx);

    expect(email?.subject).toBe('[MediaBackupStack] Restore finished: backup_20251227_020000');
    expect(email?.text).toContain('Target: restores/backup_20251227_020000');
    expect(email?.text).toContain('Files: 42');
    expect(email?.text).toContain('Every file checked against its sha256: yes');
  });

  it('names a dry run as a test restore', () => {
    const record = failureRecord({
      requestContext: { ...failureRecord().requestContext, functionArn: RESTORE_ARN, condition: 'Success' },
      requestPayload: { dryRun: true },
      responsePayload: { backupId: 'backup_20251227_020000', dryRun: true, verified: true },
    });

    expect(formatInvocationSuccess(record, ctx)?.subject).toBe(
      '[MediaBackupStack] Test restore (dry run) passed: backup_20251227_020000',
    );
  });
});

describe('formatAlarm', () => {
  const alarm: AlarmStateChange = {
    AlarmName: 'MediaBackupStack-NoRecentBackup <48h>',
    AlarmDescription: 'No committed backup in 48 hours',
    AWSAccountId: '123456789012',
    NewStateValue: 'ALARM',
    NewStateReason: 'Threshold Crossed: 1 datapoint [49.5] was greater than the threshold (48.0).',
    OldStateValue: 'OK',
    StateChangeTime: '2025-12-29T03:00:00.000+0000',
    Region: 'EU (Ireland)',
    AlarmArn: 'arn:aws:cloudwatch:eu-west-1:123456789012:alarm:MediaBackupStack-NoRecentBackup',
  };

  it('gives the alarm name, state, reason, time and a console link', () => {
    const email = formatAlarm(alarm, { defaultRegion: 'us-east-1' }, ctx);
    const url =
      'https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#alarmsV2:alarm/MediaBackupStack-NoRecentBackup%20%3C48h%3E';

    expect(email.subject).toBe('[MediaBackupStack] ALARM: MediaBackupStack-NoRecentBackup <48h>');
    expect(email.text).toContain('State: OK -> ALARM');
    expect(email.text).toContain('Reason: Threshold Crossed: 1 datapoint [49.5]');
    expect(email.text).toContain('Time: Mon 29 Dec 2025 03:00 UTC');
    expect(email.text).toContain(`Console: ${url}`);
    expect(email.html).toContain(`<a href="${url}" style=`);
    expect(email.html).toContain('MediaBackupStack-NoRecentBackup &lt;48h&gt;');
    expect(email.html).not.toContain('<48h>');
  });

  it('calls an OK transition a recovery', () => {
    const email = formatAlarm(
      { ...alarm, NewStateValue: 'OK', OldStateValue: 'ALARM' },
      { defaultRegion: 'us-east-1' },
      ctx,
    );

    expect(email.subject).toBe(
      '[MediaBackupStack] Recovered: MediaBackupStack-NoRecentBackup <48h> is OK again',
    );
    expect(email.text).toContain('no action is needed');
  });

  it.each([
    [{ AlarmArn: 'arn:aws:cloudwatch:ap-southeast-2:1:alarm:a' }, undefined, 'ap-southeast-2'],
    [{}, 'arn:aws:sns:eu-central-1:1:topic', 'eu-central-1'],
    [{ Region: 'US East (N. Virginia)' }, undefined, 'us-west-2'],
    [{ Region: 'sa-east-1' }, undefined, 'sa-east-1'],
  ])('takes the region code from %j / topic %s: %s', (fields, topicArn, expected) => {
    expect(alarmRegion({ AlarmName: 'a', NewStateValue: 'ALARM', ...fields }, topicArn, 'us-west-2')).toBe(
      expected,
    );
  });

  it('encodes the alarm name in the console link', () => {
    expect(alarmConsoleUrl('us-east-1', 'a/b c#d')).toBe(
      'https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#alarmsV2:alarm/a%2Fb%20c%23d',
    );
  });
});

describe('formatDigest', () => {
  const now = new Date('2025-12-31T08:00:00.000Z');
  const backups = [
    listing('backup_20251220_020000', '2025-12-20T02:00:00.000Z', 9_000_000),
    listing('backup_20251227_020000', '2025-12-27T02:00:00.000Z', 2 * 1024 * 1024),
    listing('backup_20251230_020001', '2025-12-30T02:00:01.000Z', 1024),
  ];

  it("lists the week's backups with sizes, the latest backup and health", () => {
    const email = formatDigest(
      { now, backups, health: { status: 'ok', checks: [OK_CHECK] }, store: 's3://bucket/media-backups/' },
      ctx,
    );

    expect(email.subject).toBe(
      '[MediaBackupStack] Weekly backup digest: 2 backup(s), 2.0 MiB uploaded, healthy',
    );
    expect(email.text).toContain('Backups taken: 2');
    // One line per day in the text part too: the fulls marked, the days without a backup named.
    expect(email.text).toContain('  Sat 27 Dec  FULL  #####...............  2.0 MiB, 7 files new or changed');
    expect(email.text).toContain('  Tue 30 Dec  incr  #...................  1.0 KiB, 7 files new or changed');
    expect(email.text).toContain('  Sat 20 Dec  FULL  ####################  8.6 MiB, 7 files new or changed');
    expect(email.text).toContain('  Sun 28 Dec  NO BACKUP');
    expect(email.text).toContain(
      'Last 14 days (UTC; bars: archive size per day):\n  Thu 18 Dec  (before the first backup)',
    );
    expect(email.text).toContain('  Wed 31 Dec  (none yet today)');
    expect(email.text).toContain(
      'Latest backup: backup_20251230_020001 (incremental, Tue 30 Dec 2025 02:00 UTC, 30 hours ago',
    );
    expect(email.text).toContain(
      'Oldest restore point: backup_20251220_020000 (Sat 20 Dec 2025 02:00 UTC, 11 days ago)',
    );
    expect(email.text).toContain('Committed backups in the store: 3');
    expect(email.text).toContain('- [OK] backup-age: fresh');
    expect(email.text.split('\n')[0]).toBe(
      'HEALTHY: All 1 health checks pass; latest backup 30 hours ago, 2 this week.',
    );
    expect(email.html).toContain('class="banner banner-healthy"');
  });

  it('lists problems and flags the subject when unhealthy', () => {
    const email = formatDigest(
      {
        now,
        backups: [],
        health: {
          status: 'critical',
          checks: [OK_CHECK, { name: 'last-run', status: 'critical', message: 'The last <run> failed.' }],
        },
      },
      ctx,
    );

    expect(email.subject).toBe(
      '[MediaBackupStack] Weekly backup digest: 0 backup(s), 0 B uploaded, NEEDS ATTENTION',
    );
    expect(email.text).toContain('Latest backup: none');
    expect(email.text).toContain('Oldest restore point: none: no restorable backup');
    expect(email.text).toContain('- [FAIL] last-run: The last <run> failed.');
    expect(email.text.split('\n')[0]).toBe('FAILING: 1 of 2 checks need attention: last-run (critical).');
    expect(email.html).toContain('The last &lt;run&gt; failed.');
    expect(email.html).not.toContain('<run>');
    expect(email.html).toContain('class="banner banner-failed"');
    // 14 days, none with a backup, and none missed either: the store never had one.
    expect(email.html.match(/class="chart-day chart-empty"/g)).toHaveLength(CHART_DAYS);
    expect(email.html).not.toContain('chart-gap');
  });

  it('says unknown when the store could not be read', () => {
    const email = formatDigest({ now, backups: 'unknown' }, ctx);

    expect(email.subject).toBe('[MediaBackupStack] Weekly backup digest: backup store unreadable');
    expect(email.text).toContain('Backups taken: unknown: the backup store could not be read');
  });

  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1536, '1.5 KiB'],
    [5 * 1024 ** 3, '5.0 GiB'],
    [null, 'unknown size'],
  ])('formatBytes(%s) = %s', (bytes, expected) => {
    expect(formatBytes(bytes)).toBe(expected);
  });
});

describe('digestHealth', () => {
  const latest = listing('backup_20251227_020000', '2025-12-27T02:00:00.000Z', 1);
  const base = {
    store: 's3://b/p/',
    latestBackup: latest,
    committedBackups: 1,
    hoursSinceLastBackup: 5,
    healthy: true,
    lastRun: { status: 'SUCCEEDED' as const, startedAt: 'a', finishedAt: 'b' },
  };

  it('is healthy when the last run succeeded and the latest backup is recent', () => {
    expect(digestHealth(base)).toEqual({
      status: 'ok',
      checks: [
        { name: 'last-run', status: 'ok', message: 'The last backup run succeeded (finished b).' },
        {
          name: 'backup-age',
          status: 'ok',
          message: 'The latest committed backup (backup_20251227_020000) is 5 hours old.',
        },
      ],
    });
  });

  it.each([
    [{ hoursSinceLastBackup: 50 }, /is 50 hours old, more than 48/],
    [{ latestBackup: null, healthy: false, hoursSinceLastBackup: null }, /holds no committed backup/],
    [{ lastRun: null, healthy: false }, /No backup run is recorded/],
    [
      {
        healthy: false,
        lastRun: {
          status: 'FAILED' as const,
          startedAt: 'a',
          finishedAt: '2025-12-28T02:01:00Z',
          error: { name: 'SourceError', message: 'gone' },
        },
      },
      /The last backup run failed \(finished 2025-12-28T02:01:00Z\): SourceError: gone/,
    ],
  ])('reports %j', (change, problem) => {
    const health = digestHealth({ ...base, ...change });

    expect(health.status).toBe('critical');
    expect(
      health.checks
        .filter((c) => c.status === 'critical')
        .map((c) => c.message)
        .join(' '),
    ).toMatch(problem);
  });
});

describe('classifyNotifyEvent', () => {
  const alarmMessage = JSON.stringify({ AlarmName: 'a', NewStateValue: 'ALARM' });

  it.each([
    [{ Records: [{ EventSource: 'aws:sns', Sns: { Message: alarmMessage } }] }, 'alarm'],
    [failureRecord(), 'invocation'],
    [
      {
        source: 'lambda',
        'detail-type': 'Lambda Function Invocation Result - Failure',
        detail: failureRecord(),
      },
      'invocation',
    ],
    [{ kind: 'digest' }, 'digest'],
    [{ Records: [{ Sns: { Message: 'plain text' } }] }, 'unknown'],
    [{ Records: [] }, 'unknown'],
    [{ type: 'full' }, 'unknown'],
    [{ requestContext: { functionArn: 'x', condition: 'Maybe' } }, 'unknown'],
    ['digest', 'unknown'],
    [null, 'unknown'],
  ])('%j is %s', (event, kind) => {
    expect(classifyNotifyEvent(event).kind).toBe(kind);
  });
});

describe('readNotifyConfig', () => {
  const env = {
    SENDER_EMAIL: 'backups@example.com',
    NOTIFICATION_EMAIL: 'ops@example.com, oncall@example.com',
    AWS_REGION: 'eu-west-1',
  };

  it('splits the recipients on commas and defaults the stack name', () => {
    expect(readNotifyConfig(env)).toEqual({
      senderEmail: 'backups@example.com',
      recipients: ['ops@example.com', 'oncall@example.com'],
      stackName: 'media-backup',
      region: 'eu-west-1',
      sesEndpoint: undefined,
      timeZone: 'UTC',
    });
    expect(readNotifyConfig({ ...env, TIME_ZONE: 'Europe/Berlin' }).timeZone).toBe('Europe/Berlin');
  });

  it.each([
    [{ SENDER_EMAIL: undefined }, /SENDER_EMAIL must be the SES-verified address/],
    [{ SENDER_EMAIL: 'backups' }, /SENDER_EMAIL must be/],
    [{ NOTIFICATION_EMAIL: ' , ' }, /NOTIFICATION_EMAIL must be one or more email addresses/],
    [{ NOTIFICATION_EMAIL: 'ops@example.com,ops' }, /NOTIFICATION_EMAIL must be/],
    [{ AWS_REGION: '' }, /AWS_REGION is not set/],
    [
      { TIME_ZONE: 'Mars/Olympus' },
      /TIME_ZONE must be an IANA time zone such as Europe\/Berlin or UTC \(got "Mars\/Olympus"\)/,
    ],
  ])('rejects %j naming the variable', (change, message) => {
    expect(() => readNotifyConfig({ ...env, ...change })).toThrow(message);
  });
});

// Issue 11, "Emails a tired operator reads at a glance".
describe('formatTime: the configured zone with UTC beside it', () => {
  it.each([
    ['2026-11-23T09:00:00.000Z', 'Europe/Berlin', 'Mon 23 Nov 2026 10:00 CET (09:00 UTC)'],
    ['2026-07-01T09:00:00.000Z', 'Europe/Berlin', 'Wed 1 Jul 2026 11:00 CEST (09:00 UTC)'],
    ['2026-11-23T02:30:00.000Z', 'America/New_York', 'Sun 22 Nov 2026 21:30 EST (Mon 23 Nov 02:30 UTC)'],
    ['2026-11-23T09:00:00.000Z', 'Asia/Kolkata', 'Mon 23 Nov 2026 14:30 GMT+5:30 (09:00 UTC)'],
    ['2026-11-23T09:00:00.000Z', 'UTC', 'Mon 23 Nov 2026 09:00 UTC'],
    ['not a time', 'Europe/Berlin', 'not a time'],
  ])('%s in %s is %s', (iso, zone, expected) => {
    expect(formatTime(iso, zone)).toBe(expected);
  });
});

const LOCATIONS = {
  mount: '/mnt/efs',
  mediaPath: 'media/library',
  restoresPath: 'restores',
  store: 's3://my-backups/media-backups/',
};
const berlin = { stackName: 'MediaBackupStack', timeZone: 'Europe/Berlin', locations: LOCATIONS };

describe('banner, local times and real paths in every email', () => {
  it('a failure: red banner with the verdict first, times in the zone, advice with the mount, folder and bucket', () => {
    const email = formatInvocationFailure(
      failureRecord(),
      { backupId: 'backup_20251227_020000', createdAt: '2025-12-27T02:00:00.000Z' },
      berlin,
    );

    expect(email.text.split('\n')[0]).toBe(
      'BACKUP FAILED: Backup failed with SourceError. Last good backup: backup_20251227_020000, 24 hours ago.',
    );
    expect(email.html.indexOf('class="banner banner-failed"')).toBeLessThan(
      email.html.indexOf('class="facts"'),
    );
    expect(email.html).toContain('#b3261e');
    for (const body of [email.text, email.html]) {
      expect(body).toContain('Sun 28 Dec 2025 03:14 CET (02:14 UTC)');
      expect(body).toContain('backup_20251227_020000 (taken Sat 27 Dec 2025 03:00 CET (02:00 UTC))');
      expect(body).toContain(
        'The media folder /mnt/efs/media/library could not be read. Fix the mount: the functions mount the EFS access point at /mnt/efs and read the folder media/library in it',
      );
      expect(body).toContain('aws s3 cp media.tar.gz s3://my-backups/media-backups/import/media.tar.gz');
      expect(body).toContain('the backups taken before are intact in s3://my-backups/media-backups/');
      expect(body).not.toMatch(/EFS_MOUNT|MEDIA_PATH/);
      expect(body).not.toContain('2025-12-28T02:14:03');
    }
  });

  it('an unknown error points at the real log group', () => {
    const email = formatInvocationFailure(
      failureRecord({ responsePayload: { errorType: 'TypeError', errorMessage: 'x is undefined' } }),
      'none',
      berlin,
    );
    expect(email.text).toContain('log group /aws/lambda/MediaBackupStack-BackupFunction-AbC123)');
  });

  it('a restore failure names the live media folder it left untouched', () => {
    const email = formatInvocationFailure(
      failureRecord({
        requestContext: { ...failureRecord().requestContext, functionArn: RESTORE_ARN },
        requestPayload: { backup: 'latest', mode: 'replace' },
        responsePayload: { errorType: 'RestoreTargetError', errorMessage: 'disk full' },
      }),
      'unknown',
      berlin,
    );
    expect(email.text).toContain(
      'A failed restore leaves the live media folder /mnt/efs/media/library untouched',
    );
    expect(email.text.split('\n')[0]).toBe(
      'RESTORE FAILED: Restore failed with RestoreTargetError. The last good backup is unknown (store unreadable).',
    );
  });

  it('an alarm about a failed backup carries the last run, its error and the advice for it', () => {
    const email = formatAlarm(
      {
        AlarmName: 'MediaBackupStack-failing',
        NewStateValue: 'ALARM',
        OldStateValue: 'OK',
        StateChangeTime: '2026-11-23T03:05:00.000+0000',
      },
      {
        defaultRegion: 'eu-central-1',
        lastRun: {
          status: 'FAILED',
          startedAt: '2026-11-23T03:00:00.000Z',
          finishedAt: '2026-11-23T03:00:04.000Z',
          error: { name: 'SourceError', message: 'source folder /mnt/efs/media/library does not exist.' },
        },
      },
      berlin,
    );

    expect(email.text.split('\n')[0]).toBe('ALARM: The last backup run failed with SourceError (5 min ago).');
    expect(email.text).toContain('Time: Mon 23 Nov 2026 04:05 CET (03:05 UTC)');
    expect(email.text).toContain(
      'Last backup run: FAILED, finished Mon 23 Nov 2026 04:00 CET (03:00 UTC): SourceError: source folder /mnt/efs/media/library does not exist.',
    );
    expect(email.text).toContain(
      'What to do next:\n- The media folder /mnt/efs/media/library could not be read.',
    );
    expect(email.html).toContain('class="banner banner-failed"');
  });

  it.each([
    ['OK', 'healthy', 'RECOVERED: a is OK again.'],
    ['INSUFFICIENT_DATA', 'warning', 'INSUFFICIENT_DATA: a changed to INSUFFICIENT_DATA.'],
  ])('an alarm going to %s has a %s banner', (state, tone, first) => {
    const email = formatAlarm(
      { AlarmName: 'a', NewStateValue: state },
      { defaultRegion: 'eu-west-1' },
      berlin,
    );
    expect(email.html).toContain(`class="banner banner-${tone}"`);
    expect(email.text.split('\n')[0]).toBe(first);
  });

  it('a finished restore: green banner naming the real target folder', () => {
    const email = formatInvocationSuccess(
      failureRecord({
        requestContext: { ...failureRecord().requestContext, functionArn: RESTORE_ARN, condition: 'Success' },
        requestPayload: { backup: 'latest' },
        responsePayload: {
          backupId: 'backup_20251227_020000',
          targetPath: 'restores/backup_20251227_020000',
          files: 12,
          bytes: 2048,
          verified: true,
        },
      }),
      berlin,
    );
    expect(email?.text.split('\n')[0]).toBe(
      'RESTORE FINISHED: backup_20251227_020000 restored into /mnt/efs/restores/backup_20251227_020000: 12 files, every one checked.',
    );
    expect(email?.html).toContain('class="banner banner-healthy"');
    expect(email?.text).toContain('Bytes: 2.0 KiB (2048)');
  });
});

describe('the digest chart', () => {
  function backup(createdAt: string, type: 'full' | 'incremental', base: string | null, archiveBytes = 100) {
    const id = `backup_${createdAt.slice(0, 10).replaceAll('-', '')}_${createdAt.slice(11, 19).replaceAll(':', '')}`;
    return { ...listing(id, createdAt, archiveBytes), type, baseBackupId: base, changedFiles: 3 };
  }

  it('counts days in the configured zone: 23:30 UTC is the next day in Berlin', () => {
    const days = chartDays(
      [
        backup('2026-11-20T23:30:00.000Z', 'full', null, 500),
        backup('2026-11-21T10:00:00.000Z', 'incremental', null),
      ],
      new Date('2026-11-23T08:00:00.000Z'),
      'Europe/Berlin',
    );
    expect(days).toHaveLength(CHART_DAYS);
    expect(days.map((d) => d.key).slice(-3)).toEqual(['2026-11-21', '2026-11-22', '2026-11-23']);
    // Both runs fall on Sat 21 Nov in Berlin: summed, the day marked full.
    expect(days.at(-3)).toMatchObject({
      label: 'Sat 21 Nov',
      backups: 2,
      full: true,
      archiveBytes: 600,
      changedFiles: 6,
    });
    expect(days.at(-4)).toMatchObject({ key: '2026-11-20', backups: 0 });
    expect(days.at(-1)).toMatchObject({ today: true, backups: 0 });
  });

  it('has 14 distinct days across a daylight-saving change', () => {
    const days = chartDays([], new Date('2026-04-05T00:30:00.000Z'), 'Europe/Berlin');
    const keys = days.map((d) => d.key);
    expect(new Set(keys).size).toBe(CHART_DAYS);
    expect(keys[0]).toBe('2026-03-23');
    expect(keys.at(-1)).toBe('2026-04-05');
  });

  it('the oldest restore point skips incrementals whose base is gone', () => {
    const orphan = backup('2026-11-01T02:00:00.000Z', 'incremental', 'backup_20261025_020000');
    const full = backup('2026-11-02T02:00:00.000Z', 'full', null);
    const inc = backup('2026-11-03T02:00:00.000Z', 'incremental', full.backupId);
    expect(oldestRestorePoint([orphan, full, inc])?.backupId).toBe(full.backupId);
    expect(oldestRestorePoint([orphan])).toBeUndefined();
  });

  it('marks fulls and gaps in the HTML, with no image or script', () => {
    const email = formatDigest(
      {
        now: new Date('2026-11-23T08:00:00.000Z'),
        backups: [
          backup('2026-11-16T03:00:00.000Z', 'full', null, 1000),
          backup('2026-11-22T03:00:00.000Z', 'incremental', null, 10),
        ],
        health: { status: 'warning', checks: [{ name: 'deep-verify', status: 'warning', message: 'old' }] },
      },
      berlin,
    );
    expect(email.html.match(/<tr class="chart-day/g)).toHaveLength(CHART_DAYS);
    expect(email.html.match(/<tr class="chart-day chart-full"/g)).toHaveLength(1);
    // 10-15 Nov: before the first backup; 17-21 Nov: missed nights; 23 Nov: today, not yet.
    expect(email.html.match(/<tr class="chart-day chart-gap"/g)).toHaveLength(5);
    expect(email.html.match(/<tr class="chart-day chart-empty"/g)).toHaveLength(7);
    expect(email.text).toContain('  Tue 17 Nov  NO BACKUP');
    expect(email.text).toContain('  Sun 15 Nov  (before the first backup)');
    expect(email.html).toContain('<td class="bar" width="100%"');
    expect(email.html).toContain('<td class="bar" width="1%"');
    expect(email.html).not.toMatch(/<img|<script|<link/);
    expect(email.text.split('\n')[0]).toBe('WARNING: 1 of 1 checks need attention: deep-verify (warning).');
    expect(email.text).toContain('Last 14 days (Europe/Berlin; bars: archive size per day):');
    expect(email.text).toContain('- [WARN] deep-verify: old');
  });
});

describe('digest of an unreadable store', () => {
  it('names the store it tried and where the error is', () => {
    const email = formatDigest({ now: new Date('2026-11-23T08:00:00.000Z'), backups: 'unknown' }, berlin);
    expect(email.text).toContain('Store: s3://my-backups/media-backups/');
    expect(email.text.split('\n')[0]).toBe(
      "STORE UNREADABLE: The backup store could not be read: nothing is known about this week's backups. The notify function's log has the S3 error.",
    );
    expect(email.html).toContain('class="banner banner-failed"');
  });
});
