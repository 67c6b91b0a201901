/** `media-backup backup --io-concurrency N` / IO_CONCURRENCY (issue 13). */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../../bin/media-backup.js';
import { runCli } from '../fixtures/cli.js';
import { tempDirs } from '../fixtures/engine.js';

const cli = runCli;

const dirs = tempDirs();
let media: string;
let store: string;
beforeEach(async () => {
  for (const name of ['BACKUP_STORE', 'MEDIA_DIR', 'IO_CONCURRENCY']) vi.stubEnv(name, undefined);
  const work = await dirs.make('cli-io-');
  media = path.join(work, 'media');
  store = path.join(work, 'store');
  await mkdir(media);
  for (let i = 0; i < 20; i++) await writeFile(path.join(media, `f${i}.jpg`), Buffer.alloc(3000, i));
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

describe('--io-concurrency', () => {
  it('reads ahead with the given number of files (flag or IO_CONCURRENCY) and backs up every file', async () => {
    const flag = await cli([
      'backup',
      'full',
      '--source',
      media,
      '--store',
      store,
      '--io-concurrency',
      '8',
      '--json',
      '-v',
    ]);
    expect(flag.code).toBe(EXIT.ok);
    expect(JSON.parse(flag.stdout)).toMatchObject({ status: 'SUCCEEDED', files: 20, skipped: [] });
    expect(flag.stderr).toMatch(/backup estimate .*"ioConcurrency":8/);
    vi.stubEnv('IO_CONCURRENCY', '4');
    const env = await cli(['backup', 'full', '--source', media, '--store', store, '--json', '-v']);
    expect(JSON.parse(env.stdout)).toMatchObject({ status: 'SUCCEEDED', files: 20 });
    expect(env.stderr).toMatch(/backup estimate .*"ioConcurrency":4/);
  });

  it.each(['0', 'many', '1000'])('refuses %s as a usage error naming the option (exit 2)', async (value) => {
    const r = await cli(['backup', 'full', '--source', media, '--store', store, '--io-concurrency', value]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/--io-concurrency must be a whole number from 1 to 256/);
  });
});
