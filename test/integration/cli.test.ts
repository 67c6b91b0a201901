import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempDirs } from '../fixtures/engine.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';

const execFileAsync = promisify(execFile);
const BIN = path.resolve('bin/media-backup.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI as a user would, through the package's bin entry. */
async function cli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; asUser?: number } = {},
): Promise<Run> {
  const [cmd, argv] =
    options.asUser === undefined
      ? [process.execPath, [BIN, ...args]]
      : [
          'setpriv',
          [
            `--reuid=${options.asUser}`,
            `--regid=${options.asUser}`,
            '--clear-groups',
            process.execPath,
            BIN,
            ...args,
          ],
        ];
  try {
    const { stdout, stderr } = await execFileAsync(cmd, argv as string[], {
      cwd: options.cwd,
      env: { ...withoutConfigEnv(), ...options.env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** The caller's environment minus settings that would point the CLI elsewhere. */
function withoutConfigEnv(): NodeJS.ProcessEnv {
  const { BACKUP_STORE: _s, MEDIA_DIR: _m, FULL_INTERVAL_DAYS: _f, ...rest } = process.env;
  return rest;
}

const dirs = tempDirs();
let work: string;
beforeEach(async () => {
  work = await dirs.make('cli-');
});
afterEach(() => dirs.cleanup());

describe('media-backup CLI', () => {
  it('quick start: backs up ./media into ./backups/media, full then incremental', async () => {
    await makeMediaTree(path.join(work, 'media'), { files: 12 });

    const first = await cli(['backup'], { cwd: work });
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(
      /Backup backup_\d{8}_\d{6} \(full\) committed to file:\/\/.*\/backups\/media/,
    );
    expect(first.stdout).toMatch(/tree: +12 files/);

    await writeFile(path.join(work, 'media/new.pdf'), 'new');
    const second = await cli(['backup', '--json'], { cwd: work });
    expect(second.code).toBe(0);
    const result = JSON.parse(second.stdout);
    expect(result).toMatchObject({
      type: 'incremental',
      files: 13,
      changedFiles: 1,
      changedBytes: 3,
      deletedFiles: 0,
      skipped: [],
    });
    for (const field of ['backupId', 'archiveKey', 'bytes', 'durationMs'])
      expect(result).toHaveProperty(field);

    const list = await cli(['list', '--json'], { cwd: work });
    const backups = JSON.parse(list.stdout) as { backupId: string; type: string }[];
    expect(backups.map((b) => b.type)).toEqual(['full', 'incremental']);
    expect(backups[1].backupId).toBe(result.backupId);

    const human = await cli(['list'], { cwd: work });
    expect(human.stdout).toMatch(/2 committed backup\(s\)/);

    const status = await cli(['status', '--json'], { cwd: work });
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      lastRun: { status: 'SUCCEEDED', backupId: result.backupId },
      committedBackups: 2,
      healthy: true,
    });
  });

  it('takes --source, --store, --exclude and --level, and honours MEDIA_DIR / BACKUP_STORE', async () => {
    const media = path.join(work, 'm');
    await makeMediaTree(media, { files: 3 });
    await writeFile(path.join(media, 'skip.tmp'), 'x');
    const store = path.join(work, 'store');
    const run = await cli(['backup', 'full', '--exclude', '*.tmp', '--level', '1', '--json'], {
      env: { MEDIA_DIR: media, BACKUP_STORE: `file://${store}` },
    });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ type: 'full', files: 3 });
    const list = await cli(['list', '--json', '--store', store]);
    expect(JSON.parse(list.stdout)).toHaveLength(1);
    const { archiveKey } = JSON.parse(list.stdout)[0] as { archiveKey: string };
    const metadata = JSON.parse(await readFile(path.join(store, `${archiveKey}.metadata.json`), 'utf8'));
    expect(metadata).toMatchObject({ compression: { level: 1 } });
  });

  it.each([
    [['backup', 'weekly'], /backup type must be auto, full or incremental \(got "weekly"\)/],
    [['backup', '--full-interval-days', 'x'], /--full-interval-days must be a whole number/],
    [['backup', '--level', '10'], /--level must be a whole number from 0 to 9 \(got "10"\)/],
    [['list', '--store', 'ftp://host/x'], /unsupported store URL "ftp:\/\/host\/x"/],
    [['backup', '--bogus'], /unknown option '--bogus'/],
    [['nonsense'], /unknown command 'nonsense'/],
  ])('exits 2 on bad usage %j, naming what is wrong', async (args, message) => {
    const run = await cli(args, { cwd: work });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
  });

  it('restore: new folder, refusal of a non-empty target (exit 2), unknown backup (exit 1), --replace', async () => {
    await makeMediaTree(path.join(work, 'media'), { files: 6 });
    expect((await cli(['backup'], { cwd: work })).code).toBe(0);

    const restored = await cli(['restore', '--target', 'restored', '--json'], { cwd: work });
    expect(restored.code, restored.stderr).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({ verified: true, files: 6, previousTree: null });
    expect(await snapshotTree(path.join(work, 'restored'))).toEqual(
      await snapshotTree(path.join(work, 'media')),
    );

    const refused = await cli(['restore', '--target', 'restored'], { cwd: work });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/restore target .*restored is not empty/);

    const unknown = await cli(['restore', 'backup_20200101_000000', '--target', 'other'], { cwd: work });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/backup_20200101_000000 is not a committed backup.*Available: backup_/);

    await writeFile(path.join(work, 'media/avatars-broken.jpg'), 'damage');
    const replaced = await cli(['restore', '--replace', '--target', 'media'], { cwd: work });
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(replaced.stdout).toMatch(/the previous tree is kept at .*media\.pre-restore-\d{8}_\d{6}/);
    expect(await snapshotTree(path.join(work, 'media'))).toEqual(
      await snapshotTree(path.join(work, 'restored')),
    );

    const usage = await cli(['restore'], { cwd: work });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/restore needs --target DIR \(or --dry-run\)/);
  });

  it('exits 1 with a clear message and backs nothing up when the source is missing', async () => {
    const store = path.join(work, 'store');
    await mkdir(store);
    const run = await cli(['backup', '--source', path.join(work, 'nope'), '--store', store], { cwd: work });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/source folder .*nope does not exist.*nothing was backed up/);
    const list = await cli(['list', '--json', '--store', store], { cwd: work });
    expect(JSON.parse(list.stdout)).toEqual([]);
    const status = await cli(['status', '--store', store], { cwd: work });
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(/Latest backup: none/);
  });

  it('skips and reports an unreadable file, and still commits the rest', async () => {
    await chmod(work, 0o777);
    const media = path.join(work, 'media');
    await makeMediaTree(media, { files: 4 });
    await mkdir(path.join(media, 'private'));
    await writeFile(path.join(media, 'private/secret.pdf'), 'secret');
    await chmod(path.join(media, 'private/secret.pdf'), 0o000);
    await writeFile(path.join(media, 'locked.jpg'), 'x');
    await chmod(path.join(media, 'locked.jpg'), 0o200);
    let run: (args: string[]) => Promise<Run>;
    if (process.getuid?.() === 0) {
      // Root reads everything, so run the CLI as an unprivileged user. That user may not be able to
      // reach this checkout (CI clones anywhere), so it runs a single-file esbuild bundle of the CLI
      // placed in the world-readable temp folder.
      const bundle = path.join(work, 'media-backup.cjs');
      await build({
        entryPoints: [path.resolve('bin/media-backup.ts')],
        bundle: true,
        platform: 'node',
        format: 'cjs',
        outfile: bundle,
        logLevel: 'error',
      });
      run = async (args) => {
        try {
          const { stdout, stderr } = await execFileAsync(
            'setpriv',
            ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, bundle, ...args],
            { cwd: work, env: { ...withoutConfigEnv(), MEDIA_BACKUP_CLI: '1' } },
          );
          return { code: 0, stdout, stderr };
        } catch (error) {
          const e = error as Run;
          return { code: e.code, stdout: e.stdout, stderr: e.stderr };
        }
      };
    } else {
      run = (args) => cli(args, { cwd: work });
    }
    const store = path.join(work, 'store');
    const first = await run(['backup', '--json', '--store', store]);
    // Committed, but not everything is in it: exit 3.
    expect(first.code, first.stderr).toBe(3);
    const result = JSON.parse(first.stdout);
    expect(result.files).toBe(4);
    expect(result.skipped).toEqual([
      { path: 'locked.jpg', reason: 'permission denied' },
      { path: 'private/secret.pdf', reason: 'permission denied' },
    ]);
    const human = await run(['backup', 'full', '--store', store]);
    expect(human.code).toBe(3);
    expect(human.stdout).toMatch(/SKIPPED 2 path\(s\)/);
    expect(human.stdout).toMatch(/private\/secret.pdf: permission denied/);
  });
});
