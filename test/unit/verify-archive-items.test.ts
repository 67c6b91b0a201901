import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type ArchiveCheckItem,
  type ArchiveCheckResult,
  CatalogReads,
  checkArchiveItem,
  planArchiveChecks,
  recordArchiveChecks,
  runVerify,
} from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import {
  chainProblems,
  listCommittedBackups,
  readManifest,
  readMetadata,
  readVerifiedDamage,
} from '../../lambda/core/repository/catalog.js';
import { VERIFY_STATUS_KEY } from '../../lambda/core/repository/layout.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { S3ObjectStore } from '../../lambda/store/s3.js';
import { StoreRequestError } from '../../lambda/store/types.js';
import { tempDirs } from '../fixtures/engine.js';
import { flipOneByte } from '../fixtures/folder-world.js';
import { makeMediaTree } from '../fixtures/media-tree.js';
import { type ShardedBackup, writeShardedBackup } from '../fixtures/sharded-backup.js';

// The per-archive units of a deep verify (issue 14), which a verify state machine runs as Map items:
// plan -> check each item (one download) -> record. The CLI runs the same units with a limit.

const dirs = tempDirs();
let source: string;
let storeDir: string;
let store: FsObjectStore;
let sharded: ShardedBackup;
const NOW = new Date('2025-12-28T04:00:00Z');
const clock = { now: () => NOW };

beforeEach(async () => {
  source = await dirs.make('src-');
  storeDir = await dirs.make('store-');
  store = new FsObjectStore(storeDir);
  await makeMediaTree(source, { files: 20, seed: 21 });
  sharded = await writeShardedBackup(store, source, { parts: 3 });
});
afterEach(() => dirs.cleanup());

/** What a Map state does to items and results: JSON in, JSON out. */
const overJson = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

async function runUnits(s = store): Promise<ArchiveCheckResult[]> {
  const { items } = overJson(await planArchiveChecks(s, {}));
  return overJson(await Promise.all(items.map((item) => checkArchiveItem(s, item))));
}

describe('planArchiveChecks', () => {
  it('plans one item per part of a sharded backup', async () => {
    const plan = await planArchiveChecks(store, { backup: 'latest' });
    expect(plan.items).toEqual(
      sharded.parts.map((p) => ({ backupId: sharded.backupId, type: 'full', archiveKey: p.key })),
    );
  });

  it('a backup whose manifest cannot be read becomes one item that reports it, without a download', async () => {
    await writeFile(path.join(storeDir, sharded.manifestKey), 'not gzip');
    const { items } = await planArchiveChecks(store, { all: true });
    expect(items).toEqual([
      expect.objectContaining({
        backupId: sharded.backupId,
        archiveKey: sharded.manifestKey,
        planProblems: [expect.stringContaining('is not a valid gzip file')],
      }),
    ]);
    const noReads: FsObjectStore = Object.create(store);
    noReads.getStream = async () => {
      throw new Error('must not download');
    };
    const result = await checkArchiveItem(noReads, items[0]);
    expect(result).toMatchObject({ ok: false, inconclusive: false, sha256: null });
    const recorded = await recordArchiveChecks(store, [result], NOW);
    expect(recorded.status).toBe('FAILED');
    expect((await readVerifiedDamage(store)).get(sharded.backupId)).toContain('is not a valid gzip file');
  });
});

