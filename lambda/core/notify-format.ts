import type { BackupListing } from './status.js';

/**
 * Notification emails, as plain data: each function turns one kind of event into a subject, a
 * plain-text body and an HTML body. Pure (time comes in as arguments), so every wording is tested
 * without SES. Every value that came from an event, a log or the store is HTML-escaped in the HTML
 * part: error messages carry file names and paths, and a mail client renders whatever it is given.
 */

export interface NotificationEmail {
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

/**
 * The record Lambda sends to an asynchronous invocation's destination (on-failure or on-success).
 * https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
 */
export interface DestinationRecord {
  readonly version: string;
  readonly timestamp: string;
  readonly requestContext: {
    readonly requestId: string;
    /** Usually qualified: `arn:aws:lambda:REGION:ACCOUNT:function:NAME:$LATEST`. */
    readonly functionArn: string;
    readonly condition: 'Success' | 'RetriesExhausted' | 'EventAgeExceeded';
    readonly approximateInvokeCount: number;
  };
  /** The event the function was invoked with. */
  readonly requestPayload: unknown;
  /** Absent when the function never ran (an event can expire in the queue). */
  readonly responseContext?: {
    readonly statusCode?: number;
    readonly executedVersion?: string;
    readonly functionError?: string;
  };
  /** The function's result, or `{errorType, errorMessage, trace}` when it threw. */
  readonly responsePayload?: unknown;
}

/** The JSON CloudWatch puts in the SNS message when an alarm changes state. */
export interface AlarmStateChange {
  readonly AlarmName: string;
  readonly AlarmDescription?: string | null;
  readonly AWSAccountId?: string;
  readonly NewStateValue: string;
  readonly NewStateReason?: string;
  readonly OldStateValue?: string;
  readonly StateChangeTime?: string;
  /** A display name such as "US East (N. Virginia)", not a region code. */
  readonly Region?: string;
  /** `arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME`: where the region code really is. */
  readonly AlarmArn?: string;
}

/** A committed backup named in an email. */
export interface BackupRef {
  readonly backupId: string;
  readonly createdAt: string;
}

/** The latest committed backup, `none` when the store holds none, `unknown` when it could not be read. */
export type LastGoodBackup = BackupRef | 'none' | 'unknown';

export type Operation = 'backup' | 'restore' | 'verify';

/** Settings every email shares. */
export interface EmailContext {
  /** Prefix of every subject, so a mailbox rule can sort the stack's mail. */
  readonly stackName: string;
}

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

/**
 * A subject is one header line: control characters (a newline in an error message) would end it, so
 * they become spaces, and very long subjects are cut (mail clients show ~80 characters anyway).
 */
function subjectLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
  const flat = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 197)}...` : flat;
}

/** Wraps a single-quoted shell word; a `'` inside becomes `'\''`. */
function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]` -> name and region. */
export function parseFunctionArn(arn: string): { functionName: string; region: string | undefined } {
  const parts = arn.split(':');
  if (parts.length >= 7 && parts[0] === 'arn' && parts[2] === 'lambda' && parts[5] === 'function') {
    return { functionName: parts[6], region: parts[3] || undefined };
  }
  // Not an ARN: Lambda accepts a bare name too, so show what there is.
  return { functionName: arn, region: undefined };
}

/**
 * Which operation a destination record is about. The function's name decides first, checking
 * `restore` and `verify` before `backup` because every function of the stack has "backup" in its
 * name (`MediaBackup-RestoreFunction…`); then the payload's shape (docs/ARCHITECTURE.md, Lambda events).
 */
export function inferOperation(functionName: string, payload: unknown): Operation | undefined {
  const name = functionName.toLowerCase();
  if (name.includes('restore')) return 'restore';
  if (name.includes('verify')) return 'verify';
  if (isRecord(payload)) {
    if (['target', 'mode', 'dryRun', 'paths', 'at'].some((field) => field in payload)) return 'restore';
    if ('type' in payload) return 'backup';
  }
  if (name.includes('backup')) return 'backup';
  return undefined;
}

/** The CLI command that invokes the function again with the same event. */
export function retryCommand(functionName: string, payload: unknown): string {
  const json = JSON.stringify(payload ?? {}) ?? '{}';
  return `aws lambda invoke --function-name ${functionName} --cli-binary-format raw-in-base64-out --payload ${shellQuote(json)} out.json`;
}

