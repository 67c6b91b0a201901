import type { Command } from 'commander';
import { listBackups } from '../../../lambda/core/repository/status.js';
import { type CliContext, type CommonOptions, formatBytes, openExisting, storeOption } from '../context.js';

/** `media-backup list`: committed backups, oldest first. */
export function registerList(program: Command, ctx: CliContext): void {
  const { out } = ctx;
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
        `${'BACKUP'.padEnd(24)} ${'TYPE'.padEnd(11)} ${'FILES'.padStart(8)} ${'SOURCE'.padStart(10)} ${'ARCHIVE'.padStart(10)} PARTS`,
      );
      for (const b of backups) {
        out(
          `${b.backupId.padEnd(24)} ${b.type.padEnd(11)} ${String(b.files ?? '?').padStart(8)} ${formatBytes(b.bytes).padStart(10)} ${formatBytes(b.archiveBytes).padStart(10)} ${b.parts ? String(b.parts).padStart(5) : '    -'}`,
        );
      }
    });
}
