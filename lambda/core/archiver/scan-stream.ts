/**
 * The source tree as a stream of entries in manifest order, holding only the listings on the path
 * from the root to the folder being read (issue 14: the sharded planner's memory must not grow with
 * the tree). It yields exactly what {@link scanTree} returns in `entries`, in the same order, without
 * ever holding the whole tree: `scanTree` keeps ~2 KB per file until its final sort.
 *
 * Order: manifests sort by code unit of the whole relative path, so a depth-first walk must place a
 * folder's subtree where `name + '/'` sorts among its siblings, while the folder's own entry sorts at
 * `name`: `a` (folder), `a-b`, `a/x`, because '-' (0x2D) < '/' (0x2F). Every path below `a` starts
 * with `a/`, and no sibling name contains `/`, so the subtree is one contiguous run that sorts
 * exactly where the key `a/` does. Each folder's listing is therefore sorted once by these keys and
 * walked in that order, a subtree run expanding in place.
 */
import path from 'node:path';
import { comparePaths } from '../repository/manifest.js';
import {
  asyncOps,
  describeFsError,
  exclusionRules,
  type FsOps,
  resolveSourceRoot,
  type ScannedEntry,
  type ScanOptions,
  type SkippedPath,
  sourceError,
  syncOps,
  toEntry,
} from './scan.js';

export interface StreamingScanOptions extends ScanOptions {
  /**
   * With `concurrentIo`: subfolders of each folder on the walk's path listed and stat'ed ahead of
   * the walk, so their round trips overlap (EFS). Each read-ahead holds one listing; none starts
   * while {@link READ_AHEAD_ITEM_CAP} items are already held. Ignored without `concurrentIo`.
   * @default 8
   */
  readonly lookaheadDirs?: number;
}

export interface StreamingScan {
  /** Absolute, symlink-free path of the scanned root (as `ScanResult.root`). */
  readonly root: string;
  /** The root folder's own mode and mtime, read before the walk (as `ScanResult.rootMeta`). */
  readonly rootMeta?: { readonly mode: number; readonly mtimeMs: number };
  /**
   * Entries in exactly the order and with exactly the content `scanTree(...).entries` has.
   * Iterate once: a second call throws. Throws the signal's reason when the signal aborts, and a
   * `SourceError` when the root cannot be listed.
   */
  entries(): AsyncGenerator<ScannedEntry>;
  /** Filled as the walk goes; complete, and sorted by path, once `entries()` has finished. */
  readonly skipped: SkippedPath[];
  /** Paths left out on purpose so far (--exclude, the store's own folder); final once `entries()` has finished. */
  excluded(): number;
  /** Items (entries and pending subtrees) held in listings right now: what the walk's memory follows. */
  bufferedItems(): number;
  /** The most items held at once so far. */
  peakBufferedItems(): number;
}

/** Read-ahead default: folders listed ahead per level of the walk. */
export const DEFAULT_LOOKAHEAD_DIRS = 8;
/**
 * No read-ahead starts while this many items are held (~10-20 MB of entries): a few huge sibling
 * folders are then read one at a time, as without read-ahead, instead of all at once.
 */
export const READ_AHEAD_ITEM_CAP = 50_000;

/** A folder whose listing comes later: its key in the parent's listing is `name + '/'`. */
class Subtree {
  constructor(
    readonly abs: string,
    readonly rel: string,
    /** Position among the parent's subfolders, in walk order. */
    readonly ordinal: number,
  ) {}
}
type Item = ScannedEntry | Subtree;

/** One folder on the walk's path: its sorted listing, how far the walk is, its read-aheads. */
interface Frame {
  readonly items: (Item | undefined)[];
  next: number;
  readonly subtrees: Subtree[];
  /** Ordinal of the next subfolder to read ahead. */
  nextReadAhead: number;
  readonly readAhead: Map<Subtree, Promise<Item[]>>;
}

/**
 * Starts a streaming scan: resolves and checks the root (a `SourceError` as `scanTree` throws) and
 * reads its mode and mtime; the walk itself runs as `entries()` is iterated.
 */
