import { describe, expect, it } from 'vitest';
import {
  type AlarmStateChange,
  alarmConsoleUrl,
  alarmRegion,
  type DestinationRecord,
  escapeHtml,
  formatAlarm,
  formatBytes,
  formatDigest,
  formatInvocationFailure,
  formatInvocationSuccess,
  inferOperation,
  retryCommand,
} from '../../lambda/core/notify-format.js';
import type { BackupListing } from '../../lambda/core/status.js';
import { classifyNotifyEvent, digestHealth, readNotifyConfig } from '../../lambda/handlers/notify.js';

const ctx = { stackName: 'MediaBackupStack' };
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
      expect(body).toContain('backup_20251227_020000 (taken 2025-12-27T02:00:00.000Z)');
      expect(body).toContain('RetriesExhausted after 3 attempt(s)');
      expect(body).toContain('c0ffee00-1111-2222-3333-444455556666');
      expect(body).toContain('check that the file system is mounted at EFS_MOUNT');
    }
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
    expect(email.text).toContain('Time: 2025-12-29T03:00:00.000+0000');
    expect(email.text).toContain(`Console: ${url}`);
    expect(email.html).toContain(`<a href="${url}">`);
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
      { now, backups, health: { healthy: true, problems: [] }, store: 's3://bucket/media-backups/' },
      ctx,
    );

    expect(email.subject).toBe(
      '[MediaBackupStack] Weekly backup digest: 2 backup(s), 2.0 MiB uploaded, healthy',
    );
    expect(email.text).toContain('Backups taken: 2');
    expect(email.text).toContain(
      '- backup_20251227_020000 full at 2025-12-27T02:00:00.000Z: archive 2.0 MiB',
    );
    expect(email.text).toContain('- backup_20251230_020001 incremental');
    expect(email.text).not.toContain('backup_20251220_020000');
    expect(email.text).toContain('Latest backup: backup_20251230_020001 (incremental');
    expect(email.text).toContain('Committed backups in the store: 3');
    expect(email.html).toContain('<td>backup_20251230_020001</td>');
  });

  it('lists problems and flags the subject when unhealthy', () => {
    const email = formatDigest(
      { now, backups: [], health: { healthy: false, problems: ['The last <run> failed.'] } },
      ctx,
    );

    expect(email.subject).toBe(
      '[MediaBackupStack] Weekly backup digest: 0 backup(s), 0 B uploaded, NEEDS ATTENTION',
    );
    expect(email.text).toContain('No backup was taken this week.');
    expect(email.text).toContain('Latest backup: none');
    expect(email.html).toContain('<li>The last &lt;run&gt; failed.</li>');
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
    expect(digestHealth(base)).toEqual({ healthy: true, problems: [] });
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

    expect(health.healthy).toBe(false);
    expect(health.problems.join(' ')).toMatch(problem);
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
    });
  });

  it.each([
    [{ SENDER_EMAIL: undefined }, /SENDER_EMAIL must be the SES-verified address/],
    [{ SENDER_EMAIL: 'backups' }, /SENDER_EMAIL must be/],
    [{ NOTIFICATION_EMAIL: ' , ' }, /NOTIFICATION_EMAIL must be one or more email addresses/],
    [{ NOTIFICATION_EMAIL: 'ops@example.com,ops' }, /NOTIFICATION_EMAIL must be/],
    [{ AWS_REGION: '' }, /AWS_REGION is not set/],
  ])('rejects %j naming the variable', (change, message) => {
    expect(() => readNotifyConfig({ ...env, ...change })).toThrow(message);
  });
});
