import type { Leftover, ObjectStore } from '../../store/types.js';
import type { Clock, Logger } from '../deps.js';
import { errorMessage } from '../errors.js';
import {
  archiveBytesOf,
  archiveRecordOf,
  archivesReferenced,
  type BackupMetadata,
  backupOfArchiveKey,
  type CatalogEntry,
  chainProblems,
  committedBackupsIn,
  expectedArchiveKeys,
  readManifest,
  readMetadata,
  readVerifiedDamage,
} from '../repository/catalog.js';
import { backupIdTime, STATUS_KEY, VERIFY_STATUS_KEY } from '../repository/layout.js';
import type { Manifest } from '../repository/manifest.js';
import type { LastRun } from '../repository/status.js';
import {
  type ClassifiedObject,
  listStoreObjects,
  OBJECT_CATEGORIES,
  usageReport,
} from '../repository/usage.js';
import { oldestNeverDeepVerified, runVerify, type VerifyRecord } from './verify.js';

export type HealthStatus = 'ok' | 'warning' | 'critical';

export type HealthCheckName =
  | 'backup-age'
  | 'last-run'
  | 'integrity'
  | 'deep-verify'
  | 'size'
  | 'shrink'
  | 'chain'
  | 'orphans'
  | 'storage'
  | 'efs-usage';

export interface HealthCheck {
  readonly name: HealthCheckName;
  readonly status: HealthStatus;
  /** One or two sentences for an operator: what was found and, when not ok, what to do. */
  readonly message: string;
  /** The measured value, when there is one (hours, percent, bytes, count). */
  readonly value?: number | null;
}

export interface HealthReport {
  /** The worst status of all checks. */
  readonly status: HealthStatus;
  readonly store: string;
  readonly checkedAt: string;
  readonly checks: readonly HealthCheck[];
  readonly metrics: {
    /** Null when no committed backup exists (the monitor then omits the metric: missing = breaching). */
    readonly hoursSinceLastBackup: number | null;
    readonly critical: number;
    readonly warning: number;
    readonly storeBytes: number;
    /** Null when the file system size was not available. */
    readonly efsBytes: number | null;
  };
}

/** Where the file system's metered size comes from (EFS DescribeFileSystems in Lambda). */
export interface EfsUsageSource {
  /** Bytes used, or undefined when not available. */
  usedBytes(): Promise<number | undefined>;
}

export interface HealthDeps {
  readonly store: ObjectStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly efs?: EfsUsageSource;
}

export interface HealthOptions {
  /** Critical when the latest committed backup is older. @default 48 */
  readonly maxBackupAgeHours?: number;
  /** Warning when the latest committed backup is older (a daily schedule plus slack). @default min(26, maxBackupAgeHours) */
  readonly warnBackupAgeHours?: number;
  /** A full archive smaller than this is critical, unless the tree itself is tiny. @default 1_000_000 */
  readonly minBackupBytes?: number;
  /** Trees below this many bytes are exempt from `minBackupBytes`. @default 10_000_000 */
  readonly tinyTreeBytes?: number;
  /** Critical when files or bytes dropped by more than this percent (warning above half of it). @default 50 */
  readonly maxShrinkPercent?: number;
  /** The latest backup is compared with the largest backup of this many days before it. @default 7 */
  readonly shrinkWindowDays?: number;
  /** Archives without a manifest older than this are reported as orphans. @default 24 */
  readonly orphanAgeHours?: number;
  /** Partial files / multipart uploads of killed runs not written for this long are reported. @default 30 */
  readonly leftoverAgeMinutes?: number;
  /** A broken chain is critical for backups younger than this, a warning for older ones. @default 30 */
  readonly retentionDays?: number;
  /** Warning when the file system uses more. @default no threshold */
  readonly efsWarnBytes?: number;
  /** Check the latest backup's chain (objects present, sizes as recorded). @default true */
  readonly verifyLatest?: boolean;
  /**
   * Also re-read the latest archive to compare its sha256. Off by default: the monitor runs hourly,
   * and reading a large STANDARD_IA archive every hour costs retrieval fees. @default false
   */
  readonly hashLatest?: boolean;
  /** A recorded deep verify older than this is a warning. @default 8 */
  readonly maxVerifyAgeDays?: number;
}

