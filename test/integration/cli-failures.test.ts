import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../../bin/media-backup.js';
import { keysFor } from '../../lambda/core/repository/layout.js';
import { runCli } from '../fixtures/cli.js';
import { manifestBytes } from '../fixtures/crafted-backup.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';

const execFileAsync = promisify(execFile);
const BIN = path.resolve('bin/media-backup.mjs');
const CONFIG_ENV = [
  'BACKUP_STORE',
  'MEDIA_DIR',
  'RETENTION_DAYS',
  'FULL_INTERVAL_DAYS',
  'MAX_BACKUP_AGE_HOURS',
  'MIN_BACKUP_BYTES',
  'MAX_SHRINK_PERCENT',
  'COMPRESSION_LEVEL',
];

const cli = runCli;

/** The caller's environment minus settings that would point the CLI elsewhere. */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of CONFIG_ENV) delete env[name];
  return env;
}

const dirs = tempDirs();
let work: string;
let media: string;
let store: string;

beforeEach(async () => {
  for (const name of CONFIG_ENV) vi.stubEnv(name, undefined);
  work = await dirs.make('cli-failures-');
  media = path.join(work, 'media');
  store = path.join(work, 'store');
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

describe('read-only commands on a store that does not exist (a mistyped --store)', () => {
  it.each([
    [['list']],
    [['list', '--json']],
    [['usage']],
    [['status']],
    [['health']],
    [['retention']],
    [['verify']],
    [['verify', '--all']],
    [['restore', '--dry-run']],
    [['restore', '--target', 'RESTORED']],
  ])('%j exits 1, says there is no store, and creates nothing', async (args) => {
    const missing = path.join(work, 'no-such-store');
    const run = await cli([
      ...args.map((a) => (a === 'RESTORED' ? path.join(work, 'restored') : a)),
      '--store',
      missing,
    ]);

    expect(run.code).toBe(EXIT.failed);
    expect(run.stderr).toContain(
      `no backup store at file://${missing}: the folder does not exist; check --store (or BACKUP_STORE)`,
    );
    expect(existsSync(missing)).toBe(false);
    expect(await readdir(work)).toEqual([]);
  });

  it('a file given as the store is not a store', async () => {
    const file = path.join(work, 'backups.txt');
    await writeFile(file, 'not a store');
    const run = await cli(['list', '--store', file]);
    expect(run.code).toBe(EXIT.failed);
    expect(run.stderr).toMatch(/no backup store at file:\/\/.*backups\.txt: it is a file, not a folder/);
  });

  it('an existing but empty store: list says so (exit 0), verify has nothing to verify (exit 1)', async () => {
    const empty = await dirs.make('cli-failures-empty-');
    const list = await cli(['list', '--store', empty]);
    expect(list.code).toBe(EXIT.ok);
    expect(list.stdout).toMatch(/No committed backups in file:\/\//);

    const verifyAll = await cli(['verify', '--all', '--store', empty]);
    expect(verifyAll.code).toBe(EXIT.failed);
    expect(verifyAll.stderr).toMatch(/nothing to verify: file:\/\/.* holds no committed backup/);
    expect(verifyAll.stdout).not.toMatch(/0 backup\(s\) verified/);
    // Nothing recorded either: a vacuous pass in status/last-verify.json would read as a good verify.
    expect(await readdir(empty)).toEqual([]);
  });

  describe('on S3', () => {
    let s3: S3rverFixture;
    beforeAll(async () => {
      s3 = await startS3rver();
    });
    afterAll(() => s3.stop());
    beforeEach(() => {
      for (const [name, value] of Object.entries({
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        AWS_REGION: 'us-east-1',
        S3_ENDPOINT: s3.endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        S3_CHECKSUMS: 'off',
      }))
        vi.stubEnv(name, value);
    });

    it.each([
      [['list']],
      [['status']],
      [['verify', '--all']],
      [['usage']],
      [['health']],
      [['retention']],
      [['restore', '--dry-run']],
    ])('%j on a bucket that does not exist exits 1 naming the bucket (NoSuchBucket)', async (args) => {
      const run = await cli([...args, '--store', 's3://no-such-bucket-h4/media-backups/']);
      expect(run.code).toBe(EXIT.failed);
      expect(run.stderr).toMatch(
        /no backup store at s3:\/\/no-such-bucket-h4\/: the bucket does not exist \(NoSuchBucket\); check --store/,
      );
    });

    it('an existing bucket with nothing under the prefix is an empty store', async () => {
      const run = await cli(['list', '--store', `s3://${s3.bucket}/empty-prefix/`]);
      expect(run.code).toBe(EXIT.ok);
      expect(run.stdout).toMatch(/No committed backups/);
    });
  });
});

describe('--json on failure prints one FAILED object on stdout', () => {
  it.each([
    ['a missing store', ['list', '--json', '--store', 'MISSING'], EXIT.failed, 'StoreNotFoundError'],
    [
      'a missing source',
      ['backup', '--json', '--source', 'MISSING', '--store', 'STORE'],
      EXIT.failed,
      'SourceError',
    ],
    ['an unknown option', ['backup', '--json', '--bogus'], EXIT.usage, 'UsageError'],
    ['a bad value', ['backup', '--json', '--level', '10'], EXIT.usage, 'UsageError'],
    ['BACKUP with --all', ['verify', 'latest', '--all', '--json'], EXIT.usage, 'UsageError'],
    ['restore without a target', ['restore', '--json'], EXIT.usage, 'UsageError'],
    [
      'an unknown backup',
      ['restore', 'backup_20200101_000000', '--dry-run', '--json', '--store', 'STORE'],
      EXIT.failed,
      'BackupStateError',
    ],
  ])('%s', async (_what, args, exitCode, name) => {
    await makeMediaTree(media, { files: 2 });
    await cli(['backup', '--source', media, '--store', store]);
    const run = await cli(
      args.map((a) => (a === 'MISSING' ? path.join(work, 'missing') : a === 'STORE' ? store : a)),
    );

    expect(run.code).toBe(exitCode);
    const printed = JSON.parse(run.stdout);
    expect(printed).toEqual({ status: 'FAILED', error: { name, message: expect.any(String) }, exitCode });
    expect(printed.error.message.length).toBeGreaterThan(10);
  });
});

describe('--help', () => {
  it.each([[['--help']], [['backup', '--help']], [['restore', '--help']]])(
    '%j documents every exit code and says that times are UTC',
    async (args) => {
      const run = await cli(args);
      expect(run.code).toBe(EXIT.ok);
      for (const code of ['0', '1', '2', '3', '130', '143'])
        expect(run.stdout).toMatch(new RegExp(`^  ${code} +\\S`, 'm'));
      expect(run.stdout).toMatch(/backup ids \(backup_YYYYMMDD_HHMMSS\) and --at are UTC/);
      expect(run.stdout).toMatch(/"status":"FAILED"/);
    },
  );
});

describe('settings from the environment', () => {
  it('an exported but empty variable counts as unset (COMPRESSION_LEVEL= uses the default level)', async () => {
    await makeMediaTree(media, { files: 2 });
    vi.stubEnv('COMPRESSION_LEVEL', '');
    vi.stubEnv('MAX_SHRINK_PERCENT', ' ');
    const run = await cli(['backup', '--source', media, '--store', store]);
    expect(run.code, run.stderr).toBe(EXIT.ok);
  });
});

describe('verify BACKUP --all', () => {
  it('are exclusive: exit 2 naming both', async () => {
    const run = await cli(['verify', 'backup_20251227_020000', '--all', '--store', work]);
    expect(run.code).toBe(EXIT.usage);
    expect(run.stderr).toMatch(/give either BACKUP \("backup_20251227_020000"\) or --all, not both/);
  });
});

describe('engine refusals and failed runs, as the CLI reports them', () => {
  it('a store inside the source is bad usage: exit 2 naming both paths, nothing written', async () => {
    await makeMediaTree(media, { files: 2 });
    const inside = path.join(media, 'backups');
    const run = await cli(['backup', '--source', media, '--store', inside]);
    expect(run.code).toBe(EXIT.usage);
    expect(run.stderr).toContain(`source ${media}`);
    expect(run.stderr).toContain(`store file://${inside}`);
    expect(existsSync(inside)).toBe(false);
  });

  it('status exits 1 after a failed run, even with an older good backup (an unmounted source)', async () => {
    await makeMediaTree(media, { files: 2 });
    expect((await cli(['backup', '--source', media, '--store', store])).code).toBe(EXIT.ok);
    await rm(media, { recursive: true });

    const failed = await cli(['backup', '--source', media, '--store', store]);
    expect(failed.code).toBe(EXIT.failed);

    const status = await cli(['status', '--store', store]);
    expect(status.code).toBe(EXIT.failed);
    expect(status.stdout).toMatch(/Last run: FAILED at .*source folder .* does not exist/);
  });
});

describe('exit code 3: committed with skipped paths', () => {
  it('a backup that skipped a FIFO commits, reports it on stderr and exits 3', async () => {
    await makeMediaTree(media, { files: 3 });
    await execFileAsync('mkfifo', [path.join(media, 'pipe')]);

    const run = await cli(['backup', '--source', media, '--store', store]);

    expect(run.code).toBe(EXIT.warnings);
    expect(run.stdout).toMatch(/Backup backup_\d{8}_\d{6} \(full\) committed/);
    expect(run.stdout).toMatch(/SKIPPED 1 path\(s\)/);
    expect(run.stderr).toMatch(/warning: 1 path\(s\) skipped/);
    const list = await cli(['list', '--json', '--store', store]);
    expect(JSON.parse(list.stdout)).toHaveLength(1);
  });
});

/** Spawns the CLI through the package's bin entry, as a user runs it. */
function spawnCli(args: string[]) {
  return spawn(process.execPath, [BIN, ...args], {
    cwd: work,
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function finished(child: ReturnType<typeof spawnCli>): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  // A guard, not a wait: a run that ignores its signal would otherwise write gigabytes until the
  // test times out. Killed, it exits with no code and the test fails on that.
  const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(guard);
      resolve({ code, stderr });
    });
  });
}

describe('a reader that closes stdout (list | head -1)', () => {
  it.each([
    ['list', () => ['list', '--store', store]],
    ['backup', () => ['backup', '--source', media, '--store', store]],
    ['list --json', () => ['list', '--json', '--store', store]],
  ])('%s ends quietly with its own exit code, no EPIPE stack trace', async (_what, args) => {
    await makeMediaTree(media, { files: 3 });
    expect((await cli(['backup', 'full', '--source', media, '--store', store])).code).toBe(EXIT.ok);

    const child = spawnCli(args());
    // The reader is gone before the CLI writes its first line.
    child.stdout?.destroy();
    const { code, stderr } = await finished(child);

    expect(stderr).not.toMatch(/EPIPE|Error:|at .*\.m?js:\d+/);
    expect(code).toBe(EXIT.ok);
    const list = await cli(['list', '--json', '--store', store]);
    expect(JSON.parse(list.stdout).length).toBe(_what === 'backup' ? 2 : 1);
  });
});

describe('Ctrl-C or SIGTERM during a backup', () => {
  it.each([
    ['SIGINT', EXIT.sigint],
    ['SIGTERM', EXIT.sigterm],
  ] as const)(
    '%s aborts cleanly: partial removed, lock released, FAILED recorded, exit %i',
    async (signal, exitCode) => {
      await makeMediaTree(media, { files: 2 });
      // A sparse 64 GiB file: reads as zeros at memory speed but takes minutes to gzip, so the run is
      // still uploading when the signal arrives, however fast the machine.
      await execFileAsync('truncate', ['-s', '64G', path.join(media, 'huge.bin')]);
      const child = spawnCli(['backup', 'full', '--source', media, '--store', store]);
      const done = finished(child);

      // Signal once the archive upload has started (its partial file exists), not after a sleep.
      const partials = async () =>
        (await readdir(path.join(store, 'full')).catch(() => [] as string[])).filter((n) =>
          n.includes('.partial-'),
        );
      await vi.waitFor(
        async () => {
          expect(await partials()).not.toEqual([]);
        },
        { timeout: 30_000, interval: 25 },
      );
      expect(existsSync(path.join(store, 'locks', 'backup.lock'))).toBe(true);
      child.kill(signal);
      const { code, stderr } = await done;

      expect(code).toBe(exitCode);
      expect(stderr.trim().split('\n')).toEqual([
        `media-backup: interrupted by ${signal}: backup stopped; nothing was committed, the partial upload was removed and the lock released`,
      ]);
      expect(await partials()).toEqual([]);
      expect(await readdir(path.join(store, 'full'))).toEqual([]);
      expect(existsSync(path.join(store, 'locks', 'backup.lock'))).toBe(false);
      const lastRun = JSON.parse(await readFile(path.join(store, 'status', 'last-run.json'), 'utf8'));
      expect(lastRun).toMatchObject({ status: 'FAILED' });
      const status = await cli(['status', '--store', store]);
      expect(status.code).toBe(EXIT.failed);
      expect(status.stdout).toMatch(/Last run: FAILED/);
    },
  );
});

describe('kill -9 during a backup (nothing can clean up)', () => {
  it("leaves no visible backup; the next run takes over the dead run's lock at once and commits; the partial goes once older than the lock TTL", async () => {
    await makeMediaTree(media, { files: 3 });
    const huge = path.join(media, 'huge.bin');
    await execFileAsync('truncate', ['-s', '64G', huge]);
    const child = spawnCli(['backup', 'full', '--source', media, '--store', store]);
    const done = finished(child);
    const partials = async () =>
      (await readdir(path.join(store, 'full')).catch(() => [] as string[])).filter((n) =>
        n.includes('.partial-'),
      );
    await vi.waitFor(
      async () => {
        expect(await partials()).not.toEqual([]);
      },
      { timeout: 30_000, interval: 25 },
    );
    child.kill('SIGKILL');
    await done;

    // What the killed run left: its lock and its partial archive, and no backup.
    expect(existsSync(path.join(store, 'locks', 'backup.lock'))).toBe(true);
    const [left] = await partials();
    expect((await cli(['list', '--json', '--store', store])).stdout.trim()).toBe('[]');

    await rm(huge);
    const next = await cli(['backup', '--source', media, '--store', store, '--json']);
    expect(next.code).toBe(EXIT.ok);
    expect(JSON.parse(next.stdout)).toMatchObject({ status: 'SUCCEEDED', type: 'full', files: 3 });
    // A partial younger than the lock TTL could belong to a live run elsewhere: kept.
    expect(await partials()).toEqual([left]);

    const stale = new Date(Date.now() - 11 * 60_000);
    await utimes(path.join(store, 'full', left!), stale, stale);
    expect((await cli(['backup', '--source', media, '--store', store])).code).toBe(EXIT.ok);
    expect(await partials()).toEqual([]);
    expect(JSON.parse((await cli(['list', '--json', '--store', store])).stdout)).toHaveLength(2);
  });
});

/** A ustar header for a regular file of `size` bytes (octal fields, checksum over the header). */
function ustarHeader(name: string, size: number): Buffer {
  const header = Buffer.alloc(512);
  const field = (offset: number, length: number, value: string) =>
    header.write(value, offset, length, 'ascii');
  const octal = (value: number, length: number) => `${value.toString(8).padStart(length - 1, '0')}\0`;
  field(0, 100, name);
  field(100, 8, octal(0o644, 8));
  field(108, 8, octal(0, 8));
  field(116, 8, octal(0, 8));
  field(124, 12, octal(size, 12));
  field(136, 12, octal(1_735_264_800, 12));
  field(148, 8, '        ');
  field(156, 1, '0');
  field(257, 6, 'ustar\0');
  field(263, 2, '00');
  let sum = 0;
  for (const byte of header) sum += byte;
  field(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return header;
}

/**
 * A committed full backup holding one file of `gib` GiB of zeros, written by hand in a moment: the
 * archive is one gzip member per MiB of zeros, the same ~1 KB member repeated (a series of gzip
 * members is one gzip stream). Restoring it takes far longer than any test waits.
 */
async function craftHugeBackup(storeDir: string, gib: number): Promise<void> {
  const backupId = 'backup_20251227_020000';
  const keys = keysFor('full', backupId);
  const size = gib * 1024 * 1024 * 1024;
  const zeros = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 });
  const members = [gzipSync(ustarHeader('huge.bin', size))];
  for (let i = 0; i < gib * 1024; i += 1) members.push(zeros);
  members.push(gzipSync(Buffer.alloc(1024)));
  const archive = Buffer.concat(members);
  const file = (key: string) => path.join(storeDir, ...key.split('/'));
  await mkdir(path.dirname(file(keys.archive)), { recursive: true });
  await writeFile(file(keys.archive), archive);
  const line = { path: 'huge.bin', type: 'file', size, mtimeMs: 1_735_264_800_000, mode: 0o644 };
  await writeFile(
    file(keys.manifest),
    manifestBytes(backupId, [{ ...line, sha256: '0'.repeat(64), archive: keys.archive }]),
  );
}

describe('Ctrl-C during a restore', () => {
  it('aborts it: the staging folder is removed, the target is not created, exit 130', async () => {
    await craftHugeBackup(store, 16);
    const target = path.join(work, 'restored');
    const child = spawnCli(['restore', '--target', target, '--store', store]);
    const done = finished(child);

    const staging = async () =>
      (await readdir(work)).filter((n) => n.startsWith('restored.restore-staging-'));
    await vi.waitFor(
      async () => {
        expect(await staging()).not.toEqual([]);
      },
      { timeout: 30_000, interval: 25 },
    );
    child.kill('SIGINT');
    const { code, stderr } = await done;

    expect(code).toBe(EXIT.sigint);
    expect(stderr.trim().split('\n').at(-1)).toBe(
      'media-backup: interrupted by SIGINT: restore stopped; the staging folder was removed and the target left as it was',
    );
    expect(await staging()).toEqual([]);
    expect(existsSync(target)).toBe(false);
  });
});
