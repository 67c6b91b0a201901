/**
 * Concurrent restore writes and short writes: write(2) may write fewer bytes than asked (a disk that
 * fills part-way, a network file system) without an error. The concurrent path must write the rest
 * (or fail), never leave a truncated file in a restore reported as verified.
 */
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';

const dirs = tempDirs();
let source: string;
let store: FsObjectStore;
const content = randomBytesFrom(seededRandom(16), 300 * 1024);

beforeEach(async () => {
  source = await dirs.make('src-');
  store = new FsObjectStore(await dirs.make('store-'));
  await mkdir(path.join(source, 'photos'));
  await writeFile(path.join(source, 'photos/a.jpg'), content);
  await runBackup({ store, clock: tickingClock(), logger: silentLogger }, { source, type: 'full' });
});
afterEach(async () => {
  vi.restoreAllMocks();
  await dirs.cleanup();
});

describe('concurrent restore writes', () => {
  it('a short write is completed: the restored file has every byte', async () => {
    // FileHandle is not exported; take its prototype from a handle.
    const probe = await open(path.join(source, 'photos/a.jpg'), 'r');
    const proto = Object.getPrototypeOf(probe) as { write: (...args: unknown[]) => Promise<unknown> };
    await probe.close();
    const realWrite = proto.write;
    let shortened = 0;
    vi.spyOn(proto, 'write').mockImplementation(function (this: unknown, ...args: unknown[]) {
      const [buffer, offset, length, position] = args as [Buffer, number, number, number];
      if (shortened === 0 && Buffer.isBuffer(buffer) && typeof length === 'number' && length > 1024) {
        shortened += 1;
        return realWrite.call(this, buffer, offset, Math.floor(length / 2), position);
      }
      return realWrite.apply(this, args);
    });
    const target = path.join(await dirs.make('out-'), 't');
    const result = await runRestore(
      { store, clock: tickingClock(), logger: silentLogger },
      { target, ioConcurrency: 4 },
    );
    expect(shortened).toBe(1);
    expect(result.verified).toBe(true);
    const restored = await readFile(path.join(target, 'photos/a.jpg'));
    expect(restored.length).toBe(content.length);
    expect(restored.equals(content)).toBe(true);
  });
});
