import { SESv2Client, SendEmailCommand } from '@aws-sdk/client-sesv2';
import { type AwsClientStub, mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type BackupSucceeded, runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger, systemClock } from '../../lambda/core/deps.js';
import { CHART_DAYS, type DestinationRecord } from '../../lambda/core/reports/notify-format.js';
import { handler } from '../../lambda/handlers/notify.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';
import { type SesLocalFixture, startSesLocal } from '../fixtures/ses-local.js';

const SENDER = 'backups@example.com';
const RECIPIENTS = ['ops@example.com', 'oncall@example.com'];
const STACK = 'MediaBackupTest';
const BACKUP_FUNCTION_ARN =
  'arn:aws:lambda:us-east-1:123456789012:function:MediaBackupTest-BackupFunction-AbC123:$LATEST';
const RESTORE_FUNCTION_ARN =
  'arn:aws:lambda:us-east-1:123456789012:function:MediaBackupTest-RestoreFunction-Q1';
/** The prefix holding one real committed backup, made in beforeAll. */
const PREFIX_WITH_BACKUP = 'notify-with-backup/media-backups/';
const EMPTY_PREFIX = 'notify-empty/media-backups/';

const dirs = tempDirs();
let s3: S3rverFixture;
let backup: BackupSucceeded;

function failureRecord(overrides: Partial<DestinationRecord> = {}): DestinationRecord {
  return {
    version: '1.0',
    timestamp: '2025-12-28T02:14:03.123Z',
    requestContext: {
      requestId: 'c0ffee00-1111-2222-3333-444455556666',
      functionArn: BACKUP_FUNCTION_ARN,
      condition: 'RetriesExhausted',
      approximateInvokeCount: 3,
    },
    requestPayload: { type: 'full' },
    responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
    responsePayload: {
      errorType: 'ArchiveVerificationError',
      errorMessage: 'the archive <full/backup_x.tar.gz> is 10 bytes in the store, 12 were written',
      trace: ['ArchiveVerificationError: ...'],
    },
    ...overrides,
  };
}

function snsAlarmEvent(alarm: Record<string, unknown>) {
  return {
    Records: [
      {
        EventSource: 'aws:sns',
        EventVersion: '1.0',
        EventSubscriptionArn: 'arn:aws:sns:us-east-1:123456789012:MediaBackupTest-Alarms:0b1d',
        Sns: {
          Type: 'Notification',
          MessageId: '95df01b4-ee98-5cb9-9903-4c221d41eb5e',
          TopicArn: 'arn:aws:sns:us-east-1:123456789012:MediaBackupTest-Alarms',
          Subject: `ALARM: "${alarm.AlarmName}" in US East (N. Virginia)`,
          Message: JSON.stringify(alarm),
          Timestamp: '2025-12-29T03:00:01.000Z',
          MessageAttributes: {},
        },
      },
    ],
  };
}

const noRecentBackupAlarm = {
  AlarmName: 'MediaBackupTest-NoRecentBackup',
  AlarmDescription: 'No committed backup in the last 48 hours',
  AWSAccountId: '123456789012',
  NewStateValue: 'ALARM',
  NewStateReason:
    'Threshold Crossed: 1 datapoint [49.5 (29/12/25 02:00:00)] was greater than the threshold (48.0).',
  StateChangeTime: '2025-12-29T03:00:00.000+0000',
  Region: 'US East (N. Virginia)',
  AlarmArn: 'arn:aws:cloudwatch:us-east-1:123456789012:alarm:MediaBackupTest-NoRecentBackup',
  OldStateValue: 'OK',
};

function stubCommonEnv(): void {
  // s3rver only accepts this key pair; aws-ses-v2-local accepts any signature.
  vi.stubEnv('AWS_ACCESS_KEY_ID', 'S3RVER');
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'S3RVER');
  vi.stubEnv('AWS_REGION', 'us-east-1');
  vi.stubEnv('SENDER_EMAIL', SENDER);
  vi.stubEnv('NOTIFICATION_EMAIL', RECIPIENTS.join(', '));
  vi.stubEnv('STACK_NAME', STACK);
  vi.stubEnv('S3_ENDPOINT', s3.endpoint);
  vi.stubEnv('S3_FORCE_PATH_STYLE', 'true');
  vi.stubEnv('S3_CHECKSUMS', 'off');
  vi.stubEnv('BUCKET_NAME', s3.bucket);
  vi.stubEnv('BACKUP_PREFIX', PREFIX_WITH_BACKUP);
  vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'SILENT');
}

