import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type BackupSucceeded, runBackup } from '../../lambda/core/archiver/backup.js';
import { runHealthChecks } from '../../lambda/core/checker/health.js';
import {
  oldestNeverDeepVerified,
  parseVerifyRecord,
  rotationSlice,
  runVerify,
} from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { listCommittedBackups } from '../../lambda/core/repository/catalog.js';
import { VERIFY_STATUS_KEY } from '../../lambda/core/repository/layout.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import type { ObjectStore } from '../../lambda/store/types.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree } from '../fixtures/media-tree.js';

// Issue 12 section 2: deep verify reads each archive once, and the scheduled drill rotates so every
// archive is deep-verified in its lifetime.

const dirs = tempDirs();
let storeDir: string;
let store: FsObjectStore;
let source: string;
const clock = tickingClock();
const backups: BackupSucceeded[] = [];

/** The store, counting the downloads of each key. */
function countingStore(inner: ObjectStore): { store: ObjectStore; reads: Map<string, number> } {
  const reads = new Map<string, number>();
  const wrapped: ObjectStore = Object.create(inner);
  wrapped.getStream = async (key: string): Promise<Readable> => {
    reads.set(key, (reads.get(key) ?? 0) + 1);
    return inner.getStream(key);
  };
  return { store: wrapped, reads };
}

beforeEach(async () => {
  source = await dirs.make('src-');
  storeDir = await dirs.make('store-');
  store = new FsObjectStore(storeDir);
  backups.length = 0;
  await makeMediaTree(source, { files: 8, seed: 12 });
  // full1, then full2 (a new chain: full1's archive is not in the latest restore point), then an
  // incremental on full2.
  backups.push(await runBackup({ store, clock, logger: silentLogger }, { source }));
  await writeFile(path.join(source, 'second.txt'), 'second');
  backups.push(await runBackup({ store, clock, logger: silentLogger }, { source, type: 'full' }));
  await writeFile(path.join(source, 'third.txt'), 'third');
  backups.push(await runBackup({ store, clock, logger: silentLogger }, { source }));
});
afterEach(() => dirs.cleanup());

async function verifyRecord() {
  return parseVerifyRecord(await store.get(VERIFY_STATUS_KEY));
}

describe('deep verify', () => {
  it('downloads each archive once (the drill hashes the archive on the way)', async () => {
    const counting = countingStore(store);

    const result = await runVerify({ store: counting.store, clock, logger: silentLogger }, { deep: true });

    expect(result.status).toBe('SUCCEEDED');
    expect(result.backups[0]).toMatchObject({ method: 'drill', archivesChecked: 1 });
    expect([...counting.reads.entries()].filter(([key]) => key.endsWith('.tar.gz'))).toEqual([
      [backups[1].archiveKey, 1],
      [backups[2].archiveKey, 1],
    ]);
  });

  it('still finds a changed byte in the latest archive', async () => {
    const file = path.join(storeDir, backups[2].archiveKey);
    const bytes = await readFile(file);
    bytes[bytes.length - 3] ^= 0x01; // the gzip trailer: the tar content still reads
    await writeFile(file, bytes);

    const result = await runVerify({ store, clock, logger: silentLogger }, { deep: true });

    expect(result.status).toBe('FAILED');
    expect(result.backups[0].problems.join('\n')).toMatch(new RegExp(`archive ${backups[2].archiveKey}`));
  });
});

describe('rotating deep verify', () => {
  it('covers the latest chain by the drill and older archives by archive checks, and records it', async () => {
    const result = await runVerify({ store, clock, logger: silentLogger }, { deep: true, rotate: true });

    expect(result.status).toBe('SUCCEEDED');
    expect(result.backups.map((b) => [b.backupId, b.method])).toEqual([
      [backups[2].backupId, 'drill'],
      [backups[0].backupId, 'archive'],
    ]);
    expect(result.backups[1].filesVerified).toBe(8);
    const record = await verifyRecord();
    expect(Object.keys(record?.deepVerified ?? {}).sort()).toEqual(backups.map((b) => b.archiveKey).sort());
    expect(record?.covered).toMatchObject({
      rotating: true,
      backups: [backups[0].backupId, backups[2].backupId],
    });
    expect(oldestNeverDeepVerified(await listCommittedBackups(store), record)).toBeUndefined();
  });

  it('deepSlice 0 leaves older archives for later runs; health names the oldest never deep-verified', async () => {
    await runVerify({ store, clock, logger: silentLogger }, { deep: true, rotate: true, deepSlice: 0 });

    const record = await verifyRecord();
    expect(Object.keys(record?.deepVerified ?? {}).sort()).toEqual([
      backups[1].archiveKey,
      backups[2].archiveKey,
    ]);
    const health = await runHealthChecks({ store, clock, logger: silentLogger }, {});
    expect(health.checks.find((c) => c.name === 'deep-verify')?.message).toContain(
      `Oldest archive never deep-verified: ${backups[0].archiveKey}`,
    );
  });

  it('the next run takes the archive deep-verified longest ago', async () => {
    await runVerify({ store, clock, logger: silentLogger }, { deep: true, rotate: true });
    clock.jump(7 * 24 * 3600 * 1000);

    const second = await runVerify(
      { store, clock, logger: silentLogger },
      { deep: true, rotate: true, deepSlice: 1 },
    );

    expect(second.backups.map((b) => b.backupId)).toEqual([backups[2].backupId, backups[0].backupId]);
  });

  it('an archive check finds a damaged file in an old archive outside the latest chain', async () => {
    const file = path.join(storeDir, backups[0].archiveKey);
    const bytes = await readFile(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0x10;
    await writeFile(file, bytes);

    const result = await runVerify({ store, clock, logger: silentLogger }, { deep: true, rotate: true });

    expect(result.status).toBe('FAILED');
    const old = result.backups.find((b) => b.backupId === backups[0].backupId);
    expect(old?.ok).toBe(false);
    expect(old?.problems.join('\n')).toContain(backups[0].archiveKey);
    expect((await verifyRecord())?.deepVerified?.[backups[0].archiveKey]).toBeUndefined();
  });
});

describe('rotationSlice', () => {
  const entry = (n: number) => ({
    backupId: `backup_2025120${n}_020000`,
    type: 'full' as const,
    archiveKey: `full/backup_2025120${n}_020000.tar.gz`,
    metadataKey: `full/backup_2025120${n}_020000.tar.gz.metadata.json`,
    manifestKey: `full/backup_2025120${n}_020000.manifest.jsonl.gz`,
    committedAt: new Date(Date.UTC(2025, 11, n, 2)),
  });
  const committed = [1, 2, 3, 4, 5].map(entry);
  const ids = (slice: { backupId: string }[]) => slice.map((e) => e.backupId.slice(13, 15));

  it('with a record: never deep-verified oldest first, then the longest ago', () => {
    const deepVerified = {
      [entry(1).archiveKey]: '2025-12-05T00:00:00Z',
      [entry(3).archiveKey]: '2025-12-04T00:00:00Z',
    };

    expect(ids(rotationSlice(committed, deepVerified, new Set([entry(5).archiveKey]), 4))).toEqual([
      '02',
      '04',
      '03',
      '01',
    ]);
  });

  it('without a record (the verify role cannot write one): the newest first, not the same oldest ones every run', () => {
    expect(ids(rotationSlice(committed, undefined, new Set([entry(5).archiveKey]), 2))).toEqual(['04', '03']);
  });
});
