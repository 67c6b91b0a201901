import type { Command } from 'commander';
import { systemClock } from '../../../lambda/core/deps.js';
import { OBJECT_CATEGORIES, readUsage } from '../../../lambda/core/repository/usage.js';
import { type CliContext, type CommonOptions, formatBytes, openExisting, storeOption } from '../context.js';

/** `media-backup usage`: store bytes by type and month. */
export function registerUsage(program: Command, ctx: CliContext): void {
  const { out } = ctx;
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
}
