import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { listCommittedBackups } from '../../lambda/core/repository/catalog.js';
import { makeBackupHandler } from '../../lambda/handlers/backup.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeLambdaContext } from '../fixtures/lambda-context.js';
import { makeMediaTree, randomBytesFrom, seededRandom } from '../fixtures/media-tree.js';
import { type S3rverFixture, startS3rver, stubHandlerEnvForS3rver } from '../fixtures/s3rver.js';

const dirs = tempDirs();
let s3: S3rverFixture;
beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(async () => {
  vi.unstubAllEnvs();
  await s3.stop();
  await dirs.cleanup();
});

// A 0 ms estimate lets every run start: with the real one, these budgets (1-150 ms) would be refused
// up front by InsufficientTimeError and the deadline watch would never fire mid-archive.
const backupHandler = makeBackupHandler({
  timeModel: { perFileMs: 0, bytesPerSecond: Number.POSITIVE_INFINITY, commitMs: 0 },
});

// The deadline can fire in any phase (lock, scan, listing, mid-archive, upload). Found by this
// sweep: a tar entry waiting in the pack when it was torn down emitted an unheard 'error' and
// crashed the process, although the backup itself failed cleanly.
it('a deadline firing at any moment of a backup fails it cleanly, with no uncaught error', async () => {
  const uncaught: unknown[] = [];
  const record = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', record);
  const mount = await dirs.make('efs-');
  await makeMediaTree(path.join(mount, 'media'), { files: 50, seed: 2 });
  await writeFile(
    path.join(mount, 'media', 'lecture.mp4'),
    randomBytesFrom(seededRandom(9), 16 * 1024 * 1024),
  );
  const outcomes: string[] = [];
  for (let budgetMs = 1; budgetMs <= 150; budgetMs += 7) {
    const prefix = `sweep-${budgetMs}/`;
    stubHandlerEnvForS3rver(vi.stubEnv, s3, { prefix, mount });
    vi.stubEnv('DEADLINE_MARGIN_MS', '60000');
    const outcome = await backupHandler(
      { type: 'full' },
      makeLambdaContext({ remainingTimeInMillis: 60_000 + budgetMs }),
    ).then(
      () => 'SUCCEEDED',
      (error: Error) => error.name,
    );
    outcomes.push(outcome);
    if (outcome !== 'SUCCEEDED') expect(await listCommittedBackups(s3.makeStore(prefix))).toEqual([]);
    // Let anything the torn-down pipeline still emits surface before the next run.
    await new Promise((resolve) => setImmediate(resolve));
  }
  process.off('uncaughtException', record);
  expect(uncaught).toEqual([]);
  expect(new Set(outcomes)).toEqual(new Set(['BackupDeadlineError']));
}, 300_000);
