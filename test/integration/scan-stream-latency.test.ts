/**
 * The streaming scan through the latency file system (a FUSE passthrough adding a delay per call, as
 * on EFS): with reads in flight out of order and folders read ahead, it still yields scanTree's
 * entries exactly, and an abort with reads in flight ends the walk cleanly. Skipped, with the reason
 * printed, where FUSE or python3-fusepy are missing.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ScannedEntry, scanTree } from '../../lambda/core/archiver/scan.js';
import { scanTreeStream } from '../../lambda/core/archiver/scan-stream.js';
import { tempDirs } from '../fixtures/engine.js';
import { type LatencyFs, latencyFsUnavailable, mountLatencyFs } from '../fixtures/latency-fs/index.js';
import { seededRandom } from '../fixtures/media-tree.js';

const why = latencyFsUnavailable();
if (why) console.warn(`scan-stream latency tests skipped: ${why}`);

const dirs = tempDirs();
const mounts: LatencyFs[] = [];
let source: string;
beforeEach(async () => {
  source = await dirs.make('scan-stream-latency-');
});
afterEach(async () => {
  await Promise.all(mounts.splice(0).map((m) => m.stop()));
  await dirs.cleanup();
});

/** A chat-like tree (rooms / days / files) with names that stress the order, some not UTF-8. */
function makeChatTree(root: string): void {
  const rand = seededRandom(1414);
  const rooms = ['room', 'room-2', 'room.old', 'room0', 'Room', 'r\u00e9union'];
  for (const room of rooms) {
    for (let day = 0; day < 6; day++) {
      const folder = path.join(root, room, `2024-0${1 + day}`);
      mkdirSync(folder, { recursive: true });
      const files = 1 + Math.floor(rand() * 12);
      for (let f = 0; f < files; f++)
        writeFileSync(path.join(folder, `img-${f}${f % 3 ? '.jpg' : '-x.jpg'}`), '');
    }
    writeFileSync(path.join(root, `${room}.txt`), room);
  }
  mkdirSync(path.join(root, 'empty/also-empty'), { recursive: true });
  symlinkSync('room', path.join(root, 'room-link'));
  const latin1 = Buffer.concat([Buffer.from(`${root}/caf`), Buffer.of(0xe9)]);
  mkdirSync(latin1);
  writeFileSync(Buffer.concat([latin1, Buffer.from('/photo.jpg')]), '');
}

async function collect(entries: AsyncGenerator<ScannedEntry>): Promise<ScannedEntry[]> {
  const out: ScannedEntry[] = [];
  for await (const e of entries) out.push(e);
  return out;
}

describe.skipIf(why !== undefined)('scanTreeStream on a file system with a delay per call', () => {
  it('yields scanTree’s entries, skipped and excluded exactly, with and without read-ahead', async () => {
    makeChatTree(source);
    const fs = await mountLatencyFs({ source, delayMs: 1 });
    mounts.push(fs);
    const options = { exclude: ['*-x.jpg'], concurrentIo: true };
    const reference = await scanTree(fs.mountpoint, options);
    expect(reference.entries.length).toBeGreaterThan(150);
    expect(reference.excluded).toBeGreaterThan(0);

    for (const variant of [
      { lookaheadDirs: 8 },
      { lookaheadDirs: 32, statConcurrency: 3 },
      { lookaheadDirs: 4, lookaheadItems: 20 },
      { lookaheadDirs: 0 },
      { concurrentIo: false },
    ]) {
      const scan = await scanTreeStream(fs.mountpoint, { ...options, ...variant });
      const entries = await collect(scan.entries());
      expect(
        {
          root: scan.root,
          rootMeta: scan.rootMeta,
          entries,
          skipped: scan.skipped,
          excluded: scan.excluded(),
        },
        JSON.stringify(variant),
      ).toEqual(reference);
    }
  });

  it('an abort with reads in flight ends the walk with the reason and no stray failure', async () => {
    makeChatTree(source);
    const fs = await mountLatencyFs({ source, delayMs: 2 });
    mounts.push(fs);
    const controller = new AbortController();
    const scan = await scanTreeStream(fs.mountpoint, {
      concurrentIo: true,
      lookaheadDirs: 16,
      signal: controller.signal,
    });
    let seen = 0;
    const walk = (async () => {
      for await (const _ of scan.entries()) {
        seen += 1;
        if (seen === 20) controller.abort(new Error('deadline reached'));
      }
    })();
    await expect(walk).rejects.toThrow('deadline reached');
    // Reads still in flight settle after the abort (at the latest when afterEach unmounts); a
    // rejection nobody handles would be reported by vitest as an unhandled error and fail the run.
    expect(seen).toBe(20);
  });
});
