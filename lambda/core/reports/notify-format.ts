import type { BackupListing, LastRun } from '../repository/status.js';

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
  /**
   * IANA zone every time is shown in (the stack's `timeZone`), with UTC beside it.
   *
   * @default 'UTC'
   */
  readonly timeZone?: string;
  /** Where the media and the backups are, so that advice names real paths and keys. */
  readonly locations?: EmailLocations;
}

/** The real places the advice names (instead of the variables that hold them). */
export interface EmailLocations {
  /** Where the functions mount the file system, e.g. `/mnt/efs` (EFS_MOUNT). */
  readonly mount?: string;
  /** The media folder relative to the mount, e.g. `media` (MEDIA_PATH). */
  readonly mediaPath?: string;
  /** Default restore folder relative to the mount (RESTORES_PATH). */
  readonly restoresPath?: string;
  /** The backup store, `s3://bucket/prefix/`. */
  readonly store?: string;
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

// ---------------------------------------------------------------------------------------------
// Times: in the configured zone, with UTC beside them.

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const UTC_ZONES = new Set(['UTC', 'Etc/UTC', 'GMT', 'Etc/GMT']);
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(key: string, make: () => Intl.DateTimeFormat): Intl.DateTimeFormat {
  let f = formatters.get(key);
  if (!f) {
    f = make();
    formatters.set(key, f);
  }
  return f;
}

function dateParts(date: Date, timeZone: string): Record<string, string> {
  const f = formatter(
    `parts:${timeZone}`,
    () =>
      new Intl.DateTimeFormat('en-GB', {
        timeZone,
        weekday: 'short',
        day: 'numeric',
        month: 'short',
        year: 'numeric',
        hour: '2-digit',
        minute: '2-digit',
        hourCycle: 'h23',
      }),
  );
  return Object.fromEntries(f.formatToParts(date).map((p) => [p.type, p.value]));
}

/** "CET", "EST"; an offset ("GMT+5:30") where no abbreviation is common. */
function zoneAbbreviation(date: Date, timeZone: string): string {
  let name: string | undefined;
  for (const locale of ['en-GB', 'en-US']) {
    name = formatter(
      `zone:${locale}:${timeZone}`,
      () => new Intl.DateTimeFormat(locale, { timeZone, timeZoneName: 'short' }),
    )
      .formatToParts(date)
      .find((p) => p.type === 'timeZoneName')?.value;
    if (name && !/^(?:GMT|UTC)[+-]/.test(name)) return name;
  }
  return name ?? timeZone;
}

/** Whether `timeZone` is a zone Intl knows (the notify function checks TIME_ZONE with it). */
export function isKnownTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone });
    return true;
  } catch {
    return false;
  }
}

/**
 * An instant for people: `Mon 23 Nov 2026 10:00 CET (09:00 UTC)` in `timeZone`, the UTC date too
 * when it differs from the local one. Text that is not a time is returned as it is.
 */
export function formatTime(value: string | Date, timeZone = 'UTC'): string {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const u = dateParts(date, 'UTC');
  const utcDay = `${u.weekday} ${u.day} ${u.month}`;
  if (UTC_ZONES.has(timeZone)) return `${utcDay} ${u.year} ${u.hour}:${u.minute} UTC`;
  const l = dateParts(date, timeZone);
  const localDay = `${l.weekday} ${l.day} ${l.month}`;
  const utc = localDay === utcDay ? `${u.hour}:${u.minute} UTC` : `${utcDay} ${u.hour}:${u.minute} UTC`;
  return `${localDay} ${l.year} ${l.hour}:${l.minute} ${zoneAbbreviation(date, timeZone)} (${utc})`;
}

/** `YYYY-MM-DD` of an instant in `timeZone`. */
function dayKey(date: Date, timeZone: string): string {
  return formatter(
    `day:${timeZone}`,
    () => new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }),
  ).format(date);
}

/** The `count` calendar days up to and including today in `timeZone`, oldest first. */
function lastDays(now: Date, count: number, timeZone: string): { key: string; label: string }[] {
  const [y, m, d] = dayKey(now, timeZone).split('-').map(Number);
  const days: { key: string; label: string }[] = [];
  for (let back = count - 1; back >= 0; back -= 1) {
    // Calendar arithmetic at noon UTC: no daylight-saving change can skip or repeat a day.
    const day = new Date(Date.UTC(y, m - 1, d - back, 12));
    const p = dateParts(day, 'UTC');
    days.push({ key: day.toISOString().slice(0, 10), label: `${p.weekday} ${p.day} ${p.month}` });
  }
  return days;
}

