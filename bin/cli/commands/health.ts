import { type Command, Option } from 'commander';
import { runHealthChecks } from '../../../lambda/core/checker/health.js';
import { systemClock } from '../../../lambda/core/deps.js';
import {
  type CliContext,
  type CommonOptions,
  cliLogger,
  openExisting,
  positiveNumber,
  storeOption,
} from '../context.js';
import { EXIT } from '../exit-codes.js';

/** `media-backup health`: the monitor's checks; exit 1 when one is critical. */
export function registerHealth(program: Command, ctx: CliContext): void {
  const { out } = ctx;
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
          { store, clock: systemClock, logger: cliLogger(ctx.err, opts.verbose) },
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
        if (report.status === 'critical') ctx.setExitCode(EXIT.failed);
      },
    );
}
