import { mkdir, rm, writeFile } from 'node:fs/promises';
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
  for (const name of ['BACKUP_STORE', 'MEDIA_DIR', 'MAX_SHRINK_PERCENT', 'FULL_INTERVAL_DAYS'])
    vi.stubEnv(name, undefined);
  const work = await dirs.make('cli-shrink-');
  media = path.join(work, 'media');
  store = path.join(work, 'store');
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

describe('exit code 3: committed, but the source shrank (the wiped media folder case)', () => {
  /** Makes the media folder hold exactly `count` files of 1 kB each (so files and bytes drop alike). */
  async function holdFiles(count: number) {
    await rm(media, { recursive: true, force: true });
    await mkdir(media, { recursive: true });
    for (let i = 0; i < count; i += 1) await writeFile(path.join(media, `f${i}.jpg`), Buffer.alloc(1000, i));
  }
  const backup = (...extra: string[]) => cli(['backup', ...extra, '--source', media, '--store', store]);

  it('warns once on stderr and exits 3; --max-shrink-percent and MAX_SHRINK_PERCENT set the threshold', async () => {
    await holdFiles(10);
    expect((await backup()).code).toBe(EXIT.ok);
    await holdFiles(3);

    const shrunk = await backup('--json');

    expect(shrunk.code).toBe(EXIT.warnings);
    const result = JSON.parse(shrunk.stdout);
    expect(result.status).toBe('SUCCEEDED');
    expect(result.warnings).toEqual([{ code: 'SOURCE_SHRANK', message: expect.any(String) }]);
    const warningLines = shrunk.stderr.split('\n').filter((l) => l.startsWith('warning:'));
    expect(warningLines).toHaveLength(1);
    expect(warningLines[0]).toContain(result.warnings[0].message);

    // 10 -> 3 files is a 70% drop: within a threshold of 80, from the flag or the environment.
    await holdFiles(10);
    expect((await backup()).code).toBe(EXIT.ok);
    await holdFiles(3);
    expect((await backup('--max-shrink-percent', '80')).code).toBe(EXIT.ok);
    await holdFiles(10);
    expect((await backup()).code).toBe(EXIT.ok);
    await holdFiles(3);
    vi.stubEnv('MAX_SHRINK_PERCENT', '80');
    expect((await backup()).code).toBe(EXIT.ok);

    const bad = await backup('--max-shrink-percent', '0');
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.stderr).toMatch(
      /--max-shrink-percent must be a percentage above 0 and at most 100 \(got "0"\)/,
    );
  });
});
