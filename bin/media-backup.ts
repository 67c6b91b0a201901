/**
 * Operator CLI: the same engine the Lambda functions run, against a local folder store (default) or S3.
 * Exit codes: see {@link EXIT} (documented in `--help` and the README).
 */
import { stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { type BackupOptions, type BackupSucceeded, runBackup } from '../lambda/core/backup.js';
import { listCommittedBackups } from '../lambda/core/catalog.js';
import { type Logger, systemClock } from '../lambda/core/deps.js';
import { errorMessage, MediaBackupError, UsageError } from '../lambda/core/errors.js';
import { formatBytes as formatByteCount, runHealthChecks } from '../lambda/core/health.js';
import { DEFAULT_LEVEL } from '../lambda/core/parallel-gzip.js';
import type { RequestedType } from '../lambda/core/plan.js';
import { parseInstant } from '../lambda/core/resolve.js';
import { type RestoreOptions, runRestore } from '../lambda/core/restore.js';
import { readRetention } from '../lambda/core/retention.js';
import { listBackups, readStoreStatus } from '../lambda/core/status.js';
import { OBJECT_CATEGORIES, readUsage } from '../lambda/core/usage.js';
import { runVerify, type VerifyOptions } from '../lambda/core/verify.js';
import { TOOL_VERSION } from '../lambda/core/version.js';
import { openStore } from '../lambda/store/open-store.js';
import { type ObjectStore, StoreConfigError } from '../lambda/store/types.js';
import { InterruptedError, type Interruption, onStopSignals, SIGNAL_EXIT } from './cli/interrupt.js';
import { lineWriter, type OutputStream } from './cli/output.js';
import { noProgress, startProgress } from './cli/progress.js';
import { assertStoreExists, storeNotFoundFrom } from './cli/store-presence.js';

const DEFAULT_STORE = './backups/media';
const DEFAULT_SOURCE = './media';

export const EXIT = {
  ok: 0,
  /** The operation failed, the store does not exist, or (status/verify/health) something is wrong. */
  failed: 1,
  /** Bad usage or configuration: nothing was done. */
  usage: 2,
  /** A backup committed, but skipped files or raised a warning (e.g. the source shrank): look at it. */
  warnings: 3,
  /** Stopped by Ctrl-C (SIGINT) / SIGTERM: the run was aborted, nothing committed. */
  sigint: SIGNAL_EXIT.SIGINT,
  sigterm: SIGNAL_EXIT.SIGTERM,
} as const;

const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    the operation failed, the store does not exist, or status/verify/health found a problem
  2    bad usage or configuration (nothing was done)
  3    backup committed, but skipped files or warned (e.g. the source shrank by more than
       --max-shrink-percent): the backup exists; look at the warnings on stderr
  130  interrupted by Ctrl-C (SIGINT): the run was aborted, nothing committed, the lock released
  143  stopped by SIGTERM: as for 130

Times: backup ids (backup_YYYYMMDD_HHMMSS) and --at are UTC; an --at without an offset is read as UTC.
With --json, a failure prints one JSON object on stdout:
  {"status":"FAILED","error":{"name":"...","message":"..."},"exitCode":N}`;

interface CommonOptions {
  store?: string;
  json?: boolean;
  verbose?: boolean;
}

interface Io {
  stdout: OutputStream;
  stderr: OutputStream;
}

/** Runs the CLI with `argv` (without node and script) and resolves to the exit code. */
export async function main(argv: readonly string[], io: Io = process): Promise<number> {
  const err = lineWriter(io.stderr);
  const out = lineWriter(io.stdout, (error) => err(`media-backup: cannot write to stdout: ${error.message}`));
  let exitCode: number = EXIT.ok;
  // The running backup or restore, so a failure can be told apart from a Ctrl-C.
  let interruption: Interruption | undefined;
  const json = argv.includes('--json') && !argv.slice(0, argv.indexOf('--json')).includes('--');

  const program = new Command()
    .name('media-backup')
    .description(
      'Back up a media folder as plain tar.gz archives to a folder or S3, and inspect the backups.',
    )
    .version(TOOL_VERSION)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => (out.closed ? undefined : io.stdout.write(s)),
      writeErr: (s) => (err.closed ? undefined : io.stderr.write(s)),
    })
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('afterAll', EXIT_CODES_HELP);

  const storeOption = () =>
    new Option('--store <url>', `where backups live: folder, file:///path or s3://bucket/prefix`)
      .env('BACKUP_STORE')
      .default(DEFAULT_STORE);

  program
    .command('backup')
    .description(
      'take a backup: auto (default) is a full when none is younger than the full interval, else incremental; exits 3 when it committed but skipped files or warned',
    )
    .argument('[type]', 'auto | full | incremental', 'auto')
    .addOption(
      new Option('--source <dir>', 'media folder to back up').env('MEDIA_DIR').default(DEFAULT_SOURCE),
    )
    .addOption(storeOption())
    .option(
      '--exclude <glob>',
      'leave out matching paths (repeatable); a pattern without / matches names',
      collect,
      [],
    )
    .addOption(
      new Option('--full-interval-days <days>', 'auto takes a full when the latest full is this old')
        .env('FULL_INTERVAL_DAYS')
        .default('7'),
    )
    .option('--rehash', 're-read and re-hash every file, even unchanged ones')
    .addOption(
      new Option(
        '--level <0-9>',
        `gzip level of compressible data (media is stored either way); 1 is fastest, 9 smallest`,
      )
        .env('COMPRESSION_LEVEL')
        .default(String(DEFAULT_LEVEL)),
    )
    .addOption(
      new Option(
        '--max-shrink-percent <percent>',
        'warn and exit 3 (the backup still commits) when the tree has this much fewer files or bytes than the previous backup',
      )
        .env('MAX_SHRINK_PERCENT')
        .default('50'),
    )
    .option('--json', 'print one JSON document on stdout')
    .option('-v, --verbose', 'log engine progress on stderr')
    .addHelpText(
      'after',
      '\nBackup ids are the UTC start time: backup_20251227_020000 started at 02:00:00 UTC.\nCtrl-C aborts cleanly: the partial upload is removed, the lock released, FAILED recorded (exit 130).',
    )
    .action(
      async (
        type: string,
        opts: CommonOptions & {
          source: string;
          exclude: string[];
          fullIntervalDays: string;
          rehash?: boolean;
          level: string;
          maxShrinkPercent: string;
        },
      ) => {
        if (!['auto', 'full', 'incremental'].includes(type)) {
          throw new UsageError(`backup type must be auto, full or incremental (got ${JSON.stringify(type)})`);
        }
        const fullIntervalDays = Number(opts.fullIntervalDays);
        if (!Number.isInteger(fullIntervalDays) || fullIntervalDays < 1) {
          throw new UsageError(
            `--full-interval-days must be a whole number of days >= 1 (got ${JSON.stringify(opts.fullIntervalDays)})`,
          );
        }
        if (!/^\d$/.test(opts.level)) {
          throw new UsageError(
            `--level must be a whole number from 0 to 9 (got ${JSON.stringify(opts.level)})`,
          );
        }
        const level = Number(opts.level);
        const maxShrinkPercent = percent('--max-shrink-percent', opts.maxShrinkPercent);
        const store = await open(opts.store);
        const progress = startProgress(io.stderr, 'backup');
        interruption = onStopSignals(
          'backup stopped; nothing was committed, the partial upload was removed and the lock released',
        );
        const options: BackupOptions = {
          source: opts.source,
          type: type as RequestedType,
          exclude: opts.exclude,
          fullIntervalDays,
          rehashAll: opts.rehash,
          gzip: { level },
          maxShrinkPercent,
          signal: interruption.signal,
          onProgress: progress.update,
        };
        let result: BackupSucceeded;
        const logger = cliLogger(err, opts.verbose);
        try {
          progress.phase(`scanning ${opts.source} (folders and file sizes)...`);
          result = await runBackup(
            { store, clock: systemClock, logger, owner: `${hostname()}:${process.pid}` },
            options,
          );
        } finally {
          progress.stop();
          interruption.dispose();
        }
        const { warnings } = result;
        if (opts.json) {
          out(JSON.stringify(result, null, 2));
        } else {
          printBackupSummary(out, store, result);
        }
        for (const w of warnings) if (!logger.warned.has(w.message)) err(`warning: ${w.message}`);
        if (result.skipped.length > 0 && !opts.json) {
          err(
            `warning: ${result.skipped.length} path(s) skipped; backup ${result.backupId} does not hold them as they are now (exit 3)`,
          );
        }
        if (result.skipped.length > 0 || warnings.length > 0) exitCode = EXIT.warnings;
      },
    );

  program
    .command('list')
    .description('list committed backups, oldest first')
    .addOption(storeOption())
    .option('--json', 'print a JSON array on stdout')
    .action(async (opts: CommonOptions) => {
      const store = await openExisting(opts.store);
      const backups = await listBackups(store);
      if (opts.json) {
        out(JSON.stringify(backups, null, 2));
        return;
      }
      if (backups.length === 0) {
        out(`No committed backups in ${store.url}.`);
        return;
      }
      out(`${backups.length} committed backup(s) in ${store.url}:`);
      out(
        `${'BACKUP'.padEnd(24)} ${'TYPE'.padEnd(11)} ${'FILES'.padStart(8)} ${'SOURCE'.padStart(10)} ${'ARCHIVE'.padStart(10)}`,
      );
      for (const b of backups) {
        out(
          `${b.backupId.padEnd(24)} ${b.type.padEnd(11)} ${String(b.files ?? '?').padStart(8)} ${formatBytes(b.bytes).padStart(10)} ${formatBytes(b.archiveBytes).padStart(10)}`,
        );
      }
    });

  program
    .command('status')
    .description('last run and latest committed backup; exits 1 when the last run failed or no backup exists')
    .addOption(storeOption())
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: CommonOptions) => {
      const store = await openExisting(opts.store);
      const status = await readStoreStatus(store, systemClock.now());
      if (opts.json) out(JSON.stringify(status, null, 2));
      else {
        out(`Store: ${status.store}`);
        const run = status.lastRun;
        if (!run) out('Last run: none recorded');
        else if (run.status === 'SUCCEEDED')
          out(`Last run: SUCCEEDED ${run.backupId ?? ''} at ${run.finishedAt}`);
        else out(`Last run: FAILED at ${run.finishedAt}: ${run.error?.message ?? 'unknown error'}`);
        const latest = status.latestBackup;
        out(
          latest
            ? `Latest backup: ${latest.backupId} (${latest.type}, ${latest.files ?? '?'} files, ${formatBytes(latest.bytes)}), ${status.hoursSinceLastBackup} h ago`
            : 'Latest backup: none',
        );
        out(`Committed backups: ${status.committedBackups}`);
      }
      if (!status.healthy) exitCode = EXIT.failed;
    });

  program
    .command('restore')
    .description(
      'restore a backup into a new folder (default), in place (--replace), or only verify it (--dry-run)',
    )
    .argument('[backup]', 'latest | backup id | archive name or key | path of a downloaded .tar.gz', 'latest')
    .option('--target <dir>', 'folder to restore into (must be empty or missing unless --replace)')
    .option(
      '--at <time>',
      'the latest backup at or before this ISO-8601 time, UTC unless it has an offset (2025-12-27T02:00:00Z)',
    )
    .option(
      '--path <glob>',
      'restore only matching paths (repeatable); a folder selects all below it',
      collect,
      [],
    )
    .option('--replace', 'replace --target in place; the current tree is kept as <dir>.pre-restore-<time>')
    .option('--dry-run', 'download, decompress and verify every file; write nothing')
    .addOption(storeOption())
    .option('--json', 'print one JSON document on stdout')
    .option('-v, --verbose', 'log engine progress on stderr')
    .action(
      async (
        backup: string,
        opts: CommonOptions & {
          target?: string;
          at?: string;
          path: string[];
          replace?: boolean;
          dryRun?: boolean;
        },
      ) => {
        if (!opts.target && !opts.dryRun) throw new UsageError('restore needs --target DIR (or --dry-run)');
        const at = opts.at ? parseInstant(opts.at) : undefined;
        if (at && backup !== 'latest') throw new UsageError('give either BACKUP or --at, not both');
        // A downloaded archive is restored without a store (disaster recovery from a copy).
        const store = (await isLocalArchive(backup))
          ? await open(opts.store)
          : await openExisting(opts.store);
        const progress = startProgress(io.stderr, opts.dryRun ? 'restore (dry run)' : 'restore');
        interruption = onStopSignals(
          opts.dryRun
            ? 'restore dry run stopped'
            : 'restore stopped; the staging folder was removed and the target left as it was',
        );
        const options: RestoreOptions = {
          backup,
          at,
          paths: opts.path,
          target: opts.target,
          mode: opts.replace ? 'replace' : 'new-folder',
          dryRun: opts.dryRun,
          signal: interruption.signal,
          onProgress: progress.update,
        };
        let result: Awaited<ReturnType<typeof runRestore>>;
        try {
          result = await runRestore(
            { store, clock: systemClock, logger: cliLogger(err, opts.verbose) },
            options,
          );
        } finally {
          progress.stop();
          interruption.dispose();
        }
        if (opts.json) {
          out(JSON.stringify(result, null, 2));
          return;
        }
        const what = result.backupId ?? result.source;
        out(
          result.dryRun
            ? `Dry run of ${what}: ${result.files} files (${formatBytes(result.bytes)}) downloaded, decompressed and verified; nothing written.`
            : `Restored ${what} into ${result.target}: ${result.files} files (${formatBytes(result.bytes)}), ${result.dirs} folders, ${result.symlinks} links.`,
        );
        out(
          result.verified
            ? '  every file matched its sha256 in the manifest'
            : '  NOT VERIFIED: no manifest to check the files against',
        );
        if (result.previousTree)
          out(`  the previous tree is kept at ${result.previousTree}; delete it once you are satisfied`);
        for (const note of result.notes) out(`  note: ${note}`);
      },
    );

  program
    .command('verify')
    .description('check that backups can be restored; exits 1 when anything is wrong')
    .argument('[backup]', 'latest (default) | backup id | archive name or key; not with --all')
    .option('--all', 'every committed backup, including chain completeness; exits 1 when there is none')
    .option('--deep', 'download, decompress and re-hash every file (a restore drill that writes nothing)')
    .addOption(storeOption())
    .option('--json', 'print one JSON document on stdout')
    .option('-v, --verbose', 'log engine progress on stderr')
    .action(async (backup: string | undefined, opts: CommonOptions & { all?: boolean; deep?: boolean }) => {
      if (backup !== undefined && opts.all) {
        throw new UsageError(
          `give either BACKUP (${JSON.stringify(backup)}) or --all, not both: --all verifies every committed backup`,
        );
      }
      const store = await openExisting(opts.store);
      // Checked before the run, which would record a vacuous pass in status/last-verify.json.
      if (opts.all && (await listCommittedBackups(store)).length === 0) {
        throw new NothingToVerifyError(
          `nothing to verify: ${store.url} holds no committed backup. Run a backup first, or check --store.`,
        );
      }
      // A quick verify reads manifests and object sizes only: no bar.
      const progress = opts.deep ? startProgress(io.stderr, 'verify --deep') : noProgress;
      const options: VerifyOptions = {
        backup: backup ?? 'latest',
        all: opts.all,
        deep: opts.deep,
        onProgress: progress.update,
      };
      let result: Awaited<ReturnType<typeof runVerify>>;
      try {
        result = await runVerify(
          { store, clock: systemClock, logger: cliLogger(err, opts.verbose) },
          options,
        );
      } finally {
        progress.stop();
      }
      if (result.backups.length === 0) {
        throw new NothingToVerifyError(
          `nothing to verify: ${store.url} holds no committed backup. Run a backup first, or check --store.`,
        );
      }
      if (opts.json) out(JSON.stringify(result, null, 2));
      else {
        for (const b of result.backups) {
          out(
            `${b.ok ? 'OK    ' : 'FAILED'} ${b.backupId} (${b.type})${b.filesVerified !== null ? `, ${b.filesVerified} files re-hashed` : ''}`,
          );
          for (const p of b.problems) out(`       ${p}`);
        }
        out(
          result.status === 'SUCCEEDED'
            ? `${result.backups.length} backup(s) verified${result.deep ? ' (deep)' : ''}.`
            : `${result.backups.filter((b) => !b.ok).length} of ${result.backups.length} backup(s) have problems.`,
        );
      }
      if (result.status !== 'SUCCEEDED') exitCode = EXIT.failed;
    });

  program
    .command('health')
    .description(
      "the monitor's checks: backup age, last run, integrity, size, shrink, chain, orphans, storage; exits 1 when critical",
    )
    .addOption(
      new Option('--max-age-hours <hours>', 'critical when the latest backup is older')
        .env('MAX_BACKUP_AGE_HOURS')
        .default('48'),
    )
    .addOption(
      new Option(
        '--min-backup-bytes <bytes>',
        'critical when the latest full archive is smaller (unless the tree is tiny)',
      )
        .env('MIN_BACKUP_BYTES')
        .default('1000000'),
    )
    .addOption(
      new Option('--max-shrink-percent <percent>', 'critical when files or bytes dropped by more')
        .env('MAX_SHRINK_PERCENT')
        .default('50'),
    )
    .addOption(
      new Option('--retention-days <days>', 'a broken chain is critical for backups younger than this')
        .env('RETENTION_DAYS')
        .default('30'),
    )
    .option('--hash', 're-read the latest archive and compare its sha256 (slower; reads the whole archive)')
    .addOption(storeOption())
    .option('--json', 'print one JSON document on stdout')
    .option('-v, --verbose', 'log engine progress on stderr')
    .action(
      async (
        opts: CommonOptions & {
          maxAgeHours: string;
          minBackupBytes: string;
          maxShrinkPercent: string;
          retentionDays: string;
          hash?: boolean;
        },
      ) => {
        const options = {
          maxBackupAgeHours: positiveNumber('--max-age-hours', opts.maxAgeHours),
          minBackupBytes: positiveNumber('--min-backup-bytes', opts.minBackupBytes),
          maxShrinkPercent: positiveNumber('--max-shrink-percent', opts.maxShrinkPercent),
          retentionDays: positiveNumber('--retention-days', opts.retentionDays),
          hashLatest: opts.hash ?? false,
        };
        const store = await openExisting(opts.store);
        const report = await runHealthChecks(
          { store, clock: systemClock, logger: cliLogger(err, opts.verbose) },
          options,
        );
        if (opts.json) out(JSON.stringify(report, null, 2));
        else {
          out(`Health of ${report.store} at ${report.checkedAt}:`);
          for (const c of report.checks)
            out(`${c.status.toUpperCase().padEnd(8)} ${c.name.padEnd(11)} ${c.message}`);
          out(
            report.status === 'ok'
              ? 'All checks passed.'
              : `${report.status.toUpperCase()}: ${report.metrics.critical} critical, ${report.metrics.warning} warning(s).`,
          );
        }
        if (report.status === 'critical') exitCode = EXIT.failed;
      },
    );

  program
    .command('retention')
    .description('which backups and objects the S3 lifecycle will expire, and when (cleanup simulation)')
    .addOption(
      new Option('--retention-days <days>', 'every restore point younger than this stays restorable')
        .env('RETENTION_DAYS')
        .default('30'),
    )
    .addOption(
      new Option('--full-interval-days <days>', 'how far an incremental chain reaches back to its full')
        .env('FULL_INTERVAL_DAYS')
        .default('7'),
    )
    .addOption(storeOption())
    .option('--json', 'print one JSON document on stdout')
    .option('-v, --verbose', 'log engine progress on stderr')
    .action(async (opts: CommonOptions & { retentionDays: string; fullIntervalDays: string }) => {
      const retentionDays = wholeDays('--retention-days', opts.retentionDays);
      const fullIntervalDays = wholeDays('--full-interval-days', opts.fullIntervalDays);
      const store = await openExisting(opts.store);
      const report = await readRetention({ store, logger: cliLogger(err, opts.verbose) }, systemClock.now(), {
        retentionDays,
        fullIntervalDays,
      });
      if (opts.json) {
        out(JSON.stringify(report, null, 2));
        return;
      }
      out(
        `Lifecycle of ${report.store}: full/ and incremental/ objects expire ${report.expireAfterDays} days after they were written (retention ${report.retentionDays} + full interval ${report.fullIntervalDays}); status/ is kept.`,
      );
      if (report.backups.length === 0) {
        out('No backups in the store.');
        return;
      }
      out(
        `${'BACKUP'.padEnd(24)} ${'TYPE'.padEnd(11)} ${'SIZE'.padStart(10)} ${'EXPIRES (UTC)'.padEnd(17)} ${'DAYS'.padStart(6)} RESTORABLE UNTIL`,
      );
      for (const b of report.backups) {
        out(
          `${b.backupId.padEnd(24)} ${b.type.padEnd(11)} ${formatBytes(b.bytes).padStart(10)} ${b.expiresAt.slice(0, 16).replace('T', ' ').padEnd(17)} ${b.daysLeft.toFixed(1).padStart(6)} ${b.committed ? (b.restorableUntil?.slice(0, 16).replace('T', ' ') ?? 'unknown (manifest unreadable)') : 'never (not committed)'}`,
        );
      }
      out(
        `Expiring within ${report.expiringSoon.horizonDays} days: ${report.expiringSoon.backups.length} backup(s), ${formatBytes(report.expiringSoon.bytes)}.`,
      );
    });

  program
    .command('usage')
    .description('bytes in the store by type and by month')
    .addOption(storeOption())
    .option('--json', 'print one JSON document on stdout')
    .action(async (opts: CommonOptions) => {
      const store = await openExisting(opts.store);
      const report = await readUsage(store, systemClock.now());
      if (opts.json) {
        out(JSON.stringify(report, null, 2));
        return;
      }
      out(`Usage of ${report.store}: ${formatBytes(report.total.bytes)} in ${report.total.objects} objects.`);
      const header = `${'MONTH'.padEnd(8)} ${OBJECT_CATEGORIES.map((c) => c.toUpperCase().padStart(12)).join(' ')} ${'TOTAL'.padStart(12)}`;
      out(header);
      const row = (label: string, byType: typeof report.byType, total: number) =>
        out(
          `${label.padEnd(8)} ${OBJECT_CATEGORIES.map((c) => formatBytes(byType[c].bytes).padStart(12)).join(' ')} ${formatBytes(total).padStart(12)}`,
        );
      for (const m of report.byMonth) row(m.month, m.byType, m.total.bytes);
      row('all', report.byType, report.total.bytes);
      out(
        `Written in the last 7 days: ${formatBytes(report.lastWeek.bytes)} in ${report.lastWeek.objects} objects.`,
      );
    });

  // An exported-but-empty variable (`MEDIA_DIR=`) means "not set", not "the empty path".
  for (const name of [
    'MEDIA_DIR',
    'BACKUP_STORE',
    'FULL_INTERVAL_DAYS',
    'RETENTION_DAYS',
    'MAX_BACKUP_AGE_HOURS',
    'MIN_BACKUP_BYTES',
    'MAX_SHRINK_PERCENT',
  ]) {
    if (process.env[name]?.trim() === '') delete process.env[name];
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    // Help and version exit 0.
    if (error instanceof CommanderError && error.exitCode === 0) return EXIT.ok;
    const failure = describeFailure(error, interruption);
    // Commander printed its own complaint (and the --help hint) already.
    if (!(error instanceof CommanderError)) err(`media-backup: ${failure.message}`);
    if (json) {
      out(
        JSON.stringify({
          status: 'FAILED',
          error: { name: failure.name, message: failure.message },
          exitCode: failure.exitCode,
        }),
      );
    }
    return failure.exitCode;
  }
}

