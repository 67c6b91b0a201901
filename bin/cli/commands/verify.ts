import type { Command } from 'commander';
import { runVerify, type VerifyOptions } from '../../../lambda/core/checker/verify.js';
import { systemClock } from '../../../lambda/core/deps.js';
import { MediaBackupError, UsageError } from '../../../lambda/core/errors.js';
import { listCommittedBackups } from '../../../lambda/core/repository/catalog.js';
import { type CliContext, type CommonOptions, cliLogger, openExisting, storeOption } from '../context.js';
import { EXIT } from '../exit-codes.js';
import { noProgress, startProgress } from '../progress.js';

/** `media-backup verify`: can the backups be restored; exit 1 when not, or when there is nothing to verify. */
export function registerVerify(program: Command, ctx: CliContext): void {
  const { io, out } = ctx;
  program
    .command('verify')
    .description('check that backups can be restored; exits 1 when anything is wrong')
    .argument('[backup]', 'latest (default) | backup id | archive name or key; not with --all')
    .option('--all', 'every committed backup, including chain completeness; exits 1 when there is none')
    .option('--deep', 'download, decompress and re-hash every file (a restore drill that writes nothing)')
    .option(
      '--parallel <n>',
      'archives checked at once: the parts of a sharded backup (one download each with --deep)',
      parseParallel,
      DEFAULT_CLI_VERIFY_PARALLEL,
    )
    .addOption(storeOption())
    .option('--json', 'print one JSON document on stdout')
    .option('-v, --verbose', 'log engine progress on stderr')
    .action(
      async (
        backup: string | undefined,
        opts: CommonOptions & { all?: boolean; deep?: boolean; parallel: number },
      ) => {
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
          parallel: opts.parallel,
          onProgress: progress.update,
        };
        let result: Awaited<ReturnType<typeof runVerify>>;
        try {
          result = await runVerify(
            { store, clock: systemClock, logger: cliLogger(ctx.err, opts.verbose) },
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
        if (result.status !== 'SUCCEEDED') ctx.setExitCode(EXIT.failed);
      },
    );
}

/** Two archive downloads at once: keeps a link busy while one archive is being decompressed. */
export const DEFAULT_CLI_VERIFY_PARALLEL = 2;

function parseParallel(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`--parallel must be a whole number of at least 1 (got ${JSON.stringify(value)})`);
  }
  return n;
}

/** `verify` found no committed backup to check: a pass over nothing is not a pass. */
export class NothingToVerifyError extends MediaBackupError {
  override readonly name = 'NothingToVerifyError';
}
