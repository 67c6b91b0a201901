import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EXIT } from '../../bin/media-backup.js';
import { runCli } from '../fixtures/cli.js';
import { tempDirs } from '../fixtures/engine.js';
import { makeMediaTree } from '../fixtures/media-tree.js';

const cli = runCli;

const dirs = tempDirs();
let media: string;
let store: string;

beforeEach(async () => {
  media = await dirs.make('cli-health-media-');
  store = await dirs.make('cli-health-store-');
  // The CLI reads these as defaults; keep the caller's environment out of the tests.
  for (const name of [
    'BACKUP_STORE',
    'MEDIA_DIR',
    'RETENTION_DAYS',
    'FULL_INTERVAL_DAYS',
    'MAX_BACKUP_AGE_HOURS',
    'MIN_BACKUP_BYTES',
    'MAX_SHRINK_PERCENT',
  ]) {
    vi.stubEnv(name, undefined);
  }
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await dirs.cleanup();
});

describe('media-backup health', () => {
  it('exits 0 for a fresh backup and says every check is ok', async () => {
    await makeMediaTree(media, { files: 8 });
    expect((await cli(['backup', 'full', '--source', media, '--store', store])).code).toBe(EXIT.ok);

    const run = await cli(['health', '--store', store]);

    expect(run.code).toBe(EXIT.ok);
    expect(run.stdout).toMatch(/^OK +backup-age +The latest committed backup, backup_\d{8}_\d{6} \(full\)/m);
    expect(run.stdout).toMatch(/^OK +deep-verify +No verify is recorded in the store yet/m);
    expect(run.stdout).not.toMatch(/^WARNING /m);
  });

  it('exits 1 when a check is critical, with --json giving the whole report', async () => {
    const run = await cli(['health', '--store', store, '--json']);

    expect(run.code).toBe(EXIT.failed);
    const report = JSON.parse(run.stdout);
    expect(report.status).toBe('critical');
    expect(report.checks.find((c: { name: string }) => c.name === 'backup-age')).toMatchObject({
      status: 'critical',
    });
    expect(report.metrics.hoursSinceLastBackup).toBeNull();
  });

  it('exits 2 for a malformed threshold', async () => {
    const run = await cli(['health', '--store', store, '--max-age-hours', 'two']);

    expect(run.code).toBe(EXIT.usage);
    expect(run.stderr).toMatch(/--max-age-hours must be a positive number \(got "two"\)/);
  });
});

describe('media-backup retention and usage', () => {
  it('retention lists when each backup expires under the given settings', async () => {
    await makeMediaTree(media, { files: 5 });
    await cli(['backup', 'full', '--source', media, '--store', store]);

    const text = await cli([
      'retention',
      '--store',
      store,
      '--retention-days',
      '14',
      '--full-interval-days',
      '7',
    ]);
    expect(text.code).toBe(EXIT.ok);
    expect(text.stdout).toMatch(/expire 21 days after they were written/);
    expect(text.stdout).toMatch(/^backup_\d{8}_\d{6} +full +/m);

    const json = JSON.parse((await cli(['retention', '--store', store, '--json'])).stdout);
    expect(json).toMatchObject({ retentionDays: 30, fullIntervalDays: 7, expireAfterDays: 37 });
    expect(json.backups).toHaveLength(1);
    expect(json.backups[0]).toMatchObject({ type: 'full', committed: true });
    expect(json.backups[0].daysLeft).toBeGreaterThan(36);
  });

  it('retention refuses a non-whole number of days (exit 2)', async () => {
    const run = await cli(['retention', '--store', store, '--retention-days', '1.5']);

    expect(run.code).toBe(EXIT.usage);
    expect(run.stderr).toMatch(/--retention-days must be a whole number/);
  });

  it('usage reports bytes by type and month', async () => {
    await makeMediaTree(media, { files: 5 });
    await cli(['backup', 'full', '--source', media, '--store', store]);

    const text = await cli(['usage', '--store', store]);
    expect(text.code).toBe(EXIT.ok);
    expect(text.stdout).toMatch(/^MONTH +FULL +INCREMENTAL +METADATA +MANIFESTS +STATUS +OTHER +TOTAL$/m);
    expect(text.stdout).toMatch(/^\d{4}-\d{2} /m);

    const json = JSON.parse((await cli(['usage', '--store', store, '--json'])).stdout);
    expect(json.byType.full.objects).toBe(1);
    expect(json.byType.manifests.objects).toBe(1);
    expect(json.byType.status.objects).toBe(1);
    expect(json.total.bytes).toBeGreaterThan(json.byType.full.bytes);
  });
});
