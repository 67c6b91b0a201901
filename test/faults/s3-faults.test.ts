import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { runVerify } from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { listCommittedBackups } from '../../lambda/core/repository/catalog.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import type { S3ObjectStore } from '../../lambda/store/s3.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree, randomBytesFrom, seededRandom, snapshotTree } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver } from '../fixtures/s3rver.js';
import { type FaultRule, type FaultScope, type S3FaultProxy, startS3FaultProxy } from './s3-fault-proxy.js';

/**
 * Faults injected between the S3 store and s3rver by a loopback proxy, driven through the engine
 * (runBackup, runRestore, runVerify). Every case must end clean, in bounded time:
 * - a run that succeeds left a backup that verifies;
 * - a run that fails names the S3 operation and key, committed nothing (no manifest), left no
 *   multipart upload behind, and the next run without faults succeeds.
 * The per-request timeouts are small here (IDLE_MS) so a stall costs about a second per attempt.
 * MEDIA_BACKUP_FAULTS_LONG=1 adds a sweep of every backup-path operation x fault kind.
 */

/**
 * Small, so a stall costs 0.3 s per attempt. The cases run one after the other: s3rver runs in this
 * process and answers CompleteMultipartUpload only after concatenating the parts, which under
 * several concurrent runs can go quiet for longer than this (real S3 sends keep-alive whitespace).
 */
const IDLE_MS = 300;
/** Two attempts per request: the retry is exercised, a stall costs 2 x IDLE_MS. */
const ATTEMPTS = 2;
/** A generous bound for one faulted run: ATTEMPTS x IDLE_MS plus backoff, on a loaded machine. */
const BOUNDED_MS = 15_000;
const LONG = process.env.MEDIA_BACKUP_FAULTS_LONG === '1';

const dirs = tempDirs();
let s3: S3rverFixture;
let proxy: S3FaultProxy;
let smallSource: string;
/** Holds an 8.5 MiB file: its archive needs two multipart parts (8 MiB minimum part size). */
let bigSource: string;
let caseCount = 0;

beforeAll(async () => {
  // In RAM where there is /dev/shm: s3rver writes every part twice (part, then the whole object).
  s3 = await startS3rver({ parentDir: existsSync('/dev/shm') ? '/dev/shm' : undefined });
  proxy = await startS3FaultProxy(s3.endpoint);
  smallSource = await dirs.make('faults-small-');
  await makeMediaTree(smallSource, { files: 8, seed: 21, maxFileBytes: 48 * 1024 });
  bigSource = await dirs.make('faults-big-');
  await makeMediaTree(bigSource, { files: 4, seed: 22 });
  await writeFile(path.join(bigSource, 'clip.mp4'), randomBytesFrom(seededRandom(23), 8.5 * 1024 * 1024));
});
afterAll(async () => {
  await proxy?.stop();
  await s3?.stop();
  await dirs.cleanup();
});

interface Case {
  /** Store reached through the proxy, with small timeouts. */
  readonly faulty: S3ObjectStore;
  /** The same store reached directly, to inspect what the faulted run left. */
  readonly direct: S3ObjectStore;
  readonly scope: FaultScope;
  readonly prefix: string;
}

function newCase(): Case {
  caseCount += 1;
  const prefix = `case-${caseCount}/`;
  return {
    prefix,
    scope: proxy.scope(prefix),
    faulty: s3.makeStore(prefix, {
      endpoint: proxy.endpoint,
      idleTimeoutMs: IDLE_MS,
      connectTimeoutMs: IDLE_MS,
      maxAttempts: ATTEMPTS,
    }),
    direct: s3.makeStore(prefix),
  };
}

