import { readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { runHealthChecks } from '../../lambda/core/checker/health.js';
import { runVerify } from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { VERIFY_STATUS_KEY } from '../../lambda/core/repository/layout.js';
import type { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { flipOneByte, useFolderStoreWorld } from '../fixtures/folder-world.js';

/**
 * Issue 10 item 4: after one flipped byte in the full, the next `auto` backup was an incremental on
 * it (SUCCEEDED, health OK) and the restore of latest failed. A chain found damaged is never built
 * upon, and health is critical while the latest restore point depends on it.
 */
const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
useFolderStoreWorld(dirs, { files: 12, seed: 21 }, (w) => {
  ({ source, storeDir, store } = w);
});

const backupOn = (day: string, type: 'auto' | 'full' = 'auto') =>
  runBackup({ store, clock: tickingClock(`${day}T02:00:00Z`), logger: silentLogger }, { source, type });

/** A change to one file, so the next incremental has something to archive. */
const touch = (n: number) => writeFile(path.join(source, `new-${n}.txt`), `new file ${n}\n`);

/** What verify records for a backup it found damaged (`status/last-verify.json`). */
const recordVerifyDamage = (backupId: string, problem: string) =>
  store.put(
    VERIFY_STATUS_KEY,
    JSON.stringify({
      status: 'FAILED',
      checkedAt: '2025-12-28T03:00:00.000Z',
      deep: false,
      backups: [
        {
          backupId,
          ok: false,
          problems: [problem],
          error: problem,
          deep: false,
          checkedAt: '2025-12-28T03:00:00.000Z',
        },
      ],
      results: [{ backupId, ok: false, error: problem }],
    }),
  );

describe('auto never builds an incremental on a damaged chain', () => {
  it('takes a full, saying why, when verify found the full damaged (a flipped byte)', async () => {
    const full = await backupOn('2025-12-27');
    await touch(1);
    await backupOn('2025-12-28'); // an incremental on the full
    await flipOneByte(storeDir, full.archiveKey);
    await recordVerifyDamage(
      full.backupId,
      `backup ${full.backupId}: archive ${full.archiveKey} has sha256 0000`,
    );
    await touch(2);

    const next = await backupOn('2025-12-29');

    expect(next.type).toBe('full');
    expect(next.reason).toMatch(
      new RegExp(
        `^chain of backup_20251228_\\d+ is damaged \\(verify found backup ${full.backupId} damaged .*sha256.*\\); taking a full backup$`,
      ),
    );
  });

  it('takes a full after verify recorded the flipped byte it found (verify -> status/last-verify.json -> auto)', async () => {
    const full = await backupOn('2025-12-27');
    await touch(1);
    await backupOn('2025-12-28');
    await flipOneByte(storeDir, full.archiveKey);
    const verified = await runVerify(
      { store, clock: tickingClock('2025-12-28T03:00:00Z'), logger: silentLogger },
      { all: true },
    );
    expect(verified.status).toBe('FAILED');
    await touch(2);

    const next = await backupOn('2025-12-29');

    expect(next.type).toBe('full');
    expect(next.reason).toContain(`verify found backup ${full.backupId} damaged`);
  });

  it('takes a full when an archive of the chain is not the size its metadata recorded (no verify needed)', async () => {
    const full = await backupOn('2025-12-27');
    const size = (await readFile(path.join(storeDir, full.archiveKey))).length;
    await truncate(path.join(storeDir, full.archiveKey), size - 100);
    await touch(1);

    const next = await backupOn('2025-12-28');

    expect(next.type).toBe('full');
    expect(next.reason).toContain(
      `chain of ${full.backupId} is damaged (archive ${full.archiveKey} is ${size - 100} bytes; its metadata recorded ${size})`,
    );
  });

  it('builds on the chain again once verify passed for the damaged backup', async () => {
    const full = await backupOn('2025-12-27');
    await recordVerifyDamage(full.backupId, 'damaged');
    await store.put(
      VERIFY_STATUS_KEY,
      JSON.stringify({
        status: 'SUCCEEDED',
        checkedAt: '2025-12-28T04:00:00.000Z',
        results: [{ backupId: full.backupId, ok: true }],
      }),
    );
    await touch(1);

    expect((await backupOn('2025-12-28')).type).toBe('incremental');
  });
});

describe('health while the latest restore point depends on a damaged archive', () => {
  const integrity = async (now: string) => {
    const report = await runHealthChecks(
      { store, clock: { now: () => new Date(now) }, logger: silentLogger },
      { maxBackupAgeHours: 24 * 30 },
    );
    return report.checks.find((c) => c.name === 'integrity');
  };

  it('is critical when verify found the full under the latest damaged, naming the newest restorable backup', async () => {
    const older = await backupOn('2025-12-26', 'full');
    await touch(1);
    const full = await backupOn('2025-12-27', 'full');
    await touch(2);
    const latest = await backupOn('2025-12-28');
    expect(latest).toMatchObject({ type: 'incremental', baseBackupId: full.backupId });
    await flipOneByte(storeDir, full.archiveKey);
    await recordVerifyDamage(full.backupId, `backup ${full.backupId}: archive has sha256 0000`);

    const check = await integrity('2025-12-28T05:00:00Z');

    expect(check?.status).toBe('critical');
    expect(check?.message).toContain(`The latest backup ${latest.backupId} cannot be fully restored`);
    expect(check?.message).toContain(`verify found backup ${full.backupId}, whose archive it needs, damaged`);
    expect(check?.message).toContain(`The newest backup that looks restorable is ${older.backupId}`);
  });

  it('is critical for a truncated full without any verify, naming the newest restorable backup', async () => {
    const older = await backupOn('2025-12-26', 'full');
    await touch(1);
    const full = await backupOn('2025-12-27', 'full');
    await touch(2);
    const latest = await backupOn('2025-12-28');
    await truncate(path.join(storeDir, full.archiveKey), 10);

    const check = await integrity('2025-12-28T05:00:00Z');

    expect(check?.status).toBe('critical');
    expect(check?.message).toContain(`The latest backup ${latest.backupId} cannot be fully restored`);
    expect(check?.message).toContain(`The newest backup that looks restorable is ${older.backupId}`);
  });
});
