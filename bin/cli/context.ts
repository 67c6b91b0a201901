import { Option } from 'commander';
import { formatBytes as formatByteCount } from '../../lambda/core/checker/health.js';
import type { Logger } from '../../lambda/core/deps.js';
import { UsageError } from '../../lambda/core/errors.js';
import { openStore } from '../../lambda/store/open-store.js';
import type { ObjectStore } from '../../lambda/store/types.js';
import type { Interruption } from './interrupt.js';
import type { LineWriter, OutputStream } from './output.js';
import { assertStoreExists } from './store-presence.js';

export const DEFAULT_STORE = './backups/media';
export const DEFAULT_SOURCE = './media';

/** Where the CLI writes: process.stdout/stderr, or captures in tests. */
export interface Io {
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
}

/** What every command gets from `main`: its output and the two ways to shape the exit. */
export interface CliContext {
  readonly io: Io;
  readonly out: LineWriter;
  readonly err: LineWriter;
  /** For a command that ran but found a problem (status unhealthy, verify failed) or warned. */
  setExitCode(code: number): void;
  /** SIGINT/SIGTERM abort the returned signal until `dispose()`; `aftermath` is said at exit. */
  interruptible(aftermath: string): Interruption;
}

/** Options every command shares. */
export interface CommonOptions {
  store?: string;
  json?: boolean;
  verbose?: boolean;
}

export function storeOption(): Option {
  return new Option('--store <url>', 'where backups live: folder, file:///path or s3://bucket/prefix')
    .env('BACKUP_STORE')
    .default(DEFAULT_STORE);
}

/** Opens a store to write to (backup creates a folder store on its first write). */
export function openForBackup(url: string | undefined): Promise<ObjectStore> {
  return openStore(url ?? DEFAULT_STORE);
}

/** Opens the store of a read-only command: a store that does not exist is an error, never created. */
export async function openExisting(url: string | undefined): Promise<ObjectStore> {
  const store = await openStore(url ?? DEFAULT_STORE);
  await assertStoreExists(store);
  return store;
}

/** A logger on stderr; `warned` holds every warning printed, so a result's warnings are not repeated. */
export function cliLogger(err: (line: string) => void, verbose = false): Logger & { warned: Set<string> } {
  const line = (level: string, message: string, extra: object[]) =>
    err(`${level} ${message}${extra.length ? ` ${extra.map((e) => JSON.stringify(e)).join(' ')}` : ''}`);
  const warned = new Set<string>();
  return {
    warned,
    debug: () => undefined,
    info: (m, ...e) => verbose && line('info', m, e),
    warn: (m, ...e) => {
      warned.add(m);
      line('warning:', m, e);
    },
    // The failure itself is printed once by main(); repeat it only when asked for detail.
    error: (m, ...e) => verbose && line('error:', m, e),
  };
}

export function percent(flag: string, raw: string): number {
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !(n > 0) || n > 100) {
    throw new UsageError(`${flag} must be a percentage above 0 and at most 100 (got ${JSON.stringify(raw)})`);
  }
  return n;
}

export function positiveNumber(flag: string, raw: string): number {
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !(n > 0)) {
    throw new UsageError(`${flag} must be a positive number (got ${JSON.stringify(raw)})`);
  }
  return n;
}

export function wholeDays(flag: string, raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n < 1) {
    throw new UsageError(`${flag} must be a whole number of days >= 1 (got ${JSON.stringify(raw)})`);
  }
  return n;
}

/** Commander's accumulator for a repeatable option. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function formatBytes(n: number | null | undefined): string {
  return n === null || n === undefined ? '?' : formatByteCount(n);
}
