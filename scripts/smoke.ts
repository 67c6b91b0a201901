/**
 * Post-deploy smoke check of a media-backup stack, with the AWS CLI and the stack's outputs:
 *
 * 1. reads the stack outputs (`aws cloudformation describe-stacks`);
 * 2. sets one alarm that publishes to the alarm topic to ALARM (`aws cloudwatch set-alarm-state`) and
 *    waits for its history to show the SNS action succeeded: the proof that CloudWatch may publish
 *    to the topic (a topic policy without that Allow fails here, and nowhere else before a real
 *    failure);
 * 3. invokes a backup and a quick verify of the latest backup (never retried: `AWS_MAX_ATTEMPTS=1`);
 * 4. reads the status object (`status/last-run.json`) and expects SUCCEEDED.
 *
 * `npm run smoke -- --stack MediaBackup [--region eu-west-1] [--profile p] [--backup-type auto]
 * [--alarm <name>] [--skip-backup] [--dry-run]`. `--dry-run` prints the commands and runs nothing.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** Parsed command line. */
export interface SmokeOptions {
  readonly stack: string;
  readonly region: string | undefined;
  readonly profile: string | undefined;
  readonly backupType: 'auto' | 'full' | 'incremental';
  /** Alarm to set to ALARM; default `<stack>-backup-duration` (a metric alarm that publishes). */
  readonly alarm: string | undefined;
  readonly skipBackup: boolean;
  readonly dryRun: boolean;
  /** How long to wait for the alarm action to show in the history. */
  readonly alarmWaitSeconds: number;
}

/** Thrown for a bad command line; the message says what to write instead. */
export class SmokeUsageError extends Error {
  override readonly name = 'SmokeUsageError';
}

/** Thrown when a check fails; the message says which and what to look at. */
export class SmokeCheckError extends Error {
  override readonly name = 'SmokeCheckError';
}

export const USAGE =
  'usage: npm run smoke -- [--stack MediaBackup] [--region <region>] [--profile <profile>] ' +
  '[--backup-type auto|full|incremental] [--alarm <alarm name>] [--alarm-wait <seconds>] [--skip-backup] [--dry-run]';

const BACKUP_TYPES = ['auto', 'full', 'incremental'] as const;

