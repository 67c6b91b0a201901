import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { afterEach, describe, expect, it } from 'vitest';
import { fileHeader } from '../../lambda/core/archiver/archive.js';

const execFileAsync = promisify(execFile);
let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('tar headers', () => {
  it('records the exact size of a file over 8 GiB in a PAX record that GNU tar reads', async () => {
    const size = 8 * 1024 ** 3 + 12345;
    const header = fileHeader('materials/huge lecture.mp4', {
      size,
      mode: 0o100644,
      mtimeMs: 1.7e12,
      uid: 0,
      gid: 0,
    });
    expect(header.pax).toEqual({ path: 'materials/huge lecture.mp4', size: String(size) });

    const pack = tarStream.pack();
    const parts: Buffer[] = [];
    // PAX header block + PAX records + ustar header + 1 KiB of body.
    const expected = 3 * 512 + 1024;
    const received = new Promise<void>((resolve) => {
      let length = 0;
      pack.on('data', (c) => {
        parts.push(c as Buffer);
        length += (c as Buffer).length;
        if (length >= expected) resolve();
      });
    });
    pack.entry(header).write(Buffer.alloc(1024, 1));
    await received;
    const bytes = Buffer.concat(parts);
    expect(bytes.toString('latin1')).toContain(`size=${size}\n`);

    dir = await mkdtemp(path.join(tmpdir(), 'hdr-'));
    const file = path.join(dir, 'truncated.tar.gz');
    await writeFile(file, gzipSync(bytes));
    // GNU tar lists the entry from its header, then complains that the body is cut short.
    const listed = await execFileAsync('tar', ['-tvzf', file]).catch((e: { stdout: string }) => e);
    expect(listed.stdout).toMatch(new RegExp(`\\b${size}\\b.*materials/huge lecture\\.mp4`));
  });

  it('keeps small files in a plain ustar header', () => {
    const header = fileHeader('a.jpg', { size: 10, mode: 0o100640, mtimeMs: 1000, uid: 1, gid: 2 });
    expect(header).toMatchObject({ name: 'a.jpg', size: 10, mode: 0o640, uid: 1, gid: 2 });
    expect(header.pax).toBeUndefined();
  });
});
