/**
 * Timing and report helpers shared by the bench modules. Every timed command runs as its own child
 * process under GNU time, so its peak RSS is measured apart from the bench process.
 */
import { type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = path.join(REPO_ROOT, 'bin', 'media-backup.mjs');
const SHEBANG = readFileSync(CLI, 'utf8').split('\n')[0];
/** How `npx media-backup` starts the CLI: node with the flags of the script's shebang line. */
export const CLI_NODE_ARGS = SHEBANG.replace(/^#!\/usr\/bin\/env -S (?:\w+=\S* )*node ?/, '')
  .split(' ')
  .filter(Boolean);
/** The environment the shebang sets (`env -S NAME=VALUE node ...`): UV_THREADPOOL_SIZE. */
export const CLI_ENV: Readonly<Record<string, string>> = Object.fromEntries(
  [...(SHEBANG.match(/^#!\/usr\/bin\/env -S ((?:\w+=\S* )*)node/)?.[1] ?? '').matchAll(/(\w+)=(\S*)/g)].map(
    (m) => [m[1], m[2]],
  ),
);
export const MB = 1e6;

export interface TimedRun {
  readonly seconds: number;
  /** Peak RSS of the largest process in the command's tree (GNU time %M), in MB; null without GNU time. */
  readonly peakRssMb: number | null;
  /** User + system CPU seconds of the command (GNU time %U + %S); null without GNU time. */
  readonly cpuSeconds: number | null;
  readonly stdout: string;
}

export interface TimedOptions {
  /** Extra environment variables for the child (added to this process's environment). */
  readonly env?: Readonly<Record<string, string>>;
  /** @default the repository root */
  readonly cwd?: string;
}

export function run(command: string, args: readonly string[]): void {
  const result = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.status}): ${result.stderr?.toString()}`);
  }
}

/** GNU time, installing the Debian package `time` when it is missing; undefined when that fails. */
export function findGnuTime(): string | undefined {
  const isGnu = () => spawnSync('/usr/bin/time', ['--version'], { encoding: 'utf8' }).stdout?.includes('GNU');
  if (isGnu()) return '/usr/bin/time';
  console.log('GNU time not found at /usr/bin/time: trying apt-get install -y time ...');
  const install = () => spawnSync('apt-get', ['install', '-y', 'time'], { stdio: 'ignore' }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update'], { stdio: 'ignore' });
    install();
  }
  return isGnu() ? '/usr/bin/time' : undefined;
}

export function spawnCollect(
  command: string,
  args: readonly string[],
  options: SpawnOptions,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
    );
  });
}

/** Wall time measured here (hrtime around the child); peak RSS from GNU time's %M (KiB). */
export async function timed(
  timeBin: string | undefined,
  scratch: string,
  command: string,
  args: readonly string[],
  options: TimedOptions = {},
): Promise<TimedRun> {
  const report = path.join(scratch, 'time.out');
  rmSync(report, { force: true });
  const [bin, argv] = timeBin
    ? [timeBin, ['-f', '%e %M %U %S', '-o', report, command, ...args]]
    : [command, [...args]];
  const started = process.hrtime.bigint();
  const result = await spawnCollect(bin, argv, {
    cwd: options.cwd ?? REPO_ROOT,
    env: options.env ? { ...process.env, ...options.env } : process.env,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited with ${result.code}:\n${result.stderr}`);
  }
  let peakRssMb: number | null = null;
  let cpuSeconds: number | null = null;
  if (timeBin) {
    const last = readFileSync(report, 'utf8').trim().split('\n').at(-1) ?? '';
    const [, kib, user, system] = last.split(' ').map(Number);
    peakRssMb = Number.isFinite(kib) ? (kib * 1024) / MB : null;
    cpuSeconds = Number.isFinite(user + system) ? user + system : null;
  }
  return { seconds, peakRssMb, cpuSeconds, stdout: result.stdout };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function maxOrNull(values: readonly (number | null)[]): number | null {
  const present = values.filter((v): v is number => v !== null);
  return present.length === values.length && present.length > 0 ? Math.max(...present) : null;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

export interface Measured {
  readonly name: string;
  readonly seconds: number[];
  readonly outputBytes: number[];
  readonly peakRssMb: (number | null)[];
  /** Engine-reported durationMs (ours only), to split process start-up from backup work. */
  readonly engineSeconds: number[];
}

export function newMeasured(name: string): Measured {
  return { name, seconds: [], outputBytes: [], peakRssMb: [], engineSeconds: [] };
}

export function summarize(m: Measured, treeBytes: number) {
  const seconds = median(m.seconds);
  return {
    name: m.name,
    medianSeconds: round(seconds, 3),
    samplesSeconds: m.seconds.map((s) => round(s, 3)),
    mbPerSecond: round(treeBytes / MB / seconds, 1),
    outputBytes: Math.round(median(m.outputBytes)),
    peakRssMb: maxOrNull(m.peakRssMb) === null ? null : round(maxOrNull(m.peakRssMb)!, 1),
    engineSeconds: m.engineSeconds.length > 0 ? round(median(m.engineSeconds), 3) : null,
  };
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function table(rows: readonly string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: readonly string[]) =>
    `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join(' | ')} |`;
  const rule = `|${widths.map((w, c) => (c === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join('\n');
}

export function verdict(met: boolean | null): string {
  if (met === null) return 'UNKNOWN';
  return met ? 'MET' : 'NOT MET';
}
