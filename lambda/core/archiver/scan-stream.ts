/**
 * The source tree as a stream of entries in manifest order, holding only the listings on the path
 * from the root to the folder being read (issue 14: the sharded planner's memory must not grow with
 * the tree). It yields exactly what {@link scanTree} returns in `entries`, in the same order, without
 * ever holding the whole tree: `scanTree` holds every entry until its final sort (57 MB of heap for
 * 202,020 entries, measured here; this walk 5 MB with synchronous calls, 16 MB with read-ahead).
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
   * With `concurrentIo`: folders listed and stat'ed at once ahead of the walk, the next ones in walk
   * order first, so their round trips overlap (EFS). Ignored without `concurrentIo` (synchronous
   * calls block the thread: reading ahead would only reorder them). 0 reads each folder when the
   * walk reaches it.
   * @default 8
   */
  readonly lookaheadDirs?: number;
  /**
   * With `concurrentIo`: no read-ahead starts while this many items (entries and subfolders) of
   * folders read ahead wait for the walk. Bounds the read-ahead's memory (~280 bytes an item) when
   * the consumer is slower than the listing.
   * @default 10000
   */
  readonly lookaheadItems?: number;
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
  /**
   * Items (entries and subfolders still to walk) held right now: the rest of each listing on the
   * walk's path plus the listings read ahead. What the walk's memory follows.
   */
  bufferedItems(): number;
  /** The most items held at once so far. */
  peakBufferedItems(): number;
}

export const DEFAULT_LOOKAHEAD_DIRS = 8;
export const DEFAULT_LOOKAHEAD_ITEMS = 10_000;

/** A folder whose listing comes later: its place in the parent's listing is the key `name + '/'`. */
class Subtree {
  /** Its listing once a read started (ahead of the walk, or when the walk reached it). */
  listing?: Promise<Item[]>;
  /** The walk has reached it: its listing belongs to the walk's path, no longer to the read-ahead. */
  entered = false;
  /** Items of its listing counted as read ahead (until the walk enters it). */
  aheadItems = 0;
  /** Its walk key: the walk enters folders in the code-unit order of `rel + '/'`. */
  readonly key: string;
  constructor(
    readonly abs: string,
    readonly rel: string,
  ) {
    this.key = `${rel}/`;
  }
}
type Item = ScannedEntry | Subtree;

/**
 * Starts a streaming scan: resolves and checks the root (a `SourceError` as `scanTree` throws) and
 * reads its mode and mtime; the walk itself runs as `entries()` is iterated.
 *
 * Memory: the items held are the rest of each listing on the walk's path (at most the largest
 * listing times the depth), plus with `concurrentIo` the folders read ahead: below
 * `lookaheadItems` when a read-ahead starts, so at most `lookaheadItems` + `lookaheadDirs` x the
 * largest listing.
 */
export async function scanTreeStream(
  source: string,
  options: StreamingScanOptions = {},
): Promise<StreamingScan> {
  const lookaheadDirs = options.concurrentIo ? (options.lookaheadDirs ?? DEFAULT_LOOKAHEAD_DIRS) : 0;
  const lookaheadItems = options.lookaheadItems ?? DEFAULT_LOOKAHEAD_ITEMS;
  for (const [name, value] of [
    ['lookaheadDirs', lookaheadDirs],
    ['lookaheadItems', lookaheadItems],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`\`${name}\` must be a whole number of at least 0 (got ${value})`);
    }
  }
  const root = await resolveSourceRoot(source);
  const { isExcluded, excludeAbsolute } = await exclusionRules(options);
  const concurrency = options.statConcurrency ?? 16;
  const io: FsOps = options.concurrentIo ? asyncOps : syncOps;
  const { signal } = options;
  const rootStat = await io.lstat(root);
  const rootMeta = { mode: rootStat.mode & 0o7777, mtimeMs: rootStat.mtimeMs };
  const skipped: SkippedPath[] = [];
  let excluded = 0;
  let buffered = 0;
  let peak = 0;
  let started = false;
  let closed = false;

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
    const keyed: { key: string; item: Item }[] = [];
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
      if (entry.type === 'dir') keyed.push({ key: `${name}/`, item: new Subtree(abs, rel) });
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
    const items = keyed.map(({ item }) => item);
    buffered += items.length;
    if (buffered > peak) peak = buffered;
    if (lookaheadDirs > 0) for (const item of items) if (item instanceof Subtree) toRead.push(item);
    return items;
  };

  // Read-ahead: folders not yet read, the next in walk order first; at most `lookaheadDirs` reads
  // in flight, none started while `lookaheadItems` items read ahead wait for the walk.
  const toRead = new SubtreeHeap();
  let readsInFlight = 0;
  let heldAhead = 0;
  const readAhead = (): void => {
    // Folders the walk entered before a read-ahead got to them are the heap's smallest keys (all
    // others are ahead of the walk): drop them now, so the heap holds only folders still to read.
    while (toRead.peek()?.entered) toRead.pop();
    while (
      !closed &&
      !signal?.aborted &&
      readsInFlight < lookaheadDirs &&
      heldAhead < lookaheadItems &&
      toRead.size > 0
    ) {
      const subtree = toRead.pop()!;
      if (subtree.entered) continue;
      readsInFlight += 1;
      subtree.listing = readFolder(subtree.abs, subtree.rel).then(
        (items) => {
          readsInFlight -= 1;
          if (!subtree.entered) {
            subtree.aheadItems = items.length;
            heldAhead += items.length;
          }
          readAhead();
          return items;
        },
        (error) => {
          readsInFlight -= 1;
          throw error;
        },
      );
      // Awaited when the walk reaches it; until then a failure (abort) must not be unhandled.
      subtree.listing.catch(() => {});
    }
  };

  /** The listing of `subtree` as the walk enters it: read ahead, or read now. */
  const enter = async (subtree: Subtree): Promise<Item[]> => {
    subtree.entered = true;
    subtree.listing ??= readFolder(subtree.abs, subtree.rel);
    readAhead();
    const items = await subtree.listing;
    subtree.listing = undefined; // the frame holds the items now
    heldAhead -= subtree.aheadItems;
    subtree.aheadItems = 0;
    readAhead();
    return items;
  };

  async function* entries(): AsyncGenerator<ScannedEntry> {
    if (started) {
      throw new Error(`the streaming scan of ${root} was already iterated: start a new scanTreeStream`);
    }
    started = true;
    try {
      // For each folder from the root to the one being walked: its listing and how far the walk is.
      const rootItems = await readFolder(root, '');
      readAhead();
      const frames: { items: (Item | undefined)[]; next: number }[] = [{ items: rootItems, next: 0 }];
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
        if (item instanceof Subtree) frames.push({ items: await enter(item), next: 0 });
        else yield item;
      }
      skipped.sort((a, b) => comparePaths(a.path, b.path));
    } finally {
      closed = true;
    }
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

/** Folders to read ahead, smallest walk key first (a binary min-heap). */
class SubtreeHeap {
  private readonly heap: Subtree[] = [];
  get size(): number {
    return this.heap.length;
  }
  peek(): Subtree | undefined {
    return this.heap[0];
  }
  push(subtree: Subtree): void {
    const heap = this.heap;
    heap.push(subtree);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent].key <= subtree.key) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = subtree;
  }
  pop(): Subtree | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && heap[right].key < heap[left].key ? right : left;
      if (heap[child].key >= last.key) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
    return top;
  }
}