describe('checkArchiveItem', () => {
  it('downloads one part, re-hashes the files the manifest puts in it and the part against its metadata', async () => {
    const results = await runUnits();
    expect(results).toEqual(
      sharded.parts.map((p) => ({
        backupId: sharded.backupId,
        type: 'full',
        archiveKey: p.key,
        ok: true,
        problems: [],
        bytes: p.bytes,
        sha256: p.sha256,
        files: p.files,
        inconclusive: false,
      })),
    );
  });

  it('a flipped byte in one part fails that item only, naming the part', async () => {
    const damaged = sharded.parts[1];
    await flipOneByte(storeDir, damaged.key);
    const results = await runUnits();
    expect(results.map((r) => [r.archiveKey, r.ok])).toEqual(
      sharded.parts.map((p) => [p.key, p !== damaged]),
    );
    const bad = results[1];
    expect(bad.problems.length).toBeGreaterThan(0);
    for (const p of bad.problems) expect(p).toContain(damaged.key);
  });

  it('a deleted part is "missing", not a store failure', async () => {
    await rm(path.join(storeDir, sharded.parts[2].key));
    const results = await runUnits();
    expect(results[2]).toMatchObject({
      ok: false,
      inconclusive: false,
      problems: [`backup ${sharded.backupId}: archive ${sharded.parts[2].key} is missing`],
    });
  });

  it('one item alone streams the manifest (memory follows the part); items sharing reads decode it once', async () => {
    const { items } = await planArchiveChecks(store, {});
    const calls: string[] = [];
    const watched: FsObjectStore = Object.create(store);
    watched.get = async (key: string) => {
      calls.push(`get ${key}`);
      return store.get(key);
    };
    watched.getStream = async (key: string) => {
      calls.push(`getStream ${key}`);
      return store.getStream(key);
    };
    await checkArchiveItem(watched, items[0]);
    expect(calls.filter((c) => c.endsWith(sharded.manifestKey))).toEqual([
      `getStream ${sharded.manifestKey}`,
    ]);
    calls.length = 0;
    const reads = new CatalogReads(watched);
    await Promise.all(items.map((item) => checkArchiveItem(watched, item, { reads })));
    expect(calls.filter((c) => c.endsWith(sharded.manifestKey))).toEqual([`get ${sharded.manifestKey}`]);
  });

  it('a Lambda checking one item streams the manifest with its checks: a manifest cut after a part fails every item', async () => {
    const { items } = await planArchiveChecks(store, {});
    const last = sharded.parts.at(-1)!;
    // Drop the last part's rows member: the rows still parse, the header's totals no longer match.
    const manifest = await readFile(path.join(storeDir, sharded.manifestKey));
    await writeFile(
      path.join(storeDir, sharded.manifestKey),
      manifest.subarray(0, last.manifestRange.offset),
    );
    const results = await Promise.all(items.map((item) => checkArchiveItem(store, item)));
    for (const r of results) {
      expect(r).toMatchObject({ ok: false, inconclusive: false, sha256: null });
      expect(r.problems).toEqual([
        expect.stringContaining(`could not be checked: manifest ${sharded.manifestKey}`),
      ]);
    }
  });

  it('a store that cannot be read makes the item inconclusive, which is not recorded as damage', async () => {
    const failing: FsObjectStore = Object.create(store);
    failing.getStream = async (key: string) => {
      throw new StoreRequestError('GetObject', `${store.url}/${key}`, 'connection reset');
    };
    const { items } = await planArchiveChecks(store, {});
    const results = await Promise.all(items.map((item) => checkArchiveItem(failing, item)));
    expect(results.every((r) => !r.ok && r.inconclusive)).toBe(true);
    const verdict = await recordArchiveChecks(store, results, NOW);
    expect(verdict.backups[0]).toMatchObject({ ok: false, inconclusive: true });
    expect((await readVerifiedDamage(store)).size).toBe(0);
  });
});

describe('recordArchiveChecks', () => {
  it('writes the same status/last-verify.json as a deep runVerify of the backup', async () => {
    const viaVerify = await runVerify({ store, clock, logger: silentLogger }, { deep: true, parallel: 2 });
    const verifyRecord = await readFile(path.join(storeDir, VERIFY_STATUS_KEY), 'utf8');
    await rm(path.join(storeDir, VERIFY_STATUS_KEY));

    const viaUnits = await recordArchiveChecks(store, await runUnits(), NOW);
    expect(await readFile(path.join(storeDir, VERIFY_STATUS_KEY), 'utf8')).toBe(verifyRecord);
    expect(viaUnits).toEqual(viaVerify);
    expect(viaUnits.backups[0].archivesDeepVerified).toEqual(sharded.parts.map((p) => p.key));
  });

  it('damage found by the units is what chain checks and the next verify see; passing parts stay deep-verified', async () => {
    const damaged = sharded.parts[0];
    await flipOneByte(storeDir, damaged.key);
    const verdict = await recordArchiveChecks(store, await runUnits(), NOW);
    expect(verdict.status).toBe('FAILED');
    const record = JSON.parse(await readFile(path.join(storeDir, VERIFY_STATUS_KEY), 'utf8'));
    expect(Object.keys(record.deepVerified)).toEqual(sharded.parts.slice(1).map((p) => p.key));

    const committed = await listCommittedBackups(store);
    const problems = await chainProblems(
      committed[0],
      await readManifest(store, committed[0]),
      committed,
      { size: async (key) => (await store.head(key))?.size, metadata: (e) => readMetadata(store, e) },
      await readVerifiedDamage(store),
    );
    expect(problems).toEqual([
      expect.stringMatching(`^verify found backup ${sharded.backupId} damaged .*${damaged.key}`),
    ]);
  });

  it('items of several backups are grouped per backup, in the order results name them', async () => {
    const items: ArchiveCheckItem[] = [
      { backupId: 'backup_20251226_020000', type: 'full', archiveKey: 'full/backup_20251226_020000.tar.gz' },
      ...(await planArchiveChecks(store, {})).items,
    ];
    const results = await Promise.all(items.map((item) => checkArchiveItem(store, item)));
    const verdict = await recordArchiveChecks(store, results, NOW, { record: false });
    expect(verdict.recorded).toBe(false);
    expect(verdict.backups.map((b) => [b.backupId, b.ok, b.archivesChecked])).toEqual([
      ['backup_20251226_020000', false, 1],
      [sharded.backupId, true, 3],
    ]);
  });
});

