/**
 * The first-backup peers of issue 6 (`tar | pigz`, restic, borg), our backup to s3rver, and the
 * in-process gzip-setting variants. Each timed command is a child process under GNU time; output
 * and state go to fresh folders under the bench's scratch folder on every repetition.
 */
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { CLI_NODE_ARGS, REPO_ROOT, run, type TimedRun, timed } from './timing.js';

export type PeerName = 'pigz' | 'restic' | 'borg';

export interface ToolStatus {
  readonly name: PeerName;
  /** Version line, or null when the tool is not usable. */
  readonly version: string | null;
  /** Why the tool is not usable. */
  readonly reason: string | null;
}

const PACKAGES: Record<PeerName, string> = { pigz: 'pigz', restic: 'restic', borg: 'borgbackup' };

function versionOf(name: PeerName): string | null {
  const args = name === 'restic' ? ['version'] : ['--version'];
  const result = spawnSync(name, args, { encoding: 'utf8' });
  if (result.error || result.status !== 0) return null;
  // pigz prints its version on stderr in some releases.
  const line = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n')[0];
  return line || name;
}

function lastLines(text: string | undefined, n = 2): string {
  return (text ?? '').trim().split('\n').slice(-n).join(' / ') || 'no output';
}

/**
 * Finds pigz, restic and borg, installing the missing ones from Debian (`apt-get install -y`, with
 * `apt-get update` when the first attempt fails). Never throws: a tool that stays missing is
 * reported with the reason.
 */
export function ensurePeerTools(names: readonly PeerName[] = ['pigz', 'restic', 'borg']): ToolStatus[] {
  const statuses: ToolStatus[] = [];
  let updated = false;
  for (const name of names) {
    let version = versionOf(name);
    let reason: string | null = null;
    if (version === null) {
      const pkg = PACKAGES[name];
      console.log(`${name} not found: trying apt-get install -y ${pkg} ...`);
      const install = () =>
        spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], {
          encoding: 'utf8',
          env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
        });
      let result = install();
      if ((result.error || result.status !== 0) && !updated) {
        spawnSync('apt-get', ['update'], { stdio: 'ignore' });
        updated = true;
        result = install();
      }
      version = versionOf(name);
      if (version === null) {
        reason = result.error
          ? `apt-get could not run (${result.error.message})`
          : `apt-get install ${pkg} exited with ${result.status}: ${lastLines(result.stderr)}`;
      }
    }
    statuses.push({ name, version, reason });
  }
  return statuses;
}

/** Apparent size of every file under `dir` (what `du -sb` reports, minus directory entries). */
export function dirBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const abs = path.join(dir, entry.name);
    if (entry.isDirectory()) total += dirBytes(abs);
    else total += lstatSync(abs).size;
  }
  return total;
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

export interface PeerRun extends TimedRun {
  readonly outputBytes: number;
}

interface PeerContext {
  readonly timeBin: string | undefined;
  readonly scratch: string;
  readonly root: string;
  readonly cores: number;
}

/**
 * `tar -cf - -C TREE . | pigz -p <cores> -6 > out`, timed as one `bash -c`. GNU time on bash reports
 * the largest RSS among bash and its waited-for children (getrusage RUSAGE_CHILDREN keeps the
 * maximum, not the sum), so the peak RSS is that of the largest process, not of the pipeline.
 */
export async function runPigz(ctx: PeerContext): Promise<PeerRun> {
  const out = path.join(ctx.scratch, 'pigz.tar.gz');
  rmSync(out, { force: true });
  run('sync', []);
  const t = await timed(ctx.timeBin, ctx.scratch, 'bash', [
    '-c',
    `set -o pipefail; tar -cf - -C ${shellQuote(ctx.root)} . | pigz -p ${ctx.cores} -6 > ${shellQuote(out)}`,
  ]);
  const outputBytes = statSync(out).size;
  rmSync(out, { force: true });
  return { ...t, outputBytes };
}