/** Parse `argv` (without node and the script). */
export function parseSmokeArgs(argv: readonly string[]): SmokeOptions {
  let stack = 'MediaBackup';
  let region: string | undefined;
  let profile: string | undefined;
  let backupType: SmokeOptions['backupType'] = 'auto';
  let alarm: string | undefined;
  let skipBackup = false;
  let dryRun = false;
  let alarmWaitSeconds = 120;
  const value = (i: number, flag: string): string => {
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--'))
      throw new SmokeUsageError(`${flag} needs a value\n${USAGE}`);
    return next;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const [flag, inline] =
      arg.startsWith('--') && arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg, undefined];
    const take = (): string => {
      if (inline !== undefined) return inline;
      const v = value(i, flag as string);
      i++;
      return v;
    };
    switch (flag) {
      case '--stack':
        stack = take();
        if (!/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(stack)) {
          throw new SmokeUsageError(
            `--stack must be a CloudFormation stack name like MediaBackup (got ${JSON.stringify(stack)})`,
          );
        }
        break;
      case '--region':
        region = take();
        if (!/^[a-z]{2}(?:-[a-z]+)+-\d$/.test(region)) {
          throw new SmokeUsageError(
            `--region must be a region like eu-west-1 (got ${JSON.stringify(region)})`,
          );
        }
        break;
      case '--profile':
        profile = take();
        break;
      case '--backup-type': {
        const type = take();
        if (!(BACKUP_TYPES as readonly string[]).includes(type)) {
          throw new SmokeUsageError(
            `--backup-type must be one of ${BACKUP_TYPES.join(', ')} (got ${JSON.stringify(type)})`,
          );
        }
        backupType = type as SmokeOptions['backupType'];
        break;
      }
      case '--alarm':
        alarm = take();
        break;
      case '--alarm-wait': {
        const seconds = Number(take());
        if (!Number.isSafeInteger(seconds) || seconds < 10 || seconds > 900) {
          throw new SmokeUsageError('--alarm-wait must be a whole number of seconds from 10 to 900');
        }
        alarmWaitSeconds = seconds;
        break;
      }
      case '--skip-backup':
        skipBackup = true;
        break;
      case '--dry-run':
        dryRun = true;
        break;
      case '--help':
      case '-h':
        throw new SmokeUsageError(USAGE);
      default:
        throw new SmokeUsageError(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`);
    }
  }
  return { stack, region, profile, backupType, alarm, skipBackup, dryRun, alarmWaitSeconds };
}

/** One AWS CLI call: what it checks, its arguments, and extra environment. */
export interface AwsCommand {
  readonly step: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

/** The stack outputs the smoke check reads. */
export const NEEDED_OUTPUTS = [
  'BackupFunctionName',
  'VerifyFunctionName',
  'BackupStoreUrl',
  'AlarmTopicArn',
] as const;
export type StackOutputs = Readonly<Record<(typeof NEEDED_OUTPUTS)[number], string>>;

function common(options: SmokeOptions): string[] {
  return [
    ...(options.region ? ['--region', options.region] : []),
    ...(options.profile ? ['--profile', options.profile] : []),
  ];
}

export function describeStackCommand(options: SmokeOptions): AwsCommand {
  return {
    step: 'read the stack outputs',
    args: [
      'cloudformation',
      'describe-stacks',
      '--stack-name',
      options.stack,
      '--query',
      'Stacks[0].Outputs',
      '--output',
      'json',
      ...common(options),
    ],
  };
}

/** The alarm the check sets: a metric alarm that publishes to the topic itself. */
export function alarmName(options: SmokeOptions): string {
  return options.alarm ?? `${options.stack}-backup-duration`;
}

/**
 * The commands after the outputs are known, in order. `since` is the ISO time the alarm history is
 * read from; `outFile(name)` is where an invoke writes its response.
 */
export function smokeCommands(
  options: SmokeOptions,
  outputs: StackOutputs,
  since: string,
  outFile: (name: string) => string,
): AwsCommand[] {
  const alarm = alarmName(options);
  const noRetry = { AWS_MAX_ATTEMPTS: '1' };
  const invoke = (fn: string, payload: object, name: string): AwsCommand => ({
    step: `invoke ${fn} with ${JSON.stringify(payload)}`,
    env: noRetry,
    args: [
      'lambda',
      'invoke',
      '--function-name',
      fn,
      '--cli-read-timeout',
      '0',
      '--cli-binary-format',
      'raw-in-base64-out',
      '--payload',
      JSON.stringify(payload),
      ...common(options),
      outFile(name),
    ],
  });
  const store = outputs.BackupStoreUrl.endsWith('/') ? outputs.BackupStoreUrl : `${outputs.BackupStoreUrl}/`;
  return [
    {
      step: `set ${alarm} to ALARM (it returns to its real state at its next evaluation)`,
      args: [
        'cloudwatch',
        'set-alarm-state',
        '--alarm-name',
        alarm,
        '--state-value',
        'ALARM',
        '--state-reason',
        'media-backup smoke check: testing alarm delivery',
        ...common(options),
      ],
    },
    {
      step: `read ${alarm}'s action history: the SNS action must have succeeded`,
      args: [
        'cloudwatch',
        'describe-alarm-history',
        '--alarm-name',
        alarm,
        '--history-item-type',
        'Action',
        '--start-date',
        since,
        '--output',
        'json',
        ...common(options),
      ],
    },
    ...(options.skipBackup
      ? []
      : [
          invoke(outputs.BackupFunctionName, { type: options.backupType }, 'backup'),
          invoke(outputs.VerifyFunctionName, { backup: 'latest' }, 'verify'),
        ]),
    {
      step: 'read the status object of the last backup run',
      args: ['s3', 'cp', `${store}status/last-run.json`, '-', ...common(options)],
    },
  ];
}

/** Outputs from `describe-stacks --query Stacks[0].Outputs`, checked for what the smoke check needs. */
export function readOutputs(json: string, stack: string): StackOutputs {
  const list = JSON.parse(json) as { OutputKey: string; OutputValue: string }[] | null;
  const found = Object.fromEntries((list ?? []).map((o) => [o.OutputKey, o.OutputValue]));
  const missing = NEEDED_OUTPUTS.filter((key) => !found[key]);
  if (missing.length > 0) {
    throw new SmokeCheckError(
      `stack ${stack} has no output ${missing.join(', ')}: deploy this version of the stack first (npx cdk deploy)`,
    );
  }
  return found as StackOutputs;
}

/** The verdict on an alarm's action history (`describe-alarm-history --history-item-type Action`). */
export function alarmActionVerdict(json: string): 'succeeded' | 'failed' | 'pending' {
  const items =
    (JSON.parse(json) as { AlarmHistoryItems?: { HistorySummary?: string }[] }).AlarmHistoryItems ?? [];
  const summaries = items.map((item) => item.HistorySummary ?? '');
  if (summaries.some((s) => /^Failed to execute action/i.test(s))) return 'failed';
  if (summaries.some((s) => /^Successfully executed action/i.test(s))) return 'succeeded';
  return 'pending';
}

/** The line a shell would run: `AWS_MAX_ATTEMPTS=1 aws lambda invoke ...`, quoted where needed. */
export function shellLine(command: AwsCommand): string {
  const quote = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);
  const env = Object.entries(command.env ?? {}).map(([k, v]) => `${k}=${quote(v)}`);
  return [...env, 'aws', ...command.args.map(quote)].join(' ');
}

/** Runs one AWS CLI command and returns its stdout. */
export type AwsRunner = (command: AwsCommand) => Promise<string>;

