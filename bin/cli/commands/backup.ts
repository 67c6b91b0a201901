import { hostname } from 'node:os';
import { type Command, Option } from 'commander';
import { type BackupOptions, type BackupSucceeded, runBackup } from '../../../lambda/core/archiver/backup.js';
import { DEFAULT_LEVEL } from '../../../lambda/core/archiver/parallel-gzip.js';
import type { RequestedType } from '../../../lambda/core/archiver/plan.js';
import { systemClock } from '../../../lambda/core/deps.js';
import { UsageError } from '../../../lambda/core/errors.js';
import { parseIoConcurrency } from '../../../lambda/core/io-concurrency.js';
import { MAX_SHARDS } from '../../../lambda/core/sharding/shard-plan.js';
import { MAX_PARALLEL, runShardedBackup } from '../../../lambda/core/sharding/sharded-backup.js';
import type { ObjectStore } from '../../../lambda/store/types.js';
import {
  type CliContext,
  type CommonOptions,
  cliLogger,
  collect,
  DEFAULT_SOURCE,
  formatBytes,
  openForBackup,
  percent,
  storeOption,
} from '../context.js';
import { EXIT } from '../exit-codes.js';
import { startProgress } from '../progress.js';

/** `media-backup backup`: take a backup; exit 3 when it committed but skipped paths or warned. */
export function registerBackup(program: Command, ctx: CliContext): void {
  const { io, out, err } = ctx;
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
    .option(
      '--synthetic',
      'with full: build it from the unchanged bytes already in the store plus the changed files (auto does this on the full day)',
    )
    .option('--no-synthetic', 'every full re-reads and recompresses the whole tree')
    .addOption(
      new Option(
        '--normal-full-every <n>',
        'every nth full is a normal full that re-reads everything (1 = never synthetic)',
      )
        .env('NORMAL_FULL_EVERY')
        .default('4'),
    )
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
    .addOption(
      new Option(
        '--io-concurrency <n>',
        'files read ahead and stats in flight at once (default: 32 on NFS/EFS, SMB or FUSE, else 1)',
      ).env('IO_CONCURRENCY'),
    )
    .option(
      '--shards <n>',
      `cut the backup into n parts archived separately (plan / shard / commit, as the AWS state machine does), 1 to ${MAX_SHARDS}`,
    )
    .option('--parallel <p>', `with --shards: parts archived at once, 1 to ${MAX_PARALLEL}`, '1')
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
          synthetic?: boolean;
          normalFullEvery: string;
          level: string;
          maxShrinkPercent: string;
          ioConcurrency?: string;
          shards?: string;
          parallel: string;
        },
      ) => {
        const shards =
          opts.shards === undefined ? undefined : wholeNumberOption('--shards', opts.shards, MAX_SHARDS);
        const parallel = wholeNumberOption('--parallel', opts.parallel, MAX_PARALLEL);
        if (shards === undefined && parallel !== 1) {
          throw new UsageError(
            '--parallel needs --shards: a backup without shards is one archive written in order',
          );
        }
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
        const normalFullEvery = wholeNumberOption('--normal-full-every', opts.normalFullEvery, 1000);
        if (opts.synthetic === true && type === 'incremental') {
          throw new UsageError('--synthetic builds a full: use `backup full --synthetic` or `backup auto`');
        }
        if (opts.synthetic === true && shards !== undefined) {
          throw new UsageError(
            '--synthetic and --shards do not combine: a synthetic full is one archive assembled from ranges of the existing ones',
          );
        }
        const maxShrinkPercent = percent('--max-shrink-percent', opts.maxShrinkPercent);
        const store = await openForBackup(opts.store);
        const progress = startProgress(io.stderr, 'backup');
        const interruption = ctx.interruptible(
          'backup stopped; nothing was committed, the partial upload was removed and the lock released',
        );
        const options: BackupOptions = {
          source: opts.source,
          type: type as RequestedType,
          exclude: opts.exclude,
          fullIntervalDays,
          rehashAll: opts.rehash,
          // commander: --synthetic -> true, --no-synthetic -> false, neither -> undefined (both defined).
          synthetic: opts.synthetic ?? 'auto',
          normalFullEvery,
          gzip: { level },
          maxShrinkPercent,
          ioConcurrency:
            opts.ioConcurrency === undefined
              ? undefined
              : parseIoConcurrency(opts.ioConcurrency, '--io-concurrency'),
          signal: interruption.signal,
          onProgress: progress.update,
        };
        let result: BackupSucceeded;
        const logger = cliLogger(err, opts.verbose);
        try {
          progress.phase(`scanning ${opts.source} (folders and file sizes)...`);
          const deps = { store, clock: systemClock, logger, owner: `${hostname()}:${process.pid}` };
          result =
            shards === undefined
              ? await runBackup(deps, options)
              : await runShardedBackup(deps, { ...options, shards, parallel });
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
        if (result.skipped.length > 0 || warnings.length > 0) ctx.setExitCode(EXIT.warnings);
      },
    );
}

function wholeNumberOption(name: string, raw: string, max: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new UsageError(`${name} must be a whole number from 1 to ${max} (got ${JSON.stringify(raw)})`);
  }
  return n;
}

function printBackupSummary(out: (line?: string) => void, store: ObjectStore, r: BackupSucceeded): void {
  out(`Backup ${r.backupId} (${r.type}) committed to ${store.url}`);
  out(`  why:      ${r.reason}`);
  const parts = (r as { parts?: readonly { key: string }[] }).parts;
  if (parts && parts.length !== 1) {
    out(
      `  archive:  ${parts.length} parts, ${parts[0]?.key ?? '-'} ... (${formatBytes(r.archiveBytes)} in all)`,
    );
  } else {
    out(`  archive:  ${r.archiveKey} (${formatBytes(r.archiveBytes)})`);
  }
  out(`  tree:     ${r.files} files, ${formatBytes(r.bytes)}`);
  out(
    `  changed:  ${r.changedFiles} files, ${formatBytes(r.changedBytes)}; deleted: ${r.deletedFiles}; took ${(r.durationMs / 1000).toFixed(1)} s`,
  );
  if (r.synthetic) {
    const y = r.synthetic;
    out(
      `  synthetic: read ${formatBytes(y.bytesReadFromSource)} from the source; copied ${formatBytes(y.bytesCopied)} in the store (${y.copyParts} copies), fetched ${formatBytes(y.bytesFetched)} (${y.uploadParts} uploaded parts); ${y.filesCopied} files carried over from ${y.sources.length} archive(s)`,
    );
  } else if (r.syntheticSkipped && r.type === 'full') {
    out(`  normal full: ${r.syntheticSkipped}`);
  }
  if (r.skipped.length > 0) {
    out(`  SKIPPED ${r.skipped.length} path(s), not in this backup as they are now:`);
    for (const s of r.skipped.slice(0, 20)) out(`    ${s.path}: ${s.reason}`);
    if (r.skipped.length > 20) out(`    ... and ${r.skipped.length - 20} more (see --json)`);
  }
}
