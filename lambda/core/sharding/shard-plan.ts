/**
 * Cutting a backup into shards (issue 14). A shard is a contiguous range of the plan's rows in path
 * order, so every row is in exactly one shard, a part archive holds one stretch of the tree, and a
 * partial restore touches few parts. Each shard is sized through the time model (per-file cost and
 * byte throughput) to finish well inside one Lambda invocation. The cutter sees one row at a time and
 * keeps only the shard being filled: its memory does not depend on the tree.
 */
import { MediaBackupError } from '../errors.js';

/** The Distributed Map's limit is 10,000 child executions per run; part keys have 4 digits. */
export const MAX_SHARDS = 9_999;
/**
 * Rows (manifest entries) a shard holds at most, whatever the time model says: the shard function
 * keeps its rows in memory (~250 B each, so ~50 MB), and a shard of only unchanged files costs no
 * reading time at all.
 */
export const MAX_ROWS_PER_SHARD = 200_000;
/**
 * Time budget of one shard when none is given: 9 of the 15 minutes an invocation may last. The rest
 * is margin for a slower-than-measured file system, S3 and the part's checks.
 */
export const DEFAULT_SHARD_BUDGET_MS = 9 * 60 * 1000;

/** What one plan row costs: a folder, link or unchanged file costs nothing to read. */
export interface PlanRowCost {
  readonly path: string;
  /** 1 when the row is a file whose bytes are read into the part, else 0. */
  readonly readFiles: number;
  /** Bytes read from the source for this row. */
  readonly readBytes: number;
}

export interface ShardRates {
  /** Cost of opening and checking one file, ms (the scan's measurement, time-model.ts). */
  readonly perFileMs: number;
  /** Read + compress + upload throughput, bytes per second. */
  readonly bytesPerSecond: number;
}

export interface ShardCutOptions extends ShardRates {
  /**
   * Target estimated time of one shard, ms. With `shards`, the total estimate divided by it (then
   * never above this budget). @default DEFAULT_SHARD_BUDGET_MS
   */
  readonly budgetMs?: number;
  /** Exactly this many shards (fewer when there are fewer rows): the CLI's `--shards N`. Needs `totalMs`. */
  readonly shards?: number;
  /** Estimated time of all rows, ms: needed with `shards` (a first pass counts it). */
  readonly totalMs?: number;
  /** @default MAX_ROWS_PER_SHARD */
  readonly maxRowsPerShard?: number;
  /** @default MAX_SHARDS */
  readonly maxShards?: number;
}

export interface ShardRange {
  /** 1-based. */
  readonly index: number;
  readonly firstPath: string;
  readonly lastPath: string;
  readonly rows: number;
  readonly files: number;
  readonly bytes: number;
  readonly estimatedMs: number;
}

/** The plan cannot be cut into shards that each fit one invocation (or into at most MAX_SHARDS). */
export class ShardPlanError extends MediaBackupError {
  override readonly name = 'ShardPlanError';
}

/** Estimated time of reading `files` files of `bytes` bytes at `rates`, ms. */
export function shardCostMs(rates: ShardRates, files: number, bytes: number): number {
  return files * rates.perFileMs + (bytes / rates.bytesPerSecond) * 1000;
}

/**
 * Cuts rows (in path order) into shards, one row at a time: `add` returns the shard it closed, if
 * any; `finish` the last one. Time-budget mode (no `shards`): a shard closes when the next row would
 * take it over the budget. Count mode (`shards` and `totalMs`): shard k closes once the running
 * estimate passes k/N of the total, so N shards of about equal time.
 */
export class ShardCutter {
  private readonly budgetMs: number;
  private readonly maxRows: number;
  private readonly maxShards: number;
  private readonly targetMs: number | undefined;
  private current:
    | { firstPath: string; lastPath: string; rows: number; files: number; bytes: number }
    | undefined;
  private index = 0;
  private doneMs = 0;
  private previousPath: string | undefined;