const clock = tickingClock();
const deps = (store: S3ObjectStore) => ({ store, clock, logger: silentLogger });
const settle = <T>(p: Promise<T>): Promise<{ value?: T; error?: Error; ms: number }> => {
  const started = Date.now();
  return p.then(
    (value) => ({ value, ms: Date.now() - started }),
    (error: Error) => ({ error, ms: Date.now() - started }),
  );
};
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** `operation` failed for a key matching `key` (a regex source for the part after the prefix). */
function namesRequest(c: Case, operation: string, key: string): RegExp {
  return new RegExp(
    `S3 ${operation} failed for s3://${escapeRegExp(s3.bucket)}/${escapeRegExp(c.prefix)}${key}: `,
  );
}

const ARCHIVE = String.raw`full/backup_\d{8}_\d{6}\.tar\.gz`;
const MANIFEST = String.raw`full/backup_\d{8}_\d{6}\.manifest\.jsonl\.gz`;
const LOCK = String.raw`locks/backup\.lock`;

type Expectation = 'ok' | { readonly operation: string; readonly key: string; readonly message?: RegExp };

interface BackupCase {
  readonly name: string;
  readonly source: 'small' | 'big';
  readonly rules: readonly FaultRule[];
  readonly expect: Expectation;
}

const BACKUP_CASES: readonly BackupCase[] = [
  {
    name: 'UploadPart answered 503 once is retried and succeeds',
    source: 'big',
    rules: [{ operation: 'UploadPart', action: { kind: 'status', status: 503 }, times: 1 }],
    expect: 'ok',
  },
  {
    name: 'UploadPart stalled once is retried after the idle timeout and succeeds',
    source: 'big',
    rules: [{ operation: 'UploadPart', action: { kind: 'stall' }, times: 1 }],
    expect: 'ok',
  },
  {
    name: 'UploadPart that always stalls fails, aborts the multipart upload, commits nothing',
    source: 'big',
    rules: [{ operation: 'UploadPart', action: { kind: 'stall' } }],
    expect: { operation: 'UploadPart', key: ARCHIVE, message: /TimeoutError.*no data moved for 300 ms/ },
  },
  {
    name: 'UploadPart that is always reset fails, aborts, commits nothing',
    source: 'big',
    rules: [{ operation: 'UploadPart', action: { kind: 'reset' } }],
    expect: { operation: 'UploadPart', key: ARCHIVE, message: /connection failed or was cut/ },
  },
  {
    name: 'UploadPart that always answers 500 fails after the retries, aborts, commits nothing',
    source: 'big',
    rules: [{ operation: 'UploadPart', action: { kind: 'status', status: 500 } }],
    expect: { operation: 'UploadPart', key: ARCHIVE, message: /HTTP 500, after 2 attempts/ },
  },
  {
    name: 'CreateMultipartUpload that always stalls fails, commits nothing',
    source: 'big',
    rules: [{ operation: 'CreateMultipartUpload', action: { kind: 'stall' } }],
    expect: { operation: 'CreateMultipartUpload', key: ARCHIVE },
  },
  {
    name: 'the lock PUT that always stalls fails naming the lock, commits nothing',
    source: 'small',
    rules: [{ operation: 'PutObject', key: /locks\/backup\.lock$/, action: { kind: 'stall' } }],
    expect: { operation: 'PutObject', key: LOCK, message: /TimeoutError/ },
  },
  {
    name: 'the lock PUT whose answer is lost (ambiguous write) is recognised as ours',
    source: 'small',
    rules: [{ operation: 'PutObject', key: /locks\/backup\.lock$/, action: { kind: 'ambiguous' }, times: 1 }],
    expect: 'ok',
  },
  {
    name: 'the manifest PUT answered 500 once is retried and succeeds',
    source: 'small',
    rules: [
      {
        operation: 'PutObject',
        key: /\.manifest\.jsonl\.gz$/,
        action: { kind: 'status', status: 500 },
        times: 1,
      },
    ],
    expect: 'ok',
  },
  {
    name: 'the manifest PUT whose answer is lost (ambiguous write) is retried and commits once',
    source: 'small',
    rules: [
      { operation: 'PutObject', key: /\.manifest\.jsonl\.gz$/, action: { kind: 'ambiguous' }, times: 1 },
    ],
    expect: 'ok',
  },
  {
    name: 'the manifest PUT that always stalls fails naming the manifest, commits nothing',
    source: 'small',
    rules: [{ operation: 'PutObject', key: /\.manifest\.jsonl\.gz$/, action: { kind: 'stall' } }],
    expect: { operation: 'PutObject', key: MANIFEST },
  },
  {
    name: 'a small archive PUT that always stalls fails naming the archive, commits nothing',
    source: 'small',
    rules: [{ operation: 'PutObject', key: /\.tar\.gz$/, action: { kind: 'stall' } }],
    expect: { operation: 'PutObject', key: ARCHIVE },
  },
  {
    name: 'the lock PUT whose every answer is lost is recognised as ours from its nonce',
    source: 'small',
    rules: [{ operation: 'PutObject', key: /locks\/backup\.lock$/, action: { kind: 'ambiguous' }, times: 3 }],
    expect: 'ok',
  },
  {
    name: 'the manifest PUT whose every answer is lost is found written: the backup is committed and reported so',
    source: 'small',
    rules: [{ operation: 'PutObject', key: /\.manifest\.jsonl\.gz$/, action: { kind: 'ambiguous' } }],
    expect: 'ok',
  },
  {
    name: 'a CreateMultipartUpload whose answer is lost leaves no orphan upload behind',
    source: 'big',
    rules: [{ operation: 'CreateMultipartUpload', action: { kind: 'ambiguous' }, times: 1 }],
    expect: 'ok',
  },
];

