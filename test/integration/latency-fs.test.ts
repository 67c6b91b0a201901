/**
 * The latency file system fixture (issue 13): a FUSE passthrough adding a delay per round-trip call.
 * Skipped, with the reason printed, where /dev/fuse or python3-fusepy/fuse3 are missing.
 */
import {
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { type LatencyFs, latencyFsUnavailable, mountLatencyFs } from '../fixtures/latency-fs/index.js';
import { makeMediaTree, snapshotTree } from '../fixtures/media-tree.js';

const why = latencyFsUnavailable();
if (why) console.warn(`latency-fs tests skipped: ${why}`);

const dirs = tempDirs();
const mounts: LatencyFs[] = [];
let source: string;

beforeEach(async () => {
  source = await dirs.make('latency-src-');
});
afterEach(async () => {
  await Promise.all(mounts.splice(0).map((m) => m.stop()));
  await dirs.cleanup();
});

async function mount(options: Partial<Parameters<typeof mountLatencyFs>[0]> = {}): Promise<string> {
  const fs = await mountLatencyFs({ source, delayMs: 1, ...options });
  mounts.push(fs);
  return fs.mountpoint;
}

describe.skipIf(why !== undefined)('latency fs (FUSE passthrough with a delay per call)', () => {
  it('serves the source tree unchanged: bytes, names that are not UTF-8, links, times, inodes', async () => {
    await mkdir(path.join(source, 'a'));
    await writeFile(path.join(source, 'a', 'x.bin'), Buffer.alloc(300_000, 7));
    await writeFile(path.join(source, 'café.txt'), 'n');
    const raw = Buffer.concat([Buffer.from(source), Buffer.from('/r\xe9sum\xe9', 'latin1')]);
    await writeFile(raw, 'latin-1 name');
    await symlink('a/x.bin', path.join(source, 'link'));
    await utimes(path.join(source, 'a', 'x.bin'), 1_000_000, 1_000_000.123);
    const mnt = await mount();

    expect((await readFile(path.join(mnt, 'a', 'x.bin'))).equals(Buffer.alloc(300_000, 7))).toBe(true);
    expect(await readlink(path.join(mnt, 'link'))).toBe('a/x.bin');
    const names = async (dir: string) =>
      (await readdir(Buffer.from(dir) as unknown as string, { encoding: 'buffer' }))
        .map((n) => n.toString('hex'))
        .sort();
    expect(await names(mnt)).toEqual(await names(source));
    expect(await names(mnt)).toHaveLength(4);
    expect(
      await readFile(Buffer.concat([Buffer.from(mnt), Buffer.from('/r\xe9sum\xe9', 'latin1')]), 'utf8'),
    ).toBe('latin-1 name');
    const inner = await stat(path.join(mnt, 'a', 'x.bin'), { bigint: true });
    const outer = await stat(path.join(source, 'a', 'x.bin'), { bigint: true });
    expect([inner.ino, inner.mtimeNs, inner.size]).toEqual([outer.ino, outer.mtimeNs, outer.size]);
    expect((await lstat(path.join(mnt, 'link'))).isSymbolicLink()).toBe(true);
  });

  it('adds the delay to each call, and serves many calls at once', async () => {
    for (let i = 0; i < 16; i++) await writeFile(path.join(source, `f${i}`), `file ${i}`);
    const mnt = await mount({ delayMs: 50 });
    // FUSE via libfuse2 serializes the first lookup of each name in a folder (no parallel dirops;
    // NFS has them): look every name up once, as the bench's warm-up walk does. Later lookups are
    // revalidations (no attribute cache here), which run in parallel and still pay the delay.
    await Promise.all(Array.from({ length: 16 }, (_, i) => stat(path.join(mnt, `f${i}`))));
    // Each stat is at least a lookup or getattr (50 ms) on a mount with no attribute cache.
    let t = performance.now();
    for (let i = 0; i < 4; i++) await stat(path.join(mnt, `f${i}`));
    const sequentialMs = performance.now() - t;
    expect(sequentialMs).toBeGreaterThanOrEqual(4 * 50);
    t = performance.now();
    await Promise.all(Array.from({ length: 4 }, (_, i) => stat(path.join(mnt, `f${4 + i}`))));
    const concurrentMs = performance.now() - t;
    // Node's thread pool runs 4 at once: 4 stats together take about the time of one.
    expect(concurrentMs).toBeLessThan(sequentialMs / 2);
  });

  it('a backup through the mount and a restore into a latency-backed target round-trip the tree', async () => {
    await makeMediaTree(source, { files: 30, seed: 5 });
    const mnt = await mount({ delayMs: 0.2 });
    const store = new FsObjectStore(await dirs.make('latency-store-'));
    const clock = tickingClock();
    const result = await runBackup({ store, clock, logger: silentLogger }, { source: mnt, type: 'full' });
    expect(result).toMatchObject({ status: 'SUCCEEDED', files: 30, skipped: [] });

    const targetBacking = await dirs.make('latency-target-');
    const target = await mountLatencyFs({ source: targetBacking, delayMs: 0.2, writeDelayMs: 0.2 });
    mounts.push(target);
    await runRestore({ store, clock, logger: silentLogger }, { target: path.join(target.mountpoint, 'out') });
    expect(await snapshotTree(path.join(targetBacking, 'out'), { mtimes: true })).toEqual(
      await snapshotTree(source, { mtimes: true }),
    );
  });
});
