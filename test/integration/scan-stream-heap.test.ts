/**
 * The streaming scan's memory does not grow with the tree, measured by the V8 heap itself: a walk
 * of 101,000 entries runs in a child process whose old-generation heap is capped at 16 MB, a cap
 * under which scanTree (which holds every entry until it sorts them) runs out of memory. Writing the
 * 100,000 files takes ~30 s here, so it runs with the scale tests: MEDIA_BACKUP_SCALE_TEST=1 (.ci/run
 * sets it); scan-stream.test.ts checks the bound on held items in every run.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDirs } from '../fixtures/engine.js';

const FOLDERS = 1000;
const FILES = 100;
const HEAP_MB = 16;
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const scanModule = path.join(repo, 'lambda/core/archiver/scan.ts');
const streamModule = path.join(repo, 'lambda/core/archiver/scan-stream.ts');

const RUN = process.env.MEDIA_BACKUP_SCALE_TEST === '1';
const dirs = tempDirs();
let source: string;
beforeAll(async () => {
  if (!RUN) return;
  source = await dirs.make('scan-stream-heap-');
  for (let d = 0; d < FOLDERS; d++) {
    const folder = path.join(source, `room-${d % 10}`, `day-${d}`);
    mkdirSync(folder, { recursive: true });
    for (let f = 0; f < FILES; f++) writeFileSync(path.join(folder, `img-${f}.jpg`), '');
  }
}, 120_000);
afterAll(() => dirs.cleanup());

/** Runs `script` (an ES module body; argv[1] is the source) with the old-generation heap capped. */
function runCapped(script: string) {
  return spawnSync(
    process.execPath,
    [`--max-old-space-size=${HEAP_MB}`, '--import', 'tsx', '--input-type=module', '-e', script, source],
    { cwd: repo, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 },
  );
}

describe.runIf(RUN)(`a tree of ${FOLDERS * (FILES + 1) + 10} entries under a ${HEAP_MB} MB heap`, () => {
  it.each([false, true])('the streaming scan walks it all (concurrentIo %s)', (concurrentIo) => {
    const child = runCapped(`
      const { scanTreeStream } = await import(${JSON.stringify(streamModule)});
      const scan = await scanTreeStream(process.argv[1], { concurrentIo: ${concurrentIo} });
      let count = 0;
      let previous = '';
      let ordered = true;
      for await (const e of scan.entries()) {
        count += 1;
        if (!(previous < e.path)) ordered = false;
        previous = e.path;
      }
      process.stdout.write(JSON.stringify({ count, ordered, peak: scan.peakBufferedItems() }));
    `);
    expect(child.stderr).not.toMatch(/heap out of memory/);
    expect(child.status).toBe(0);
    const result = JSON.parse(child.stdout);
    expect(result).toMatchObject({ count: FOLDERS * (FILES + 1) + 10, ordered: true });
    expect(result.peak).toBeLessThan(20_000);
  });

  it('scanTree, holding every entry, does not fit the same heap (the cap is a real bound)', () => {
    const child = runCapped(`
      const { scanTree } = await import(${JSON.stringify(scanModule)});
      const result = await scanTree(process.argv[1]);
      process.stdout.write(String(result.entries.length));
    `);
    expect(child.status).not.toBe(0);
    expect(child.stderr).toMatch(/heap out of memory/);
  });
});