/** The error a failed invocation reported, whatever shape its payload has. */
function reportedError(record: DestinationRecord): { type: string; message: string; trace: string[] } {
  const payload = record.responsePayload;
  if (
    isRecord(payload) &&
    (typeof payload.errorType === 'string' || typeof payload.errorMessage === 'string')
  ) {
    return {
      type: typeof payload.errorType === 'string' ? payload.errorType : 'Error',
      message: typeof payload.errorMessage === 'string' ? payload.errorMessage : '(no message)',
      trace: Array.isArray(payload.trace) ? payload.trace.map(String) : [],
    };
  }
  if (record.requestContext.condition === 'EventAgeExceeded') {
    return {
      type: 'EventAgeExceeded',
      message:
        'the event waited in the asynchronous queue longer than the maximum event age and was dropped; the function may not have run at all (throttling, or reserved concurrency of 0)',
      trace: [],
    };
  }
  const functionError = record.responseContext?.functionError;
  return {
    type: functionError ?? 'UnknownError',
    message:
      payload === undefined ? '(the function returned no error details)' : (JSON.stringify(payload) ?? ''),
    trace: [],
  };
}

const OPERATION_LABEL: Record<Operation, string> = {
  backup: 'Backup',
  restore: 'Restore',
  verify: 'Verify',
};

function lastGoodText(last: LastGoodBackup): string {
  if (last === 'none') return 'none: the store holds no committed backup';
  if (last === 'unknown') return 'unknown: the backup store could not be read';
  return `${last.backupId} (taken ${last.createdAt})`;
}

/** What an operator should do next, by operation and error name. */
function nextSteps(operation: Operation | undefined, errorType: string, record: DestinationRecord): string[] {
  const steps: string[] = [];
  if (record.requestContext.condition === 'EventAgeExceeded') {
    steps.push(
      "The event expired before the function could run it: check the function's throttles and concurrency in the Lambda console, then run it again with the command below.",
    );
  }
  switch (errorType) {
    case 'BackupDeadlineError':
      steps.push(
        'The run hit its time limit. Give the function more memory (CPU grows with memory, and compression is CPU-bound), or exclude folders with BACKUP_EXCLUDE.',
      );
      break;
    case 'LockHeldError':
      steps.push(
        'Another backup was running at the time. Wait for it to finish (or for its lock to expire), then run again.',
      );
      break;
    case 'SourceError':
      steps.push(
        'The media folder could not be read: check that the file system is mounted at EFS_MOUNT and MEDIA_PATH exists.',
      );
      break;
    case 'EventValidationError':
    case 'HandlerConfigError':
      steps.push(
        'The event or the function settings are wrong (the message names the field or variable). Retrying the same event cannot succeed: fix it first.',
      );
      break;
    default:
      steps.push(
        "Read the function's log for this request id (CloudWatch Logs, log group /aws/lambda/<function>) to find the cause.",
      );
  }
  if (operation === 'backup') {
    steps.push(
      'Nothing half-written is ever offered for restore: the backups taken before are intact. Once the cause is fixed, run the backup again with the command below.',
    );
  } else if (operation === 'restore') {
    steps.push(
      'A failed restore leaves the live media folder untouched (its staging folder is removed). Once the cause is fixed, try it first with "dryRun": true, then run it again with the command below.',
    );
  } else {
    steps.push('Once the cause is fixed, run it again with the command below.');
  }
  return steps;
}

/** A label/value table in both parts. */
function factsText(facts: readonly (readonly [string, string])[]): string {
  return facts.map(([label, value]) => `${label}: ${value}`).join('\n');
}

function factsHtml(facts: readonly (readonly [string, string])[]): string {
  const rows = facts
    .map(
      ([label, value]) =>
        `<tr><th align="left" valign="top" style="padding:2px 12px 2px 0">${escapeHtml(label)}</th><td style="padding:2px 0">${escapeHtml(value)}</td></tr>`,
    )
    .join('');
  return `<table style="border-collapse:collapse">${rows}</table>`;
}

