import { SIGNAL_EXIT } from './interrupt.js';

/** The CLI's exit codes; `--help` and the README document the same table. */
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

export const EXIT_CODES_HELP = `
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
