import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type BackupSucceeded, runBackup } from '../../lambda/core/archiver/backup.js';
import { runVerify } from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { VERIFY_STATUS_KEY } from '../../lambda/core/repository/layout.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { faultyStore } from '../fixtures/faulty-store.js';
import { makeMediaTree } from '../fixtures/media-tree.js';

const execFileAsync = promisify(execFile);
const dirs = tempDirs();
let storeDir: string;
let store: FsObjectStore;
let source: string;
let full: BackupSucceeded;
let inc: BackupSucceeded;
const clock = tickingClock();
const deps = () => ({ store, clock, logger: silentLogger });

beforeEach(async () => {
  source = await dirs.make('src-');
  storeDir = await dirs.make('store-');
  store = new FsObjectStore(storeDir);
  await makeMediaTree(source, { files: 15, seed: 8 });
  full = await runBackup(deps(), { source });
  await writeFile(path.join(source, 'new.pdf'), 'new file');
  inc = await runBackup(deps(), { source });
});
afterEach(() => dirs.cleanup());

/** Rewrites one byte of a stored object in place, keeping its size. */
async function flipByte(key: string, at: number): Promise<void> {
  const file = path.join(storeDir, key);
  const bytes = await readFile(file);
  bytes[at] ^= 0x01;
  await writeFile(file, bytes);
}