/** How a thrown error is reported: exit code, stable name and message. */
function describeFailure(
  error: unknown,
  interruption: Interruption | undefined,
): { exitCode: number; name: string; message: string } {
  const signal = interruption?.received;
  if (signal) {
    // The engine aborted on the signal: whatever it threw (AbortError, a stream error) is the abort.
    const what = new InterruptedError(signal);
    return {
      exitCode: SIGNAL_EXIT[signal],
      name: what.name,
      message: `${what.message}: ${interruption.aftermath}`,
    };
  }
  if (error instanceof CommanderError) {
    // Every parser complaint (unknown option, missing argument) is a usage error.
    return { exitCode: EXIT.usage, name: 'UsageError', message: error.message.replace(/^error: /, '') };
  }
  if (error instanceof UsageError || error instanceof StoreConfigError) {
    return { exitCode: EXIT.usage, name: error.name, message: error.message };
  }
  const missing = storeNotFoundFrom(error);
  if (missing) return { exitCode: EXIT.failed, name: missing.name, message: missing.message };
  return {
    exitCode: EXIT.failed,
    name: error instanceof Error ? error.name : 'Error',
    message: errorMessage(error),
  };
}

/** `verify` found no committed backup to check: a pass over nothing is not a pass. */
class NothingToVerifyError extends MediaBackupError {
  override readonly name = 'NothingToVerifyError';
}

