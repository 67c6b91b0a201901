import { parse } from '@aws-lambda-powertools/parser';
import { z } from 'zod';
import { errorMessage } from '../core/errors.js';
import { assertSafeRelativePath } from '../core/manifest.js';
import type { RequestedType } from '../core/plan.js';
import { parseInstant } from '../core/resolve.js';
import type { RestoreMode } from '../core/restore.js';
import { EventValidationError } from './errors.js';

/**
 * Lambda events (docs/ARCHITECTURE.md, Lambda events), validated with zod through powertools' `parse`. Every message
 * names the field in backticks and shows what was received; fields nobody reads are refused, so a
 * typo (`dryrun`) fails loudly instead of being ignored.
 */

const BACKUP_TYPES = ['auto', 'full', 'incremental'] as const satisfies readonly RequestedType[];
const RESTORE_MODES = ['new-folder', 'replace'] as const satisfies readonly RestoreMode[];

/**
 * `latest`, a backup id, or an archive name/key of our layout. Deliberately narrower than the CLI's
 * BACKUP argument: the engine would read a `.tar.gz` path on the local disk, which an event must not
 * be able to point at.
 */
const BACKUP_SPEC = /^(?:latest|(?:(?:full|incremental)\/)?backup_\d{8}_\d{6}(?:\.tar\.gz)?)$/;
const BACKUP_SPEC_HINT =
  'must be "latest", a backup id like backup_20251227_020000, or an archive key like full/backup_20251227_020000.tar.gz';

export interface BackupEvent {
  readonly type: RequestedType;
}

export interface RestoreEvent {
  /** `latest`, a backup id or an archive key. */
  readonly backup: string;
  /** The latest committed backup at or before this instant. */
  readonly at: Date | undefined;
  readonly paths: readonly string[] | undefined;
  /** Folder relative to the mount; the handler picks the default. */
  readonly target: string | undefined;
  readonly mode: RestoreMode;
  readonly dryRun: boolean;
}

/** The monitor takes no input: its thresholds come from the environment. */
export type MonitorEvent = Record<string, never>;

export interface VerifyEvent {
  readonly backup: string;
  readonly all: boolean;
  readonly deep: boolean;
}

/** Shows a received value in a message, short enough for a log line. */
function shown(input: unknown): string {
  if (input === undefined) return 'nothing';
  const text = JSON.stringify(input) ?? String(input);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** An error function for one field: "`name` <expectation> (got <value>)". */
function expect(name: string, expectation: string) {
  return (issue: { input?: unknown }) => `\`${name}\` ${expectation} (got ${shown(issue.input)})`;
}

function eventObject<T extends z.ZodRawShape>(shape: T, example: string) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `\`${k}\``).join(', ')}: this function accepts ${allowed}`
        : `the event must be a JSON object such as ${example} (got ${shown(issue.input)})`,
  });
}

const backupSpec = (name: string) =>
  z
    .string({ error: expect(name, BACKUP_SPEC_HINT) })
    .regex(BACKUP_SPEC, { error: expect(name, BACKUP_SPEC_HINT) });

const flag = (name: string) => z.boolean({ error: expect(name, 'must be true or false') });

const relativeFolder = (name: string) =>
  z
    .string({
      error: expect(name, 'must be a folder relative to the file system mount, such as "restores/drill"'),
    })
    .transform((value, ctx) => {
      const folder = value.replace(/\/+$/, '');
      try {
        assertSafeRelativePath(folder, `\`${name}\``);
      } catch (error) {
        ctx.addIssue({
          code: 'custom',
          message: `\`${name}\` must be a folder relative to the file system mount, such as "restores/drill", not the mount itself and without '..' (${errorMessage(error)})`,
        });
        return z.NEVER;
      }
      return folder;
    });

const instant = (name: string) =>
  z
    .string({ error: expect(name, 'must be an ISO-8601 time such as 2025-12-27T02:00:00Z') })
    .transform((value, ctx) => {
      try {
        return parseInstant(value, `\`${name}\``);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: errorMessage(error) });
        return z.NEVER;
      }
    });

const backupEventSchema = eventObject(
  {
    type: z
      .enum(BACKUP_TYPES, { error: expect('type', `must be one of ${BACKUP_TYPES.join(', ')}`) })
      .optional(),
  },
  '{"type":"auto"}',
);

