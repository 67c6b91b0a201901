import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EXIT, main } from '../../bin/media-backup.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeMediaTree } from '../fixtures/media-tree.js';

/** Runs the CLI in-process with a stderr that says it is a terminal; returns what it drew there. */
async function cliOnTerminal(args: string[]): Promise<{ code: number; stderr: string }> {
  const stdout = new PassThrough().resume();
  const stderr = Object.assign(new PassThrough(), { isTTY: true, columns: 200 });
  const chunks: Buffer[] = [];
  stderr.on('data', (c: Buffer) => chunks.push(c));
  const code = await main(args, { stdout, stderr });
  // Drop cursor movements and colours (ESC [ ... letter, ESC 7 / ESC 8): the text is what a user reads.
  const escapes = new RegExp(`${String.fromCharCode(27)}(\\[[0-9;?]*[a-zA-Z]|[78])`, 'g');
  return { code, stderr: Buffer.concat(chunks).toString('utf8').replace(escapes, '') };
}

const dirs = tempDirs();
let media: string;
let store: string;
beforeEach(async () => {
  for (const name of ['BACKUP_STORE', 'MEDIA_DIR', 'COMPRESSION_LEVEL']) vi.stubEnv(name, undefined);
  media = await dirs.make('cli-progress-media-');
  store = await dirs.make('cli-progress-store-');
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

describe('progress on a terminal', () => {
  it('backup shows the scan, then bytes with files as the second figure; restore and verify --deep show bars too', async () => {
    await makeMediaTree(media, { files: 5 });

    const backup = await cliOnTerminal(['backup', '--source', media, '--store', store]);
    expect(backup.code).toBe(EXIT.ok);
    expect(backup.stderr).toContain(`backup: scanning ${media} (folders and file sizes)...`);
    expect(backup.stderr).toMatch(/backup \[[^\]]*\] 100% \| [\d.]+ k?B \/ [\d.]+ k?B \| 5 \/ 5 files/i);

    const target = path.join(await dirs.make('cli-progress-target-'), 'restored');
    const restore = await cliOnTerminal(['restore', '--target', target, '--store', store]);
    expect(restore.code).toBe(EXIT.ok);
    expect(restore.stderr).toMatch(/restore \[[^\]]*\] 100% \| [\d.]+ k?B \/ [\d.]+ k?B \| 5 \/ 5 files/i);

    const verify = await cliOnTerminal(['verify', '--deep', '--store', store]);
    expect(verify.code).toBe(EXIT.ok);
    expect(verify.stderr).toMatch(
      /verify --deep \[[^\]]*\] 100% \| [\d.]+ k?B \/ [\d.]+ k?B \| 5 \/ 5 files/i,
    );
  });
});