/** Cases that only run with MEDIA_BACKUP_FAULTS_LONG=1 (the sweep covers their kind too). */
const MORE_BACKUP_CASES: readonly BackupCase[] = LONG
  ? [
      {
        name: 'UploadPart reset once is retried and succeeds',
        source: 'big',
        rules: [{ operation: 'UploadPart', action: { kind: 'reset' }, times: 1 }],
        expect: 'ok',
      },
      {
        name: 'a listing answered 503 once is retried and succeeds',
        source: 'small',
        rules: [{ operation: 'ListObjectsV2', action: { kind: 'status', status: 503 }, times: 1 }],
        expect: 'ok',
      },
      {
        name: 'the HeadObject after the upload reset once is retried and succeeds',
        source: 'small',
        rules: [{ operation: 'HeadObject', action: { kind: 'reset' }, times: 1 }],
        expect: 'ok',
      },
    ]
  : [];

/** Long sweep: every backup-path operation x fault kind, judged by the generic clean-outcome rule. */
const SWEEP_CASES: readonly BackupCase[] = LONG
  ? [
      ['UploadPart', undefined, 'big'],
      ['CreateMultipartUpload', undefined, 'big'],
      ['CompleteMultipartUpload', undefined, 'big'],
      ['PutObject', /locks\//, 'small'],
      ['PutObject', /\.tar\.gz$/, 'small'],
      ['PutObject', /metadata\.json$/, 'small'],
      ['PutObject', /manifest/, 'small'],
      ['PutObject', /status\//, 'small'],
      ['HeadObject', undefined, 'small'],
      ['ListObjectsV2', undefined, 'small'],
      ['GetObject', undefined, 'small'],
    ].flatMap(([operation, key, source]) =>
      (
        [
          [{ kind: 'status', status: 503 }, 1],
          [{ kind: 'status', status: 500 }, undefined],
          [{ kind: 'reset' }, 1],
          [{ kind: 'reset' }, undefined],
          [{ kind: 'stall' }, 1],
          [{ kind: 'stall' }, undefined],
          [{ kind: 'ambiguous' }, 1],
          [{ kind: 'ambiguous' }, undefined],
        ] as const
      ).map(([action, times]) => ({
        name: `sweep: ${operation}${key ? ` ${key}` : ''} ${action.kind}${'status' in action ? ` ${action.status}` : ''} ${times ? 'once' : 'always'}`,
        source: source as 'small' | 'big',
        rules: [{ operation, key, action, times } as FaultRule],
        expect: 'ok' as const,
      })),
    )
  : [];

describe('S3 faults on the backup path end clean and bounded', () => {
  it.each([...BACKUP_CASES, ...MORE_BACKUP_CASES].map((c) => [c.name, c] as const))(
    '%s',
    async (_name, spec) => {
      const c = newCase();
      c.scope.setRules(spec.rules);
      const source = spec.source === 'big' ? bigSource : smallSource;

      const run = await settle(runBackup(deps(c.faulty), { source }));

      expect(run.ms).toBeLessThan(BOUNDED_MS);
      expect(c.scope.requests.some((r) => r.fault !== 'pass')).toBe(true);
      if (spec.expect === 'ok') {
        expect(run.error).toBeUndefined();
        expect(await listCommittedBackups(c.direct)).toHaveLength(1);
        expect((await runVerify(deps(c.direct), { all: true, record: false })).status).toBe('SUCCEEDED');
      } else {
        expect(run.error?.name).toBe('StoreRequestError');
        expect(run.error?.message).toMatch(namesRequest(c, spec.expect.operation, spec.expect.key));
        if (spec.expect.message) expect(run.error?.message).toMatch(spec.expect.message);
        expect(await listCommittedBackups(c.direct)).toEqual([]);
      }
      // Never a multipart upload left behind, whatever happened.
      expect(await c.direct.listLeftovers()).toEqual([]);
      if (spec.expect === 'ok') return;

      // The next run, without faults, succeeds.
      c.scope.setRules([]);
      await expect(runBackup(deps(c.faulty), { source })).resolves.toMatchObject({ status: 'SUCCEEDED' });
    },
  );

  it.runIf(LONG).each(SWEEP_CASES.map((c) => [c.name, c] as const))('%s', async (_name, spec) => {
    const c = newCase();
    c.scope.setRules(spec.rules);
    const source = spec.source === 'big' ? bigSource : smallSource;

    const run = await settle(runBackup(deps(c.faulty), { source }));

    expect(run.ms).toBeLessThan(BOUNDED_MS);
    const committed = await listCommittedBackups(c.direct);
    if (run.error && committed.length === 1) {
      // Committed, but the status object could not be written afterwards: reported as failed
      // (nothing records the run otherwise), and the backup itself is good.
      expect(run.error.message).toMatch(/S3 PutObject failed for s3:\/\/\S+\/status\//);
      expect((await runVerify(deps(c.direct), { all: true, record: false })).status).toBe('SUCCEEDED');
    } else if (run.error) {
      // Failed: said what, committed nothing.
      expect(run.error.message).toMatch(/S3 \w+ failed for s3:\/\//);
      expect(committed).toEqual([]);
    } else {
      expect(committed).toHaveLength(1);
      expect((await runVerify(deps(c.direct), { all: true, record: false })).status).toBe('SUCCEEDED');
    }
    expect(await c.direct.listLeftovers()).toEqual([]);
  });
});

interface ReadCase {
  readonly name: string;
  readonly rules: readonly FaultRule[];
  readonly expect: Expectation;
}

const RESTORE_CASES: readonly ReadCase[] = [
  {
    name: 'an archive GET answered 503 once is retried and the restore succeeds',
    rules: [{ operation: 'GetObject', key: /\.tar\.gz$/, action: { kind: 'status', status: 503 }, times: 1 }],
    expect: 'ok',
  },
  {
    name: 'an archive GET whose body stalls mid-stream fails naming GetObject and the archive',
    rules: [
      { operation: 'GetObject', key: /\.tar\.gz$/, action: { kind: 'stall-body', afterBytes: 16 * 1024 } },
    ],
    expect: { operation: 'GetObject', key: ARCHIVE, message: /TimeoutError.*cut off mid-body/ },
  },
  {
    name: 'an archive GET that is always reset fails naming GetObject and the archive',
    rules: [{ operation: 'GetObject', key: /\.tar\.gz$/, action: { kind: 'reset' } }],
    expect: { operation: 'GetObject', key: ARCHIVE },
  },
  {
    name: 'a manifest GET whose body stalls fails naming GetObject and the manifest',
    rules: [
      {
        operation: 'GetObject',
        key: /\.manifest\.jsonl\.gz$/,
        action: { kind: 'stall-body', afterBytes: 100 },
      },
    ],
    expect: { operation: 'GetObject', key: MANIFEST },
  },
];

describe('S3 faults on the restore path end clean and bounded', () => {
  // Restores only read: one backup serves every case (they run one after the other).
  let c: Case;
  beforeAll(async () => {
    c = newCase();
    await runBackup(deps(c.direct), { source: bigSource });
  });

  it.each(RESTORE_CASES.map((c) => [c.name, c] as const))('%s', async (_name, spec) => {
    c.scope.requests.length = 0;
    const parent = await dirs.make('faults-restore-');
    const target = path.join(parent, 'restored');
    c.scope.setRules(spec.rules);

    const run = await settle(runRestore(deps(c.faulty), { target }));

    expect(run.ms).toBeLessThan(BOUNDED_MS);
    expect(c.scope.requests.some((r) => r.fault !== 'pass')).toBe(true);
    if (spec.expect === 'ok') {
      expect(run.error).toBeUndefined();
      expect(await snapshotTree(target)).toEqual(await snapshotTree(bigSource));
      return;
    }
    expect(run.error?.message).toMatch(namesRequest(c, spec.expect.operation, spec.expect.key));
    if (spec.expect.message) expect(run.error?.message).toMatch(spec.expect.message);
    // Nothing half-restored: no target, no staging folder.
    expect(await readdir(parent)).toEqual([]);

    c.scope.setRules([]);
    await runRestore(deps(c.faulty), { target });
    expect(await snapshotTree(target)).toEqual(await snapshotTree(bigSource));
  });
});

const VERIFY_CASES: readonly ReadCase[] = [
  {
    name: 'verify --all: a HEAD answered 503 once is retried and everything passes',
    rules: [{ operation: 'HeadObject', action: { kind: 'status', status: 503 }, times: 1 }],
    expect: 'ok',
  },
  {
    name: 'verify --all: the first archive stalling mid-body fails that backup only; the rest are checked',
    rules: [
      {
        operation: 'GetObject',
        key: /full\/.*\.tar\.gz$/,
        action: { kind: 'stall-body', afterBytes: 16 * 1024 },
        times: 1,
      },
    ],
    expect: { operation: 'GetObject', key: ARCHIVE },
  },
];

describe('S3 faults during verify --all are reported per backup', () => {
  // Verify only reads (and records its outcome): one set of backups serves every case.
  let c: Case;
  beforeAll(async () => {
    c = newCase();
    await runBackup(deps(c.direct), { source: smallSource, type: 'full' });
    await runBackup(deps(c.direct), { source: smallSource, type: 'full' });
    await runBackup(deps(c.direct), { source: smallSource, type: 'incremental' });
  });

  it.each(VERIFY_CASES.map((c) => [c.name, c] as const))('%s', async (_name, spec) => {
    c.scope.requests.length = 0;
    c.scope.setRules(spec.rules);

    const run = await settle(runVerify(deps(c.faulty), { all: true }));

    expect(run.ms).toBeLessThan(BOUNDED_MS);
    expect(c.scope.requests.some((r) => r.fault !== 'pass')).toBe(true);
    const result = run.value!;
    expect(result.backups).toHaveLength(3);
    if (spec.expect === 'ok') {
      expect(result.status).toBe('SUCCEEDED');
      return;
    }
    expect(result.status).toBe('FAILED');
    const [first, ...rest] = result.backups;
    expect(first).toMatchObject({ ok: false, inconclusive: true });
    expect(first.problems.join(' ')).toMatch(namesRequest(c, spec.expect.operation, spec.expect.key));
    // The others were still checked.
    for (const other of rest) expect(other).toMatchObject({ ok: true });
  });
});
