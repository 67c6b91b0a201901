/**
 * Folders the backup may not read, through the streaming scan and scanTree alike. Root reads a
 * mode-000 folder anyway, so when the tests run as root the walk runs in a child process as the
 * unprivileged user `nobody` (uid 65534), which the permission bits do stop.
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tempDirs } from '../fixtures/engine.js';

const NOBODY = 65534;
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const dirs = tempDirs();
let dir: string;
const locked: string[] = [];
beforeEach(async () => {
  dir = await dirs.make('scan-stream-unreadable-');
  await chmod(dir, 0o755);
});
afterEach(async () => {
  for (const d of locked.splice(0)) await chmod(d, 0o755);
  await dirs.cleanup();
});

/** Runs both scans in a child (as `nobody` when we are root); returns what each saw, as JSON. */
function scanAsUnprivileged(source: string) {
  const script = `
    const { scanTree } = await import(${JSON.stringify(path.join(repo, 'lambda/core/archiver/scan.ts'))});
    const { scanTreeStream } = await import(${JSON.stringify(path.join(repo, 'lambda/core/archiver/scan-stream.ts'))});
    const { readdirSync } = await import('node:fs');
    const source = process.argv[1];
    let lockedReadable = true;
    try { readdirSync(source + '/locked'); } catch { lockedReadable = false; }
    const reference = await scanTree(source);
    const streams = [];
    for (const concurrentIo of [false, true]) {
      const scan = await scanTreeStream(source, { concurrentIo });
      const entries = [];
      for await (const e of scan.entries()) entries.push(e);
      streams.push({ concurrentIo, entries, skipped: scan.skipped, excluded: scan.excluded() });
    }
    process.stdout.write(JSON.stringify({ uid: process.getuid(), lockedReadable, reference, streams }));
  `;
  const asRoot = process.getuid?.() === 0;
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', script, source],
    {
      cwd: repo,
      encoding: 'utf8',
      ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}),
    },
  );
  if (child.status !== 0) throw new Error(`scan child failed (${child.status}): ${child.stderr}`);
  return JSON.parse(child.stdout);
}

describe('unreadable folders (scan as an unprivileged user)', () => {
  it('skips a folder it may not list and children it may not stat, as scanTree does, in both I/O modes', async (context) => {
    await mkdir(path.join(dir, 'locked/inside'), { recursive: true });
    await writeFile(path.join(dir, 'locked/inside/secret'), 'x');
    await writeFile(path.join(dir, 'locked-not'), 'x');
    // Searchable but not listable (--x): readdir fails, so nothing below it is known.
    await mkdir(path.join(dir, 'blind/sub'), { recursive: true });
    // Listable but not searchable (r--): the names are listed, their lstat is refused.
    await mkdir(path.join(dir, 'nosearch'));
    await writeFile(path.join(dir, 'nosearch/a'), 'x');
    await writeFile(path.join(dir, 'nosearch/b'), 'x');
    await mkdir(path.join(dir, 'open'));
    await writeFile(path.join(dir, 'open/f'), 'x');
    for (const [d, mode] of [
      ['locked', 0o000],
      ['blind', 0o311],
      ['nosearch', 0o644],
    ] as const) {
      await chmod(path.join(dir, d), mode);
      locked.push(path.join(dir, d));
    }

    const seen = scanAsUnprivileged(dir);
    context.skip(seen.lockedReadable, `uid ${seen.uid} may read a mode-000 folder (capabilities)`);

    expect(seen.reference.entries.map((e: { path: string }) => e.path)).toEqual([
      'blind',
      'locked',
      'locked-not',
      'nosearch',
      'open',
      'open/f',
    ]);
    expect(seen.reference.skipped).toEqual([
      { path: 'blind', reason: 'permission denied' },
      { path: 'locked', reason: 'permission denied' },
      { path: 'nosearch/a', reason: 'permission denied' },
      { path: 'nosearch/b', reason: 'permission denied' },
    ]);
    for (const stream of seen.streams) {
      expect(stream, `concurrentIo ${stream.concurrentIo}`).toEqual({
        concurrentIo: stream.concurrentIo,
        entries: seen.reference.entries,
        skipped: seen.reference.skipped,
        excluded: seen.reference.excluded,
      });
    }
  });
});