beforeAll(async () => {
  s3 = await startS3rver();
  const media = await dirs.make('notify-media-');
  await makeMediaTree(media, { files: 12, seed: 7 });
  backup = await runBackup(
    {
      store: s3.makeStore(PREFIX_WITH_BACKUP),
      clock: systemClock,
      logger: silentLogger,
      owner: 'notify-test',
    },
    { source: media, type: 'full' },
  );
});
afterAll(async () => {
  await s3.stop();
  await dirs.cleanup();
});
afterEach(() => {
  vi.unstubAllEnvs();
});

describe('notify handler against aws-ses-v2-local', () => {
  let ses: SesLocalFixture;

  beforeAll(async () => {
    ses = await startSesLocal();
  });
  afterAll(() => ses.stop());
  beforeEach(async () => {
    await ses.clear();
    stubCommonEnv();
    vi.stubEnv('SES_ENDPOINT', ses.endpoint);
    // The EMF lines are asserted in the mocked-SES tests; here they would only be noise.
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
  });

  /** The one email the store holds, checked for sender and recipients. */
  async function onlyEmail() {
    const emails = await ses.emails();
    expect(emails).toHaveLength(1);
    const [email] = emails;
    expect(email.from).toBe(SENDER);
    expect(email.destination.to).toEqual(RECIPIENTS);
    return { ...email, text: email.body.text ?? '', html: email.body.html ?? '' };
  }

  it('mails a failed backup with the error, the last good backup and the retry command', async () => {
    const result = await handler(failureRecord(), makeLambdaContext());

    expect(result).toMatchObject({ status: 'SENT', kind: 'invocation-failure' });
    const email = await onlyEmail();
    expect(email.subject).toBe(
      `[${STACK}] Backup FAILED: ArchiveVerificationError (MediaBackupTest-BackupFunction-AbC123)`,
    );
    expect(email.text).toContain(
      'Error: ArchiveVerificationError: the archive <full/backup_x.tar.gz> is 10 bytes in the store, 12 were written',
    );
    expect(email.text).toContain(`Last good backup: ${backup.backupId} (taken `);
    expect(email.text).toContain('the backups taken before are intact');
    expect(email.text).toContain(
      `aws lambda invoke --function-name MediaBackupTest-BackupFunction-AbC123 --cli-binary-format raw-in-base64-out --payload '{"type":"full"}' out.json`,
    );
    expect(email.html).toContain('the archive &lt;full/backup_x.tar.gz&gt; is 10 bytes');
    expect(email.html).not.toContain('<full/backup_x.tar.gz>');
    expect(email.html).toContain(backup.backupId);
  });

  it('mails a failed restore, saying "none" when the store holds no backup', async () => {
    vi.stubEnv('BACKUP_PREFIX', EMPTY_PREFIX);
    const record = failureRecord({
      requestContext: { ...failureRecord().requestContext, functionArn: RESTORE_FUNCTION_ARN },
      requestPayload: { backup: 'latest', mode: 'replace' },
      responsePayload: {
        errorType: 'BackupStateError',
        errorMessage: 'there is no committed backup to restore',
      },
    });

    const result = await handler(record, makeLambdaContext());

    expect(result).toMatchObject({ status: 'SENT', kind: 'invocation-failure' });
    const email = await onlyEmail();
    expect(email.subject).toBe(
      `[${STACK}] Restore FAILED: BackupStateError (MediaBackupTest-RestoreFunction-Q1)`,
    );
    expect(email.text).toContain('Last good backup: none: the store holds no committed backup');
    // The real folder (EFS_MOUNT and MEDIA_PATH unset: the functions' defaults), not the variables.
    expect(email.text).toContain('A failed restore leaves the live media folder /mnt/efs/media untouched');
    expect(email.text).toContain(`--payload '{"backup":"latest","mode":"replace"}' out.json`);
    expect(email.html).toContain('Last good backup');
  });

  it('still mails a failure when the store cannot be read, saying "unknown"', async () => {
    vi.stubEnv('BUCKET_NAME', '');

    const result = await handler(failureRecord(), makeLambdaContext());

    expect(result).toMatchObject({ status: 'SENT' });
    const email = await onlyEmail();
    expect(email.text).toContain('Last good backup: unknown: the backup store could not be read');
  });

  it('takes a failure record wrapped in an EventBridge event', async () => {
    const event = {
      version: '0',
      source: 'lambda',
      'detail-type': 'Lambda Function Invocation Result - Failure',
      detail: failureRecord(),
    };

    await expect(handler(event, makeLambdaContext())).resolves.toMatchObject({ status: 'SENT' });
    expect((await onlyEmail()).subject).toContain('Backup FAILED: ArchiveVerificationError');
  });

  it('mails a finished restore and stays quiet about a successful backup', async () => {
    const restoreDone = failureRecord({
      requestContext: {
        ...failureRecord().requestContext,
        functionArn: RESTORE_FUNCTION_ARN,
        condition: 'Success',
      },
      requestPayload: { backup: backup.backupId },
      responseContext: { statusCode: 200, executedVersion: '$LATEST' },
      responsePayload: {
        status: 'SUCCEEDED',
        backupId: backup.backupId,
        targetPath: `restores/${backup.backupId}`,
        mode: 'new-folder',
        dryRun: false,
        files: 12,
        bytes: 1234,
        verified: true,
        previousTree: null,
      },
    });
    const backupDone = failureRecord({
      requestContext: { ...failureRecord().requestContext, condition: 'Success' },
      responseContext: { statusCode: 200, executedVersion: '$LATEST' },
      responsePayload: backup,
    });

    await expect(handler(backupDone, makeLambdaContext())).resolves.toMatchObject({
      status: 'SKIPPED',
      kind: 'invocation-success',
    });
    await expect(handler(restoreDone, makeLambdaContext())).resolves.toMatchObject({
      status: 'SENT',
      kind: 'invocation-success',
    });

    const email = await onlyEmail();
    expect(email.subject).toBe(`[${STACK}] Restore finished: ${backup.backupId}`);
    expect(email.text).toContain(`Target: /mnt/efs/restores/${backup.backupId}`);
    expect(email.text.split('\n')[0]).toMatch(/^RESTORE FINISHED: /);
    expect(email.html).toContain('Every file checked against its sha256');
  });

  it('mails an alarm from SNS with reason, time and console link', async () => {
    vi.stubEnv('TIME_ZONE', 'Europe/Berlin');
    const result = await handler(snsAlarmEvent(noRecentBackupAlarm), makeLambdaContext());

    expect(result).toMatchObject({ status: 'SENT', kind: 'alarm' });
    const email = await onlyEmail();
    expect(email.subject).toBe(`[${STACK}] ALARM: MediaBackupTest-NoRecentBackup`);
    const url =
      'https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#alarmsV2:alarm/MediaBackupTest-NoRecentBackup';
    expect(email.text).toContain(`Reason: ${noRecentBackupAlarm.NewStateReason}`);
    expect(email.text).toContain('Time: Mon 29 Dec 2025 04:00 CET (03:00 UTC)');
    // The store's last run (this file's backup succeeded) is in the alarm mail.
    expect(email.text).toContain(`Last backup run: SUCCEEDED, finished `);
    expect(email.text).toContain(`(${backup.backupId})`);
    expect(email.text).toContain(`Backup store: s3://${s3.bucket}/${PREFIX_WITH_BACKUP}`);
    expect(email.html).toContain('class="banner banner-failed"');
    expect(email.text).toContain(`Console: ${url}`);
    expect(email.html).toContain(`href="${url}"`);
    expect(email.html).toContain('was greater than the threshold (48.0)');
  });

  it('mails an alarm going back to OK as a recovery', async () => {
    const ok = { ...noRecentBackupAlarm, NewStateValue: 'OK', OldStateValue: 'ALARM' };

    await handler(snsAlarmEvent(ok), makeLambdaContext());

    const email = await onlyEmail();
    expect(email.subject).toBe(`[${STACK}] Recovered: MediaBackupTest-NoRecentBackup is OK again`);
    expect(email.text).toContain('State: ALARM -> OK');
  });

  it('mails the weekly digest with the backups, their sizes and health', async () => {
    const result = await handler({ kind: 'digest' }, makeLambdaContext());

    expect(result).toMatchObject({ status: 'SENT', kind: 'digest' });
    const email = await onlyEmail();
    expect(email.subject).toMatch(
      new RegExp(`^\\[${STACK}\\] Weekly backup digest: 1 backup\\(s\\), .+ uploaded, healthy$`),
    );
    expect(email.text).toContain('Backups taken: 1');
    expect(email.text).toMatch(/ {2}\w{3} \d{1,2} \w{3} +FULL {2}#{20} {2}.+, 12 files new or changed/);
    expect(email.text).toContain(`Latest backup: ${backup.backupId} (full,`);
    expect(email.text).toContain(`Oldest restore point: ${backup.backupId} (`);
    // The monitor's checks ran against the store (the same verdicts its alarms use).
    expect(email.text).toMatch(/^- \[OK\] backup-age: The latest committed backup, backup_/m);
    expect(email.text).toMatch(/^- \[OK\] integrity: /m);
    expect(email.text).toMatch(
      /^HEALTHY: All \d+ health checks pass; latest backup \d+ min ago, 1 this week\.$/m,
    );
    expect(email.html).toContain('class="banner banner-healthy"');
    // The days before the store's first backup are not shown as missed nights.
    expect(email.text).toContain('(before the first backup)');
    expect(email.text).not.toContain('NO BACKUP');
    expect(email.html.match(/<tr class="chart-day/g)).toHaveLength(CHART_DAYS);
  });

  it('ignores an event it does not know and sends nothing', async () => {
    await expect(handler({ type: 'full' }, makeLambdaContext())).resolves.toMatchObject({
      status: 'IGNORED',
    });
    expect(await ses.emails()).toEqual([]);
  });
});

describe('notify handler with SES mocked', () => {
  // Created here, not in the describe body: mockClient patches SESv2Client.prototype.send for the whole
  // process, and describe bodies run at collection time, before the aws-ses-v2-local tests.
  let sesMock: AwsClientStub<SESv2Client>;
  let stdout: string[];
  let stderr: string[];

  beforeAll(() => {
    sesMock = mockClient(SESv2Client);
  });
  beforeEach(() => {
    sesMock.reset();
    stubCommonEnv();
    stdout = [];
    stderr = [];
    // powertools writes EMF and log lines through its own Console on process.stdout/stderr.
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout.push(String(chunk));
      return true;
    });
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  afterAll(() => {
    sesMock.restore();
  });

  /** The EMF documents written to stdout. */
  function emfDocuments(): Record<string, unknown>[] {
    return stdout
      .join('')
      .split('\n')
      .filter((line) => line.includes('"_aws"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  it('sends one email with sender, recipients, subject and both UTF-8 parts', async () => {
    sesMock.on(SendEmailCommand).resolves({ MessageId: 'm-1' });

    const result = await handler(snsAlarmEvent(noRecentBackupAlarm), makeLambdaContext());

    expect(result).toEqual({ status: 'SENT', kind: 'alarm', messageIds: ['m-1'] });
    expect(sesMock.commandCalls(SendEmailCommand)).toHaveLength(1);
    const input = sesMock.commandCalls(SendEmailCommand)[0].args[0].input;
    expect(input).toMatchObject({
      FromEmailAddress: SENDER,
      Destination: { ToAddresses: RECIPIENTS },
      Content: {
        Simple: {
          Subject: { Data: `[${STACK}] ALARM: MediaBackupTest-NoRecentBackup`, Charset: 'UTF-8' },
          Body: {
            Text: { Data: expect.stringContaining('Reason: Threshold Crossed'), Charset: 'UTF-8' },
            Html: { Data: expect.stringContaining('<!DOCTYPE html>'), Charset: 'UTF-8' },
          },
        },
      },
    });
    expect(emfDocuments()).toContainEqual(expect.objectContaining({ NotificationFailures: 0, Stack: STACK }));
  });

  it('logs, counts and returns FAILED without throwing when SES rejects the send', async () => {
    sesMock.on(SendEmailCommand).rejects(
      Object.assign(new Error('Email address is not verified: backups@example.com'), {
        name: 'MessageRejected',
      }),
    );
    vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'INFO');

    const result = await handler(failureRecord(), makeLambdaContext());

    expect(result).toEqual({
      status: 'FAILED',
      kind: 'invocation-failure',
      error: 'Email address is not verified: backups@example.com',
    });
    const emf = emfDocuments();
    expect(emf).toHaveLength(1);
    expect(emf[0]).toMatchObject({
      NotificationFailures: 1,
      Stack: STACK,
      _aws: {
        CloudWatchMetrics: [
          {
            Namespace: 'MediaBackup',
            Dimensions: [['Stack']],
            Metrics: [{ Name: 'NotificationFailures', Unit: 'Count' }],
          },
        ],
      },
    });
    const errorLine = stderr
      .join('')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((log) => log.level === 'ERROR');
    expect(errorLine).toMatchObject({
      message: 'notification not sent: SES refused or failed',
      operation: 'notify',
      kind: 'invocation-failure',
      errorName: 'MessageRejected',
      error: 'Email address is not verified: backups@example.com',
    });
  });

  it('counts a misconfigured function as a failure, naming the variable, without calling SES', async () => {
    vi.stubEnv('NOTIFICATION_EMAIL', '');

    const result = await handler({ kind: 'digest' }, makeLambdaContext());

    expect(result).toMatchObject({
      status: 'FAILED',
      kind: 'digest',
      error: expect.stringMatching(/NOTIFICATION_EMAIL/),
    });
    expect(sesMock.commandCalls(SendEmailCommand)).toHaveLength(0);
    expect(emfDocuments()).toContainEqual(expect.objectContaining({ NotificationFailures: 1 }));
  });

  it('returns IGNORED for an unknown event, without a metric or a send', async () => {
    const result = await handler({ hello: 'world' }, makeLambdaContext());

    expect(result).toMatchObject({ status: 'IGNORED', reason: expect.stringMatching(/"hello"/) });
    expect(sesMock.commandCalls(SendEmailCommand)).toHaveLength(0);
    expect(emfDocuments()).toEqual([]);
  });
});
