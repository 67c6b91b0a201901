import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { systemClock } from '../../../lambda/core/deps.js';
import { UsageError } from '../../../lambda/core/errors.js';
import { parseInstant } from '../../../lambda/core/restorer/resolve.js';
import { parseParallel, type RestoreOptions, runRestore } from '../../../lambda/core/restorer/restore.js';
import {
  type CliContext,
  type CommonOptions,
  cliLogger,
  collect,
  formatBytes,
  openExisting,
  openForBackup,
  storeOption,
} from '../context.js';
import { startProgress } from '../progress.js';

/** `media-backup restore`: into a new folder, in place (`--replace`), or a dry run. */
export function registerRestore(program: Command, ctx: CliContext): void {
  const { io, out } = ctx;
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
    .option(
      '--parallel <n>',
      'archives extracted at once (a sharded backup has many parts; an incremental also reads its full)',
      '2',
    )
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
          parallel: string;
        },
      ) => {
        if (!opts.target && !opts.dryRun) throw new UsageError('restore needs --target DIR (or --dry-run)');
        const at = opts.at ? parseInstant(opts.at) : undefined;
        const parallel = parseParallel(opts.parallel, '--parallel');
        if (at && backup !== 'latest') throw new UsageError('give either BACKUP or --at, not both');
        // A downloaded archive is restored without a store (disaster recovery from a copy).
        const store = (await isLocalArchive(backup))
          ? await openForBackup(opts.store)
          : await openExisting(opts.store);
        const progress = startProgress(io.stderr, opts.dryRun ? 'restore (dry run)' : 'restore');
        const interruption = ctx.interruptible(
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
          parallel,
          signal: interruption.signal,
          onProgress: progress.update,
        };
        let result: Awaited<ReturnType<typeof runRestore>>;
        try {
          result = await runRestore(
            { store, clock: systemClock, logger: cliLogger(ctx.err, opts.verbose) },
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
}

/** Mirrors the engine's rule: a BACKUP argument naming a `.tar.gz` file on the local disk. */
async function isLocalArchive(spec: string): Promise<boolean> {
  if (!spec.endsWith('.tar.gz')) return false;
  return (await stat(spec).catch(() => undefined))?.isFile() ?? false;
}
