import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { choosePartSize } from '../../lambda/store/s3.js';
import {
  AFTER_ISSUE_12,
  archiveBilledDays,
  awsBackupMonthlyCost,
  type CostBreakdown,
  type CostInputs,
  type CostItemId,
  DEFAULT_CUSTOM_METRICS,
  monthlyCost,
  partSizeBytes,
  TODAY,
  uploadRequests,
  WITH_SYNTHETIC_FULLS,
} from '../../lib/cost-model.js';
import { METRIC_NAMES } from '../../lib/metrics.js';
import {
  COST_TABLE_END,
  COST_TABLE_START,
  README_PATH,
  renderCostTables,
  replaceBetweenMarkers,
} from '../../scripts/cost-table.js';

const usd = (bill: CostBreakdown, id: CostItemId) => bill.items.find((i) => i.id === id)!.usd;

// Hand arithmetic below uses a 365/12-day month: 4.345238 weekly fulls and 26.071429 incrementals.
describe('monthlyCost arithmetic, checked by hand', () => {
  it('500 GB today: Standard-IA storage = (500/7 + 5 x 6/7) GB a day x 45 days x $0.0125 = $42.589', () => {
    const bill = monthlyCost({ ...TODAY, treeGB: 500 });
    expect(bill.quantities.billedDays).toBe(45); // 30 + 7 + 7 noncurrent + 1 rounding
    expect(usd(bill, 's3-ia-storage')).toBeCloseTo(42.5893, 3);
  });

  it('500 GB after issue 12: 39 billed days, $36.911 of storage', () => {
    const bill = monthlyCost({ ...AFTER_ISSUE_12, treeGB: 500 });
    expect(bill.quantities.billedDays).toBe(39);
    expect(usd(bill, 's3-ia-storage')).toBeCloseTo(36.9107, 3);
  });

  it('verify retrieval: today the weekly deep verify reads the full twice (4.345 x 500 x 2 x $0.01 = $43.45); rotating + checksum reads each written byte once ($23.03)', () => {
    expect(usd(monthlyCost({ ...TODAY, treeGB: 500 }), 's3-ia-retrieval')).toBeCloseTo(43.4524, 3);
    expect(usd(monthlyCost({ ...AFTER_ISSUE_12, treeGB: 500 }), 's3-ia-retrieval')).toBeCloseTo(23.0298, 3);
  });

  it('EFS reads: Elastic (4.345 x 500 + 26.07 x 5) GB x $0.03 = $69.09; Bursting $0', () => {
    expect(usd(monthlyCost({ treeGB: 500, efsThroughputMode: 'elastic' }), 'efs-elastic-reads')).toBeCloseTo(
      69.0893,
      3,
    );
    const bursting = monthlyCost({ treeGB: 500, efsThroughputMode: 'bursting' });
    expect(usd(bursting, 'efs-elastic-reads')).toBe(0);
  });

  it('CloudWatch: 18 x $0.10 + 1 x $0.50 alarms; 3 hourly + 6 daily + 2 weekly metrics = 2,381.19 metric-hours = $0.979; dashboard $3 or $0', () => {
    const bill = monthlyCost({ treeGB: 5 });
    expect(usd(bill, 'cloudwatch-alarms')).toBeCloseTo(2.3, 10);
    expect(bill.quantities.metricHours).toBeCloseTo(2381.1905, 3);
    expect(usd(bill, 'cloudwatch-metrics')).toBeCloseTo(0.97857, 4);
    expect(usd(bill, 'cloudwatch-dashboard')).toBe(3);
    expect(usd(monthlyCost({ treeGB: 5, dashboard: false }), 'cloudwatch-dashboard')).toBe(0);
  });

  it('Lambda GB-seconds for 100 GB, no churn, no scan: backup 4.345 x 100 GB x 11.76 s/GB x 3.455 GB + verify 869 GB x 10 s / 0.5789 vCPU + monitor 1,095 + notify 1.09 = 33,793', () => {
    const bill = monthlyCost({ treeGB: 100, dailyChurnPercent: 0, scanMsPerFile: 0 });
    // backup: 20 CPU-s/GB over 2 vCPUs at 0.85 = 11.7647 s/GB (85 MB/s, under the 150 MB/s cap)
    // 17,662.51 + verify (8,690.48 / (1024/1769) + 4.345 x 5 s) 15,034.86 + 0.5 GB x 730 x 3 s + 0.25 GB x 4.345 x 1 s
    expect(bill.quantities.gbSeconds).toBeCloseTo(33793.46, 1);
  });

  it('Standard-IA minimum object size: with no churn each incremental is billed as 128 KB', () => {
    const bill = monthlyCost({ treeGB: 5, dailyChurnPercent: 0 });
    // (5/7 GB + 6/7 x 128 KiB) a day x 45 days x $0.0125
    expect(usd(bill, 's3-ia-storage')).toBeCloseTo(0.401845, 5);
  });

  it('AWS Backup for EFS: (500 + 1% x 30 days x 500) GB x $0.05 = $32.50', () => {
    expect(awsBackupMonthlyCost({ treeGB: 500 }).total).toBeCloseTo(32.5, 10);
  });

  it('archives are billed at least 30 days (Standard-IA minimum)', () => {
    expect(archiveBilledDays({ retentionDays: 7, fullIntervalDays: 7, noncurrentDays: 1 })).toBe(30);
  });
});

