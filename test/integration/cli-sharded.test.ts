import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../fixtures/cli.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

describe('media-backup backup --shards N --parallel P', () => {
  it('takes a sharded backup that list, verify --deep and restore read like any other', async () => {
    const source = await dirs.make('cli-shard-src-');
    await makeMediaTree(source, { files: 50, seed: 3 });
    const store = await dirs.make('cli-shard-store-');
    const backup = await runCli([
      'backup',
      'full',
      '--source',
      source,
      '--store',
      store,
      '--shards',
      '3',
      '--parallel',
      '2',
      '--json',
    ]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    const result = JSON.parse(backup.stdout) as {
      backupId: string;
      shards: number;
      parts: { key: string }[];
    };
    expect(result.shards).toBe(3);
    expect(result.parts.map((p) => p.key)).toEqual(
      [1, 2, 3].map((i) => `full/${result.backupId}.part-000${i}.tar.gz`),
    );

    const verify = await runCli(['verify', result.backupId, '--deep', '--store', store]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);

    const target = path.join(await dirs.make('cli-shard-restore-'), 'media');
    const restore = await runCli([
      'restore',
      result.backupId,
      '--target',
      target,
      '--store',
      store,
      '--parallel',
      '3',
    ]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(await snapshotTree(target)).toEqual(await snapshotTree(source));
  });

  it('refuses bad --shards and --parallel values, naming the option (exit 2)', async () => {
    const source = await dirs.make('cli-shard-bad-');
    const store = await dirs.make('cli-shard-bad-store-');
    for (const [args, message] of [
      [['--shards', '0'], /--shards must be a whole number from 1 to 9999 \(got "0"\)/],
      [['--shards', '10000'], /--shards must be a whole number from 1 to 9999/],
      [['--shards', '2', '--parallel', 'x'], /--parallel must be a whole number from 1 to 64 \(got "x"\)/],
      [['--parallel', '4'], /--parallel needs --shards/],
    ] as const) {
      const run = await runCli(['backup', '--source', source, '--store', store, ...args]);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(message);
    }
  });
});
