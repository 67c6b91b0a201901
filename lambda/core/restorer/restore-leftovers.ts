import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { backupIdTime } from '../repository/layout.js';

/** Suffixes a restore gives the folders it creates beside its target. */
const STAGING = '.restore-staging-';
const PRE_RESTORE = '.pre-restore-';

export interface RestoreLeftover {
  /** Absolute path of the folder beside the target. */
  readonly path: string;
  /**
   * `staging`: what a restore extracted before it was killed (or its cleanup failed).
   * `pre-restore`: the live tree a `--replace` restore moved aside.
   */
  readonly kind: 'staging' | 'pre-restore';
  /** When it was made: the stamp in a pre-restore name (UTC), else the folder's mtime. */
  readonly createdAt: Date;
  readonly ageMs: number;
  /** Bytes of the regular files inside; null when the folder could not be read completely. */
  readonly bytes: number | null;
  readonly files: number | null;
  /** What it is and whether to keep it, for an operator. */
  readonly advice: string;
}

/**
 * Folders that earlier restores left beside `targetDir` (`DIR.restore-staging-*`, `DIR.pre-restore-*`),
 * oldest first, with age and size, so an operator knows what to keep and what to delete. A restore
 * killed between its two renames leaves the target missing with both beside it: the advice says so.
 */
export async function findRestoreLeftovers(targetDir: string, now: Date): Promise<RestoreLeftover[]> {
  const target = path.resolve(targetDir);
  const parent = path.dirname(target);
  const base = path.basename(target);
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return [];
  }
  const targetExists = await lstat(target).then(
    () => true,
    () => false,
  );
  const out: RestoreLeftover[] = [];
  for (const name of names) {
    const kind = name.startsWith(`${base}${STAGING}`)
      ? 'staging'
      : name.startsWith(`${base}${PRE_RESTORE}`)
        ? 'pre-restore'
        : undefined;
    if (!kind) continue;
    const abs = path.join(parent, name);
    const st = await lstat(abs).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    const stamped = kind === 'pre-restore' ? stampTime(name.slice(base.length + PRE_RESTORE.length)) : null;
    const createdAt = stamped ?? st.mtime;
    const size = await measure(abs);
    const when = createdAt.toISOString();
    const advice =
      kind === 'staging'
        ? targetExists
          ? `an interrupted restore's unfinished, unverified copy (last written ${when}); the live tree ${target} was not touched by it: safe to delete`
          : `the fully extracted tree of a restore that was stopped while swapping it in (${when}); ${target} is missing: check it and move it to ${target}, or restore again`
        : targetExists
          ? `the tree that was live at ${target} before a --replace restore at ${when}: keep it until the restored tree is checked, then delete it`
          : `the tree that was live at ${target} before a --replace restore at ${when}, which was stopped while swapping; ${target} is missing: move this back to ${target} to undo the restore`;
    out.push({
      path: abs,
      kind,
      createdAt,
      ageMs: Math.max(0, now.getTime() - createdAt.getTime()),
      ...size,
      advice,
    });
  }
  return out.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.path < b.path ? -1 : 1));
}

/** `YYYYMMDD_HHMMSS` (UTC) as restore stamps pre-restore copies; null for anything else. */
function stampTime(stamp: string): Date | null {
  if (!/^\d{8}_\d{6}$/.test(stamp)) return null;
  const time = backupIdTime(`backup_${stamp}`);
  return Number.isNaN(time.getTime()) ? null : time;
}

/** Files and bytes below `dir`, without following links; nulls when any folder cannot be read. */
async function measure(dir: string): Promise<{ bytes: number | null; files: number | null }> {
  let bytes = 0;
  let files = 0;
  const pending = [dir];
  try {
    while (pending.length > 0) {
      const current = pending.pop()!;
      for (const d of await readdir(current, { withFileTypes: true })) {
        const p = path.join(current, d.name);
        if (d.isDirectory()) pending.push(p);
        else if (d.isFile()) {
          files += 1;
          bytes += (await lstat(p)).size;
        }
      }
    }
  } catch {
    return { bytes: null, files: null };
  }
  return { bytes, files };
}
