import { MediaBackupError } from '../../lambda/core/errors.js';

/** Exit codes of a run stopped by a signal: 128 + the signal number, as shells report them. */
export const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;
export type StopSignal = keyof typeof SIGNAL_EXIT;

/** The run was stopped by Ctrl-C or `kill`: the engine aborted it (nothing committed). */
export class InterruptedError extends MediaBackupError {
  override readonly name = 'InterruptedError';
  constructor(readonly signal: StopSignal) {
    super(`interrupted by ${signal}`);
  }
}

/** An AbortSignal fired by SIGINT/SIGTERM for the duration of one operation. */
export interface Interruption {
  readonly signal: AbortSignal;
  /** The signal that arrived, if any. */
  readonly received: StopSignal | undefined;
  /** What an abort leaves behind, for the one line printed at exit. */
  readonly aftermath: string;
  /** Removes the handlers: signals go back to Node's default (exit at once). */
  dispose(): void;
}

/**
 * Turns the first SIGINT/SIGTERM into an abort of the running operation, so the engine removes its
 * partial upload, releases the lock and records the run as FAILED before the CLI exits 130/143.
 * Without this, Ctrl-C kills the process mid-upload and leaves a partial archive and a lock behind.
 * A second signal exits at once (the operator insists; the lock expires on its own).
 */
export function onStopSignals(aftermath: string): Interruption {
  const controller = new AbortController();
  let received: StopSignal | undefined;
  const handler = (signal: StopSignal) => {
    if (received) process.exit(SIGNAL_EXIT[signal]);
    received = signal;
    controller.abort(new InterruptedError(signal));
  };
  const signals = Object.keys(SIGNAL_EXIT) as StopSignal[];
  for (const s of signals) process.on(s, handler);
  return {
    signal: controller.signal,
    aftermath,
    get received() {
      return received;
    },
    dispose() {
      for (const s of signals) process.off(s, handler);
    },
  };
}