const restoreEventSchema = eventObject(
  {
    backup: backupSpec('backup').optional(),
    at: instant('at').optional(),
    paths: z
      .array(
        // No backticks: parseEvent prefixes the element's path, e.g. `paths[1]`.
        z
          .string({ error: (issue) => `must be a glob such as "avatars/**" (got ${shown(issue.input)})` })
          .min(1, { error: 'must not be an empty glob' })
          .refine((glob) => !glob.includes('\0'), { error: 'must not contain a NUL character' }),
        { error: expect('paths', 'must be a list of globs such as ["avatars/**"]') },
      )
      .optional(),
    target: relativeFolder('target').optional(),
    mode: z
      .enum(RESTORE_MODES, { error: expect('mode', `must be one of ${RESTORE_MODES.join(', ')}`) })
      .optional(),
    dryRun: flag('dryRun').optional(),
  },
  '{"backup":"latest"}',
).superRefine((event, ctx) => {
  if (event.at && event.backup !== undefined && event.backup !== 'latest') {
    ctx.addIssue({
      code: 'custom',
      path: ['at'],
      message: `\`backup\` and \`at\` cannot both be given: \`at\` picks the latest backup at or before that time (got backup ${shown(event.backup)})`,
    });
  }
  if (event.paths?.length && event.mode === 'replace') {
    ctx.addIssue({
      code: 'custom',
      path: ['paths'],
      message:
        '`paths` cannot be combined with `mode: "replace"`: replacing the live folder with a few paths would drop the rest. Restore the paths into a new folder and copy them over.',
    });
  }
});

const verifyEventSchema = eventObject(
  {
    backup: backupSpec('backup').optional(),
    all: flag('all').optional(),
    deep: flag('deep').optional(),
  },
  '{"backup":"latest","deep":true}',
).superRefine((event, ctx) => {
  if (event.all && event.backup !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['all'],
      message: `\`backup\` and \`all\` cannot both be given: \`all\` verifies every committed backup (got backup ${shown(event.backup)})`,
    });
  }
});

// The scheduler sends `{}`; anything else is a mistake worth reporting rather than ignoring.
const monitorEventSchema = z.strictObject(
  {},
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `\`${k}\``).join(', ')}: the monitor takes no fields (its thresholds come from its environment); send {}`
        : `the event must be the JSON object {} (got ${shown(issue.input)})`,
  },
);

/**
 * Runs the schema through powertools' `parse` and turns its issues into one message. powertools'
 * own `ParseError` says only "Failed to parse schema"; the issues it carries name the fields.
 */
function parseEvent<T extends z.ZodType>(event: unknown, schema: T, kind: string): z.output<T> {
  // `aws lambda invoke` without a payload, and a schedule without input, send nothing or null.
  const result = parse(event ?? {}, undefined, schema, true);
  if (result.success) return result.data as z.output<T>;
  const issues = (result.error.cause ?? []) as readonly { message: string; path?: readonly unknown[] }[];
  const messages = issues.map((issue) => {
    const where = fieldPath(issue.path);
    return where && !issue.message.startsWith('`') ? `\`${where}\` ${issue.message}` : issue.message;
  });
  throw new EventValidationError(`invalid ${kind} event: ${messages.join('; ') || result.error.message}`, {
    cause: result.error,
  });
}

function fieldPath(path: readonly unknown[] | undefined): string {
  let out = '';
  for (const segment of path ?? []) {
    const key = typeof segment === 'object' && segment !== null && 'key' in segment ? segment.key : segment;
    out += typeof key === 'number' ? `[${key}]` : `${out ? '.' : ''}${String(key)}`;
  }
  return out;
}

export function parseBackupEvent(event: unknown): BackupEvent {
  const parsed = parseEvent(event, backupEventSchema, 'backup');
  return { type: parsed.type ?? 'auto' };
}

export function parseRestoreEvent(event: unknown): RestoreEvent {
  const parsed = parseEvent(event, restoreEventSchema, 'restore');
  return {
    backup: parsed.backup ?? 'latest',
    at: parsed.at,
    paths: parsed.paths,
    target: parsed.target,
    mode: parsed.mode ?? 'new-folder',
    dryRun: parsed.dryRun ?? false,
  };
}

export function parseVerifyEvent(event: unknown): VerifyEvent {
  const parsed = parseEvent(event, verifyEventSchema, 'verify');
  return { backup: parsed.backup ?? 'latest', all: parsed.all ?? false, deep: parsed.deep ?? false };
}

export function parseMonitorEvent(event: unknown): MonitorEvent {
  parseEvent(event, monitorEventSchema, 'monitor');
  return {};
}
