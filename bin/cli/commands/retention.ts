import { type Command, Option } from 'commander';
import { systemClock } from '../../../lambda/core/deps.js';
import { readRetention } from '../../../lambda/core/repository/retention.js';
import {
  type CliContext,
  type CommonOptions,
  cliLogger,
  formatBytes,
  openExisting,
  storeOption,
  wholeDays,
} from '../context.js';

/** `media-backup retention`: what the S3 lifecycle will expire, and when. */
export function registerRetention(program: Command, ctx: CliContext): void {
  const { out } = ctx;
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
      const report = await readRetention(
        { store, logger: cliLogger(ctx.err, opts.verbose) },
        systemClock.now(),
        {
          retentionDays,
          fullIntervalDays,
        },
      );
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
}
