import { readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { runHealthChecks } from '../../lambda/core/checker/health.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { UsageError } from '../../lambda/core/errors.js';
import { readStoreStatus } from '../../lambda/core/repository/status.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';

/**
 * Issue 10 item 17 (engine part): a backup of a source that shrank by more than maxShrinkPercent
 * against the previous committed backup still commits (it is the truth) but carries a warning, also
 * recorded in the status object; health's shrink message names the newest good backup.
 */
const dirs = tempDirs();
let source: string;
let store: FsObjectStore;

beforeEach(async () => {
  source = await dirs.make('src-');
  store = new FsObjectStore(await dirs.make('store-'));
});
afterEach(() => dirs.cleanup());

async function files(count: number): Promise<void> {
  for (const name of await readdir(source)) await rm(path.join(source, name), { recursive: true });
  for (let i = 0; i < count; i++) await writeFile(path.join(source, `f-${i}.jpg`), `avatar ${i}\n`);
}

const backupOn = (day: string, options: { maxShrinkPercent?: number } = {}) =>
  runBackup({ store, clock: tickingClock(`${day}T02:00:00Z`), logger: silentLogger }, { source, ...options });

describe('a source that shrank against the previous backup', () => {
  it('commits with a SOURCE_SHRANK warning naming the previous backup, recorded in status', async () => {
    await files(10);
    const full = await backupOn('2025-12-27');
    expect(full.warnings).toEqual([]);
    await files(2);

    const next = await backupOn('2025-12-28');

    expect(next.status).toBe('SUCCEEDED');
    expect(next.files).toBe(2);
    expect(next.warnings).toEqual([
      {
        code: 'SOURCE_SHRANK',
        message: expect.stringMatching(
          new RegExp(
            `^the source shrank by 80\\.0% since ${full.backupId} \\(2 files, .* more than the 50% allowed`,
          ),
        ),
      },
    ]);
    const status = await readStoreStatus(store, new Date('2025-12-28T03:00:00Z'));
    expect(status.lastRun).toMatchObject({
      status: 'SUCCEEDED',
      backupId: next.backupId,
      warnings: next.warnings,
    });
    const report = await runHealthChecks({
      store,
      clock: { now: () => new Date('2025-12-28T03:00:00Z') },
      logger: silentLogger,
    });
    expect(report.checks.find((c) => c.name === 'last-run')).toMatchObject({
      status: 'warning',
      message: expect.stringContaining(
        `with 1 warning(s): the source shrank by 80.0% since ${full.backupId}`,
      ),
    });
  });

  it('respects maxShrinkPercent', async () => {
    await files(10);
    await backupOn('2025-12-27');
    await files(2);

    expect((await backupOn('2025-12-28', { maxShrinkPercent: 90 })).warnings).toEqual([]);
  });

  it('warns when the source is empty (a wiped or unmounted folder)', async () => {
    await files(10);
    await backupOn('2025-12-27');
    await files(0);

    expect((await backupOn('2025-12-28')).warnings.map((w) => w.code)).toEqual(['SOURCE_SHRANK']);
  });

  it.each([-1, 101, Number.NaN])('rejects maxShrinkPercent %s as a usage error', async (bad) => {
    await files(1);
    await expect(backupOn('2025-12-27', { maxShrinkPercent: bad })).rejects.toThrow(UsageError);
  });
});

describe("health's shrink message", () => {
  it('names the newest backup before the shrink, not the largest (oldest) one', async () => {
    await files(12);
    const oldest = await backupOn('2025-12-25');
    await files(11);
    const newestGood = await backupOn('2025-12-26');
    await files(2);
    await backupOn('2025-12-27');

    const report = await runHealthChecks({
      store,
      clock: { now: () => new Date('2025-12-27T05:00:00Z') },
      logger: silentLogger,
    });
    const shrink = report.checks.find((c) => c.name === 'shrink');

    expect(shrink?.status).toBe('critical');
    expect(shrink?.message).toContain(`in ${oldest.backupId}`); // the comparison: the largest
    expect(shrink?.message).toContain(
      `restore from ${newestGood.backupId}, the newest backup before the shrink`,
    );
  });
});
