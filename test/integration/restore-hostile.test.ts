import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { runVerify } from '../../lambda/core/checker/verify.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { type RestoreMode, runRestore } from '../../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import {
  CRAFTED_BACKUP_ID,
  type CraftedTarEntry,
  craftBackup,
  fileLine,
  MTIME_MS,
  manifestBytes,
  sha256Of,
  tarFile,
  tarOf,
} from '../fixtures/crafted-backup.js';
import { tempDirs, tickingClock } from '../fixtures/engine.js';
import { makeMediaTree, randomBytesFrom, seededRandom, snapshotTree } from '../fixtures/media-tree.js';

const ID = CRAFTED_BACKUP_ID;
const ARCHIVE = `full/${ID}.tar.gz`;
const MANIFEST = `full/${ID}.manifest.jsonl.gz`;
const A = 'alpha: the file every crafted backup legitimately holds\n';
const MODES: RestoreMode[] = ['new-folder', 'replace'];
const SNAPSHOT = { mtimes: true, modes: true } as const;

const dirs = tempDirs();
let storeDir: string;
/** Parent of the restore target: holds `target` (and its staging / pre-restore siblings) and `outside`. */
let sandbox: string;
let target: string;
let outside: string;
/** Per-test suffix for names an escaping entry would create, so a leftover can be told apart. */
let unique: string;

beforeEach(async () => {
  storeDir = await dirs.make('crafted-store-');
  sandbox = await dirs.make('restore-sandbox-');
  target = path.join(sandbox, 'target');
  outside = path.join(sandbox, 'outside');
  await mkdir(outside);
  await writeFile(path.join(outside, 'keep.txt'), 'not part of any restore\n');
  unique = randomBytes(6).toString('hex');
});
afterEach(() => dirs.cleanup());

function deps() {
  return {
    store: new FsObjectStore(storeDir),
    clock: tickingClock('2025-12-30T00:00:00Z'),
    logger: silentLogger,
  };
}