function htmlPage(title: string, body: string): string {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body style="font-family:sans-serif">${body}</body></html>`;
}

function preHtml(text: string): string {
  return `<pre style="background:#f4f4f4;padding:8px;white-space:pre-wrap">${escapeHtml(text)}</pre>`;
}

/**
 * An on-failure destination record: a backup, restore or verify invocation that failed after Lambda's
 * retries (or expired in the queue). Says what failed, the error, the last good backup, what to do
 * next and the CLI command that runs the same event again.
 */
export function formatInvocationFailure(
  record: DestinationRecord,
  lastGood: LastGoodBackup,
  ctx: EmailContext,
): NotificationEmail {
  const { functionName, region } = parseFunctionArn(record.requestContext.functionArn);
  const operation = inferOperation(functionName, record.requestPayload);
  const error = reportedError(record);
  const label = operation ? OPERATION_LABEL[operation] : 'Invocation';
  const subject = subjectLine(`[${ctx.stackName}] ${label} FAILED: ${error.type} (${functionName})`);
  const command = retryCommand(functionName, record.requestPayload);
  const facts: [string, string][] = [
    ['What failed', `${operation ?? 'an invocation'} of Lambda function ${functionName}`],
    ['Function', functionName],
    ['Region', region ?? 'unknown'],
    ['When', record.timestamp],
    ['Request id', record.requestContext.requestId],
    [
      'Why Lambda gave up',
      `${record.requestContext.condition} after ${record.requestContext.approximateInvokeCount} attempt(s)`,
    ],
    ['Error', `${error.type}: ${error.message}`],
    ['Event', JSON.stringify(record.requestPayload ?? {}) ?? '{}'],
    ['Last good backup', lastGoodText(lastGood)],
  ];
  const steps = nextSteps(operation, error.type, record);
  const intro = `The ${operation ?? 'invocation'} run by ${functionName} failed.`;
  const text = [
    intro,
    '',
    factsText(facts),
    '',
    'What to do next:',
    ...steps.map((step) => `- ${step}`),
    '',
    'Run it again with the same event:',
    `  ${command}`,
    ...(error.trace.length > 0 ? ['', 'Stack trace:', ...error.trace.map((line) => `  ${line}`)] : []),
    '',
  ].join('\n');
  const html = htmlPage(
    subject,
    [
      `<h2>${escapeHtml(label)} failed</h2>`,
      `<p>${escapeHtml(intro)}</p>`,
      factsHtml(facts),
      '<h3>What to do next</h3>',
      `<ul>${steps.map((step) => `<li>${escapeHtml(step)}</li>`).join('')}</ul>`,
      '<h3>Run it again with the same event</h3>',
      preHtml(command),
      ...(error.trace.length > 0 ? ['<h3>Stack trace</h3>', preHtml(error.trace.join('\n'))] : []),
    ].join(''),
  );
  return { subject, text, html };
}

/**
 * A success record. Backups succeed every night and the digest and the health alarms cover them, so
 * they send nothing (null). A finished restore (or dry-run restore) does send one: a restore is rare,
 * started by a person, and may run for many minutes after the CLI call returned.
 */
export function formatInvocationSuccess(
  record: DestinationRecord,
  ctx: EmailContext,
): NotificationEmail | null {
  const { functionName } = parseFunctionArn(record.requestContext.functionArn);
  if (inferOperation(functionName, record.requestPayload) !== 'restore') return null;
  const result = isRecord(record.responsePayload) ? record.responsePayload : {};
  const shown = (value: unknown) => (value === undefined || value === null ? '-' : String(value));
  const dryRun = result.dryRun === true;
  const backupId = shown(result.backupId);
  const subject = subjectLine(
    `[${ctx.stackName}] ${dryRun ? 'Test restore (dry run) passed' : 'Restore finished'}: ${backupId}`,
  );
  const facts: [string, string][] = [
    ['Backup', backupId],
    [
      'Target',
      dryRun
        ? 'none (dry run: downloaded and verified, nothing written)'
        : shown(result.targetPath ?? result.target),
    ],
    ['Mode', shown(result.mode)],
    ['Files', shown(result.files)],
    ['Bytes', shown(result.bytes)],
    ['Every file checked against its sha256', result.verified === true ? 'yes' : 'no'],
    ['Previous tree kept at', shown(result.previousTree)],
    ['Function', functionName],
    ['When', record.timestamp],
    ['Request id', record.requestContext.requestId],
  ];
  const intro = dryRun
    ? `The test restore of ${backupId} read and verified every file; nothing was written.`
    : `The restore of ${backupId} finished.`;
  const text = `${intro}\n\n${factsText(facts)}\n`;
  const html = htmlPage(
    subject,
    `<h2>${escapeHtml(dryRun ? 'Test restore passed' : 'Restore finished')}</h2><p>${escapeHtml(intro)}</p>${factsHtml(facts)}`,
  );
  return { subject, text, html };
}

const REGION_CODE = /^[a-z]{2}(?:-[a-z]+)+-\d+$/;

/**
 * The region code of an alarm. The message's `Region` is a display name ("US East (N. Virginia)"),
 * so the code comes from the alarm ARN, then the SNS topic ARN, then the fallback (the function's own).
 */
export function alarmRegion(alarm: AlarmStateChange, topicArn: string | undefined, fallback: string): string {
  for (const arn of [alarm.AlarmArn, topicArn]) {
    const region = arn?.split(':')[3];
    if (region && REGION_CODE.test(region)) return region;
  }
  if (alarm.Region && REGION_CODE.test(alarm.Region)) return alarm.Region;
  return fallback;
}

/** The CloudWatch console page of one alarm. */
export function alarmConsoleUrl(region: string, alarmName: string): string {
  return `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#alarmsV2:alarm/${encodeURIComponent(alarmName)}`;
}

