import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  AFTER_ISSUE_12,
  awsBackupMonthlyCost,
  type CostBreakdown,
  type CostItemId,
  DAYS_PER_MONTH,
  DIRECTORY_ENTRY_BYTES,
  monthlyCost,
  PRICES,
  planSyntheticFullModel,
  renderSyntheticFullsCostTable,
  replaceSyntheticFullsCostTable,
  SYNTHETIC_CHECK_BYTES,
  SYNTHETIC_COST_TABLE_END,
  SYNTHETIC_COST_TABLE_START,
  SYNTHETIC_PART_LIMITS,
  type SyntheticFullLayout,
  syntheticFullFigures,
  syntheticFullLayout,
  WITH_SYNTHETIC_FULLS,
} from '../../lib/cost-model.js';
import { README_PATH } from '../../scripts/cost-table.js';

const GIB = 2 ** 30;
const MIB = 2 ** 20;
const usd = (bill: CostBreakdown, id: CostItemId) => bill.items.find((i) => i.id === id)!.usd;
const sum = (values: ArrayLike<number>) => Array.from(values).reduce((a, b) => a + b, 0);

/** Bytes of each source of a layout. */
function bytesBySource(layout: SyntheticFullLayout): number[] {
  const bytes = new Array<number>(layout.staging + 1).fill(0);
  layout.segments.forEach((b, k) => {
    bytes[layout.sources[k]!]! += b;
  });
  return bytes;
}

describe('the layout of a synthetic full (simulated file by file)', () => {
  const i = { ...WITH_SYNTHETIC_FULLS, treeGB: 500 };
  const layout = syntheticFullLayout(i);
  const bySource = bytesBySource(layout);
  const tree = i.treeGB * GIB;
  const c = i.dailyChurnPercent / 100;
  const days = i.fullIntervalDays;

  it('holds every file once, plus an entry per folder and the end-of-archive', () => {
    const files = i.treeGB * i.filesPerGB;
    const folders = Math.ceil(files / i.filesPerDirectory);
    // Files of whole bytes: the tree / files, rounded.
    expect(sum(layout.segments)).toBe(
      files * Math.round(tree / files) + folders * DIRECTORY_ENTRY_BYTES + 64,
    );
    expect(layout.sourceBytes[0]).toBe(sum(layout.segments));
    expect(layout.sources.at(-1)).toBe(layout.staging);
  });

  it('takes (1 - churn)^days of the tree from the previous full and one day of churn fresh, read from EFS', () => {
    expect(bySource[0]! / tree).toBeCloseTo((1 - c) ** days, 2);
    expect(layout.freshFileBytes / (c * tree)).toBeCloseTo(1, 1);
    expect(syntheticFullFigures(i).efsReadGB).toBeCloseTo(layout.freshFileBytes / GIB, 10);
  });

  it.each([1, 3, 6])(
    'takes churn x (1 - churn)^(days - d) of the tree from the incremental of day %i',
    (day) => {
      expect(bySource[day]! / (c * (1 - c) ** (days - day) * tree)).toBeCloseTo(1, 1);
    },
  );

  it('is the same for the same inputs (a fixed seed): the README table is stable', () => {
    const again = syntheticFullLayout(i);
    expect(Array.from(again.sources)).toEqual(Array.from(layout.sources));
  });
});

