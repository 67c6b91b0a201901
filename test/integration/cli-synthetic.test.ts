import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../fixtures/cli.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeMediaTree } from '../fixtures/media-tree.js';

const dirs = tempDirs();
afterAll(() => dirs.cleanup());

describe('media-backup backup full --synthetic', () => {
  it('builds a full from the store; --json reports what was read, copied and fetched; the text says so too', async () => {
    const source = await dirs.make('cli-synth-src-');
    const files = await makeMediaTree(source, { files: 30, seed: 4 });
    const store = await dirs.make('cli-synth-store-');
    const first = await runCli(['backup', 'full', '--source', source, '--store', store, '--json']);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout).syntheticSkipped).toMatch(/no committed backup to build on/);
    await writeFile(path.join(source, files[0]), 'changed since the first full');

    const run = await runCli([
      'backup',
      'full',
      '--synthetic',
      '--source',
      source,
      '--store',
      store,
      '--json',
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as {
      type: string;
      archiveBytes: number;
      synthetic: {
        bytesReadFromSource: number;
        bytesCopied: number;
        bytesFetched: number;
        copyParts: number;
      };
    };
    expect(result.type).toBe('full');
    expect(result.synthetic.bytesReadFromSource).toBe('changed since the first full'.length);
    expect(result.synthetic.bytesCopied + result.synthetic.bytesFetched).toBe(result.archiveBytes);
    expect(result.synthetic.copyParts).toBeGreaterThan(0);

    const text = await runCli(['backup', 'full', '--synthetic', '--source', source, '--store', store]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/synthetic: read 0 B from the source; copied .* in the store/);
    const normal = await runCli(['backup', 'full', '--no-synthetic', '--source', source, '--store', store]);
    expect(normal.stdout).toMatch(/normal full: synthetic fulls are turned off/);
  });

  it('refuses --synthetic with incremental or --shards, and a bad --normal-full-every, naming the option (exit 2)', async () => {
    const source = await dirs.make('cli-synth-bad-');
    const store = await dirs.make('cli-synth-bad-store-');
    const incremental = await runCli([
      'backup',
      'incremental',
      '--synthetic',
      '--source',
      source,
      '--store',
      store,
    ]);
    expect(incremental.code).toBe(2);
    expect(incremental.stderr).toMatch(/--synthetic builds a full/);
    const sharded = await runCli([
      'backup',
      'full',
      '--synthetic',
      '--shards',
      '2',
      '--source',
      source,
      '--store',
      store,
    ]);
    expect(sharded.code).toBe(2);
    expect(sharded.stderr).toMatch(/--synthetic and --shards do not combine/);
    const every = await runCli(['backup', '--normal-full-every', '0', '--source', source, '--store', store]);
    expect(every.code).toBe(2);
    expect(every.stderr).toMatch(/--normal-full-every must be a whole number from 1 to 1000 \(got "0"\)/);
  });
});