/** Matches a message that contains every part, in any order. */
function mentioning(...parts: string[]): RegExp {
  const escaped = parts.map((p) => p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
  return new RegExp(`^${escaped.map((p) => `(?=[\\s\\S]*${p})`).join('')}`);
}

const benignTar = (): CraftedTarEntry[] => [
  { header: { name: 'docs/', type: 'directory', mode: 0o755 } },
  tarFile('docs/a.txt', A),
];
const benignManifest = () => [
  { path: 'docs', type: 'dir', mode: 0o755, mtimeMs: MTIME_MS },
  fileLine('docs/a.txt', A, ARCHIVE),
];

/**
 * Prepares the target for `mode` (missing for a new folder; a live tree for replace) and snapshots
 * the sandbox, so `assertUntouched` can prove a failed restore changed nothing anywhere near it.
 */
async function armSandbox(mode: RestoreMode) {
  if (mode === 'replace') {
    await makeMediaTree(target, { files: 4, seed: 7, maxFileBytes: 4096 });
    await symlink('avatars/nowhere.jpg', path.join(target, 'dangling-link'));
  }
  const sandboxBefore = await snapshotTree(sandbox, SNAPSHOT);
  const liveBefore = mode === 'replace' ? await snapshotTree(target, SNAPSHOT) : undefined;
  return {
    liveBefore,
    assertUntouched: async () => {
      // (b) nothing written outside the target (the sandbox holds `outside/` and the target's siblings)
      expect(await snapshotTree(sandbox, SNAPSHOT)).toEqual(sandboxBefore);
      // (c) no staging folder left, (d) no pre-restore copy made
      const names = await readdir(sandbox);
      expect(names.filter((n) => n.includes('.restore-staging-'))).toEqual([]);
      expect(names.filter((n) => n.includes('.pre-restore-'))).toEqual([]);
      if (mode === 'replace') {
        expect(await snapshotTree(target, SNAPSHOT)).toEqual(liveBefore);
      } else {
        expect(existsSync(target)).toBe(false);
      }
    },
  };
}

describe('restore control: the crafted backup fixture itself is sound', () => {
  it.each(MODES)('a crafted benign backup restores and deep-verifies (%s)', async (mode) => {
    const media = randomBytesFrom(seededRandom(4), 100_000);
    await craftBackup(storeDir, {
      tar: [
        ...benignTar(),
        { header: { name: 'docs/latest', type: 'symlink', linkname: 'a.txt' } },
        { header: { name: 'empty/', type: 'directory', mode: 0o750 } },
        { header: { name: 'media/', type: 'directory', mode: 0o755 } },
        tarFile('media/b.bin', media),
      ],
      manifest: [
        ...benignManifest(),
        { path: 'docs/latest', type: 'symlink', target: 'a.txt' },
        { path: 'empty', type: 'dir', mode: 0o750, mtimeMs: MTIME_MS },
        { path: 'media', type: 'dir', mode: 0o755, mtimeMs: MTIME_MS },
        fileLine('media/b.bin', media, ARCHIVE, { mode: 0o640 }),
      ],
    });
    const { liveBefore } = await armSandbox(mode);

    const result = await runRestore(deps(), { backup: ID, target, mode });

    expect(result).toMatchObject({
      status: 'SUCCEEDED',
      backupId: ID,
      files: 2,
      symlinks: 1,
      verified: true,
    });
    expect(await snapshotTree(target, SNAPSHOT)).toEqual({
      docs: { type: 'dir', mode: 0o755 },
      'docs/a.txt': { type: 'file', size: A.length, sha256: sha256Of(A), mode: 0o644, mtimeMs: MTIME_MS },
      'docs/latest': { type: 'symlink', target: 'a.txt' },
      empty: { type: 'dir', mode: 0o750 },
      media: { type: 'dir', mode: 0o755 },
      'media/b.bin': {
        type: 'file',
        size: media.length,
        sha256: sha256Of(media),
        mode: 0o640,
        mtimeMs: MTIME_MS,
      },
    });
    if (mode === 'replace') {
      expect(result.previousTree).toMatch(/target\.pre-restore-/);
      expect(await snapshotTree(result.previousTree!, SNAPSHOT)).toEqual(liveBefore);
    }
    expect((await readdir(sandbox)).filter((n) => n.includes('.restore-staging-'))).toEqual([]);
    const verify = await runVerify(deps(), { backup: ID, deep: true });
    expect(verify).toMatchObject({ status: 'SUCCEEDED', backups: [{ ok: true, filesVerified: 2 }] });
  });
});

describe.each(MODES)('restore of a hostile or broken backup (mode %s)', (mode) => {
  it('1. an archive entry "../escape" is refused, naming backup, archive and entry', async () => {
    const evil = `../escape-${unique}.txt`;
    await craftBackup(storeDir, {
      tar: [...benignTar(), tarFile(evil, 'pwned\n')],
      manifest: benignManifest(),
    });
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(`backup ${ID}`, ARCHIVE, evil, "'..'"),
    );

    await sandboxCheck.assertUntouched();
    expect(existsSync(path.join(tmpdir(), path.basename(evil)))).toBe(false);
    expect(existsSync(path.resolve(evil))).toBe(false);
  });

  it('2. an absolute archive entry is refused and nothing appears at that absolute path', async () => {
    const evil = path.join(tmpdir(), `mb-abs-${unique}`, 'abs.txt');
    await craftBackup(storeDir, {
      tar: [...benignTar(), tarFile(evil, 'pwned\n')],
      manifest: benignManifest(),
    });
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(`backup ${ID}`, ARCHIVE, evil, 'absolute'),
    );

    await sandboxCheck.assertUntouched();
    expect(existsSync(path.dirname(evil))).toBe(false);
  });

  it('3. a symlink to an outside folder followed by a file below it is refused; nothing is written through the link', async () => {
    await craftBackup(storeDir, {
      tar: [
        { header: { name: 'link', type: 'symlink', linkname: outside } },
        tarFile('link/pwned.txt', 'pwned\n'),
      ],
      manifest: [
        { path: 'link', type: 'symlink', target: outside },
        fileLine('link/pwned.txt', 'pwned\n', ARCHIVE),
      ],
    });
    const sandboxCheck = await armSandbox(mode);

    const restoring = runRestore(deps(), { backup: ID, target, mode });
    // Let it settle first, so the safety checks run even when only the message is wrong.
    await restoring.catch(() => undefined);

    expect(existsSync(path.join(outside, 'pwned.txt'))).toBe(false);
    await sandboxCheck.assertUntouched();
    await expect(restoring).rejects.toThrow(mentioning(`backup ${ID}`, '"link"'));
  });

  it.each(['link/pwned', 'link/sub/dir/pwned'])(
    '3b. a symlink to an outside folder followed by a symlink %s below it is refused; nothing is created through the link',
    async (nested) => {
      await craftBackup(storeDir, {
        tar: [
          ...benignTar(),
          { header: { name: 'link', type: 'symlink', linkname: outside } },
          { header: { name: nested, type: 'symlink', linkname: '/etc/passwd' } },
        ],
        manifest: [
          ...benignManifest(),
          { path: 'link', type: 'symlink', target: outside },
          { path: nested, type: 'symlink', target: '/etc/passwd' },
        ],
      });
      const sandboxCheck = await armSandbox(mode);

      const restoring = runRestore(deps(), { backup: ID, target, mode });
      await restoring.catch(() => undefined);

      expect(await readdir(outside)).toEqual(['keep.txt']);
      await sandboxCheck.assertUntouched();
      await expect(restoring).rejects.toThrow(mentioning(`backup ${ID}`, nested));
    },
  );

  it.each([['/etc/passwd'], ['docs/a.txt']])(
    '4. a hardlink entry (linkname %s) is refused',
    async (linkname) => {
      await craftBackup(storeDir, {
        tar: [...benignTar(), { header: { name: 'docs/hard.txt', type: 'link', linkname } }],
        manifest: [...benignManifest(), fileLine('docs/hard.txt', A, ARCHIVE)],
      });
      const sandboxCheck = await armSandbox(mode);

      await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
        mentioning(`backup ${ID}`, ARCHIVE, 'docs/hard.txt', 'is a link'),
      );

      await sandboxCheck.assertUntouched();
    },
  );

  it.each(['character-device', 'block-device', 'fifo'] as const)('5. a %s entry is refused', async (type) => {
    await craftBackup(storeDir, {
      tar: [...benignTar(), { header: { name: 'docs/node', type, devmajor: 1, devminor: 3 } }],
      manifest: benignManifest(),
    });
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(`backup ${ID}`, ARCHIVE, 'docs/node', `is a ${type}`),
    );

    await sandboxCheck.assertUntouched();
  });

  it('6. archive entries the manifest does not ask for are skipped, not an error, and never written', async () => {
    await craftBackup(storeDir, {
      tar: [
        ...benignTar(),
        tarFile('docs/extra.txt', 'not in the manifest\n'),
        { header: { name: 'docs/extra-link', type: 'symlink', linkname: outside } },
        { header: { name: 'extra-dir/', type: 'directory' } },
      ],
      manifest: benignManifest(),
    });
    const { liveBefore } = await armSandbox(mode);
    const outsideBefore = await snapshotTree(outside, SNAPSHOT);

    const result = await runRestore(deps(), { backup: ID, target, mode });

    expect(result).toMatchObject({ status: 'SUCCEEDED', files: 1, symlinks: 0 });
    expect(Object.keys(await snapshotTree(target))).toEqual(['docs', 'docs/a.txt']);
    expect(await snapshotTree(outside, SNAPSHOT)).toEqual(outsideBefore);
    const names = await readdir(sandbox);
    expect(names.filter((n) => n.includes('.restore-staging-'))).toEqual([]);
    if (mode === 'replace') {
      expect(await snapshotTree(result.previousTree!, SNAPSHOT)).toEqual(liveBefore);
    } else {
      expect(names.filter((n) => n.includes('.pre-restore-'))).toEqual([]);
    }
  });

  it.each([
    ['a different second copy', 'a second copy with other bytes\n'],
    ['an identical second copy', A],
  ])('7. a wanted file present twice in the archive (%s) is refused', async (_label, second) => {
    await craftBackup(storeDir, {
      tar: [...benignTar(), tarFile('docs/a.txt', second)],
      manifest: benignManifest(),
    });
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(`backup ${ID}`, ARCHIVE, 'docs/a.txt', 'twice'),
    );

    await sandboxCheck.assertUntouched();
  });

  it('8. a truncated archive (cut in half) is refused, naming the archive', async () => {
    const crafted = await craftBackupWithMedia();
    const bytes = await readFile(crafted.files.archive);
    await writeFile(crafted.files.archive, bytes.subarray(0, bytes.length >> 1));
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(`backup ${ID}`, ARCHIVE, 'damaged or truncated'),
    );

    await sandboxCheck.assertUntouched();
  });

  it('9. an archive with one flipped bit in the middle is refused', async () => {
    const crafted = await craftBackupWithMedia();
    const bytes = await readFile(crafted.files.archive);
    bytes[bytes.length >> 1] ^= 0x10;
    await writeFile(crafted.files.archive, bytes);
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(`backup ${ID}`, ARCHIVE),
    );
    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      /damaged or truncated|does not match the manifest/,
    );

    await sandboxCheck.assertUntouched();
  });

  it('10. a file whose manifest sha256 does not match its bytes is refused', async () => {
    await craftBackup(storeDir, {
      tar: benignTar(),
      manifest: [benignManifest()[0], fileLine('docs/a.txt', A, ARCHIVE, { sha256: sha256Of('other') })],
    });
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(`backup ${ID}`, ARCHIVE, 'docs/a.txt', 'does not match the manifest'),
    );

    await sandboxCheck.assertUntouched();
  });

  it('11. a missing archive is refused before anything is written', async () => {
    const crafted = await craftBackup(storeDir, { tar: benignTar(), manifest: benignManifest() });
    await rm(crafted.files.archive);
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(`backup ${ID}`, ARCHIVE, 'missing'),
    );

    await sandboxCheck.assertUntouched();
  });

  it('12. a backup whose manifest is missing is not committed: restoring it names it and lists what exists', async () => {
    const source = await dirs.make('src-');
    await makeMediaTree(source, { files: 3, seed: 5, maxFileBytes: 2048 });
    const older = await runBackup(
      {
        store: new FsObjectStore(storeDir),
        clock: tickingClock('2025-12-26T02:00:00Z'),
        logger: silentLogger,
      },
      { source },
    );
    const crafted = await craftBackup(storeDir, { tar: benignTar(), manifest: benignManifest() });
    await rm(crafted.files.manifest);
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(ID, 'not a committed backup', older.backupId),
    );

    await sandboxCheck.assertUntouched();
  });

  it('12b. when it was the only backup, restoring it still names the requested backup and says nothing is committed', async () => {
    const crafted = await craftBackup(storeDir, { tar: benignTar(), manifest: benignManifest() });
    await rm(crafted.files.manifest);
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(ID, 'no committed backups'),
    );

    await sandboxCheck.assertUntouched();
  });

  it.each([
    ['garbage bytes', () => randomBytes(300), 'not a valid gzip file'],
    ['gzip of garbage text', () => gzipSync('this is not json\n{]\n'), 'is not a JSON object'],
    [
      'header totals that do not match the entries',
      () => manifestBytes(ID, benignManifest(), { totals: { files: 2, bytes: 999 } }),
      'do not match its entries',
    ],
    [
      'entries out of order',
      () => manifestBytes(ID, [...benignManifest()].reverse(), { keepOrder: true }),
      'out of order',
    ],
  ])('13. a corrupt manifest (%s) is refused', async (_label, bytes, expected) => {
    const crafted = await craftBackup(storeDir, { tar: benignTar(), manifest: benignManifest() });
    await writeFile(crafted.files.manifest, bytes());
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(MANIFEST, expected),
    );

    await sandboxCheck.assertUntouched();
  });

  it.each([
    ['../../etc/cron.d/x', 'file', "'..'"],
    ['docs/../../x', 'file', "'..'"],
    ['/etc/cron.d/x', 'file', 'absolute'],
    ['../../etc/cron.d/x', 'symlink', "'..'"],
    ['../../etc/cron.d', 'dir', "'..'"],
  ])('14. a manifest line with the escaping path %s (%s) is refused', async (evil, type, expected) => {
    const line =
      type === 'file'
        ? fileLine(evil, A, ARCHIVE)
        : type === 'symlink'
          ? { path: evil, type, target: 'docs/a.txt' }
          : { path: evil, type, mode: 0o755 };
    await craftBackup(storeDir, { tar: benignTar(), manifest: [...benignManifest(), line] });
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(MANIFEST, evil, expected),
    );

    await sandboxCheck.assertUntouched();
  });

  it('14b. a manifest whose archive key escapes the store is refused, naming the backup and the key', async () => {
    const evilKey = `../${path.basename(sandbox)}/outside/evil.tar.gz`;
    await writeFile(path.join(outside, 'evil.tar.gz'), gzipSync(Buffer.alloc(1024)));
    await craftBackup(storeDir, {
      tar: benignTar(),
      manifest: [...benignManifest(), fileLine('docs/b.txt', A, evilKey)],
    });
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(`backup ${ID}`, evilKey),
    );

    await sandboxCheck.assertUntouched();
  });

  it('15. a file listed in the manifest but absent from the archive is refused', async () => {
    await craftBackup(storeDir, {
      tar: benignTar(),
      manifest: [...benignManifest(), fileLine('docs/b.txt', 'never archived\n', ARCHIVE)],
    });
    const sandboxCheck = await armSandbox(mode);

    await expect(runRestore(deps(), { backup: ID, target, mode })).rejects.toThrow(
      mentioning(`backup ${ID}`, ARCHIVE, 'docs/b.txt', 'not in the archive'),
    );

    await sandboxCheck.assertUntouched();
  });
});