/** "3 hours ago", "2 days ago". */
export function timeAgo(then: string | Date, now: Date): string {
  const ms = now.getTime() - new Date(then).getTime();
  if (Number.isNaN(ms)) return 'at an unknown time';
  if (ms < 0) return 'in the future (check the clocks)';
  if (ms < HOUR_MS) return `${Math.max(1, Math.round(ms / 60_000))} min ago`;
  if (ms < 2 * DAY_MS) return `${Math.round(ms / HOUR_MS)} hours ago`;
  return `${Math.round(ms / DAY_MS)} days ago`;
}

// ---------------------------------------------------------------------------------------------
// Layout: one column of at most 600 px, tables and inline styles only (what mail clients render).

/** The banner's color: failed (red), warning (amber), healthy (green). */
export type Tone = 'failed' | 'warning' | 'healthy';

const TONE_COLOR: Record<Tone, string> = { failed: '#b3261e', warning: '#8a5300', healthy: '#1b6e2a' };
const FONT = 'Arial,Helvetica,sans-serif';
/** The mail's width; content is 600 px minus the padding. */
export const MAIL_WIDTH_PX = 600;

/** The top of every email: what kind of news it is and a one-line verdict. */
export interface Banner {
  readonly tone: Tone;
  /** `FAILED`, `ALARM`, `HEALTHY`, ... */
  readonly label: string;
  readonly verdict: string;
}

function bannerHtml(banner: Banner): string {
  const color = TONE_COLOR[banner.tone];
  return (
    `<table role="presentation" class="banner banner-${banner.tone}" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;margin:0 0 14px 0">` +
    `<tr><td bgcolor="${color}" style="background-color:${color};color:#ffffff;padding:12px 16px;font-family:${FONT}">` +
    `<div style="font-size:12px;font-weight:bold;letter-spacing:1px">${escapeHtml(banner.label)}</div>` +
    `<div class="verdict" style="font-size:17px;line-height:1.35;margin-top:3px;overflow-wrap:anywhere;word-break:break-word">${escapeHtml(banner.verdict)}</div>` +
    '</td></tr></table>'
  );
}

function bannerText(banner: Banner): string {
  return `${banner.label}: ${banner.verdict}`;
}

function heading(text: string): string {
  return `<h3 style="font-family:${FONT};font-size:15px;margin:18px 0 6px 0;color:#1f2328">${escapeHtml(text)}</h3>`;
}

function htmlPage(title: string, banner: Banner, body: string): string {
  return (
    `<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(title)}</title></head>` +
    '<body style="margin:0;padding:0;background-color:#f0f1f3">' +
    '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;background-color:#f0f1f3"><tr><td align="center" style="padding:12px 0">' +
    `<table role="presentation" class="mail" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;width:100%;max-width:${MAIL_WIDTH_PX}px;background-color:#ffffff">` +
    `<tr><td style="padding:16px;font-family:${FONT};font-size:14px;line-height:1.45;color:#1f2328;overflow-wrap:anywhere;word-break:break-word">` +
    bannerHtml(banner) +
    body +
    '</td></tr></table></td></tr></table></body></html>'
  );
}

/** A label/value table in both parts. */
function factsText(facts: readonly (readonly [string, string])[]): string {
  return facts.map(([label, value]) => `${label}: ${value}`).join('\n');
}

function factsHtml(facts: readonly (readonly [string, string])[]): string {
  const rows = facts
    .map(
      ([label, value]) =>
        `<tr><th align="left" valign="top" width="150" style="width:150px;padding:3px 10px 3px 0;font-size:13px;color:#57606a;font-weight:bold">${escapeHtml(label)}</th>` +
        `<td valign="top" style="padding:3px 0;font-size:14px;overflow-wrap:anywhere;word-break:break-word">${escapeHtml(value)}</td></tr>`,
    )
    .join('');
  return `<table role="presentation" class="facts" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;table-layout:fixed;width:100%">${rows}</table>`;
}

function preHtml(text: string): string {
  return `<pre style="background-color:#f4f4f4;padding:8px;margin:0;font-size:12px;white-space:pre-wrap;word-break:break-all;overflow-wrap:anywhere">${escapeHtml(text)}</pre>`;
}

function listHtml(items: readonly string[]): string {
  return `<ul style="margin:0;padding-left:20px">${items.map((item) => `<li style="margin:0 0 6px 0">${escapeHtml(item)}</li>`).join('')}</ul>`;
}