/** `restic init` (untimed, fresh repo and cache) then `restic backup TREE` (timed); output = repo size. */
export async function runRestic(ctx: PeerContext): Promise<PeerRun> {
  const repo = path.join(ctx.scratch, 'restic-repo');
  const cache = path.join(ctx.scratch, 'restic-cache');
  rmSync(repo, { recursive: true, force: true });
  rmSync(cache, { recursive: true, force: true });
  const env = { RESTIC_PASSWORD: 'media-backup-bench', RESTIC_CACHE_DIR: cache, RESTIC_REPOSITORY: repo };
  const init = spawnSync('restic', ['init'], { encoding: 'utf8', env: { ...process.env, ...env } });
  if (init.status !== 0) throw new Error(`restic init failed: ${lastLines(init.stderr)}`);
  run('sync', []);
  const t = await timed(ctx.timeBin, ctx.scratch, 'restic', ['backup', ctx.root], { env });
  const outputBytes = dirBytes(repo);
  rmSync(repo, { recursive: true, force: true });
  rmSync(cache, { recursive: true, force: true });
  return { ...t, outputBytes };
}

/** `borg init --encryption=none` (untimed) then `borg create --compression lz4` (timed); output = repo size. */
export async function runBorg(ctx: PeerContext): Promise<PeerRun> {
  const repo = path.join(ctx.scratch, 'borg-repo');
  const base = path.join(ctx.scratch, 'borg-base');
  rmSync(repo, { recursive: true, force: true });
  rmSync(base, { recursive: true, force: true });
  mkdirSync(base);
  const env = {
    BORG_BASE_DIR: base,
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
    BORG_DISPLAY_PASSPHRASE: 'no',
  };
  const init = spawnSync('borg', ['init', '--encryption=none', repo], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  if (init.status !== 0) throw new Error(`borg init failed: ${lastLines(init.stderr)}`);
  run('sync', []);
  const t = await timed(
    ctx.timeBin,
    ctx.scratch,
    'borg',
    ['create', '--compression', 'lz4', `${repo}::a`, ctx.root],
    { env },
  );
  const outputBytes = dirBytes(repo);
  rmSync(repo, { recursive: true, force: true });
  rmSync(base, { recursive: true, force: true });
  return { ...t, outputBytes };
}

export interface GzipVariant {
  readonly name: string;
  /** undefined: the engine's default. */
  readonly level?: number;
  readonly workers?: number;
}

/**
 * Bundles bench/variant.ts with esbuild (as bin/media-backup.mjs does for the CLI) under
 * node_modules/.cache, so node resolves its packages and no tsx loader runs in the timed process.
 * Returns the command to run it.
 */
export async function buildVariantRunner(): Promise<{ command: string; args: string[] }> {
  const outfile = path.join(REPO_ROOT, 'node_modules', '.cache', 'media-backup-bench', 'variant.mjs');
  try {
    const esbuild = await import('esbuild');
    await esbuild.build({
      absWorkingDir: REPO_ROOT,
      entryPoints: ['bench/variant.ts'],
      bundle: true,
      packages: 'external',
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile,
      logLevel: 'error',
    });
    // Same node flags as the CLI, so the variants compare with it.
    return { command: 'node', args: [...CLI_NODE_ARGS, outfile] };
  } catch (error) {
    console.log(
      `  esbuild bundle of bench/variant.ts failed (${(error as Error).message}); using tsx instead`,
    );
    return { command: 'node', args: ['--import', 'tsx', path.join(REPO_ROOT, 'bench', 'variant.ts')] };
  }
}

/** One full backup in a child process with the given gzip settings, into a fresh folder store. */
export async function runVariant(
  ctx: PeerContext,
  runner: { command: string; args: string[] },
  variant: GzipVariant,
): Promise<PeerRun & { readonly durationMs: number; readonly files: number; readonly bytes: number }> {
  const store = path.join(ctx.scratch, 'variant-store');
  rmSync(store, { recursive: true, force: true });
  run('sync', []);
  const t = await timed(ctx.timeBin, ctx.scratch, runner.command, [
    ...runner.args,
    ctx.root,
    store,
    variant.level === undefined ? 'default' : String(variant.level),
    variant.workers === undefined ? 'default' : String(variant.workers),
  ]);
  const result = JSON.parse(t.stdout) as {
    archiveBytes: number;
    durationMs: number;
    files: number;
    bytes: number;
  };
  rmSync(store, { recursive: true, force: true });
  return { ...t, outputBytes: result.archiveBytes, ...result };
}