describe('monthlyCost shape', () => {
  const sizes = [1, 2, 5, 10, 50, 100, 500, 1000, 5000];
  const policies: [string, Partial<CostInputs>][] = [
    ['today, elastic', { ...TODAY }],
    ['today, bursting', { ...TODAY, efsThroughputMode: 'bursting' }],
    ['after issue 12', { ...AFTER_ISSUE_12 }],
    ['synthetic fulls (issue 15), elastic', { ...WITH_SYNTHETIC_FULLS }],
    ['synthetic fulls (issue 15), bursting', { ...WITH_SYNTHETIC_FULLS, efsThroughputMode: 'bursting' }],
  ];

  it.each(policies)('%s: the total rises with the tree and no item falls', (_name, policy) => {
    const bills = sizes.map((treeGB) => monthlyCost({ ...policy, treeGB }));
    for (let k = 1; k < bills.length; k += 1) {
      expect(bills[k]!.total).toBeGreaterThan(bills[k - 1]!.total);
      for (const item of bills[k]!.items) {
        expect(item.usd).toBeGreaterThanOrEqual(usd(bills[k - 1]!, item.id));
      }
    }
    const awsBackup = sizes.map((treeGB) => awsBackupMonthlyCost({ ...policy, treeGB }).total);
    for (let k = 1; k < awsBackup.length; k += 1) expect(awsBackup[k]).toBeGreaterThan(awsBackup[k - 1]!);
  });

  it('the total is the sum of the items', () => {
    const bill = monthlyCost({ treeGB: 50 });
    expect(bill.total).toBeCloseTo(
      bill.items.reduce((sum, i) => sum + i.usd, 0),
      10,
    );
  });

  it.each([
    [{ treeGB: 0 }, /`treeGB` must be a number > 0/],
    [{ dailyChurnPercent: -1 }, /`dailyChurnPercent` must be a number >= 0/],
    [{ dailyChurnPercent: 101 }, /`dailyChurnPercent` must be at most 100/],
    [
      { fullIntervalDays: 31, retentionDays: 30 },
      /`fullIntervalDays` \(31\) must not exceed `retentionDays` \(30\)/,
    ],
    [{ backupMemoryMB: Number.NaN }, /`backupMemoryMB` must be a number > 0/],
  ] as [Partial<CostInputs>, RegExp][])('refuses %o', (input, message) => {
    expect(() => monthlyCost(input)).toThrow(message);
  });
});

describe('the model matches the code it describes', () => {
  it.each([0, 5 * 2 ** 20, 8 * 2 ** 20, 70 * 2 ** 30, 500 * 2 ** 30, 5 * 2 ** 40])(
    'part size for an upper bound of %d bytes equals lambda/store/s3.ts choosePartSize',
    (bytes) => {
      expect(partSizeBytes(bytes)).toBe(choosePartSize(bytes));
    },
  );

  it('uploads: one PutObject for a small archive, create + parts + complete for a large one', () => {
    expect(uploadRequests(1024)).toBe(1);
    // 80 GiB: 1.02 x 1.01 x 80 GiB / 9,000 parts ~ 9.8 MB parts -> 8,824 parts + 2
    const parts = Math.ceil((80 * 2 ** 30) / partSizeBytes(80 * 2 ** 30 * 1.01));
    expect(uploadRequests(80 * 2 ** 30)).toBe(parts + 2);
    expect(parts).toBeLessThanOrEqual(9000);
  });

  it('custom metric defaults count lib/metrics.ts METRIC_NAMES by publisher', () => {
    expect(DEFAULT_CUSTOM_METRICS).toEqual({
      hourly: METRIC_NAMES.monitor.length,
      perBackupRun: METRIC_NAMES.backup.length,
      perVerifyRun: METRIC_NAMES.verify.length,
      perNotification: METRIC_NAMES.notify.length,
    });
  });
});

describe('README cost tables', () => {
  it('README.md holds exactly what `npm run costs` prints between the cost-table markers', () => {
    const readme = readFileSync(README_PATH, 'utf8');
    const start = readme.indexOf(COST_TABLE_START);
    const end = readme.indexOf(COST_TABLE_END);
    expect(start, `README.md needs ${COST_TABLE_START}`).toBeGreaterThanOrEqual(0);
    expect(end, `README.md needs ${COST_TABLE_END} after the start marker`).toBeGreaterThan(start);
    const inReadme = readme.slice(start + COST_TABLE_START.length, end).trim();
    // On a mismatch: `npm run costs -- --write` regenerates the README's tables.
    expect(inReadme).toBe(renderCostTables());
  });

  it('--write replaces only the text between the markers', () => {
    const text = `before\n${COST_TABLE_START}\nold\n${COST_TABLE_END}\nafter\n`;
    expect(replaceBetweenMarkers(text, 'new')).toBe(
      `before\n${COST_TABLE_START}\nnew\n${COST_TABLE_END}\nafter\n`,
    );
    expect(() => replaceBetweenMarkers('no markers', 'new')).toThrow(/npm run costs -- --write/);
  });
});
