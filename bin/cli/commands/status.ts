import type { Command } from 'commander';
import { systemClock } from '../../../lambda/core/deps.js';
import { readStoreStatus } from '../../../lambda/core/repository/status.js';
import { type CliContext, type CommonOptions, formatBytes, openExisting, storeOption } from '../context.js';
import { EXIT } from '../exit-codes.js';

/** `media-backup status`: the last run and the latest backup; exit 1 when unhealthy. */
export function registerStatus(program: Command, ctx: CliContext): void {
  const { out } = ctx;
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
      if (!status.healthy) ctx.setExitCode(EXIT.failed);
    });
}