  constructor(private readonly options: ShardCutOptions) {
    const { perFileMs, bytesPerSecond } = options;
    if (!(perFileMs >= 0) || !(bytesPerSecond > 0)) {
      throw new RangeError(
        `shard rates must be positive (perFileMs ${perFileMs}, bytesPerSecond ${bytesPerSecond})`,
      );
    }
    this.budgetMs = options.budgetMs ?? DEFAULT_SHARD_BUDGET_MS;
    this.maxRows = options.maxRowsPerShard ?? MAX_ROWS_PER_SHARD;
    this.maxShards = options.maxShards ?? MAX_SHARDS;
    if (!(this.budgetMs > 0)) throw new RangeError(`shard budget must be positive (got ${this.budgetMs} ms)`);
    if (options.shards !== undefined) {
      if (!Number.isInteger(options.shards) || options.shards < 1 || options.shards > this.maxShards) {
        throw new RangeError(
          `shards must be a whole number from 1 to ${this.maxShards} (got ${options.shards})`,
        );
      }
      if (!(options.totalMs !== undefined && options.totalMs >= 0)) {
        throw new RangeError('shards needs totalMs, the estimate of the whole plan');
      }
      this.targetMs = options.totalMs / options.shards;
    }
  }

  /** Shards closed so far. */
  get closed(): number {
    return this.index;
  }

  add(row: PlanRowCost): ShardRange | undefined {
    if (this.previousPath !== undefined && !(row.path > this.previousPath)) {
      throw new ShardPlanError(
        `plan rows must come in path order without duplicates: ${JSON.stringify(row.path)} after ${JSON.stringify(this.previousPath)}`,
      );
    }
    this.previousPath = row.path;
    const rowMs = shardCostMs(this.options, row.readFiles, row.readBytes);
    if (rowMs > this.budgetMs) {
      throw new ShardPlanError(
        `${JSON.stringify(row.path)} (${(row.readBytes / 1e9).toFixed(1)} GB) alone needs about ${Math.round(rowMs / 1000)} s to read at ${(this.options.bytesPerSecond / 1e6).toFixed(0)} MB/s, more than one shard's budget of ${Math.round(this.budgetMs / 1000)} s: no invocation can archive it. Back this tree up with the CLI on a host that mounts the file system, or exclude the file.`,
      );
    }
    let closed: ShardRange | undefined;
    const c = this.current;
    if (c) {
      const currentMs = shardCostMs(this.options, c.files, c.bytes);
      const overBudget = currentMs + rowMs > this.budgetMs;
      const overRows = c.rows + 1 > this.maxRows;
      // Count mode: close when this shard has reached its share of the total (never the last one).
      const reachedShare =
        this.targetMs !== undefined &&
        this.index + 1 < (this.options.shards ?? 1) &&
        this.doneMs + currentMs >= this.targetMs * (this.index + 1) &&
        rowMs + currentMs > 0;
      if (overBudget || overRows || reachedShare) closed = this.close();
    }
    if (!this.current)
      this.current = { firstPath: row.path, lastPath: row.path, rows: 0, files: 0, bytes: 0 };
    const open = this.current;
    open.lastPath = row.path;
    open.rows += 1;
    open.files += row.readFiles;
    open.bytes += row.readBytes;
    return closed;
  }

  /** Closes the last shard (undefined when there were no rows at all). */
  finish(): ShardRange | undefined {
    return this.current ? this.close() : undefined;
  }

  private close(): ShardRange {
    const c = this.current as NonNullable<ShardCutter['current']>;
    this.current = undefined;
    this.index += 1;
    if (this.index > this.maxShards) {
      throw new ShardPlanError(
        `the plan needs more than ${this.maxShards} shards (the Distributed Map's limit per run) at a budget of ${Math.round(this.budgetMs / 1000)} s per shard: exclude part of the tree, or take the first full with the CLI on a host that mounts the file system`,
      );
    }
    const estimatedMs = shardCostMs(this.options, c.files, c.bytes);
    this.doneMs += estimatedMs;
    return { index: this.index, ...c, estimatedMs };
  }
}

/** All shards of an iterable of rows (tests and small plans; the planner streams through ShardCutter). */
export function cutShards(rows: Iterable<PlanRowCost>, options: ShardCutOptions): ShardRange[] {
  const cutter = new ShardCutter(options);
  const out: ShardRange[] = [];
  for (const row of rows) {
    const closed = cutter.add(row);
    if (closed) out.push(closed);
  }
  const last = cutter.finish();
  if (last) out.push(last);
  return out;
}