describe('folder entries in the layout: copied while their mtime is as in the previous full', () => {
  /** Sources of each folder entry and of the files in it (a folder's entry precedes its files). */
  function folders(layout: SyntheticFullLayout, filesPerDirectory: number) {
    const out: { folder: number; files: number[] }[] = [];
    for (let k = 0; k + 1 < layout.segments.length; k += filesPerDirectory + 1) {
      const files = Array.from(layout.sources.subarray(k + 1, k + 1 + filesPerDirectory));
      out.push({ folder: layout.sources[k]!, files });
    }
    return out;
  }
  const base = { ...WITH_SYNTHETIC_FULLS, treeGB: 50 };

  it.each([1, 25])(
    'every change a rewrite in place (changedFilesPerRun %i): every folder entry comes from the previous full',
    (changedFilesPerRun) => {
      const i = { ...base, changedFilesPerRun, addedOrRemovedShare: 0 };
      const layout = syntheticFullLayout(i);

      expect(folders(layout, i.filesPerDirectory).every((f) => f.folder === 0)).toBe(true);
      expect(layout.folders).toEqual({ count: (i.treeGB * i.filesPerGB) / i.filesPerDirectory, changed: 0 });
      // The staged object holds today's changed files and the end-of-archive, nothing else.
      expect(bytesBySource(layout)[layout.staging]).toBe(layout.freshFileBytes * i.compressionRatio + 64);
    },
  );

  it.each([1, 25])(
    'every change an addition or deletion (changedFilesPerRun %i): a folder comes from where its latest changed file is',
    (changedFilesPerRun) => {
      const i = { ...base, changedFilesPerRun, addedOrRemovedShare: 1 };
      const layout = syntheticFullLayout(i);

      for (const f of folders(layout, i.filesPerDirectory)) {
        expect(f.folder).toBe(Math.max(...f.files));
      }
      expect(layout.folders!.changed).toBeGreaterThan(0);
    },
  );

  it('half of them additions: a folder never comes from a later day than its latest changed file; the share of folders changed follows the churn', () => {
    const i = { ...WITH_SYNTHETIC_FULLS, treeGB: 500 };
    const layout = syntheticFullLayout(i);
    const all = folders(layout, i.filesPerDirectory);

    expect(all.every((f) => f.folder <= Math.max(...f.files))).toBe(true);
    expect(all.filter((f) => f.folder !== 0).length).toBe(layout.folders!.changed);
    // Each day churn x files single-file changes, each an addition with probability 1/2, each in a
    // given folder with probability 1 / folders: a folder stays untouched for the interval with
    // probability exp(-share x churn x filesPerDirectory x days).
    const untouched = Math.exp(
      -i.addedOrRemovedShare * (i.dailyChurnPercent / 100) * i.filesPerDirectory * i.fullIntervalDays,
    );
    expect(1 - layout.folders!.changed / layout.folders!.count).toBeCloseTo(untouched, 1);
  });

  it('with changes 25 files at a time, the more of them add or remove files, the more a synthetic full fetches', () => {
    const fetched = [0, 0.5, 1].map(
      (addedOrRemovedShare) =>
        syntheticFullFigures({
          ...WITH_SYNTHETIC_FULLS,
          treeGB: 500,
          changedFilesPerRun: 25,
          addedOrRemovedShare,
        }).plan!,
    );

    expect(fetched[0]!.fetchedIaBytes).toBeLessThan(fetched[1]!.fetchedIaBytes);
    expect(fetched[1]!.fetchedIaBytes).toBeLessThan(fetched[2]!.fetchedIaBytes);
    expect(fetched[0]!.uploadParts).toBeLessThan(fetched[2]!.uploadParts);
  });
});

describe('planSyntheticFullModel: the rules of lambda/core/synthetic/part-plan.ts', () => {
  /** A hand-made layout: [bytes, source] pairs; source 0 is an archive, 1 the staging object. */
  function layoutOf(runs: [number, number][], staged = 1 * MIB): SyntheticFullLayout {
    return {
      segments: Float64Array.from(runs.map(([bytes]) => bytes)),
      sources: Uint16Array.from(runs.map(([, source]) => source)),
      sourceBytes: [100 * GIB, staged],
      staging: 1,
      freshFileBytes: 0,
    };
  }

  it('copies a run of >= 5 MiB; a short fresh run before the next copy borrows its head; a short rest is fetched too', () => {
    // 6 MiB copied; 1 MiB fetched from staging (5 MB minimum for a copy source); the next run lends
    // 4 MiB to reach 5 MiB, and its last 2 MiB are too few to copy: one 7 MiB upload part.
    const plan = planSyntheticFullModel(
      layoutOf([
        [6 * MIB, 0],
        [1 * MIB, 1],
        [6 * MIB, 0],
      ]),
    )!;

    expect(plan).toMatchObject({
      copyParts: 1,
      uploadParts: 1,
      copiedIaBytes: 6 * MIB,
      fetchedIaBytes: 6 * MIB,
      fetchedStagingBytes: 1 * MIB,
      iaRangedGets: 1,
      stagingRangedGets: 1,
    });
  });

  it('after borrowing 4 MiB the rest of a long run is copied: copy, upload (5 MiB), copy', () => {
    const plan = planSyntheticFullModel(
      layoutOf([
        [20 * MIB, 0],
        [1 * MIB, 1],
        [20 * MIB, 0],
      ]),
    )!;

    expect(plan).toMatchObject({
      copyParts: 2,
      uploadParts: 1,
      copiedIaBytes: 36 * MIB,
      fetchedIaBytes: 4 * MIB,
    });
  });

  it('splits a copy run into parts of at most 5 GiB', () => {
    const plan = planSyntheticFullModel(
      layoutOf([
        [12 * GIB, 0],
        [64, 1],
      ]),
    )!;
    expect(plan.copyParts).toBe(3);
    expect(plan.uploadParts).toBe(1);
  });

  it('falls back (undefined) when even 5 GiB thresholds need more than 10,000 parts', () => {
    const runs = Array.from({ length: 10_001 }, (_, k): [number, number] => [5 * GIB, k % 2]);
    expect(planSyntheticFullModel(layoutOf(runs, 100 * GIB))).toBeUndefined();
    expect(planSyntheticFullModel(layoutOf(runs.slice(0, 10_000), 100 * GIB))?.copyParts).toBe(10_000);
  });

  it.each([5, 50, 500])('%i GB: every byte is copied or fetched once; at most 10,000 parts', (treeGB) => {
    const layout = syntheticFullLayout({ ...WITH_SYNTHETIC_FULLS, treeGB });
    const plan = planSyntheticFullModel(layout)!;
    const staged = bytesBySource(layout)[layout.staging]!;

    expect(plan.copiedIaBytes + plan.fetchedIaBytes).toBeCloseTo(sum(layout.segments) - staged, -1);
    expect(plan.copiedStagingBytes + plan.fetchedStagingBytes).toBeCloseTo(staged, -1);
    expect(plan.copyParts + plan.uploadParts).toBeLessThanOrEqual(SYNTHETIC_PART_LIMITS.maxParts);
  });

  it('raises the thresholds only when the parts would exceed 10,000: 50 GB keeps 5 MiB, 500 GB of scattered changes does not', () => {
    const small = syntheticFullFigures({ ...WITH_SYNTHETIC_FULLS, treeGB: 50 }).plan!;
    const large = syntheticFullFigures({ ...WITH_SYNTHETIC_FULLS, treeGB: 500 }).plan!;

    expect(small.minCopyRunBytes).toBe(5 * MIB);
    expect(large.minCopyRunBytes).toBeGreaterThan(5 * MIB);
  });

  it('changes clustered in tree order (an import folder) break fewer runs: fewer parts, fewer bytes through the Lambda', () => {
    const scattered = syntheticFullFigures({ ...WITH_SYNTHETIC_FULLS, treeGB: 500, changedFilesPerRun: 1 })
      .plan!;
    const clustered = syntheticFullFigures({ ...WITH_SYNTHETIC_FULLS, treeGB: 500, changedFilesPerRun: 25 })
      .plan!;

    expect(clustered.copyParts + clustered.uploadParts).toBeLessThan(
      scattered.copyParts + scattered.uploadParts,
    );
    expect(clustered.fetchedIaBytes).toBeLessThan(scattered.fetchedIaBytes / 5);
  });
});

