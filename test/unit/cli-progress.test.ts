import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { startProgress } from '../../bin/cli/progress.js';

/** A stream that says it is a terminal, capturing what the display draws. */
function terminal(isTTY = true) {
  const stream = Object.assign(new PassThrough(), { isTTY, columns: 200 });
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  // Drop cursor movements and colours (ESC [ ... letter, ESC 7 / ESC 8): the text is what a user reads.
  const escapes = new RegExp(`${String.fromCharCode(27)}(\\[[0-9;?]*[a-zA-Z]|[78])`, 'g');
  const text = () => Buffer.concat(chunks).toString('utf8').replace(escapes, '');
  return { stream, text };
}

describe('CLI progress display', () => {
  it('measures bytes, not files: 9 small files of 10 before one large one is 1%, not 90%', () => {
    const tty = terminal();
    const progress = startProgress(tty.stream, 'backup');

    progress.update({ bytes: 9 * 1024, totalBytes: 900 * 1024 * 1024, files: 9, totalFiles: 10 });
    progress.stop();

    expect(tty.text()).toMatch(/backup \[[^\]]*\] 0% \| 9\.2 KB \/ 943\.7 MB \| 9 \/ 10 files/);
    expect(tty.text()).not.toMatch(/90%/);
  });

  it('shows the scan phase until the first figures arrive, then the bar', () => {
    const tty = terminal();
    const progress = startProgress(tty.stream, 'backup');

    progress.phase('scanning /srv/media (folders and file sizes)...');
    expect(tty.text()).toContain('backup: scanning /srv/media (folders and file sizes)...');
    progress.update({ bytes: 50, totalBytes: 100, files: 1, totalFiles: 2 });
    progress.stop();

    expect(tty.text()).toMatch(/50% \| 50 B \/ 100 B \| 1 \/ 2 files/);
  });

  it('an empty change set (0 bytes to write) shows no NaN', () => {
    const tty = terminal();
    const progress = startProgress(tty.stream, 'backup');
    progress.update({ bytes: 0, totalBytes: 0, files: 0, totalFiles: 0 });
    progress.stop();
    expect(tty.text()).not.toMatch(/NaN/);
  });

  it('draws nothing when stderr is not a terminal (cron, CI, Lambda logs)', () => {
    const piped = terminal(false);
    const progress = startProgress(piped.stream, 'backup');
    progress.phase('scanning');
    progress.update({ bytes: 1, totalBytes: 2, files: 1, totalFiles: 2 });
    progress.stop();
    expect(piped.text()).toBe('');
  });
});