/** Where a verify's outcome is recorded, when whoever ran it may write to the store. */
export { VERIFY_STATUS_KEY };

/** `status/last-verify.json`. */
export interface LastVerify {
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly deep: boolean;
  readonly checkedAt: string;
  /** Archive key -> when it was last deep-verified (rotating verify; absent in older records). */
  readonly deepVerified?: Readonly<Record<string, string>>;
  readonly backups: readonly {
    readonly backupId: string;
    readonly ok: boolean;
    readonly problems: readonly string[];
  }[];
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const RANK: Record<HealthStatus, number> = { ok: 0, warning: 1, critical: 2 };

/** Context shared by the checks: one listing, manifests and metadata read at most once. */
class StoreView {
  private readonly manifests = new Map<string, Promise<Manifest>>();
  private readonly metadata = new Map<string, Promise<BackupMetadata | undefined>>();
  readonly keys: ReadonlySet<string>;
  private readonly sizes: ReadonlyMap<string, number>;
  readonly committed: readonly CatalogEntry[];

  constructor(
    readonly store: ObjectStore,
    readonly objects: readonly ClassifiedObject[],
  ) {
    this.keys = new Set(objects.map((o) => o.key));
    this.sizes = new Map(objects.map((o) => [o.key, o.size]));
    this.committed = committedBackupsIn(objects);
  }

  manifest(entry: CatalogEntry): Promise<Manifest> {
    let p = this.manifests.get(entry.backupId);
    if (!p) {
      p = readManifest(this.store, entry);
      this.manifests.set(entry.backupId, p);
    }
    return p;
  }

  meta(entry: CatalogEntry): Promise<BackupMetadata | undefined> {
    let p = this.metadata.get(entry.backupId);
    if (!p) {
      p = readMetadata(this.store, entry);
      this.metadata.set(entry.backupId, p);
    }
    return p;
  }

  size(key: string): number | undefined {
    return this.sizes.get(key);
  }