/** An alarm state change delivered through SNS. An `OK` state is a recovery. */
export function formatAlarm(
  alarm: AlarmStateChange,
  options: { readonly topicArn?: string; readonly defaultRegion: string },
  ctx: EmailContext,
): NotificationEmail {
  const region = alarmRegion(alarm, options.topicArn, options.defaultRegion);
  const url = alarmConsoleUrl(region, alarm.AlarmName);
  const state = alarm.NewStateValue;
  const recovered = state === 'OK';
  const subject = subjectLine(
    recovered
      ? `[${ctx.stackName}] Recovered: ${alarm.AlarmName} is OK again`
      : `[${ctx.stackName}] ${state}: ${alarm.AlarmName}`,
  );
  const facts: [string, string][] = [
    ['Alarm', alarm.AlarmName],
    ['State', alarm.OldStateValue ? `${alarm.OldStateValue} -> ${state}` : state],
    ['Reason', alarm.NewStateReason ?? '-'],
    ['Time', alarm.StateChangeTime ?? '-'],
    ['Region', region],
    ...(alarm.AlarmDescription ? [['What it watches', alarm.AlarmDescription] as [string, string]] : []),
  ];
  const intro = recovered
    ? `The alarm ${alarm.AlarmName} is back to OK; no action is needed.`
    : state === 'ALARM'
      ? `The alarm ${alarm.AlarmName} went into ALARM. Open it in the console to see the metric, and check the backup functions' logs.`
      : `The alarm ${alarm.AlarmName} changed to ${state}.`;
  const text = `${intro}\n\n${factsText(facts)}\n\nConsole: ${url}\n`;
  const html = htmlPage(
    subject,
    `<h2>${escapeHtml(recovered ? 'Recovered' : state)}: ${escapeHtml(alarm.AlarmName)}</h2><p>${escapeHtml(intro)}</p>${factsHtml(facts)}<p><a href="${escapeHtml(url)}">Open the alarm in the CloudWatch console</a></p>`,
  );
  return { subject, text, html };
}

/** Health as the digest shows it (from the store's status, or a monitor report). */
export interface DigestHealth {
  readonly healthy: boolean;
  /** One sentence each; empty when healthy. */
  readonly problems: readonly string[];
}

export interface DigestInput {
  readonly now: Date;
  /** The store's committed backups, oldest first; `unknown` when the store could not be read. */
  readonly backups: readonly BackupListing[] | 'unknown';
  readonly health?: DigestHealth;
  /** The store's URL, to say which bucket the digest is about. */
  readonly store?: string;
}

const WEEK_MS = 7 * 24 * 3_600_000;

