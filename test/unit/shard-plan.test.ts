import { describe, expect, it } from 'vitest';
import {
  cutShards,
  DEFAULT_SHARD_BUDGET_MS,
  MAX_SHARDS,
  type PlanRowCost,
  ShardCutter,
  ShardPlanError,
  shardCostMs,
} from '../../lambda/core/sharding/shard-plan.js';

/** Per-file cost measured on the latency fs at 1 ms a call (bench/efs.ts): ~0.9 ms, rounded up. */
const EFS_RATES = { perFileMs: 1.2, bytesPerSecond: 30e6 };

// Ten digits from 1e9 up: string order is number order. Cheap, as 50 M of them are made.
const pathOf = (i: number) => `m/${1e9 + i}`;
const indexOf = (p: string) => Number(p.slice(2)) - 1e9;

/**
 * A synthetic listing of `files` files averaging `totalBytes / files` bytes: mostly small images and
 * documents, one in 200 a video 100x the mean (deterministic, no allocation of the whole listing).
 */
function* syntheticListing(files: number, totalBytes: number): Generator<PlanRowCost> {
  const mean = totalBytes / files;
  // 199 of 200 files get `small`, one gets 100 x mean: 199 s + 100 m = 200 m.
  const small = Math.floor((200 * mean - 100 * mean) / 199);
  const large = Math.floor(100 * mean);
  for (let i = 0; i < files; i++) {
    yield { path: pathOf(i), readFiles: 1, readBytes: i % 200 === 199 ? large : small };
  }
}

describe('ShardCutter', () => {
  it('cuts a 10 TB / 50 M-file listing into <= 10,000 contiguous shards, each within the invocation budget', () => {
    const files = 50_000_000;
    const cutter = new ShardCutter(EFS_RATES);
    let shards = 0;
    let rows = 0;
    let bytes = 0;
    let previousLast = -1;
    let maxMs = 0;
    const check = (s: ReturnType<ShardCutter['add']>) => {
      if (!s) return;
      shards += 1;
      expect(s.index).toBe(shards);
      // Contiguous and ordered: each shard starts at the row right after the previous one ended.
      const first = indexOf(s.firstPath);
      const last = indexOf(s.lastPath);
      if (first !== previousLast + 1 || last - first + 1 !== s.rows) {
        throw new Error(`shard ${s.index} is not contiguous: ${s.firstPath}..${s.lastPath}, ${s.rows} rows`);
      }
      previousLast = last;
      rows += s.rows;
      bytes += s.bytes;
      maxMs = Math.max(maxMs, s.estimatedMs);
    };
    let total = 0;
    for (const row of syntheticListing(files, 10e12)) {
      total += row.readBytes;
      check(cutter.add(row));
    }
    check(cutter.finish());
    expect(rows).toBe(files); // every file in exactly one shard
    expect(previousLast).toBe(files - 1);
    expect(bytes).toBe(total);
    expect(total).toBeGreaterThan(9.9e12);
    expect(shards).toBeLessThanOrEqual(10_000);
    expect(maxMs).toBeLessThanOrEqual(DEFAULT_SHARD_BUDGET_MS);
    // Not absurdly many either: the total estimate over the budget, within 10%.
    const totalMs = shardCostMs(EFS_RATES, files, total);
    expect(shards).toBeLessThan((totalMs / DEFAULT_SHARD_BUDGET_MS) * 1.1 + 1);
  }, 120_000);

  it('in count mode cuts N shards of about equal estimated time', () => {
    const rows = [...syntheticListing(10_000, 10_000 * 200_000)];
    const totalMs = rows.reduce((sum, r) => sum + shardCostMs(EFS_RATES, r.readFiles, r.readBytes), 0);
    for (const n of [1, 2, 4, 7]) {
      const shards = cutShards(rows, { ...EFS_RATES, shards: n, totalMs });
      expect(shards).toHaveLength(n);
      expect(shards.reduce((s, x) => s + x.rows, 0)).toBe(rows.length);
      for (const s of shards) expect(s.estimatedMs).toBeLessThan((totalMs / n) * 1.05 + 10_000);
    }
  });

  it('count mode gives at most one shard per row', () => {
    const rows = [...syntheticListing(3, 3000)];
    const totalMs = rows.reduce((sum, r) => sum + shardCostMs(EFS_RATES, r.readFiles, r.readBytes), 0);
    expect(cutShards(rows, { ...EFS_RATES, shards: 8, totalMs }).map((s) => s.rows)).toEqual([1, 1, 1]);
  });

  it('closes a shard at the row limit even when it costs no reading time (unchanged files)', () => {
    const rows = Array.from({ length: 25 }, (_, i) => ({ path: pathOf(i), readFiles: 0, readBytes: 0 }));
    const shards = cutShards(rows, { ...EFS_RATES, maxRowsPerShard: 10 });
    expect(shards.map((s) => s.rows)).toEqual([10, 10, 5]);
  });

  it('refuses a file that alone does not fit one shard, naming it', () => {
    const rows = [{ path: 'videos/huge.mp4', readFiles: 1, readBytes: 40e9 }];
    expect(() => cutShards(rows, EFS_RATES)).toThrow(ShardPlanError);
    expect(() => cutShards(rows, EFS_RATES)).toThrow(
      /"videos\/huge.mp4" \(40.0 GB\) alone needs about 1333 s/,
    );
  });

  it('refuses a plan that needs more shards than the Distributed Map allows', () => {
    const rows = Array.from({ length: 200 }, (_, i) => ({ path: pathOf(i), readFiles: 1, readBytes: 1e9 }));
    expect(() => cutShards(rows, { ...EFS_RATES, budgetMs: 40_000, maxShards: 150 })).toThrow(
      /more than 150 shards \(the Distributed Map's limit per run\)/,
    );
    expect(MAX_SHARDS).toBeLessThanOrEqual(9_999);
  });

  it('refuses rows out of path order or duplicated', () => {
    const cutter = new ShardCutter(EFS_RATES);
    cutter.add({ path: 'b', readFiles: 1, readBytes: 1 });
    expect(() => cutter.add({ path: 'a', readFiles: 1, readBytes: 1 })).toThrow(/path order/);
    expect(() => cutter.add({ path: 'b', readFiles: 1, readBytes: 1 })).toThrow(/path order/);
  });

  it('rejects invalid options with messages naming the value', () => {
    expect(() => new ShardCutter({ ...EFS_RATES, shards: 0, totalMs: 1 })).toThrow(
      /shards must be a whole number from 1 to 9999 \(got 0\)/,
    );
    expect(() => new ShardCutter({ ...EFS_RATES, shards: 2 })).toThrow(/totalMs/);
    expect(() => new ShardCutter({ perFileMs: 1, bytesPerSecond: 0 })).toThrow(/bytesPerSecond 0/);
  });
});