const execFileAsync = promisify(execFile);
const runAws: AwsRunner = async (command) => {
  const { stdout } = await execFileAsync('aws', [...command.args], {
    env: { ...process.env, ...command.env },
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
};

const PLACEHOLDER_OUTPUTS: StackOutputs = {
  BackupFunctionName: '<BackupFunctionName>',
  VerifyFunctionName: '<VerifyFunctionName>',
  BackupStoreUrl: 's3://<bucket>/<prefix>/',
  AlarmTopicArn: '<AlarmTopicArn>',
};

/**
 * The smoke check. Returns the exit code; `print` gets every line of output. `run` and `sleep` are
 * injected so that tests can drive it without AWS.
 */
export async function smoke(
  argv: readonly string[],
  deps: {
    print: (line: string) => void;
    run?: AwsRunner;
    sleep?: (ms: number) => Promise<void>;
    now?: () => Date;
  },
): Promise<number> {
  const { print } = deps;
  let options: SmokeOptions;
  try {
    options = parseSmokeArgs(argv);
  } catch (error) {
    print((error as Error).message);
    return 2;
  }
  const run = deps.run ?? runAws;
  const sleep = deps.sleep ?? ((ms: number) => new Promise((resolve) => setTimeout(resolve, ms)));
  const since = (deps.now ?? (() => new Date()))().toISOString();

  if (options.dryRun) {
    print('# dry run: the commands the smoke check runs, in order (nothing is run)');
    print(`# ${describeStackCommand(options).step}`);
    print(shellLine(describeStackCommand(options)));
    for (const command of smokeCommands(
      options,
      PLACEHOLDER_OUTPUTS,
      since,
      (name) => `/tmp/smoke-${name}.json`,
    )) {
      print(`# ${command.step}`);
      print(shellLine(command));
    }
    return 0;
  }

  const scratch = await mkdtemp(path.join(tmpdir(), 'media-backup-smoke-'));
  try {
    const outputs = readOutputs(await run(describeStackCommand(options)), options.stack);
    print(`ok   stack ${options.stack}: outputs read`);
    const commands = smokeCommands(options, outputs, since, (name) => path.join(scratch, `${name}.json`));
    for (const command of commands) {
      if (command.args[1] === 'describe-alarm-history') {
        await waitForAlarmAction(command, options, run, sleep, print);
      } else if (command.args[0] === 'lambda') {
        await run(command);
        const response = JSON.parse(await readFile(command.args.at(-1) as string, 'utf8'));
        if (response?.errorMessage || response?.status !== 'SUCCEEDED') {
          throw new SmokeCheckError(
            `${command.step} did not succeed: ${JSON.stringify(response).slice(0, 500)}. Read the function log (FollowLogsCommand output).`,
          );
        }
        print(`ok   ${command.step}: ${response.backupId ?? response.backups?.[0]?.backupId ?? 'SUCCEEDED'}`);
      } else if (command.args[0] === 's3') {
        const status = JSON.parse(await run(command));
        if (status?.status !== 'SUCCEEDED') {
          throw new SmokeCheckError(
            `status/last-run.json records ${JSON.stringify(status?.status)}, not SUCCEEDED: ${JSON.stringify(status?.error ?? status).slice(0, 300)}`,
          );
        }
        print(
          `ok   last run SUCCEEDED (${status.backupId ?? 'no id'}, finished ${status.finishedAt ?? '?'})`,
        );
      } else {
        await run(command);
        print(`ok   ${command.step}`);
      }
    }
    print('smoke check passed');
    return 0;
  } catch (error) {
    print(`FAIL ${(error as Error).message}`);
    return 1;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function waitForAlarmAction(
  command: AwsCommand,
  options: SmokeOptions,
  run: AwsRunner,
  sleep: (ms: number) => Promise<void>,
  print: (line: string) => void,
): Promise<void> {
  const deadline = options.alarmWaitSeconds * 1000;
  for (let waited = 0; ; waited += 10_000) {
    const verdict = alarmActionVerdict(await run(command));
    if (verdict === 'succeeded') {
      print(`ok   ${alarmName(options)}: the SNS action succeeded (CloudWatch may publish to the topic)`);
      return;
    }
    if (verdict === 'failed') {
      throw new SmokeCheckError(
        `${alarmName(options)}: CloudWatch could not publish to the alarm topic (the history says "Failed to execute action"). ` +
          "Check the topic policy allows cloudwatch.amazonaws.com for this account's alarms: " +
          `aws sns get-topic-attributes --topic-arn <AlarmTopicArn> --query Attributes.Policy`,
      );
    }
    if (waited >= deadline) {
      throw new SmokeCheckError(
        `${alarmName(options)}: no action in its history after ${options.alarmWaitSeconds} s. Is the alarm's action enabled, ` +
          'and was it already in ALARM (set-alarm-state to a state it is already in runs no action)?',
      );
    }
    await sleep(10_000);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  smoke(process.argv.slice(2), { print: (line) => process.stdout.write(`${line}\n`) }).then(
    (code) => {
      process.exitCode = code;
    },
    (error) => {
      process.stderr.write(`${(error as Error).stack ?? error}\n`);
      process.exitCode = 1;
    },
  );
}