export async function scanTreeStream(
  source: string,
  options: StreamingScanOptions = {},
): Promise<StreamingScan> {
  const root = await resolveSourceRoot(source);
  const { isExcluded, excludeAbsolute } = await exclusionRules(options);
  const concurrency = options.statConcurrency ?? 16;
  const io: FsOps = options.concurrentIo ? asyncOps : syncOps;
  // Synchronous calls block the thread: reading ahead would only reorder them.
  const lookahead = options.concurrentIo ? (options.lookaheadDirs ?? DEFAULT_LOOKAHEAD_DIRS) : 0;
  if (!Number.isSafeInteger(lookahead) || lookahead < 0) {
    throw new RangeError(
      `\`lookaheadDirs\` must be a whole number of at least 0 (got ${options.lookaheadDirs})`,
    );
  }
  const { signal } = options;
  const rootStat = await io.lstat(root);
  const rootMeta = { mode: rootStat.mode & 0o7777, mtimeMs: rootStat.mtimeMs };
  const skipped: SkippedPath[] = [];
  let excluded = 0;
  let buffered = 0;
  let peak = 0;
  let started = false;

  /** Lists one folder and stats its entries; returns them sorted by walk key, with their subtrees. */
  const readFolder = async (absDir: string, relDir: string): Promise<Item[]> => {
    signal?.throwIfAborted();
    let names: string[];
    try {
      names = await io.readdir(absDir);
    } catch (error) {
      if (relDir === '') throw sourceError(source, error);
      skipped.push({ path: relDir, reason: describeFsError(error) });
      return [];
    }
    const keyed: { key: string; item: ScannedEntry | { abs: string; rel: string } }[] = [];
    const readOne = async (name: string): Promise<void> => {
      const rel = relDir ? `${relDir}/${name}` : name;
      const abs = path.join(absDir, name);
      if (isExcluded(rel) || excludeAbsolute.has(abs)) {
        excluded += 1;
        return;
      }
      let entry: ScannedEntry | SkippedPath;
      try {
        entry = await toEntry(rel, abs, await io.lstat(abs), io);
      } catch (error) {
        // Vanished between readdir and lstat, or not accessible.
        skipped.push({ path: rel, reason: describeFsError(error) });
        return;
      }
      if ('reason' in entry) {
        skipped.push(entry);
        return;
      }
      keyed.push({ key: name, item: entry });
      if (entry.type === 'dir') keyed.push({ key: `${name}/`, item: { abs, rel } });
    };
    if (options.concurrentIo) {
      for (let i = 0; i < names.length; i += concurrency) {
        signal?.throwIfAborted();
        await Promise.all(names.slice(i, i + concurrency).map(readOne));
      }
    } else {
      for (const name of names) await readOne(name);
    }
    keyed.sort((a, b) => comparePaths(a.key, b.key));
    let ordinal = 0;
    const items = keyed.map(({ item }) =>
      'type' in item ? item : new Subtree(item.abs, item.rel, ordinal++),
    );
    buffered += items.length;
    if (buffered > peak) peak = buffered;
    return items;
  };

  const frameOf = (items: Item[]): Frame => {
    const frame: Frame = {
      items,
      next: 0,
      subtrees: items.filter((i): i is Subtree => i instanceof Subtree),
      nextReadAhead: 0,
      readAhead: new Map(),
    };
    topUpReadAhead(frame);
    return frame;
  };

  const topUpReadAhead = (frame: Frame): void => {
    while (
      frame.readAhead.size < lookahead &&
      frame.nextReadAhead < frame.subtrees.length &&
      buffered < READ_AHEAD_ITEM_CAP
    ) {
      const subtree = frame.subtrees[frame.nextReadAhead++];
      const listing = readFolder(subtree.abs, subtree.rel);
      // Awaited when the walk reaches it; until then a failure (abort) must not be unhandled.
      listing.catch(() => {});
      frame.readAhead.set(subtree, listing);
    }
  };

  /** The listing of `subtree`: read ahead, or read now; tops up the parent's read-ahead meanwhile. */
  const descend = (frame: Frame, subtree: Subtree): Promise<Item[]> => {
    let listing = frame.readAhead.get(subtree);
    if (listing) frame.readAhead.delete(subtree);
    else {
      listing = readFolder(subtree.abs, subtree.rel);
      listing.catch(() => {});
      frame.nextReadAhead = Math.max(frame.nextReadAhead, subtree.ordinal + 1);
    }
    topUpReadAhead(frame);
    return listing;
  };

  async function* entries(): AsyncGenerator<ScannedEntry> {
    if (started)
      throw new Error(`the streaming scan of ${root} was already iterated: start a new scanTreeStream`);
    started = true;
    // The frames hold, for each folder from the root to the one being read, its listing's rest.
    const frames: Frame[] = [frameOf(await readFolder(root, ''))];
    while (frames.length > 0) {
      const frame = frames[frames.length - 1];
      if (frame.next === frame.items.length) {
        frames.pop();
        continue;
      }
      const item = frame.items[frame.next]!;
      frame.items[frame.next] = undefined;
      frame.next += 1;
      buffered -= 1;
      signal?.throwIfAborted();
      if (item instanceof Subtree) frames.push(frameOf(await descend(frame, item)));
      else yield item;
    }
    skipped.sort((a, b) => comparePaths(a.path, b.path));
  }

  return {
    root,
    rootMeta,
    entries,
    skipped,
    excluded: () => excluded,
    bufferedItems: () => buffered,
    peakBufferedItems: () => peak,
  };
}