// ---------------------------------------------------------------------------------------------
// Advice with the real paths and keys.

function joinPath(mount: string, relative: string): string {
  return `${mount.replace(/\/+$/, '')}/${relative.replace(/^\/+/, '')}`;
}

function mediaFolder(loc: EmailLocations | undefined): string | undefined {
  return loc?.mount && loc.mediaPath ? joinPath(loc.mount, loc.mediaPath) : undefined;
}

function lastGoodText(last: LastGoodBackup, timeZone: string): string {
  if (last === 'none') return 'none: the store holds no committed backup';
  if (last === 'unknown') return 'unknown: the backup store could not be read';
  return `${last.backupId} (taken ${formatTime(last.createdAt, timeZone)})`;
}

interface StepsInput {
  readonly operation: Operation | undefined;
  readonly errorType: string;
  readonly expired?: boolean;
  readonly functionName?: string;
}

/** What an operator should do next, by operation and error name, naming real paths and keys. */
function nextSteps(input: StepsInput, loc: EmailLocations | undefined): string[] {
  const { operation, errorType } = input;
  const media = mediaFolder(loc);
  const store = loc?.store;
  const steps: string[] = [];
  if (input.expired) {
    steps.push(
      "The event expired before the function could run it: check the function's throttles and concurrency in the Lambda console, then run it again with the command below.",
    );
  }
  switch (errorType) {
    case 'BackupDeadlineError':
      steps.push(
        `The run hit its time limit. Give the function more memory (CPU grows with memory, and compression is CPU-bound), or exclude folders of ${media ?? 'the media tree'} with the backupExclude setting (BACKUP_EXCLUDE).`,
      );
      break;
    case 'LockHeldError':
      steps.push(
        `Another backup was running at the time. Wait for it to finish (or for its lock${store ? ` ${store}locks/backup.lock` : ''} to expire), then run again.`,
      );
      break;
    case 'SourceError':
      if (media && loc?.mount && loc.mediaPath) {
        steps.push(
          `The media folder ${media} could not be read. Fix the mount: the functions mount the EFS access point at ${loc.mount} and read the folder ${loc.mediaPath} in it; check that the access point's root holds that folder and that its POSIX user may read it.`,
        );
        if (store) {
          steps.push(
            `If the file system is still empty (the demo's is), load media: upload a tar.gz of the tree with "aws s3 cp media.tar.gz ${store}import/media.tar.gz", then invoke the restore function with {"import":"media.tar.gz"} (README, demo step 2).`,
          );
        }
      } else {
        steps.push(
          'The media folder could not be read: check that the file system is mounted at EFS_MOUNT and MEDIA_PATH exists.',
        );
      }
      break;
    case 'EventValidationError':
    case 'HandlerConfigError':
      steps.push(
        'The event or the function settings are wrong (the message names the field or variable). Retrying the same event cannot succeed: fix it first.',
      );
      break;
    default:
      steps.push(
        `Read the function's log for this request id (CloudWatch Logs, log group /aws/lambda/${input.functionName ?? '<function>'}) to find the cause.`,
      );
  }
  if (operation === 'backup') {
    steps.push(
      `Nothing half-written is ever offered for restore: the backups taken before are intact${store ? ` in ${store}` : ''}. Once the cause is fixed, run the backup again${input.functionName ? ' with the command below' : ''}.`,
    );
  } else if (operation === 'restore') {
    steps.push(
      `A failed restore leaves the live media folder${media ? ` ${media}` : ''} untouched (its staging folder is removed). Once the cause is fixed, try it first with "dryRun": true, then run it again with the command below.`,
    );
  } else {
    steps.push('Once the cause is fixed, run it again with the command below.');
  }
  return steps;
}