describe('a downloaded archive without a manifest (the tree comes from the archive itself)', () => {
  it.each(MODES)(
    'a symlink entry followed by entries below it is refused by the writer; nothing is created through it (%s)',
    async (mode) => {
      const downloads = await dirs.make('dl-');
      const archive = path.join(downloads, `${ID}.tar.gz`);
      await writeFile(
        archive,
        gzipSync(
          await tarOf([
            ...benignTar(),
            { header: { name: 'link', type: 'symlink', linkname: outside } },
            { header: { name: 'link/pwned', type: 'symlink', linkname: '/etc/passwd' } },
          ]),
        ),
      );
      const sandboxCheck = await armSandbox(mode);

      await expect(runRestore(deps(), { backup: archive, target, mode })).rejects.toThrow(
        mentioning(archive, '"link" must be a folder but is a symlink'),
      );

      expect(await readdir(outside)).toEqual(['keep.txt']);
      await sandboxCheck.assertUntouched();
    },
  );
});

describe('verify of a damaged archive (quick check, no download of files)', () => {
  it.each([
    ['truncated', (b: Buffer) => b.subarray(0, b.length >> 1), /is \d+ bytes; the metadata recorded \d+/],
    [
      'with a flipped bit',
      (b: Buffer) => {
        const copy = Buffer.from(b);
        copy[copy.length >> 1] ^= 0x10;
        return copy;
      },
      /has sha256 [0-9a-f]{64}; the metadata recorded [0-9a-f]{64}/,
    ],
  ])('an archive %s is reported as a problem and the status is FAILED', async (_label, damage, problem) => {
    const crafted = await craftBackupWithMedia();
    await writeFile(crafted.files.archive, damage(await readFile(crafted.files.archive)));

    const result = await runVerify(deps(), { backup: ID, deep: false });

    expect(result.status).toBe('FAILED');
    expect(result.backups).toHaveLength(1);
    expect(result.backups[0].ok).toBe(false);
    expect(result.backups[0].problems).toEqual([expect.stringMatching(problem)]);
    expect(result.backups[0].problems[0]).toMatch(mentioning(`backup ${ID}`, ARCHIVE));
  });
});

/** A benign backup with enough incompressible bytes that the middle of the archive is file data. */
async function craftBackupWithMedia() {
  const media = randomBytesFrom(seededRandom(11), 256 * 1024);
  return craftBackup(storeDir, {
    tar: [...benignTar(), { header: { name: 'media/', type: 'directory' } }, tarFile('media/c.bin', media)],
    manifest: [
      ...benignManifest(),
      { path: 'media', type: 'dir', mode: 0o755 },
      fileLine('media/c.bin', media, ARCHIVE),
    ],
  });
}
