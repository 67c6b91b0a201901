import { writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import {
  type AwsCommand,
  alarmActionVerdict,
  parseSmokeArgs,
  SmokeUsageError,
  smoke,
  smokeCommands,
} from '../../scripts/smoke.js';

const NOW = () => new Date('2026-12-01T10:00:00.000Z');
const OUTPUTS = [
  { OutputKey: 'BackupFunctionName', OutputValue: 'MediaBackup-BackupFn' },
  { OutputKey: 'VerifyFunctionName', OutputValue: 'MediaBackup-VerifyFn' },
  { OutputKey: 'BackupStoreUrl', OutputValue: 's3://my-bucket/media-backups/' },
  { OutputKey: 'AlarmTopicArn', OutputValue: 'arn:aws:sns:eu-west-1:123456789012:alarms' },
];

async function runSmoke(argv: string[], run?: (command: AwsCommand) => Promise<string>) {
  const lines: string[] = [];
  const code = await smoke(argv, {
    print: (line) => lines.push(line),
    now: NOW,
    sleep: async () => {},
    ...(run ? { run } : {}),
  });
  return { code, lines };
}

describe('smoke check arguments', () => {
  it('defaults to the MediaBackup stack, an auto backup and the backup-duration alarm', () => {
    expect(parseSmokeArgs([])).toEqual({
      stack: 'MediaBackup',
      region: undefined,
      profile: undefined,
      backupType: 'auto',
      alarm: undefined,
      skipBackup: false,
      dryRun: false,
      alarmWaitSeconds: 120,
    });
  });

  it('reads every flag, as --flag value and --flag=value', () => {
    expect(
      parseSmokeArgs([
        '--stack=Media2',
        '--region',
        'eu-central-1',
        '--profile',
        'ops',
        '--backup-type',
        'full',
        '--alarm',
        'Media2-notification-failures',
        '--alarm-wait=30',
        '--skip-backup',
        '--dry-run',
      ]),
    ).toEqual({
      stack: 'Media2',
      region: 'eu-central-1',
      profile: 'ops',
      backupType: 'full',
      alarm: 'Media2-notification-failures',
      skipBackup: true,
      dryRun: true,
      alarmWaitSeconds: 30,
    });
  });

  it.each([
    [['--bogus'], /unknown argument "--bogus"/],
    [['--stack'], /--stack needs a value/],
    [['--stack', '--dry-run'], /--stack needs a value/],
    [['--stack', 'my stack'], /--stack must be a CloudFormation stack name/],
    [['--region', 'Frankfurt'], /--region must be a region like eu-west-1 \(got "Frankfurt"\)/],
    [['--backup-type', 'weekly'], /--backup-type must be one of auto, full, incremental/],
    [['--alarm-wait', '5'], /--alarm-wait must be a whole number of seconds from 10 to 900/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseSmokeArgs(argv)).toThrow(SmokeUsageError);
    expect(() => parseSmokeArgs(argv)).toThrow(message);
  });

  it('prints the usage and exits 2 on a bad argument, running nothing', async () => {
    const { code, lines } = await runSmoke(['--bogus'], async () => {
      throw new Error('nothing may run');
    });
    expect(code).toBe(2);
    expect(lines.join('\n')).toMatch(/usage: npm run smoke --/);
  });
});

describe('smoke check commands', () => {
  it('--dry-run prints every command in order and runs none', async () => {
    const { code, lines } = await runSmoke(['--dry-run', '--region', 'eu-west-1'], async () => {
      throw new Error('nothing may run');
    });

    expect(code).toBe(0);
    expect(lines.filter((line) => !line.startsWith('#'))).toEqual([
      "aws cloudformation describe-stacks --stack-name MediaBackup --query 'Stacks[0].Outputs' --output json --region eu-west-1",
      "aws cloudwatch set-alarm-state --alarm-name MediaBackup-backup-duration --state-value ALARM --state-reason 'media-backup smoke check: testing alarm delivery' --region eu-west-1",
      'aws cloudwatch describe-alarm-history --alarm-name MediaBackup-backup-duration --history-item-type Action --start-date 2026-12-01T10:00:00.000Z --output json --region eu-west-1',
      `AWS_MAX_ATTEMPTS=1 aws lambda invoke --function-name '<BackupFunctionName>' --cli-read-timeout 0 --cli-binary-format raw-in-base64-out --payload '{"type":"auto"}' --region eu-west-1 /tmp/smoke-backup.json`,
      `AWS_MAX_ATTEMPTS=1 aws lambda invoke --function-name '<VerifyFunctionName>' --cli-read-timeout 0 --cli-binary-format raw-in-base64-out --payload '{"backup":"latest"}' --region eu-west-1 /tmp/smoke-verify.json`,
      "aws s3 cp 's3://<bucket>/<prefix>/status/last-run.json' - --region eu-west-1",
    ]);
  });

  it('every lambda invoke runs with AWS_MAX_ATTEMPTS=1 (a CLI retry would invoke again)', () => {
    const commands = smokeCommands(
      parseSmokeArgs(['--backup-type', 'full']),
      Object.fromEntries(OUTPUTS.map((o) => [o.OutputKey, o.OutputValue])) as never,
      NOW().toISOString(),
      (name) => `/x/${name}.json`,
    );
    const invokes = commands.filter((c) => c.args[0] === 'lambda');
    expect(invokes).toHaveLength(2);
    for (const invoke of invokes) expect(invoke.env).toEqual({ AWS_MAX_ATTEMPTS: '1' });
    expect(invokes[0]!.args).toContain('{"type":"full"}');
  });

  it('--skip-backup leaves out the invokes', () => {
    const commands = smokeCommands(
      parseSmokeArgs(['--skip-backup']),
      Object.fromEntries(OUTPUTS.map((o) => [o.OutputKey, o.OutputValue])) as never,
      NOW().toISOString(),
      (name) => name,
    );
    expect(commands.map((c) => c.args.slice(0, 2).join(' '))).toEqual([
      'cloudwatch set-alarm-state',
      'cloudwatch describe-alarm-history',
      's3 cp',
    ]);
  });

  it.each([
    [[{ HistorySummary: 'Successfully executed action arn:aws:sns:eu-west-1:1:alarms' }], 'succeeded'],
    [
      [
        {
          HistorySummary:
            'Failed to execute action arn:aws:sns:eu-west-1:1:alarms. Received error: "CloudWatch Alarms is not authorized to perform: SNS:Publish"',
        },
      ],
      'failed',
    ],
    [[], 'pending'],
  ])('reads the alarm history %j as %s', (items, verdict) => {
    expect(alarmActionVerdict(JSON.stringify({ AlarmHistoryItems: items }))).toBe(verdict);
  });
});

describe('smoke check run (AWS CLI faked)', () => {
  function fakeAws(history: string, lastRun: object) {
    const ran: string[] = [];
    const run = async (command: AwsCommand) => {
      ran.push(command.args.slice(0, 2).join(' '));
      switch (command.args[1]) {
        case 'describe-stacks':
          return JSON.stringify(OUTPUTS);
        case 'describe-alarm-history':
          return JSON.stringify({ AlarmHistoryItems: [{ HistorySummary: history }] });
        case 'invoke':
          await writeFile(
            command.args.at(-1)!,
            JSON.stringify({ status: 'SUCCEEDED', backupId: 'backup_20261201_100000' }),
          );
          return '{"StatusCode":200}';
        case 'cp':
          return JSON.stringify(lastRun);
        default:
          return '';
      }
    };
    return { run, ran };
  }

  it('passes when the alarm action succeeded, both invokes succeeded and the status says SUCCEEDED', async () => {
    const aws = fakeAws('Successfully executed action arn:aws:sns:x', { status: 'SUCCEEDED', backupId: 'b' });
    const { code, lines } = await runSmoke([], aws.run);

    expect(code).toBe(0);
    expect(lines.at(-1)).toBe('smoke check passed');
    expect(aws.ran).toEqual([
      'cloudformation describe-stacks',
      'cloudwatch set-alarm-state',
      'cloudwatch describe-alarm-history',
      'lambda invoke',
      'lambda invoke',
      's3 cp',
    ]);
  });

  it('fails naming the topic policy when CloudWatch could not publish', async () => {
    const aws = fakeAws('Failed to execute action arn:aws:sns:x', { status: 'SUCCEEDED' });
    const { code, lines } = await runSmoke([], aws.run);

    expect(code).toBe(1);
    expect(lines.at(-1)).toMatch(
      /FAIL MediaBackup-backup-duration: CloudWatch could not publish to the alarm topic.*topic policy/,
    );
    expect(aws.ran).not.toContain('lambda invoke');
  });

  it('fails when the status object records FAILED', async () => {
    const aws = fakeAws('Successfully executed action x', {
      status: 'FAILED',
      error: { name: 'X', message: 'no media' },
    });
    const { code, lines } = await runSmoke([], aws.run);

    expect(code).toBe(1);
    expect(lines.at(-1)).toMatch(/FAIL status\/last-run.json records "FAILED"/);
  });

  it('fails naming the missing outputs of an older stack', async () => {
    const { code, lines } = await runSmoke([], async () => JSON.stringify(OUTPUTS.slice(0, 2)));

    expect(code).toBe(1);
    expect(lines.at(-1)).toMatch(/has no output BackupStoreUrl, AlarmTopicArn: deploy this version/);
  });
});