// ---------------------------------------------------------------------------------------------
// The emails.

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
  const timeZone = ctx.timeZone ?? 'UTC';
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
    ['When', formatTime(record.timestamp, timeZone)],
    ['Request id', record.requestContext.requestId],
    [
      'Why Lambda gave up',
      `${record.requestContext.condition} after ${record.requestContext.approximateInvokeCount} attempt(s)`,
    ],
    ['Error', `${error.type}: ${error.message}`],
    ['Event', JSON.stringify(record.requestPayload ?? {}) ?? '{}'],
    ['Last good backup', lastGoodText(lastGood, timeZone)],
    ...(ctx.locations?.store ? [['Backup store', ctx.locations.store] as [string, string]] : []),
  ];
  const steps = nextSteps(
    {
      operation,
      errorType: error.type,
      expired: record.requestContext.condition === 'EventAgeExceeded',
      functionName,
    },
    ctx.locations,
  );
  const lastGoodVerdict =
    lastGood === 'none'
      ? 'No committed backup exists.'
      : lastGood === 'unknown'
        ? 'The last good backup is unknown (store unreadable).'
        : `Last good backup: ${lastGood.backupId}, ${timeAgo(lastGood.createdAt, new Date(record.timestamp))}.`;
  const banner: Banner = {
    tone: 'failed',
    label: `${label.toUpperCase()} FAILED`,
    verdict: `${label} failed with ${error.type}. ${lastGoodVerdict}`,
  };
  const intro = `The ${operation ?? 'invocation'} run by ${functionName} failed.`;
  const text = [
    bannerText(banner),
    '',
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
    banner,
    [
      `<p style="margin:0 0 10px 0">${escapeHtml(intro)}</p>`,
      factsHtml(facts),
      heading('What to do next'),
      listHtml(steps),
      heading('Run it again with the same event'),
      preHtml(command),
      ...(error.trace.length > 0 ? [heading('Stack trace'), preHtml(error.trace.join('\n'))] : []),
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
  const verified = result.verified === true;
  const subject = subjectLine(
    `[${ctx.stackName}] ${dryRun ? 'Test restore (dry run) passed' : 'Restore finished'}: ${backupId}`,
  );
  const target = result.targetPath ?? result.target;
  const mount = ctx.locations?.mount;
  const targetText =
    typeof target === 'string' && mount && !target.startsWith('/') ? joinPath(mount, target) : shown(target);
  const facts: [string, string][] = [
    ['Backup', backupId],
    ['Target', dryRun ? 'none (dry run: downloaded and verified, nothing written)' : targetText],
    ['Mode', shown(result.mode)],
    ['Files', shown(result.files)],
    ['Bytes', typeof result.bytes === 'number' ? `${formatBytes(result.bytes)} (${result.bytes})` : '-'],
    ['Every file checked against its sha256', verified ? 'yes' : 'no'],
    ['Previous tree kept at', shown(result.previousTree)],
    ['Function', functionName],
    ['When', formatTime(record.timestamp, ctx.timeZone ?? 'UTC')],
    ['Request id', record.requestContext.requestId],
  ];
  const intro = dryRun
    ? `The test restore of ${backupId} read and verified every file; nothing was written.`
    : `The restore of ${backupId} finished.`;
  const banner: Banner = {
    tone: verified ? 'healthy' : 'warning',
    label: dryRun ? 'TEST RESTORE PASSED' : 'RESTORE FINISHED',
    verdict: dryRun
      ? `${backupId}: ${shown(result.files)} files read and checked, nothing written.`
      : `${backupId} restored into ${targetText}: ${shown(result.files)} files${verified ? ', every one checked' : ', NOT checked against hashes'}.`,
  };
  const text = `${bannerText(banner)}\n\n${intro}\n\n${factsText(facts)}\n`;
  const html = htmlPage(
    subject,
    banner,
    `<p style="margin:0 0 10px 0">${escapeHtml(intro)}</p>${factsHtml(facts)}`,
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

/** CloudWatch writes `2025-12-28T02:30:00.000+0000`; Date wants a colon in the offset. */
function alarmTime(value: string | undefined): string | undefined {
  return value?.replace(/([+-]\d{2})(\d{2})$/, '$1:$2');
}

function firstSentence(text: string, max = 140): string {
  const sentence = /^(.+?[.!?])(?:\s|$)/.exec(text)?.[1] ?? text;
  return sentence.length > max ? `${sentence.slice(0, max - 3)}...` : sentence;
}

/**
 * An alarm state change delivered through SNS. An `OK` state is a recovery. `lastRun` (the store's
 * status/last-run.json, when it could be read) says what the last backup run reported, so that an
 * alarm about a failed backup carries the error and the advice for it.
 */
export function formatAlarm(
  alarm: AlarmStateChange,
  options: { readonly topicArn?: string; readonly defaultRegion: string; readonly lastRun?: LastRun | null },
  ctx: EmailContext,
): NotificationEmail {
  const timeZone = ctx.timeZone ?? 'UTC';
  const region = alarmRegion(alarm, options.topicArn, options.defaultRegion);
  const url = alarmConsoleUrl(region, alarm.AlarmName);
  const state = alarm.NewStateValue;
  const recovered = state === 'OK';
  const subject = subjectLine(
    recovered
      ? `[${ctx.stackName}] Recovered: ${alarm.AlarmName} is OK again`
      : `[${ctx.stackName}] ${state}: ${alarm.AlarmName}`,
  );
  const when = alarmTime(alarm.StateChangeTime);
  const lastRun = options.lastRun ?? undefined;
  const lastRunFailed = lastRun?.status === 'FAILED';
  const facts: [string, string][] = [
    ['Alarm', alarm.AlarmName],
    ['State', alarm.OldStateValue ? `${alarm.OldStateValue} -> ${state}` : state],
    ['Reason', alarm.NewStateReason ?? '-'],
    ['Time', when ? formatTime(when, timeZone) : '-'],
    ['Region', region],
    ...(alarm.AlarmDescription ? [['What it watches', alarm.AlarmDescription] as [string, string]] : []),
    ...(lastRun
      ? [
          [
            'Last backup run',
            lastRunFailed
              ? `FAILED, finished ${formatTime(lastRun.finishedAt, timeZone)}${lastRun.error ? `: ${lastRun.error.name}: ${lastRun.error.message}` : ''}`
              : `${lastRun.status}, finished ${formatTime(lastRun.finishedAt, timeZone)}${lastRun.backupId ? ` (${lastRun.backupId})` : ''}`,
          ] as [string, string],
        ]
      : []),
    ...(ctx.locations?.store ? [['Backup store', ctx.locations.store] as [string, string]] : []),
  ];
  const steps =
    state === 'ALARM' && lastRunFailed && lastRun?.error
      ? nextSteps({ operation: 'backup', errorType: lastRun.error.name }, ctx.locations)
      : [];
  const intro = recovered
    ? `The alarm ${alarm.AlarmName} is back to OK; no action is needed.`
    : state === 'ALARM'
      ? `The alarm ${alarm.AlarmName} went into ALARM. Open it in the console to see the metric, and check the backup functions' logs.`
      : `The alarm ${alarm.AlarmName} changed to ${state}.`;
  const banner: Banner = recovered
    ? { tone: 'healthy', label: 'RECOVERED', verdict: `${alarm.AlarmName} is OK again.` }
    : state === 'ALARM'
      ? {
          tone: 'failed',
          label: 'ALARM',
          verdict:
            lastRunFailed && lastRun?.error
              ? `The last backup run failed with ${lastRun.error.name} (${timeAgo(lastRun.finishedAt, new Date(when ?? Date.now()))}).`
              : `${alarm.AlarmName}: ${firstSentence(alarm.AlarmDescription || alarm.NewStateReason || 'in ALARM')}`,
        }
      : { tone: 'warning', label: state, verdict: `${alarm.AlarmName} changed to ${state}.` };
  const text = [
    bannerText(banner),
    '',
    intro,
    '',
    factsText(facts),
    ...(steps.length > 0 ? ['', 'What to do next:', ...steps.map((step) => `- ${step}`)] : []),
    '',
    `Console: ${url}`,
    '',
  ].join('\n');
  const html = htmlPage(
    subject,
    banner,
    [
      `<p style="margin:0 0 10px 0">${escapeHtml(intro)}</p>`,
      factsHtml(facts),
      ...(steps.length > 0 ? [heading('What to do next'), listHtml(steps)] : []),
      `<p style="margin:14px 0 0 0"><a href="${escapeHtml(url)}" style="color:#0b57d0">Open the alarm in the CloudWatch console</a></p>`,
    ].join(''),
  );
  return { subject, text, html };
}

/** A health check's verdict, as the monitor's checks give it. */
export type CheckStatus = 'ok' | 'warning' | 'critical';

export interface DigestCheck {
  readonly name: string;
  readonly status: CheckStatus;
  /** One or two sentences: what was found and, when not ok, what to do. */
  readonly message: string;
}

/** Health as the digest shows it: the monitor's checks (or the status object's facts). */
export interface DigestHealth {
  /** The worst check. */
  readonly status: CheckStatus;
  readonly checks: readonly DigestCheck[];
}

export interface DigestInput {
  readonly now: Date;
  /** The store's committed backups, oldest first; `unknown` when the store could not be read. */
  readonly backups: readonly BackupListing[] | 'unknown';
  readonly health?: DigestHealth;
  /** The store's URL, to say which bucket the digest is about. */
  readonly store?: string;
}

const WEEK_MS = 7 * DAY_MS;
/** Days in the digest's chart. */
export const CHART_DAYS = 14;

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

/**
 * The oldest backup that can be restored: a full, or an incremental whose base is restorable (an
 * incremental whose base expired, or whose metadata is unreadable, is not counted).
 */
export function oldestRestorePoint(backups: readonly BackupListing[]): BackupListing | undefined {
  const restorable = new Set<string>();
  let oldest: BackupListing | undefined;
  for (const b of backups) {
    if (b.type === 'full' || (b.baseBackupId !== null && restorable.has(b.baseBackupId))) {
      restorable.add(b.backupId);
      oldest ??= b;
    }
  }
  return oldest;
}

/** One row of the digest's chart: a calendar day in the configured zone. */
export interface ChartDay {
  /** `YYYY-MM-DD` in the zone. */
  readonly key: string;
  /** `Mon 23 Nov`. */
  readonly label: string;
  readonly today: boolean;
  /** Earlier than the store's oldest backup: nothing was missed, the store had not started. */
  readonly beforeFirst: boolean;
  readonly backups: number;
  readonly full: boolean;
  readonly archiveBytes: number;
  readonly changedFiles: number;
}

/** Backups per day over the last `CHART_DAYS` days (days without one included), oldest first. */
export function chartDays(backups: readonly BackupListing[], now: Date, timeZone: string): ChartDay[] {
  const days = lastDays(now, CHART_DAYS, timeZone);
  const today = days.at(-1)?.key;
  const first = backups[0] ? dayKey(new Date(backups[0].createdAt), timeZone) : undefined;
  const byDay = new Map<string, BackupListing[]>();
  for (const b of backups) {
    const key = dayKey(new Date(b.createdAt), timeZone);
    byDay.set(key, [...(byDay.get(key) ?? []), b]);
  }
  return days.map(({ key, label }) => {
    const those = byDay.get(key) ?? [];
    return {
      key,
      label,
      today: key === today,
      beforeFirst: first === undefined || key < first,
      backups: those.length,
      full: those.some((b) => b.type === 'full'),
      archiveBytes: those.reduce((sum, b) => sum + (b.archiveBytes ?? 0), 0),
      changedFiles: those.reduce((sum, b) => sum + (b.changedFiles ?? 0), 0),
    };
  });
}

const BAR = { full: '#0b3d91', incremental: '#5b8fd6', changedFull: '#5b2a86', changed: '#a98bd1' };

/** A horizontal bar of `value / max` of the cell's width, with its label under it. */
function barCell(value: number, max: number, color: string, label: string): string {
  const percent = max > 0 && value > 0 ? Math.max(1, Math.round((100 * value) / max)) : 0;
  const bar =
    percent === 0
      ? ''
      : `<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;table-layout:fixed"><tr>` +
        `<td class="bar" width="${percent}%" bgcolor="${color}" style="width:${percent}%;background-color:${color};height:10px;font-size:0;line-height:0">&nbsp;</td>` +
        (percent < 100 ? '<td style="font-size:0;line-height:0">&nbsp;</td>' : '') +
        '</tr></table>';
  return `<td valign="middle" style="padding:3px 6px 3px 0">${bar}<div style="font-size:11px;color:#57606a;line-height:1.2">${escapeHtml(label)}</div></td>`;
}

function chartHtml(days: readonly ChartDay[]): string {
  const maxArchive = Math.max(0, ...days.map((d) => d.archiveBytes));
  const maxChanged = Math.max(0, ...days.map((d) => d.changedFiles));
  const rows = days
    .map((d) => {
      const dayCell = `<td valign="middle" style="padding:3px 4px 3px 0;font-size:12px;white-space:nowrap${d.today ? ';font-weight:bold' : ''}">${escapeHtml(d.label)}</td>`;
      if (d.backups === 0) {
        const missed = !d.today && !d.beforeFirst;
        const [bg, fg, what] = missed
          ? ['#fdecea', '#b3261e', 'no backup']
          : ['#f0f1f3', '#57606a', d.today ? 'none yet today' : 'before the first backup'];
        return `<tr class="chart-day ${missed ? 'chart-gap' : 'chart-empty'}" data-day="${d.key}">${dayCell}<td colspan="3" bgcolor="${bg}" style="background-color:${bg};color:${fg};font-size:12px;font-weight:bold;padding:3px 6px">${what}</td></tr>`;
      }
      const type = d.full ? 'FULL' : 'incr';
      const runs = d.backups > 1 ? ` (${d.backups} runs)` : '';
      return (
        `<tr class="chart-day${d.full ? ' chart-full' : ''}" data-day="${d.key}">${dayCell}` +
        `<td valign="middle" style="padding:3px 4px 3px 0;font-size:11px;${d.full ? `font-weight:bold;color:${BAR.full}` : 'color:#57606a'}">${type}</td>` +
        barCell(
          d.archiveBytes,
          maxArchive,
          d.full ? BAR.full : BAR.incremental,
          `${formatBytes(d.archiveBytes)}${runs}`,
        ) +
        barCell(
          d.changedFiles,
          maxChanged,
          d.full ? BAR.changedFull : BAR.changed,
          `${d.changedFiles} files`,
        ) +
        '</tr>'
      );
    })
    .join('');
  const header =
    '<tr><th align="left" width="76" style="width:76px;font-size:11px;color:#57606a;padding:0 4px 4px 0">Day</th>' +
    '<th align="left" width="34" style="width:34px;font-size:11px;color:#57606a;padding:0 4px 4px 0">Type</th>' +
    '<th align="left" style="font-size:11px;color:#57606a;padding:0 6px 4px 0">Archive size</th>' +
    '<th align="left" style="font-size:11px;color:#57606a;padding:0 6px 4px 0">Files new or changed</th></tr>';
  return `<table role="presentation" class="chart" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;table-layout:fixed;width:100%">${header}${rows}</table>`;
}

/** A 20-character bar for the plain-text part. */
function textBar(value: number, max: number): string {
  const filled = max > 0 && value > 0 ? Math.max(1, Math.round((20 * value) / max)) : 0;
  return `${'#'.repeat(filled)}${'.'.repeat(20 - filled)}`;
}

function chartText(days: readonly ChartDay[]): string[] {
  const maxArchive = Math.max(0, ...days.map((d) => d.archiveBytes));
  return days.map((d) => {
    const label = d.label.padEnd(10);
    if (d.backups === 0) {
      return `  ${label}  ${d.today ? '(none yet today)' : d.beforeFirst ? '(before the first backup)' : 'NO BACKUP'}`;
    }
    const runs = d.backups > 1 ? `, ${d.backups} runs` : '';
    return `  ${label}  ${d.full ? 'FULL' : 'incr'}  ${textBar(d.archiveBytes, maxArchive)}  ${formatBytes(d.archiveBytes)}, ${d.changedFiles} files new or changed${runs}`;
  });
}

const CHECK_LABEL: Record<CheckStatus, string> = { ok: 'OK', warning: 'WARN', critical: 'FAIL' };
const CHECK_COLOR: Record<CheckStatus, string> = { ok: '#1b6e2a', warning: '#8a5300', critical: '#b3261e' };

function checksHtml(checks: readonly DigestCheck[]): string {
  const rows = checks
    .map(
      (c) =>
        `<tr class="check check-${c.status}"><td valign="top" width="44" style="width:44px;padding:4px 6px 4px 0"><span style="display:inline-block;background-color:${CHECK_COLOR[c.status]};color:#ffffff;font-size:11px;font-weight:bold;padding:1px 5px;border-radius:3px">${CHECK_LABEL[c.status]}</span></td>` +
        `<td valign="top" width="96" style="width:96px;padding:4px 6px 4px 0;font-size:13px;font-weight:bold;overflow-wrap:anywhere">${escapeHtml(c.name)}</td>` +
        `<td valign="top" style="padding:4px 0;font-size:13px;overflow-wrap:anywhere;word-break:break-word">${escapeHtml(c.message)}</td></tr>`,
    )
    .join('');
  return `<table role="presentation" class="checks" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;table-layout:fixed;width:100%">${rows}</table>`;
}

const TONE_OF: Record<CheckStatus, Tone> = { ok: 'healthy', warning: 'warning', critical: 'failed' };

/**
 * The weekly digest: a banner with the verdict, the last {@link CHART_DAYS} days as a bar chart
 * (archive size and files changed per day, fulls marked, days without a backup in red), the health
 * checks' verdicts, the latest and the oldest restore point.
 */
export function formatDigest(input: DigestInput, ctx: EmailContext): NotificationEmail {
  const timeZone = ctx.timeZone ?? 'UTC';
  const since = new Date(input.now.getTime() - WEEK_MS);
  const known = input.backups !== 'unknown';
  const all = known ? (input.backups as readonly BackupListing[]) : [];
  const week = all.filter((b) => Date.parse(b.createdAt) >= since.getTime());
  const uploaded = week.reduce((sum, b) => sum + (b.archiveBytes ?? 0), 0);
  const latest = all.at(-1);
  const oldest = oldestRestorePoint(all);
  const health = input.health;
  const failing = health?.checks.filter((c) => c.status !== 'ok') ?? [];
  const healthWord = health ? (health.status === 'ok' ? 'healthy' : 'NEEDS ATTENTION') : undefined;
  const subject = subjectLine(
    known
      ? `[${ctx.stackName}] Weekly backup digest: ${week.length} backup(s), ${formatBytes(uploaded)} uploaded${healthWord ? `, ${healthWord}` : ''}`
      : `[${ctx.stackName}] Weekly backup digest: backup store unreadable`,
  );
  const latestText = latest
    ? `${latest.backupId} (${latest.type}, ${formatTime(latest.createdAt, timeZone)}, ${timeAgo(latest.createdAt, input.now)}; ${formatBytes(latest.archiveBytes)} archive, ${latest.files ?? '?'} files, ${formatBytes(latest.bytes)} of media)`
    : 'none: the store holds no committed backup';
  const facts: [string, string][] = [
    ['Period', `${formatTime(since, timeZone)} to ${formatTime(input.now, timeZone)}`],
    ...((input.store ?? ctx.locations?.store)
      ? [['Store', input.store ?? ctx.locations?.store ?? ''] as [string, string]]
      : []),
    ['Backups taken', known ? String(week.length) : 'unknown: the backup store could not be read'],
    ['Uploaded (compressed)', known ? formatBytes(uploaded) : 'unknown'],
    ['Latest backup', known ? latestText : 'unknown'],
    [
      'Oldest restore point',
      known
        ? oldest
          ? `${oldest.backupId} (${formatTime(oldest.createdAt, timeZone)}, ${timeAgo(oldest.createdAt, input.now)})`
          : 'none: no restorable backup'
        : 'unknown',
    ],
    ['Committed backups in the store', known ? String(all.length) : 'unknown'],
    ...(healthWord ? [['Health', healthWord] as [string, string]] : []),
  ];
  const banner: Banner = !known
    ? {
        tone: 'failed',
        label: 'STORE UNREADABLE',
        verdict:
          "The backup store could not be read: nothing is known about this week's backups. The notify function's log has the S3 error.",
      }
    : health === undefined
      ? {
          tone: 'warning',
          label: 'HEALTH UNKNOWN',
          verdict: `${week.length} backup(s) this week; the health checks did not run.`,
        }
      : health.status === 'ok'
        ? {
            tone: 'healthy',
            label: 'HEALTHY',
            verdict: `All ${health.checks.length} health checks pass; latest backup ${latest ? timeAgo(latest.createdAt, input.now) : 'none'}, ${week.length} this week.`,
          }
        : {
            tone: TONE_OF[health.status],
            label: health.status === 'critical' ? 'FAILING' : 'WARNING',
            verdict: `${failing.length} of ${health.checks.length} checks need attention: ${failing.map((c) => `${c.name} (${c.status})`).join(', ')}.`,
          };
  const days = known ? chartDays(all, input.now, timeZone) : [];
  const text = [
    bannerText(banner),
    '',
    'Weekly backup digest',
    '',
    factsText(facts),
    '',
    ...(known
      ? [`Last ${CHART_DAYS} days (${timeZone}; bars: archive size per day):`, ...chartText(days)]
      : ['The backups could not be listed.']),
    ...(health
      ? [
          '',
          'Health checks:',
          ...health.checks.map((c) => `- [${CHECK_LABEL[c.status]}] ${c.name}: ${c.message}`),
        ]
      : []),
    '',
  ].join('\n');
  const html = htmlPage(
    subject,
    banner,
    [
      factsHtml(facts),
      heading(`Last ${CHART_DAYS} days`),
      known
        ? chartHtml(days) +
          `<p style="margin:6px 0 0 0;font-size:11px;color:#57606a">Days in ${escapeHtml(timeZone)}. Bars scale to the largest day. Dark bars and FULL: full backups; red rows: days without a backup.</p>`
        : `<p>${escapeHtml('The backups could not be listed.')}</p>`,
      ...(health ? [heading('Health checks'), checksHtml(health.checks)] : []),
    ].join(''),
  );
  return { subject, text, html };
}
