import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { crc64nvme, crc64nvmeToBase64 } from '../../lambda/core/archiver/crc64nvme.js';
import { runVerify } from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import type { BackupMetadata } from '../../lambda/core/repository/catalog.js';
import { keysFor } from '../../lambda/core/repository/layout.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree } from '../fixtures/media-tree.js';

/**
 * A synthetic full assembled inside S3 has no sha256 in its metadata (its bytes never passed through
 * the writer); its CRC64NVME identifies it. Verify must check such an archive by CRC64NVME, not call
 * it damaged for lacking a sha256, and still catch a changed byte. Shown on a folder store whose
 * metadata is rewritten the way such a backup records it.
 */
describe('verify of an archive recorded by CRC64NVME only', () => {
  const dirs = tempDirs();
  let storeDir: string;
  let store: FsObjectStore;
  let archiveKey: string;
  let backupId: string;
  const deps = () => ({ store, clock: tickingClock('2026-01-01T00:00:00Z'), logger: silentLogger });

  beforeEach(async () => {
    const source = await dirs.make('crc-rec-src-');
    storeDir = await dirs.make('crc-rec-store-');
    store = new FsObjectStore(storeDir);
    await makeMediaTree(source, { files: 20, seed: 8 });
    const full = await runBackup({ store, clock: tickingClock(), logger: silentLogger }, { source });
    archiveKey = full.archiveKey;
    backupId = full.backupId;
    const metadataFile = path.join(storeDir, keysFor('full', backupId).metadata);
    const metadata = JSON.parse(await readFile(metadataFile, 'utf8')) as BackupMetadata;
    const bytes = await readFile(path.join(storeDir, archiveKey));
    const { sha256: _dropped, ...archive } = metadata.archive as NonNullable<BackupMetadata['archive']>;
    await writeFile(
      metadataFile,
      JSON.stringify({
        ...metadata,
        archive: { ...archive, crc64nvme: crc64nvmeToBase64(crc64nvme(bytes)) },
      }),
    );
  });
  afterEach(() => dirs.cleanup());

  it('quick and deep verify pass on the intact archive, and the deep one counts it as deep-verified', async () => {
    const quick = await runVerify(deps(), { backup: backupId });
    expect(quick.status).toBe('SUCCEEDED');
    expect(quick.backups[0].archivesChecked).toBe(1);
    const deep = await runVerify(deps(), { backup: backupId, deep: true });
    expect(deep.status).toBe('SUCCEEDED');
    expect(deep.backups[0]).toMatchObject({ ok: true, filesVerified: 20 });
    expect(deep.backups[0].archivesDeepVerified).toEqual([archiveKey]);
  });

  it('a changed byte is a CRC64NVME mismatch naming the archive, quick and deep', async () => {
    const file = path.join(storeDir, archiveKey);
    const bytes = await readFile(file);
    bytes[bytes.length - 30] ^= 0x01;
    await writeFile(file, bytes);
    for (const deep of [false, true]) {
      const result = await runVerify(deps(), { backup: backupId, deep });
      expect(result.status).toBe('FAILED');
      expect(result.backups[0].problems.join('\n')).toMatch(
        new RegExp(
          `archive ${archiveKey.replace(/\./g, '\\.')} has CRC64NVME \\S+; the metadata recorded \\S+`,
        ),
      );
    }
  });
});