function open(url: string | undefined): Promise<ObjectStore> {
  return openStore(url ?? DEFAULT_STORE);
}

/** Opens the store of a read-only command: a store that does not exist is an error, never created. */
async function openExisting(url: string | undefined): Promise<ObjectStore> {
  const store = await open(url);
  await assertStoreExists(store);
  return store;
}

/** Mirrors the engine's rule: a BACKUP argument naming a `.tar.gz` file on the local disk. */
async function isLocalArchive(spec: string): Promise<boolean> {
  if (!spec.endsWith('.tar.gz')) return false;
  return (await stat(spec).catch(() => undefined))?.isFile() ?? false;
}

function percent(flag: string, raw: string): number {
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !(n > 0) || n > 100) {
    throw new UsageError(`${flag} must be a percentage above 0 and at most 100 (got ${JSON.stringify(raw)})`);
  }
  return n;
}

function positiveNumber(flag: string, raw: string): number {
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !(n > 0)) {
    throw new UsageError(`${flag} must be a positive number (got ${JSON.stringify(raw)})`);
  }
  return n;
}

function wholeDays(flag: string, raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n < 1) {
    throw new UsageError(`${flag} must be a whole number of days >= 1 (got ${JSON.stringify(raw)})`);
  }
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A logger on stderr; `warned` holds every warning printed, so a result's warnings are not repeated. */
function cliLogger(err: (line: string) => void, verbose = false): Logger & { warned: Set<string> } {
  const line = (level: string, message: string, extra: object[]) =>
    err(`${level} ${message}${extra.length ? ` ${extra.map((e) => JSON.stringify(e)).join(' ')}` : ''}`);
  const warned = new Set<string>();
  return {
    warned,
    debug: () => undefined,
    info: (m, ...e) => verbose && line('info', m, e),
    warn: (m, ...e) => {
      warned.add(m);
      line('warning:', m, e);
    },
    // The failure itself is printed once by main(); repeat it only when asked for detail.
    error: (m, ...e) => verbose && line('error:', m, e),
  };
}