describe('monthlyCost with synthetic fulls', () => {
  const fullRuns = DAYS_PER_MONTH / 7;

  it.each([50, 500])(
    '%i GB: normalFullEvery 1, or syntheticFulls off, is the stack before issue 15, item by item',
    (treeGB) => {
      const before = monthlyCost({ ...AFTER_ISSUE_12, treeGB });
      for (const inputs of [
        { ...WITH_SYNTHETIC_FULLS, treeGB, normalFullEvery: 1 },
        { ...WITH_SYNTHETIC_FULLS, treeGB, syntheticFulls: false, normalFullEvery: 3 },
      ]) {
        const bill = monthlyCost(inputs);
        expect(bill.items.map((i) => [i.id, i.usd])).toEqual(before.items.map((i) => [i.id, i.usd]));
      }
    },
  );

  it('500 GB: 3 fulls in 4 synthetic; EFS reads = normal fulls x tree + synthetic fulls x fresh + incrementals x churn', () => {
    const inputs = { ...WITH_SYNTHETIC_FULLS, treeGB: 500 };
    const bill = monthlyCost(inputs);
    const fresh = syntheticFullFigures(inputs).efsReadGB;
    const incrementals = DAYS_PER_MONTH - fullRuns;

    expect(bill.quantities.syntheticRuns).toBeCloseTo(fullRuns * 0.75, 10);
    expect(bill.quantities.efsReadGB).toBeCloseTo(
      fullRuns * 0.25 * 500 + fullRuns * 0.75 * fresh + incrementals * 5,
      6,
    );
    expect(usd(bill, 'efs-elastic-reads')).toBeCloseTo(
      bill.quantities.efsReadGB! * PRICES.efsElasticReadGB,
      10,
    );
  });

  it('500 GB: Standard-IA retrieval on every byte copied or fetched out of an archive, and the check reads', () => {
    const inputs = { ...WITH_SYNTHETIC_FULLS, treeGB: 500 };
    const plan = syntheticFullFigures(inputs).plan!;
    const perFull = (plan.copiedIaBytes + plan.fetchedIaBytes + SYNTHETIC_CHECK_BYTES) / GIB;

    expect(usd(monthlyCost(inputs), 's3-ia-retrieval-copies')).toBeCloseTo(
      fullRuns * 0.75 * perFull * PRICES.s3StandardIaRetrievalGB,
      10,
    );
    // Almost the whole tree, whatever the plan copies or fetches: (1 - 1% fresh) of 500 GB.
    expect(perFull / 500).toBeCloseTo(0.99, 2);
  });

  it.each([50, 500])(
    '%i GB: the same archives stored and verified; cheaper with Elastic EFS, dearer with Bursting',
    (treeGB) => {
      const before = monthlyCost({ ...AFTER_ISSUE_12, treeGB });
      const elastic = monthlyCost({ ...WITH_SYNTHETIC_FULLS, treeGB });
      const bursting = monthlyCost({ ...WITH_SYNTHETIC_FULLS, treeGB, efsThroughputMode: 'bursting' });
      const burstingBefore = monthlyCost({ ...AFTER_ISSUE_12, treeGB, efsThroughputMode: 'bursting' });

      expect(usd(elastic, 's3-ia-storage')).toBe(usd(before, 's3-ia-storage'));
      expect(usd(elastic, 's3-ia-retrieval')).toBe(usd(before, 's3-ia-retrieval'));
      expect(elastic.total).toBeLessThan(before.total);
      expect(bursting.total).toBeGreaterThan(burstingBefore.total);
      expect(usd(elastic, 'lambda')).toBeLessThan(usd(before, 'lambda'));
    },
  );

  it('a synthetic full takes less Lambda time than a normal one, the more so when changes are clustered', () => {
    const scattered = monthlyCost({ ...WITH_SYNTHETIC_FULLS, treeGB: 500 }).quantities;
    const clustered = monthlyCost({
      ...WITH_SYNTHETIC_FULLS,
      treeGB: 500,
      changedFilesPerRun: 25,
    }).quantities;

    expect(scattered.syntheticRunMinutes).toBeLessThan(scattered.fullRunMinutes!);
    expect(clustered.syntheticRunMinutes).toBeLessThan(scattered.syntheticRunMinutes!);
  });

  it.each([
    [{ normalFullEvery: 0 }, /`normalFullEvery` must be a whole number >= 1 \(got 0\)/],
    [{ changedFilesPerRun: 1.5 }, /`changedFilesPerRun` must be a whole number >= 1 \(got 1.5\)/],
    [{ filesPerDirectory: 0 }, /`filesPerDirectory` must be a whole number >= 1/],
    [{ addedOrRemovedShare: 1.5 }, /`addedOrRemovedShare` must be a number from 0 to 1 \(got 1.5\)/],
    [{ addedOrRemovedShare: -0.1 }, /`addedOrRemovedShare` must be a number from 0 to 1 \(got -0.1\)/],
    [{ syntheticFetchMBPerSecond: 0 }, /`syntheticFetchMBPerSecond` must be a number > 0/],
  ])('refuses %o, naming the input', (inputs, message) => {
    expect(() => monthlyCost({ ...WITH_SYNTHETIC_FULLS, ...inputs })).toThrow(message);
  });
});