// s3rver keeps no checksums: S3's answers for the parts are mocked, the backup's bytes are real.
describe('quick verify of a sharded backup on S3: one HeadObject per part, CRC64NVME per part', () => {
  const s3Mock = mockClient(S3Client);
  const P = 'media-backups/';
  const crcOf = (i: number) => `${'ABCDEFGHIJ'[i]}${'A'.repeat(10)}=`;
  beforeEach(() => s3Mock.reset());

  async function stubSharded(storedCrc: (i: number) => string): Promise<string[]> {
    const body = (bytes: Buffer) =>
      Object.assign(Readable.from([bytes]), {
        transformToByteArray: async () => new Uint8Array(bytes),
        transformToString: async () => bytes.toString('utf8'),
        transformToWebStream: () => {
          throw new Error('not used');
        },
      }) as never;
    const metadata = {
      ...sharded.metadata,
      parts: sharded.parts.map((p, i) => ({ ...p, crc64nvme: crcOf(i) })),
    };
    const keys = [...sharded.parts.map((p) => p.key), sharded.metadataKey, sharded.manifestKey];
    s3Mock.on(ListObjectsV2Command, { Prefix: `${P}full/` }).resolves({
      Contents: keys.map((k) => ({ Key: P + k, Size: 1, LastModified: NOW })),
      IsTruncated: false,
    });
    s3Mock
      .on(ListObjectsV2Command, { Prefix: `${P}incremental/` })
      .resolves({ Contents: [], IsTruncated: false });
    s3Mock
      .on(GetObjectCommand, { Key: P + sharded.manifestKey })
      .resolves({ Body: body(await readFile(path.join(storeDir, sharded.manifestKey))) });
    s3Mock
      .on(GetObjectCommand, { Key: P + sharded.metadataKey })
      .resolves({ Body: body(Buffer.from(JSON.stringify(metadata))) });
    for (const [i, p] of sharded.parts.entries()) {
      s3Mock
        .on(HeadObjectCommand, { Key: P + p.key })
        .resolves({ ContentLength: p.bytes, ChecksumCRC64NVME: storedCrc(i), ChecksumType: 'FULL_OBJECT' });
    }
    s3Mock.on(PutObjectCommand).resolves({ ETag: '"v"' });
    return keys;
  }
  const s3Store = () =>
    new S3ObjectStore({
      bucket: 'backup-bucket',
      client: new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 't', secretAccessKey: 't' } }),
    });
  const calls = () =>
    s3Mock.calls().map((c) => {
      const command = c.args[0] as {
        constructor: { name: string };
        input: { Key?: string; ChecksumMode?: string };
      };
      return `${command.constructor.name.replace(/Command$/, '')} ${(command.input.Key ?? '').slice(P.length)}${command.input.ChecksumMode ? ` ${command.input.ChecksumMode}` : ''}`;
    });

  it('passes without downloading a part', async () => {
    await stubSharded(crcOf);
    const result = await runVerify(
      { store: s3Store(), clock, logger: silentLogger },
      { record: false, parallel: 2 },
    );
    expect(result.backups[0]).toMatchObject({ ok: true, method: 'checksum', archivesChecked: 3 });
    expect(
      calls()
        .filter((c) => c.startsWith('HeadObject'))
        .sort(),
    ).toEqual(sharded.parts.map((p) => `HeadObject ${p.key} ENABLED`));
    expect(calls().filter((c) => c.includes('.part-') && !c.startsWith('HeadObject'))).toEqual([]);
  });

  it('a part whose stored CRC64NVME differs is named, the others pass', async () => {
    await stubSharded((i) => (i === 1 ? 'ZZZZZZZZZZZ=' : crcOf(i)));
    const result = await runVerify({ store: s3Store(), clock, logger: silentLogger }, { record: false });
    expect(result.backups[0].problems).toEqual([
      `backup ${sharded.backupId}: archive ${sharded.parts[1].key} has CRC64NVME ZZZZZZZZZZZ= in the store; the metadata recorded ${crcOf(1)} (the object changed or is corrupt)`,
    ]);
  });
});