function printBackupSummary(out: (line?: string) => void, store: ObjectStore, r: BackupSucceeded): void {
  out(`Backup ${r.backupId} (${r.type}) committed to ${store.url}`);
  out(`  why:      ${r.reason}`);
  out(`  archive:  ${r.archiveKey} (${formatBytes(r.archiveBytes)})`);
  out(`  tree:     ${r.files} files, ${formatBytes(r.bytes)}`);
  out(
    `  changed:  ${r.changedFiles} files, ${formatBytes(r.changedBytes)}; deleted: ${r.deletedFiles}; took ${(r.durationMs / 1000).toFixed(1)} s`,
  );
  if (r.skipped.length > 0) {
    out(`  SKIPPED ${r.skipped.length} path(s), not in this backup as they are now:`);
    for (const s of r.skipped.slice(0, 20)) out(`    ${s.path}: ${s.reason}`);
    if (r.skipped.length > 20) out(`    ... and ${r.skipped.length - 20} more (see --json)`);
  }
}

export function formatBytes(n: number | null | undefined): string {
  return n === null || n === undefined ? '?' : formatByteCount(n);
}

// Run when executed (through bin/media-backup.mjs or tsx), not when imported by tests.
const invoked = process.argv[1] ?? '';
if (/media-backup\.(ts|mjs)$/.test(invoked) || process.env.MEDIA_BACKUP_CLI === '1') {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
