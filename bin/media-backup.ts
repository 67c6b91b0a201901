/**
 * Operator CLI: the same engine the Lambda functions run, against a local folder store (default) or S3.
 * This file keeps `main`, the exit codes and the error mapping; each command lives in
 * `bin/cli/commands/<name>.ts` with its options, run function and printers.
 */
import { Command, CommanderError } from 'commander';
import { errorMessage, UsageError } from '../lambda/core/errors.js';
import { TOOL_VERSION } from '../lambda/core/version.js';
import { StoreConfigError } from '../lambda/store/types.js';
import { registerBackup } from './cli/commands/backup.js';
import { registerHealth } from './cli/commands/health.js';
import { registerList } from './cli/commands/list.js';
import { registerRestore } from './cli/commands/restore.js';
import { registerRetention } from './cli/commands/retention.js';
import { registerStatus } from './cli/commands/status.js';
import { registerUsage } from './cli/commands/usage.js';
import { registerVerify } from './cli/commands/verify.js';
import type { CliContext, Io } from './cli/context.js';
import { EXIT, EXIT_CODES_HELP } from './cli/exit-codes.js';
import { InterruptedError, type Interruption, onStopSignals, SIGNAL_EXIT } from './cli/interrupt.js';
import { lineWriter } from './cli/output.js';
import { storeNotFoundFrom } from './cli/store-presence.js';

export { EXIT } from './cli/exit-codes.js';

/** Settings read from the environment; exported but empty (`MEDIA_DIR=`) means "not set". */
const CONFIG_ENV = [
  'MEDIA_DIR',
  'BACKUP_STORE',
  'FULL_INTERVAL_DAYS',
  'COMPRESSION_LEVEL',
  'RETENTION_DAYS',
  'MAX_BACKUP_AGE_HOURS',
  'MIN_BACKUP_BYTES',
  'MAX_SHRINK_PERCENT',
];

/** Runs the CLI with `argv` (without node and script) and resolves to the exit code. */
export async function main(argv: readonly string[], io: Io = process): Promise<number> {
  const err = lineWriter(io.stderr);
  const out = lineWriter(io.stdout, (error) => err(`media-backup: cannot write to stdout: ${error.message}`));
  let exitCode: number = EXIT.ok;
  // The running backup or restore, so a failure can be told apart from a Ctrl-C.
  let interruption: Interruption | undefined;
  const json = argv.includes('--json') && !argv.slice(0, argv.indexOf('--json')).includes('--');
  const ctx: CliContext = {
    io,
    out,
    err,
    setExitCode: (code) => {
      exitCode = code;
    },
    interruptible: (aftermath) => {
      interruption = onStopSignals(aftermath);
      return interruption;
    },
  };

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
  for (const register of [
    registerBackup,
    registerList,
    registerStatus,
    registerRestore,
    registerVerify,
    registerHealth,
    registerRetention,
    registerUsage,
  ]) {
    register(program, ctx);
  }

  for (const name of CONFIG_ENV) {
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

// Run when executed (through bin/media-backup.mjs or tsx), not when imported by tests.
const invoked = process.argv[1] ?? '';
if (/media-backup\.(ts|mjs)$/.test(invoked) || process.env.MEDIA_BACKUP_CLI === '1') {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
