import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDirs } from '../fixtures/engine.js';
import { snapshotTree } from '../fixtures/media-tree.js';

const execFileAsync = promisify(execFile);
const BIN = path.resolve('bin/media-backup.mjs');

/** The shell commands of the README's Quick start section, in order, comments removed. */
async function quickStartCommands(): Promise<string[]> {
  const readme = await readFile(path.resolve('README.md'), 'utf8');
  const section = /^## Quick start[^\n]*\n([\s\S]*?)^## /m.exec(readme)?.[1];
  if (!section) throw new Error('README.md has no "## Quick start" section');
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  return blocks
    .flatMap((block) => block.split('\n'))
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

const dirs = tempDirs();
afterEach(() => dirs.cleanup());

describe('README quick start', () => {
  it('works as written in an empty folder (a fresh clone has no ./media)', async () => {
    const commands = await quickStartCommands();
    expect(commands[0]).toBe('npm ci');
    const work = await dirs.make('readme-quick-start-');
    const { BACKUP_STORE: _s, MEDIA_DIR: _m, ...env } = process.env;

    // `npm ci` is what the test run already did; `npx media-backup` is the package's bin entry.
    for (const command of commands.slice(1)) {
      const line = command.replaceAll('npx media-backup', `"${process.execPath}" "${BIN}"`);
      const run = await execFileAsync('sh', ['-c', line], { cwd: work, env }).catch(
        (error: { code: number; stderr: string }) => error,
      );
      expect('code' in run ? run.code : 0, `${command}\n${'stderr' in run ? run.stderr : ''}`).toBe(0);
    }

    expect(commands.some((c) => c.includes('restore --target ./restored'))).toBe(true);
    expect(await snapshotTree(path.join(work, 'restored'))).toEqual(
      await snapshotTree(path.join(work, 'media')),
    );
  });
});
