import { createHash } from 'node:crypto';
import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { gnuLongNameRecord } from '../../lambda/core/archiver/archive.js';
import { runBackup } from '../../lambda/core/archiver/backup.js';
import { scanTree } from '../../lambda/core/archiver/scan.js';
import { silentLogger } from '../../lambda/core/deps.js';
import { decodeFsName, encodeFsName } from '../../lambda/core/fs-names.js';
import { listCommittedBackups, readManifest } from '../../lambda/core/repository/catalog.js';
import { runRestore } from '../../lambda/core/restorer/restore.js';
import { FsObjectStore } from '../../lambda/store/fs.js';
import { tarFile, tarOf } from '../fixtures/crafted-backup.js';
import { gnuTarExtract, gnuTarList, tempDirs, tickingClock } from '../fixtures/engine.js';

const HOUR = 3_600_000;
const dirs = tempDirs();
let source: string;
let storeDir: string;

beforeEach(async () => {
  source = await dirs.make('latin1-src-');
  storeDir = await dirs.make('latin1-store-');
});
afterEach(() => dirs.cleanup());

const bytes = (...parts: (string | number[])[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
const join = (root: string, rel: Buffer) => Buffer.concat([Buffer.from(`${root}/`), rel]);

/** Relative paths (as bytes, shown hex-escaped) -> type and content or link target; never decodes. */
function rawTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: Buffer, rel: Buffer | null) => {
    for (const name of readdirSync(dir, { encoding: 'buffer' })) {
      const abs = Buffer.concat([dir, Buffer.from('/'), name]);
      const r = rel ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      const key = [...r]
        .map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16)}`))
        .join('');
      const st = lstatSync(abs);
      if (st.isSymbolicLink())
        out[key] = `link -> ${readlinkSync(abs, { encoding: 'buffer' }).toString('hex')}`;
      else if (st.isDirectory()) {
        out[key] = 'dir';
        walk(abs, r);
      } else out[key] = `file ${createHash('sha256').update(readFileSync(abs)).digest('hex')}`;
    }
  };
  walk(Buffer.from(root), null);
  return out;
}

/** A tree with Latin-1 names (0xE9 = é in Latin-1, invalid alone in UTF-8) next to valid UTF-8 ones. */
function makeLatin1Tree(root: string) {
  const cafe = bytes('caf', [0xe9], '.jpg');
  const folder = bytes('d', [0xe9], 'j', [0xe0]);
  const mixed = bytes('r', [0xe9], 'sum', [0xc3, 0xa9], '.pdf'); // a Latin-1 é and a UTF-8 é
  const long = bytes(`${'chat-room-archive-'.repeat(8)}`, [0xe9], 't', [0xe9], '.txt'); // > 100 bytes
  writeFileSync(join(root, cafe), 'a Latin-1 named photo\n');
  mkdirSync(join(root, folder));
  writeFileSync(join(root, Buffer.concat([folder, Buffer.from('/x.txt')])), 'inside a Latin-1 folder\n');
  writeFileSync(join(root, Buffer.concat([folder, Buffer.from('/'), mixed])), 'mixed bytes\n');
  writeFileSync(join(root, Buffer.concat([folder, Buffer.from('/'), long])), 'a long Latin-1 name\n');
  writeFileSync(path.join(root, 'naïve.txt'), 'valid UTF-8 name\n');
  symlinkSync(cafe, join(root, bytes('lien-', [0xe9])));
  return { cafe, folder, mixed, long };
}

describe('item 8: file names that are not valid UTF-8', () => {
  it('fs-names round-trips any byte string and keeps valid UTF-8 as it is', () => {
    for (const name of [
      bytes('caf', [0xe9]),
      bytes([0xff, 0xfe, 0x80]),
      bytes([0xed, 0xa0, 0x80]), // an encoded UTF-16 surrogate: not valid UTF-8
      bytes([0xf0, 0x9f, 0x98]), // a truncated 4-byte sequence
      bytes('r', [0xe9], 'sum', [0xc3, 0xa9], ' 😀'),
    ]) {
      expect(encodeFsName(decodeFsName(name))).toEqual(name);
    }
    expect(decodeFsName(bytes('caf', [0xe9]))).toBe('caf\udce9');
    expect(decodeFsName(Buffer.from('naïve 😀'))).toBe('naïve 😀');
    expect(encodeFsName('naïve 😀')).toEqual(Buffer.from('naïve 😀'));
  });

  it('are backed up, never reported as vanished, restored byte-exact, and extracted by GNU tar', async () => {
    const { cafe } = makeLatin1Tree(source);
    const before = rawTree(source);
    const store = new FsObjectStore(storeDir);
    const clock = tickingClock('2025-12-20T02:00:00Z');

    const scan = await scanTree(source);
    expect(scan.skipped).toEqual([]);
    expect((await scanTree(source, { concurrentIo: true })).entries).toEqual(scan.entries);
    const full = await runBackup({ store, clock, logger: silentLogger }, { source });
    expect(full.skipped).toEqual([]);
    expect(full.files).toBe(5);

    // The manifest keeps valid UTF-8 paths as they always were and escapes the Latin-1 bytes.
    const [entry] = await listCommittedBackups(store);
    const paths = (await readManifest(store, entry)).entries.map((e) => e.path);
    expect(paths).toContain('caf\udce9.jpg');
    expect(paths).toContain('naïve.txt');
    expect(paths).toContain('d\udce9j\udce0/r\udce9sumé.pdf');

    // The next run sees the same files: nothing vanished, nothing changed.
    clock.jump(HOUR);
    const next = await runBackup({ store, clock, logger: silentLogger }, { source, type: 'incremental' });
    expect(next.skipped).toEqual([]);
    expect(next.changedFiles).toBe(0);

    const target = path.join(await dirs.make('latin1-restore-'), 'media');
    const restored = await runRestore({ store, clock, logger: silentLogger }, { target });
    expect(restored).toMatchObject({ files: 5, verified: true });
    expect(rawTree(target)).toEqual(before);
    expect(readlinkSync(join(target, bytes('lien-', [0xe9])), { encoding: 'buffer' })).toEqual(cafe);

    const archive = path.join(storeDir, full.archiveKey);
    const out = await dirs.make('latin1-gnutar-');
    await gnuTarExtract(archive, out);
    expect(rawTree(out)).toEqual(before);
    expect(await gnuTarList(archive)).toHaveLength(Object.keys(before).length);
  });

  it('a raw long-name record is still held to the path rules: "../" bytes are refused', async () => {
    const evil = bytes('../escape-', [0xe9], '.txt');
    const archive = path.join(await dirs.make('latin1-dl-'), 'backup_20251227_020000.tar.gz');
    writeFileSync(
      archive,
      gzipSync(
        Buffer.concat([gnuLongNameRecord('L', evil), await tarOf([tarFile('stand-in.txt', 'pwned\n')])]),
      ),
    );
    const target = path.join(await dirs.make('latin1-restore-'), 'media');

    await expect(
      runRestore(
        { store: new FsObjectStore(storeDir), clock: tickingClock(), logger: silentLogger },
        { backup: archive, target },
      ),
    ).rejects.toThrow(/archive entry: path "\.\.\/escape-\\udce9\.txt" contains '\.\.'/);
    expect(readdirSync(path.dirname(target))).toEqual([]);
  });
});