  /** The committed backup an archive key (single archive or part) belongs to. */
  holderOf(key: string): CatalogEntry | undefined {
    const owner = backupOfArchiveKey(key);
    return owner
      ? this.committed.find((c) => c.backupId === owner.backupId && c.type === owner.type)
      : undefined;
  }
}

/**
 * The monitor's checks (the original monitor.sh, per backup store). Listing the store must work;
 * otherwise this throws (the monitor's own failure). A check that cannot finish for another reason
 * reports a warning saying why, and the other checks still run.
 */
export async function runHealthChecks(deps: HealthDeps, options: HealthOptions = {}): Promise<HealthReport> {
  const now = deps.clock.now();
  const o = {
    maxBackupAgeHours: options.maxBackupAgeHours ?? 48,
    warnBackupAgeHours: options.warnBackupAgeHours ?? Math.min(26, options.maxBackupAgeHours ?? 48),
    minBackupBytes: options.minBackupBytes ?? 1_000_000,
    tinyTreeBytes: options.tinyTreeBytes ?? 10_000_000,
    maxShrinkPercent: options.maxShrinkPercent ?? 50,
    shrinkWindowDays: options.shrinkWindowDays ?? 7,
    orphanAgeHours: options.orphanAgeHours ?? 24,
    leftoverAgeMinutes: options.leftoverAgeMinutes ?? 30,
    retentionDays: options.retentionDays ?? 30,
    efsWarnBytes: options.efsWarnBytes,
    verifyLatest: options.verifyLatest ?? true,
    hashLatest: options.hashLatest ?? false,
    maxVerifyAgeDays: options.maxVerifyAgeDays ?? 8,
  };
  const view = new StoreView(deps.store, await listStoreObjects(deps.store));
  const latest = view.committed.at(-1);
  const hoursSinceLastBackup = latest
    ? Number(((now.getTime() - backupIdTime(latest.backupId).getTime()) / HOUR_MS).toFixed(2))
    : null;

  const guarded = async (name: HealthCheckName, check: () => Promise<HealthCheck>): Promise<HealthCheck> => {
    try {
      return await check();
    } catch (error) {
      deps.logger.warn('health check could not finish', { check: name, error: errorMessage(error) });
      return {
        name,
        status: 'warning',
        message: `The ${name} check could not finish: ${errorMessage(error)}.`,
      };
    }
  };

  const checks: HealthCheck[] = [];
  checks.push(checkBackupAge(view, latest, hoursSinceLastBackup, o));
  checks.push(await guarded('last-run', () => checkLastRun(view)));
  if (o.verifyLatest && latest)
    checks.push(await guarded('integrity', () => checkIntegrity(deps, view, latest, o)));
  checks.push(await guarded('deep-verify', () => checkDeepVerify(view, now, o.maxVerifyAgeDays)));
  checks.push(await guarded('size', () => checkSize(view, o)));
  checks.push(await guarded('shrink', () => checkShrink(view, o)));
  checks.push(await guarded('chain', () => checkChain(view, now, o.retentionDays)));
  checks.push(
    await guarded('orphans', async () =>
      checkOrphans(view, now, o.orphanAgeHours, await staleLeftovers(deps.store, now, o.leftoverAgeMinutes)),
    ),
  );
  const usage = usageReport(deps.store.url, view.objects, now);
  checks.push({
    name: 'storage',
    status: 'ok',
    message: `The store holds ${formatBytes(usage.total.bytes)} in ${usage.total.objects} objects (${OBJECT_CATEGORIES.filter(
      (c) => usage.byType[c].objects > 0,
    )
      .map((c) => `${c} ${formatBytes(usage.byType[c].bytes)}`)
      .join(', ')}); ${formatBytes(usage.lastWeek.bytes)} written in the last 7 days.`,
    value: usage.total.bytes,
  });
  let efsBytes: number | null = null;
  if (deps.efs) {
    const efs = deps.efs;
    const check = await guarded('efs-usage', async () => {
      const used = await efs.usedBytes();
      if (used === undefined) {
        return {
          name: 'efs-usage',
          status: 'ok',
          message: 'The file system did not report its size.',
          value: null,
        };
      }
      efsBytes = used;
      if (o.efsWarnBytes !== undefined && used > o.efsWarnBytes) {
        return {
          name: 'efs-usage',
          status: 'warning',
          message: `The media file system uses ${formatBytes(used)}, above the warning threshold of ${formatBytes(o.efsWarnBytes)}: look for runaway uploads or left-over restores (restores/, *.pre-restore-*), or raise EFS_WARN_BYTES.`,
          value: used,
        };
      }
      return {
        name: 'efs-usage',
        status: 'ok',
        message: `The media file system uses ${formatBytes(used)}${o.efsWarnBytes !== undefined ? ` (warning above ${formatBytes(o.efsWarnBytes)})` : ''}.`,
        value: used,
      };
    });
    checks.push(check);
  }

  const status = checks.reduce<HealthStatus>(
    (worst, c) => (RANK[c.status] > RANK[worst] ? c.status : worst),
    'ok',
  );
  const report: HealthReport = {
    status,
    store: deps.store.url,
    checkedAt: now.toISOString(),
    checks,
    metrics: {
      hoursSinceLastBackup,
      critical: checks.filter((c) => c.status === 'critical').length,
      warning: checks.filter((c) => c.status === 'warning').length,
      storeBytes: usage.total.bytes,
      efsBytes,
    },
  };
  // info, not warn: the report carries the findings; drivers (CLI) print it themselves.
  deps.logger.info(`health ${status}`, {
    problems: checks.filter((c) => c.status !== 'ok').map((c) => `${c.name}: ${c.message}`),
  });
  return report;
}

function checkBackupAge(
  view: StoreView,
  latest: CatalogEntry | undefined,
  hours: number | null,
  o: { maxBackupAgeHours: number; warnBackupAgeHours: number },
): HealthCheck {
  if (!latest || hours === null) {
    return {
      name: 'backup-age',
      status: 'critical',
      message: `There is no committed backup in ${view.store.url}: nothing could be restored. Run a full backup and read the backup function's log if it fails.`,
      value: null,
    };
  }
  const age = `The latest committed backup, ${latest.backupId} (${latest.type}), is ${hours.toFixed(1)} h old`;
  if (hours > o.maxBackupAgeHours) {
    return {
      name: 'backup-age',
      status: 'critical',
      message: `${age}, more than the ${o.maxBackupAgeHours} h allowed: backups have stopped. See the last-run check and the backup function's log.`,
      value: hours,
    };
  }
  if (hours > o.warnBackupAgeHours) {
    return {
      name: 'backup-age',
      status: 'warning',
      message: `${age}; the daily backup looks late (critical after ${o.maxBackupAgeHours} h).`,
      value: hours,
    };
  }
  return { name: 'backup-age', status: 'ok', message: `${age}.`, value: hours };
}

async function checkLastRun(view: StoreView): Promise<HealthCheck> {
  const raw = await view.store.get(STATUS_KEY);
  if (!raw) {
    return {
      name: 'last-run',
      status: 'warning',
      message: `No backup run is recorded (${STATUS_KEY} is missing): the backup has never run against this store.`,
    };
  }
  let run: LastRun;
  try {
    run = JSON.parse(raw.toString('utf8')) as LastRun;
  } catch {
    return {
      name: 'last-run',
      status: 'warning',
      message: `${STATUS_KEY} is not valid JSON, so the last run's outcome is unknown; the next backup rewrites it.`,
    };
  }
  if (run.status === 'FAILED') {
    const error = run.error ? `${run.error.name}: ${run.error.message}` : 'no error recorded';
    return {
      name: 'last-run',
      status: 'critical',
      message: `The last backup run failed (started ${run.startedAt}, ended ${run.finishedAt}): ${error}`,
    };
  }
  const warnings = Array.isArray(run.warnings)
    ? (run.warnings as { message?: unknown }[]).map((w) => String(w?.message ?? w))
    : [];
  if (run.status === 'SUCCEEDED' && warnings.length > 0) {
    return {
      name: 'last-run',
      status: 'warning',
      message: `The last backup run committed at ${run.finishedAt}${run.backupId ? ` (${run.backupId})` : ''} with ${warnings.length} warning(s): ${warnings.join('; ')}`,
      value: warnings.length,
    };
  }
  if (run.status === 'SUCCEEDED') {
    return {
      name: 'last-run',
      status: 'ok',
      message: `The last backup run succeeded at ${run.finishedAt}${run.backupId ? ` (${run.backupId})` : ''}.`,
    };
  }
  return {
    name: 'last-run',
    status: 'warning',
    message: `${STATUS_KEY} records an unknown status ${JSON.stringify(run.status)}.`,
  };
}

async function checkIntegrity(
  deps: HealthDeps,
  view: StoreView,
  latest: CatalogEntry,
  o: { hashLatest: boolean },
): Promise<HealthCheck> {
  const problems: string[] = [];
  let referenced: string[];
  try {
    referenced = archivesReferenced(await view.manifest(latest));
  } catch (error) {
    return {
      name: 'integrity',
      status: 'critical',
      message: `The latest backup ${latest.backupId} cannot be restored: ${errorMessage(error)}. Take a new full backup.`,
    };
  }
  const notes: string[] = [];
  const own = await view.meta(latest);
  // A restore needs only the manifest and the archives; without metadata, sizes cannot be compared.
  if (!own)
    notes.push(
      `its metadata ${latest.metadataKey} is missing or unreadable, so the archive size was not compared`,
    );
  // Every archive of its own (each part of a sharded backup, per its metadata), then those of its chain.
  const ownKeys = expectedArchiveKeys(latest, own);
  for (const key of ownKeys) {
    const size = view.size(key);
    const record = own ? archiveRecordOf(own, key) : undefined;
    if (size === undefined) problems.push(`its archive ${key} is missing`);
    else if (record && size !== record.bytes) {
      problems.push(`its archive ${key} is ${size} bytes; the metadata recorded ${record.bytes}`);
    }
  }
  const ownSet = new Set(ownKeys);
  for (const key of referenced) {
    if (ownSet.has(key)) continue;
    const stored = view.size(key);
    if (stored === undefined) {
      problems.push(`archive ${key}, which holds some of its files, is missing`);
      continue;
    }
    const holder = view.holderOf(key);
    const meta = holder ? await view.meta(holder) : undefined;
    const record = meta ? archiveRecordOf(meta, key) : undefined;
    if (record && record.bytes !== stored) {
      problems.push(`archive ${key} is ${stored} bytes; its metadata recorded ${record.bytes}`);
    }
  }
  // A backup verify found damaged stays damaged until a verify of it passes.
  const damaged = await readVerifiedDamage(view.store);
  const chainIds = new Set([latest.backupId]);
  for (const key of referenced) {
    const holder = view.holderOf(key);
    if (holder) chainIds.add(holder.backupId);
  }
  for (const id of [...chainIds].sort()) {
    const verdict = damaged.get(id);
    if (verdict !== undefined) {
      problems.push(
        `verify found backup ${id}${id === latest.backupId ? '' : ', whose archive it needs,'} damaged (${verdict})`,
      );
    }
  }
  if (o.hashLatest && problems.length === 0) {
    const result = await runVerify(deps, { backup: latest.backupId, record: false });
    for (const b of result.backups) for (const problem of b.problems) problems.push(problem);
  }
  if (problems.length > 0) {
    const good = await newestRestorable(view, latest, damaged);
    const fallback = good
      ? `The newest backup that looks restorable is ${good}: restore from it if needed.`
      : 'No earlier backup looks restorable either.';
    return {
      name: 'integrity',
      status: 'critical',
      message: `The latest backup ${latest.backupId} cannot be fully restored: ${problems.join('; ')}. ${fallback} Take a new full backup and find out what removed or changed the objects.`,
      value: problems.length,
    };
  }
  if (notes.length > 0) {
    return {
      name: 'integrity',
      status: 'warning',
      message: `The latest backup ${latest.backupId} and the ${referenced.length} archive(s) it needs are present, but ${notes.join('; ')}.`,
      value: 0,
    };
  }
  return {
    name: 'integrity',
    status: 'ok',
    message: `The latest backup ${latest.backupId} and the ${referenced.length} archive(s) it needs are present with their recorded sizes${o.hashLatest ? ' and sha256' : ''}.`,
    value: 0,
  };
}

/**
 * The newest committed backup before `latest` whose chain passes the cheap checks (archives present
 * with their recorded sizes, nothing verify found damaged); undefined when none does.
 */
async function newestRestorable(
  view: StoreView,
  latest: CatalogEntry,
  damaged: ReadonlyMap<string, string>,
): Promise<string | undefined> {
  const lookup = { size: async (key: string) => view.size(key), metadata: (e: CatalogEntry) => view.meta(e) };
  for (let i = view.committed.length - 1; i >= 0; i--) {
    const entry = view.committed[i];
    if (entry.backupId >= latest.backupId) continue;
    try {
      const manifest = await view.manifest(entry);
      if ((await chainProblems(entry, manifest, view.committed, lookup, damaged)).length === 0) {
        return entry.backupId;
      }
    } catch {
      // An unreadable manifest: not restorable; look further back.
    }
  }
  return undefined;
}

async function checkDeepVerify(view: StoreView, now: Date, maxAgeDays: number): Promise<HealthCheck> {
  const raw = await view.store.get(VERIFY_STATUS_KEY);
  if (!raw) {
    return {
      name: 'deep-verify',
      // Not a warning: a new store has none until the first weekly drill, and a warning for that
      // week would only teach people to ignore HealthWarning.
      status: 'ok',
      message: `No verify is recorded in the store yet (${VERIFY_STATUS_KEY}): the weekly scheduled restore drill writes it (its failures also alarm through the VerifyFailures metric); "media-backup verify --deep" runs the drill now.`,
    };
  }
  const record = JSON.parse(raw.toString('utf8')) as LastVerify;
  const ageDays = (now.getTime() - Date.parse(record.checkedAt)) / DAY_MS;
  if (record.status === 'FAILED') {
    const problems = record.backups.flatMap((b) => b.problems);
    return {
      name: 'deep-verify',
      status: 'critical',
      message: `The ${record.deep ? 'deep ' : ''}verify of ${record.checkedAt} found problems: ${problems.join('; ') || 'none listed'}. Do not rely on those backups; take a new full backup.`,
      value: problems.length,
    };
  }
  if (!(ageDays <= maxAgeDays)) {
    return {
      name: 'deep-verify',
      status: 'warning',
      message: `The last recorded verify passed, but it ran ${record.checkedAt}, more than ${maxAgeDays} days ago: the weekly drill is not running.`,
      value: Number(ageDays.toFixed(2)),
    };
  }
  // Rotating deep verify records which archives it deep-verified (issue 12): name the oldest not yet.
  const never = record.deepVerified
    ? oldestNeverDeepVerified(view.committed, record as VerifyRecord)
    : undefined;
  return {
    name: 'deep-verify',
    status: 'ok',
    message: `The ${record.deep ? 'deep ' : ''}verify of ${record.checkedAt} passed for ${record.backups.length} backup(s).${record.deepVerified ? (never ? ` Oldest archive never deep-verified: ${never.archiveKey} (${never.backupId}).` : ' Every archive has been deep-verified.') : ''}`,
    value: Number(ageDays.toFixed(2)),
  };
}

async function checkSize(
  view: StoreView,
  o: { minBackupBytes: number; tinyTreeBytes: number },
): Promise<HealthCheck> {
  const latest = view.committed.at(-1);
  if (!latest) return { name: 'size', status: 'ok', message: 'No backup to check yet (see backup-age).' };
  const latestMeta = await view.meta(latest);
  if (latestMeta && latestMeta.totals.files === 0) {
    return {
      name: 'size',
      status: 'critical',
      message: `The latest backup ${latest.backupId} holds no files: the media folder was empty or not mounted when it ran. Check the folder and the file system mount before the next backup.`,
      value: 0,
    };
  }
  const full = view.committed.filter((c) => c.type === 'full').at(-1);
  if (!full) return { name: 'size', status: 'ok', message: 'No full backup to check yet.' };
  const meta = full === latest ? latestMeta : await view.meta(full);
  if (!meta) {
    return {
      name: 'size',
      status: 'warning',
      message: `The metadata of the latest full backup ${full.backupId} is missing or unreadable, so its size cannot be checked.`,
    };
  }
  const archive = archiveBytesOf(meta);
  if (archive < o.minBackupBytes && meta.totals.bytes >= o.tinyTreeBytes) {
    return {
      name: 'size',
      status: 'critical',
      message: `The latest full backup ${full.backupId} is only ${formatBytes(archive)} although the tree held ${formatBytes(meta.totals.bytes)} in ${meta.totals.files} files (minimum ${formatBytes(o.minBackupBytes)}): the archive is suspiciously small. Verify it and take a new full backup.`,
      value: archive,
    };
  }
  const small =
    archive < o.minBackupBytes
      ? `; the tree is small (${formatBytes(meta.totals.bytes)}), so that is expected`
      : '';
  return {
    name: 'size',
    status: 'ok',
    message: `The latest full backup ${full.backupId} is ${formatBytes(archive)} for ${meta.totals.files} files (${formatBytes(meta.totals.bytes)})${small}.`,
    value: archive,
  };
}

async function checkShrink(
  view: StoreView,
  o: { maxShrinkPercent: number; shrinkWindowDays: number },
): Promise<HealthCheck> {
  const latest = view.committed.at(-1);
  if (!latest) return { name: 'shrink', status: 'ok', message: 'No backup to compare yet.' };
  const latestMeta = await view.meta(latest);
  if (!latestMeta) {
    return {
      name: 'shrink',
      status: 'warning',
      message: `The metadata of the latest backup ${latest.backupId} is missing or unreadable, so its size cannot be compared.`,
    };
  }
  // Against the largest backup of the window before it, not only the previous one: after a wipe,
  // the next backup of the empty folder must not make the loss look normal.
  const since = backupIdTime(latest.backupId).getTime() - o.shrinkWindowDays * DAY_MS;
  const earlier = view.committed.filter(
    (c) => c.backupId < latest.backupId && backupIdTime(c.backupId).getTime() >= since,
  );
  let worst: { backupId: string; percent: number; what: string } | undefined;
  const totals = new Map<string, { files: number; bytes: number }>();
  for (const entry of earlier) {
    const meta = await view.meta(entry);
    if (!meta) continue;
    totals.set(entry.backupId, meta.totals);
    for (const [before, after, show] of [
      [meta.totals.files, latestMeta.totals.files, (n: number) => `${n} file${n === 1 ? '' : 's'}`],
      [meta.totals.bytes, latestMeta.totals.bytes, formatBytes],
    ] as const) {
      if (before <= 0) continue;
      const percent = ((before - after) / before) * 100;
      if (!worst || percent > worst.percent) {
        worst = {
          backupId: entry.backupId,
          percent,
          what: `${show(after)} now vs ${show(before)} in ${entry.backupId}`,
        };
      }
    }
  }
  if (!worst) {
    return {
      name: 'shrink',
      status: 'ok',
      message: `No earlier backup within ${o.shrinkWindowDays} days to compare ${latest.backupId} with.`,
    };
  }
  const percent = Number(Math.max(0, worst.percent).toFixed(1));
  if (worst.percent > o.maxShrinkPercent) {
    // Restore from the newest backup taken before the shrink, not the largest (often the oldest) one:
    // the newest whose files and bytes are both within the allowed shrink of the largest.
    const largest = totals.get(worst.backupId);
    const within = (after: number, before: number) =>
      before <= 0 || ((before - after) / before) * 100 <= o.maxShrinkPercent;
    const newestGood =
      [...earlier].reverse().find((e) => {
        const t = totals.get(e.backupId);
        return t && largest && within(t.files, largest.files) && within(t.bytes, largest.bytes);
      })?.backupId ?? worst.backupId;
    return {
      name: 'shrink',
      status: 'critical',
      message: `The media tree shrank by ${percent}% (${worst.what}), more than the ${o.maxShrinkPercent}% allowed: a wiped or unmounted media folder looks like this. Check the folder; restore from ${newestGood}, the newest backup before the shrink, if the files were lost.`,
      value: percent,
    };
  }
  if (worst.percent > o.maxShrinkPercent / 2) {
    return {
      name: 'shrink',
      status: 'warning',
      message: `The media tree shrank by ${percent}% (${worst.what}); critical above ${o.maxShrinkPercent}%. Make sure the deletions were intended.`,
      value: percent,
    };
  }
  return {
    name: 'shrink',
    status: 'ok',
    message: `The media tree did not shrink notably (at most ${percent}% against the backups of the last ${o.shrinkWindowDays} days).`,
    value: percent,
  };
}

async function checkChain(view: StoreView, now: Date, retentionDays: number): Promise<HealthCheck> {
  const critical: string[] = [];
  const expiring: string[] = [];
  for (const entry of view.committed) {
    const young = now.getTime() - backupIdTime(entry.backupId).getTime() < retentionDays * DAY_MS;
    const bucket = young ? critical : expiring;
    let referenced: string[];
    try {
      referenced = archivesReferenced(await view.manifest(entry));
    } catch (error) {
      bucket.push(`${entry.backupId}: ${errorMessage(error)}`);
      continue;
    }
    // Its own archives per its metadata too: a part holding only folders is named by no file row.
    const own = expectedArchiveKeys(entry, await view.meta(entry));
    const needed = [...new Set([...own, ...referenced])].sort();
    const missing = needed.filter((key) => !view.keys.has(key));
    if (missing.length > 0) bucket.push(`${entry.backupId} needs missing ${missing.join(', ')}`);
  }
  if (critical.length > 0) {
    return {
      name: 'chain',
      status: 'critical',
      message: `${critical.length} backup(s) younger than ${retentionDays} days cannot be restored: ${critical.join('; ')}. Take a new full backup; find out what removed the objects (the lifecycle should not, this early).`,
      value: critical.length,
    };
  }
  if (expiring.length > 0) {
    return {
      name: 'chain',
      status: 'warning',
      message: `${expiring.length} backup(s) older than ${retentionDays} days are no longer complete (${expiring.join('; ')}); the lifecycle is removing their chain and will remove them too.`,
      value: expiring.length,
    };
  }
  return {
    name: 'chain',
    status: 'ok',
    message: `All ${view.committed.length} committed backup(s) have every archive they reference.`,
    value: 0,
  };
}

/**
 * Partial files and multipart uploads of killed runs (kill -9, a Lambda timeout) that nothing has
 * written for `ageMinutes`: longer than a 15-minute invocation plus the lock TTL, so a run still
 * writing is never reported. The next backup removes them; until then they cost storage unseen.
 */
async function staleLeftovers(store: ObjectStore, now: Date, ageMinutes: number): Promise<Leftover[]> {
  const all = (await store.listLeftovers?.()) ?? [];
  return all.filter((l) => now.getTime() - l.since.getTime() >= ageMinutes * 60_000);
}

function checkOrphans(
  view: StoreView,
  now: Date,
  orphanAgeHours: number,
  leftovers: readonly Leftover[] = [],
): HealthCheck {
  const committed = new Set(view.committed.map((c) => c.backupId));
  const orphans = new Map<string, { bytes: number; newest: number }>();
  let recent = 0;
  for (const object of view.objects) {
    if (object.backupId === undefined || committed.has(object.backupId)) continue;
    if (now.getTime() - object.lastModified.getTime() < orphanAgeHours * HOUR_MS) {
      recent += 1;
      continue;
    }
    const o = orphans.get(object.backupId) ?? { bytes: 0, newest: 0 };
    o.bytes += object.size;
    o.newest = Math.max(o.newest, object.lastModified.getTime());
    orphans.set(object.backupId, o);
  }
  const running =
    recent > 0 ? ` (${recent} newer uncommitted object(s) may belong to a run in progress)` : '';
  const messages: string[] = [];
  if (orphans.size > 0) {
    const bytes = [...orphans.values()].reduce((sum, o) => sum + o.bytes, 0);
    messages.push(
      `${orphans.size} aborted run(s) left objects without a manifest, older than ${orphanAgeHours} h (${formatBytes(bytes)}): ${[...orphans.keys()].join(', ')}. They are never restored from; the lifecycle removes them, or delete them by hand${running}.`,
    );
  }
  if (leftovers.length > 0) {
    const bytes = leftovers.reduce((sum, l) => sum + l.bytes, 0);
    const names = leftovers.map((l) => (l.kind === 'partial-file' ? l.id : `${l.key} (multipart upload)`));
    messages.push(
      `${leftovers.length} leftover(s) of killed runs (${formatBytes(bytes)}, oldest from ${leftovers[0]?.since.toISOString()}): ${names.join(', ')}. Nothing reads them; the next backup removes them.`,
    );
  }
  if (messages.length > 0) {
    return {
      name: 'orphans',
      status: 'warning',
      message: messages.join(' '),
      value: orphans.size + leftovers.length,
    };
  }
  return { name: 'orphans', status: 'ok', message: `No orphaned archives${running}.`, value: 0 };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