describe('README: the synthetic-fulls table', () => {
  it('README.md holds exactly renderSyntheticFullsCostTable() between its markers', () => {
    const readme = readFileSync(README_PATH, 'utf8');
    const start = readme.indexOf(SYNTHETIC_COST_TABLE_START);
    const end = readme.indexOf(SYNTHETIC_COST_TABLE_END);
    expect(start, `README.md needs ${SYNTHETIC_COST_TABLE_START}`).toBeGreaterThanOrEqual(0);
    expect(end).toBeGreaterThan(start);
    // On a mismatch, regenerate: replaceSyntheticFullsCostTable(readme) (lib/cost-model.ts).
    expect(readme.slice(start + SYNTHETIC_COST_TABLE_START.length, end).trim()).toBe(
      renderSyntheticFullsCostTable(),
    );
  });

  it('the table shows the model: the 500 GB totals of both policies and AWS Backup', () => {
    const table = renderSyntheticFullsCostTable();
    const normal = monthlyCost({ ...AFTER_ISSUE_12, treeGB: 500 }).total;
    const synthetic = monthlyCost({ ...WITH_SYNTHETIC_FULLS, treeGB: 500 }).total;
    const awsBackup = awsBackupMonthlyCost({ treeGB: 500 }).total;

    expect(table).toContain(
      `**$${normal.toFixed(2)}** | **$${synthetic.toFixed(2)}** | **$${awsBackup.toFixed(2)}** + EFS reads`,
    );
  });

  it('replaces only the text between the markers, and names the markers when they are missing', () => {
    const text = `a\n${SYNTHETIC_COST_TABLE_START}\nold\n${SYNTHETIC_COST_TABLE_END}\nb\n`;
    expect(replaceSyntheticFullsCostTable(text, 'new')).toBe(
      `a\n${SYNTHETIC_COST_TABLE_START}\nnew\n${SYNTHETIC_COST_TABLE_END}\nb\n`,
    );
    expect(() => replaceSyntheticFullsCostTable('no markers', 'new')).toThrow(
      /synthetic-fulls-cost-table:start/,
    );
  });
});
