import cliProgress from 'cli-progress';
import { formatBytes } from '../../lambda/core/checker/health.js';
import type { OutputStream } from './output.js';

/** Where a long operation stands: bytes drive the bar and the ETA, files are the second figure. */
export interface TransferProgress {
  readonly bytes: number;
  readonly totalBytes: number;
  readonly files: number;
  readonly totalFiles: number;
}

/** A progress display on stderr; every method is a no-op when stderr is not a terminal. */
export interface ProgressDisplay {
  /** A phase without a known total (the scan): one status line until the bar starts. */
  phase(text: string): void;
  update(progress: TransferProgress): void;
  /** Removes a phase line, or leaves the bar at its final state. Idempotent. */
  stop(): void;
}

export const noProgress: ProgressDisplay = {
  phase: () => undefined,
  update: () => undefined,
  stop: () => undefined,
};

/**
 * A bar over bytes, not files: one 4 GB video among 1,000 photos would otherwise show 99% with an
 * ETA of a second while most of the work is still ahead. Only on a terminal: redirected stderr (cron,
 * CI, Lambda) gets no control characters.
 */
export function startProgress(stream: OutputStream, label: string): ProgressDisplay {
  if (!stream.isTTY) return noProgress;
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${label} [{bar}] {percentage}% | {done} / {size} | {files} / {totalFiles} files | {rate} | ETA {eta_formatted}`,
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let started: number | undefined;
  let running = false;
  let phaseShown = false;
  const clearPhase = () => {
    if (!phaseShown) return;
    stream.write('\r\x1b[K');
    phaseShown = false;
  };
  return {
    phase(text) {
      if (running) return;
      stream.write(`\r\x1b[K${label}: ${text}`);
      phaseShown = true;
    },
    update(p) {
      started ??= Date.now();
      const payload = {
        done: formatBytes(p.bytes),
        size: formatBytes(p.totalBytes),
        files: p.files,
        totalFiles: p.totalFiles,
        rate: `${formatBytes(p.bytes / Math.max(0.001, (Date.now() - started) / 1000))}/s`,
      };
      // cli-progress divides by the total: an empty change set (0 bytes) would show NaN%.
      const total = Math.max(1, p.totalBytes);
      if (!running) {
        clearPhase();
        bar.start(total, Math.min(p.bytes, total), payload);
        running = true;
        return;
      }
      // `verify --all --deep` checks one backup after another, each with its own totals.
      if (bar.getTotal() !== total) bar.setTotal(total);
      bar.update(Math.min(p.bytes, total), payload);
    },
    stop() {
      clearPhase();
      if (running) bar.stop();
      running = false;
    },
  };
}
