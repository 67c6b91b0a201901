/**
 * Wall-clock times around daylight-saving changes. EventBridge Scheduler runs a cron schedule at a
 * local time in its time zone; on the day that time does not exist (spring forward) the run is
 * skipped, and on the day it exists twice (fall back) it is ambiguous. These functions find such
 * days with `Intl` alone (the zone rules of the Node.js ICU data), no library and no network.
 */

/**
 * The daily backup time when none is configured: clear of every zone's daylight-saving changes in
 * the current zone data (02:00-02:59 is skipped in spring in the US and most of Europe, 01:00-01:59
 * repeats in the US in autumn, 03:00-03:59 changes in Eastern Europe, 00:00 and 23:00 in Chile,
 * Egypt, Lebanon and Cuba; 04:00-20:59 change nowhere).
 */
export const DEFAULT_BACKUP_TIME = '04:00';

/** A local day on which a wall-clock time does not exist, or exists twice. */
export interface LocalTimeConflict {
  /** The local date, `YYYY-MM-DD`. */
  readonly date: string;
  /** `gap`: the clocks skip the time; `repeat`: the clocks pass it twice. */
  readonly kind: 'gap' | 'repeat';
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let format = formatters.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, format);
  }
  return format;
}

/** The zone's offset from UTC (ms) at instant `utcMs`. */
function offsetAt(timeZone: string, utcMs: number): number {
  const parts = Object.fromEntries(
    formatter(timeZone)
      .formatToParts(new Date(utcMs))
      .filter((part) => part.type !== 'literal')
      .map((part) => [part.type, Number(part.value)]),
  ) as Record<'year' | 'month' | 'day' | 'hour' | 'minute' | 'second', number>;
  const asUtc = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second);
  return asUtc - Math.floor(utcMs / 1000) * 1000;
}

/**
 * How many instants show the wall-clock time `wallMs` (a local date and time written as if it were
 * UTC) in `timeZone`: 0 in a spring-forward gap, 2 in a fall-back repeat, otherwise 1. Zone changes
 * are at least a day apart, so the offsets a day before and after are the only candidates.
 */
export function instantsAt(timeZone: string, wallMs: number): number {
  const candidates = new Set([offsetAt(timeZone, wallMs - DAY_MS), offsetAt(timeZone, wallMs + DAY_MS)]);
  let count = 0;
  for (const offset of candidates) {
    if (offsetAt(timeZone, wallMs - offset) === offset) count++;
  }
  return count;
}

/**
 * The days in `[from, from + days)` (local dates in `timeZone`) on which `hour:minute` falls into a
 * daylight-saving gap or repeat.
 *
 * @throws RangeError when `timeZone` is not a zone the runtime knows
 */
export function localTimeConflicts(
  time: { readonly hour: number; readonly minute: number },
  timeZone: string,
  from: Date,
  days = 366,
): LocalTimeConflict[] {
  const start = offsetAt(timeZone, from.getTime()) + from.getTime();
  const first = new Date(start);
  const conflicts: LocalTimeConflict[] = [];
  for (let day = 0; day < days; day++) {
    const wallMs = Date.UTC(
      first.getUTCFullYear(),
      first.getUTCMonth(),
      first.getUTCDate() + day,
      time.hour,
      time.minute,
    );
    const instants = instantsAt(timeZone, wallMs);
    if (instants !== 1) {
      conflicts.push({
        date: new Date(wallMs).toISOString().slice(0, 10),
        kind: instants === 0 ? 'gap' : 'repeat',
      });
    }
  }
  return conflicts;
}