/** Bytes for people: 1536 -> "1.5 KiB". */
export function formatBytes(bytes: number | null): string {
  if (bytes === null) return 'unknown size';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** The weekly digest: backups taken in the last 7 days with sizes, the latest backup, health. */
export function formatDigest(input: DigestInput, ctx: EmailContext): NotificationEmail {
  const since = new Date(input.now.getTime() - WEEK_MS);
  const known = input.backups !== 'unknown';
  const all = known ? (input.backups as readonly BackupListing[]) : [];
  const week = all.filter((b) => Date.parse(b.createdAt) >= since.getTime());
  const uploaded = week.reduce((sum, b) => sum + (b.archiveBytes ?? 0), 0);
  const latest = all.at(-1);
  const healthWord = input.health ? (input.health.healthy ? 'healthy' : 'NEEDS ATTENTION') : undefined;
  const subject = subjectLine(
    known
      ? `[${ctx.stackName}] Weekly backup digest: ${week.length} backup(s), ${formatBytes(uploaded)} uploaded${healthWord ? `, ${healthWord}` : ''}`
      : `[${ctx.stackName}] Weekly backup digest: backup store unreadable`,
  );
  const facts: [string, string][] = [
    ['Period', `${since.toISOString()} to ${input.now.toISOString()}`],
    ...(input.store ? [['Store', input.store] as [string, string]] : []),
    ['Backups taken', known ? String(week.length) : 'unknown: the backup store could not be read'],
    ['Uploaded (compressed)', known ? formatBytes(uploaded) : 'unknown'],
    [
      'Latest backup',
      known
        ? latest
          ? `${latest.backupId} (${latest.type}, ${latest.createdAt}, ${formatBytes(latest.archiveBytes)} archive, ${latest.files ?? '?'} files, ${formatBytes(latest.bytes)} of media)`
          : 'none: the store holds no committed backup'
        : 'unknown',
    ],
    ['Committed backups in the store', known ? String(all.length) : 'unknown'],
    ...(input.health ? [['Health', healthWord ?? ''] as [string, string]] : []),
  ];
  const rows = week.map((b) => ({
    id: b.backupId,
    type: b.type,
    createdAt: b.createdAt,
    archive: formatBytes(b.archiveBytes),
    files: b.files === null ? '?' : String(b.files),
    changed: b.changedFiles === null ? '?' : String(b.changedFiles),
    media: formatBytes(b.bytes),
  }));
  const problems = input.health?.problems ?? [];
  const text = [
    'Weekly backup digest',
    '',
    factsText(facts),
    '',
    ...(rows.length > 0
      ? [
          'Backups this week:',
          ...rows.map(
            (r) =>
              `- ${r.id} ${r.type} at ${r.createdAt}: archive ${r.archive}, ${r.files} files (${r.changed} new or changed), ${r.media} of media`,
          ),
        ]
      : [known ? 'No backup was taken this week.' : 'The backups of this week could not be listed.']),
    ...(problems.length > 0 ? ['', 'Problems:', ...problems.map((p) => `- ${p}`)] : []),
    '',
  ].join('\n');
  const table =
    rows.length > 0
      ? `<table style="border-collapse:collapse" border="1" cellpadding="4"><tr><th>Backup</th><th>Type</th><th>Taken</th><th>Archive</th><th>Files</th><th>New or changed</th><th>Media</th></tr>${rows
          .map(
            (r) =>
              `<tr><td>${escapeHtml(r.id)}</td><td>${escapeHtml(r.type)}</td><td>${escapeHtml(r.createdAt)}</td><td>${escapeHtml(r.archive)}</td><td>${escapeHtml(r.files)}</td><td>${escapeHtml(r.changed)}</td><td>${escapeHtml(r.media)}</td></tr>`,
          )
          .join('')}</table>`
      : `<p>${escapeHtml(known ? 'No backup was taken this week.' : 'The backups of this week could not be listed.')}</p>`;
  const html = htmlPage(
    subject,
    [
      '<h2>Weekly backup digest</h2>',
      factsHtml(facts),
      '<h3>Backups this week</h3>',
      table,
      ...(problems.length > 0
        ? ['<h3>Problems</h3>', `<ul>${problems.map((p) => `<li>${escapeHtml(p)}</li>`).join('')}</ul>`]
        : []),
    ].join(''),
  );
  return { subject, text, html };
}