describe('verify', () => {
  it('passes quick and deep checks on intact backups', async () => {
    const quick = await runVerify(deps(), { all: true });
    expect(quick.status).toBe('SUCCEEDED');
    expect(quick.backups.map((b) => [b.backupId, b.ok, b.archivesChecked])).toEqual([
      [full.backupId, true, 1],
      [inc.backupId, true, 1],
    ]);
    const deep = await runVerify(deps(), { deep: true });
    expect(deep.backups).toEqual([
      expect.objectContaining({ backupId: inc.backupId, ok: true, filesVerified: 16 }),
    ]);
  });

  it('quick: a changed byte in an archive is a sha256 mismatch', async () => {
    await flipByte(full.archiveKey, 100);
    const result = await runVerify(deps(), { backup: full.backupId });
    expect(result.status).toBe('FAILED');
    expect(result.backups[0].problems).toEqual([
      expect.stringMatching(
        new RegExp(
          `archive ${full.archiveKey} has sha256 [0-9a-f]{64}; the metadata recorded ${full.archiveSha256}`,
        ),
      ),
    ]);
  });

  it('quick: a truncated archive is a size mismatch', async () => {
    const file = path.join(storeDir, full.archiveKey);
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, bytes.length - 10));
    const result = await runVerify(deps(), { backup: full.backupId });
    expect(result.backups[0].problems[0]).toMatch(/is \d+ bytes; the metadata recorded \d+/);
  });

  it('--all: an incremental whose full archive is gone is a broken chain', async () => {
    await rm(path.join(storeDir, full.archiveKey));
    const result = await runVerify(deps(), { all: true });
    expect(result.status).toBe('FAILED');
    const [f, i] = result.backups;
    expect(f.problems).toContain(`backup ${full.backupId}: archive ${full.archiveKey} is missing`);
    expect(i.problems).toEqual([
      `backup ${inc.backupId}: archive ${full.archiveKey}, which holds files of this backup, is missing (chain broken)`,
    ]);
  });

  it('deep: a manifest hash that does not match the archived bytes fails; quick does not see it', async () => {
    // Tamper with the manifest consistently (valid gzip, valid JSON), changing one file's sha256.
    const key = inc.manifestKey;
    const lines = gunzipSync(await readFile(path.join(storeDir, key)))
      .toString()
      .split('\n');
    const i = lines.findIndex((l) => l.includes('"type":"file"'));
    const entry = JSON.parse(lines[i]);
    entry.sha256 = '0'.repeat(64);
    lines[i] = JSON.stringify(entry);
    await writeFile(path.join(storeDir, key), gzipSync(lines.join('\n')));

    expect((await runVerify(deps(), {})).status).toBe('SUCCEEDED');
    const deep = await runVerify(deps(), { deep: true });
    expect(deep.status).toBe('FAILED');
    expect(deep.backups[0].problems[0]).toMatch(
      new RegExp(`deep check failed: .*${entry.path.replace(/[.]/g, '\\.')}.* does not match the manifest`),
    );
  });

  it('reports a missing metadata sidecar', async () => {
    await rm(path.join(storeDir, `${inc.archiveKey}.metadata.json`));
    const result = await runVerify(deps(), {});
    expect(result.backups[0].problems).toContain(
      `backup ${inc.backupId}: metadata ${inc.archiveKey}.metadata.json is missing or unreadable`,
    );
  });

  it('--all: a read failure on one backup is reported for it and the others are still checked', async () => {
    const flaky = faultyStore(store, {
      downloadFailsAfterBytes: 10,
      downloadFailsFor: new RegExp(`^${full.archiveKey.replace(/[.]/g, '\\.')}$`),
    });
    const result = await runVerify({ store: flaky, clock, logger: silentLogger }, { all: true });
    expect(result.status).toBe('FAILED');
    expect(result.backups.map((b) => [b.backupId, b.ok])).toEqual([
      [full.backupId, false],
      [inc.backupId, true],
    ]);
    expect(result.backups[0].problems).toEqual([
      expect.stringMatching(
        new RegExp(
          `backup ${full.backupId}: could not be checked: injected download failure .* of ${full.archiveKey}`,
        ),
      ),
    ]);
  });

  it('records each backup outcome in status/last-verify.json, merged with earlier runs', async () => {
    await flipByte(full.archiveKey, 100);
    const all = await runVerify(deps(), { all: true });
    expect(all.recorded).toBe(true);
    const first = JSON.parse((await store.get(VERIFY_STATUS_KEY))!.toString());
    expect(first).toMatchObject({
      status: 'FAILED',
      deep: false,
      checkedAt: expect.any(String),
      results: [
        {
          backupId: full.backupId,
          ok: false,
          error: expect.stringMatching(/has sha256 .* the metadata recorded/),
        },
        { backupId: inc.backupId, ok: true },
      ],
    });
    expect(first.results[1]).not.toHaveProperty('error');

    // Checking only the incremental keeps what is known about the full.
    await runVerify(deps(), { backup: inc.backupId });
    const second = JSON.parse((await store.get(VERIFY_STATUS_KEY))!.toString());
    expect(second).toMatchObject({
      status: 'FAILED',
      deep: false,
      results: [
        { backupId: full.backupId, ok: false },
        { backupId: inc.backupId, ok: true },
      ],
    });
    expect(second.checkedAt > first.checkedAt).toBe(true);
  });

  it('a store that refuses the record still gets its verify result; record: false writes nothing', async () => {
    const readOnly = faultyStore(store, { putFails: /^status\// });
    const result = await runVerify({ store: readOnly, clock, logger: silentLogger }, { all: true });
    expect(result).toMatchObject({ status: 'SUCCEEDED', recorded: false });
    expect(await store.get(VERIFY_STATUS_KEY)).toBeUndefined();
    await runVerify(deps(), { all: true, record: false });
    expect(await store.get(VERIFY_STATUS_KEY)).toBeUndefined();
  });

  it('CLI: exit 0 when all is well, 1 with a report when anything fails', async () => {
    const bin = path.resolve('bin/media-backup.mjs');
    const ok = await execFileAsync(process.execPath, [bin, 'verify', '--all', '--store', storeDir]);
    expect(ok.stdout).toMatch(/2 backup\(s\) verified\./);
    await flipByte(inc.archiveKey, 20);
    const failed = await execFileAsync(process.execPath, [bin, 'verify', '--store', storeDir]).catch(
      (e: { code: number; stdout: string }) => e,
    );
    expect(failed).toMatchObject({ code: 1 });
    expect(failed.stdout).toMatch(new RegExp(`FAILED ${inc.backupId}`));
  });
});
