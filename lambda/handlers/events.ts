import { parse } from '@aws-lambda-powertools/parser';
import { z } from 'zod';
import type { RequestedType } from '../core/archiver/plan.js';
import { errorMessage } from '../core/errors.js';
import { assertSafeRelativePath } from '../core/repository/manifest.js';
import { parseInstant } from '../core/restorer/resolve.js';
import type { RestoreMode } from '../core/restorer/restore.js';
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
/** An archive key below the store's prefix, as it follows the prefix in a full key. */
const ARCHIVE_KEY = /^(?:full|incremental)\/backup_\d{8}_\d{6}\.tar\.gz$/;
/** An archive key under some prefix (maybe not ours): `<anything>/full/backup_....tar.gz`. */
const PREFIXED_ARCHIVE_KEY = /^(.*?)((?:full|incremental)\/backup_\d{8}_\d{6}\.tar\.gz)$/;

/** Where the function's backups are: the bucket and the key prefix (from its environment). */
export interface StoreLocation {
  readonly bucket: string;
  /** Empty, or ending in `/`. */
  readonly prefix: string;
}

function backupSpecHint(location: StoreLocation | undefined): string {
  const example = 'full/backup_20251227_020000.tar.gz';
  const written = location
    ? `, or that key as \`aws s3 ls --recursive\` prints it (${location.prefix}${example}) or as a URL (s3://${location.bucket}/${location.prefix}${example})`
    : '';
  return `must be "latest", a backup id like backup_20251227_020000, or an archive key like ${example}${written}`;
}

/**
 * The spec as the engine takes it (`latest`, an id, or an archive key below the prefix), from what
 * people paste: the key with the store's prefix as `aws s3 ls --recursive` prints it, or an
 * `s3://bucket/key` URL. Only this function's bucket and prefix are accepted.
 */
function normalizeBackupSpec(
  value: string,
  location: StoreLocation | undefined,
): { spec: string } | { problem: string } {
  if (BACKUP_SPEC.test(value)) return { spec: value };
  const hint = backupSpecHint(location);
  let key = value;
  if (value.startsWith('s3://')) {
    const [bucket = '', ...rest] = value.slice('s3://'.length).split('/');
    key = rest.join('/');
    if (!location) return { problem: `${hint}; an s3:// URL is read only by the Lambda functions` };
    if (bucket !== location.bucket) {
      return {
        problem: `names bucket ${JSON.stringify(bucket)}, but this function's backups are in s3://${location.bucket}/${location.prefix}: ${hint}`,
      };
    }
  }
  const match = PREFIXED_ARCHIVE_KEY.exec(key);
  if (location && match) {
    const [, prefix, archive] = match as unknown as [string, string, string];
    if (prefix === location.prefix && ARCHIVE_KEY.test(archive)) return { spec: archive };
    return {
      problem: `is under the prefix ${JSON.stringify(prefix)}, but this function's backups are under ${JSON.stringify(location.prefix)}: ${hint}`,
    };
  }
  return { problem: hint };
}

export interface BackupEvent {
  readonly type: RequestedType;
}

export interface RestoreEvent {
  /**
   * Demo: extract this tar.gz (a key below the store prefix, `import/<name>.tar.gz`) into the empty
   * media folder instead of restoring a backup.
   */
  readonly import: string | undefined;
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

const backupSpec = (name: string, location: StoreLocation | undefined) =>
  z.string({ error: expect(name, backupSpecHint(location)) }).transform((value, ctx) => {
    const normalized = normalizeBackupSpec(value.trim(), location);
    if ('spec' in normalized) return normalized.spec;
    ctx.addIssue({ code: 'custom', message: `\`${name}\` ${normalized.problem} (got ${shown(value)})` });
    return z.NEVER;
  });

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

/** Where uploaded media archives wait to be imported, below the store prefix. */
export const IMPORT_FOLDER = 'import/';
const IMPORT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*\.tar\.gz$/;

function importHint(location: StoreLocation | undefined): string {
  const where = location ? `s3://${location.bucket}/${location.prefix}${IMPORT_FOLDER}` : IMPORT_FOLDER;
  return `must name a .tar.gz uploaded to ${where}, like "media.tar.gz" (or ${IMPORT_FOLDER}media.tar.gz, or its full key or s3:// URL)`;
}

/** `import/<name>.tar.gz` (relative to the store prefix) from a name, a key or an s3:// URL of this store. */
const importKey = (location: StoreLocation | undefined) =>
  z.string({ error: expect('import', importHint(location)) }).transform((value, ctx) => {
    let key = value.trim();
    if (location && key.startsWith(`s3://${location.bucket}/`))
      key = key.slice(`s3://${location.bucket}/`.length);
    if (location?.prefix && key.startsWith(location.prefix)) key = key.slice(location.prefix.length);
    if (key.startsWith(IMPORT_FOLDER)) key = key.slice(IMPORT_FOLDER.length);
    if (IMPORT_NAME.test(key)) return `${IMPORT_FOLDER}${key}`;
    ctx.addIssue({ code: 'custom', message: `\`import\` ${importHint(location)} (got ${shown(value)})` });
    return z.NEVER;
  });

const restoreEventSchema = (location: StoreLocation | undefined) =>
  eventObject(
    {
      backup: backupSpec('backup', location).optional(),
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
      import: importKey(location).optional(),
    },
    '{"backup":"latest"}',
  ).superRefine((event, ctx) => {
    if (event.import !== undefined) {
      const others = (['backup', 'at', 'paths', 'target', 'mode', 'dryRun'] as const).filter(
        (key) => event[key] !== undefined,
      );
      if (others.length > 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['import'],
          message: `\`import\` cannot be combined with ${others.map((k) => `\`${k}\``).join(', ')}: it always extracts into the empty media folder; send {"import":"media.tar.gz"} alone`,
        });
      }
    }
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

const verifyEventSchema = (location: StoreLocation | undefined) =>
  eventObject(
    {
      backup: backupSpec('backup', location).optional(),
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

/**
 * @param location the function's bucket and prefix: with it, `backup` may also be the archive key
 * with the prefix or an `s3://` URL of that bucket and prefix
 */
export function parseRestoreEvent(event: unknown, location?: StoreLocation): RestoreEvent {
  const parsed = parseEvent(event, restoreEventSchema(location), 'restore');
  return {
    import: parsed.import,
    backup: parsed.backup ?? 'latest',
    at: parsed.at,
    paths: parsed.paths,
    target: parsed.target,
    mode: parsed.mode ?? 'new-folder',
    dryRun: parsed.dryRun ?? false,
  };
}

/** @param location as for {@link parseRestoreEvent} */
export function parseVerifyEvent(event: unknown, location?: StoreLocation): VerifyEvent {
  const parsed = parseEvent(event, verifyEventSchema(location), 'verify');
  return { backup: parsed.backup ?? 'latest', all: parsed.all ?? false, deep: parsed.deep ?? false };
}

export function parseMonitorEvent(event: unknown): MonitorEvent {
  parseEvent(event, monitorEventSchema, 'monitor');
  return {};
}
