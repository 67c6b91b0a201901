import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { BackupSucceeded } from '../core/archiver/backup.js';
import type { HealthReport } from '../core/checker/health.js';
import type { VerifyResult } from '../core/checker/verify.js';

/** CloudWatch namespace of every metric the functions emit. */
export const METRICS_NAMESPACE = 'MediaBackup';
/** The only dimension: alarms select their stack's metrics with `{ Stack: <stack name> }`. */
export const STACK_DIMENSION = 'Stack';
/** Dimension value when `STACK_NAME` is not set (local runs, tests). */
export const UNKNOWN_STACK = 'local';

/** Metric names, shared with the stack's alarms. */
export const METRIC = {
  backupSucceeded: 'BackupSucceeded',
  backupFailed: 'BackupFailed',
  archiveBytes: 'ArchiveBytes',
  sourceBytes: 'SourceBytes',
  changedFiles: 'ChangedFiles',
  durationSeconds: 'DurationSeconds',
  verifyFailures: 'VerifyFailures',
  hoursSinceLastBackup: 'HoursSinceLastBackup',
  healthCritical: 'HealthCritical',
  healthWarning: 'HealthWarning',
} as const;

type Env = Readonly<Record<string, string | undefined>>;

/**
 * A powertools Metrics (EMF on stdout) for one invocation, namespace {@link METRICS_NAMESPACE}, with
 * `Stack` from `STACK_NAME` as the only dimension. powertools adds a `service` dimension by default;
 * it is removed so that an alarm needs to name only the stack. Built per invocation, like the logger.
 */
export function invocationMetrics(env: Env = process.env): Metrics {
  const metrics = new Metrics({ namespace: METRICS_NAMESPACE });
  metrics.clearDefaultDimensions();
  metrics.setDefaultDimensions({ [STACK_DIMENSION]: env.STACK_NAME?.trim() || UNKNOWN_STACK });
  return metrics;
}

/** A committed backup: success count, sizes and duration. */
export function recordBackupSucceeded(metrics: Metrics, result: BackupSucceeded, durationMs: number): void {
  metrics.addMetric(METRIC.backupSucceeded, MetricUnit.Count, 1);
  metrics.addMetric(METRIC.backupFailed, MetricUnit.Count, 0);
  metrics.addMetric(METRIC.archiveBytes, MetricUnit.Bytes, result.archiveBytes);
  metrics.addMetric(METRIC.sourceBytes, MetricUnit.Bytes, result.bytes);
  metrics.addMetric(METRIC.changedFiles, MetricUnit.Count, result.changedFiles);
  metrics.addMetric(METRIC.durationSeconds, MetricUnit.Seconds, durationMs / 1000);
}

/** A failed backup invocation (whatever failed: event, config, source, store, deadline). */
export function recordBackupFailed(metrics: Metrics, durationMs: number): void {
  metrics.addMetric(METRIC.backupSucceeded, MetricUnit.Count, 0);
  metrics.addMetric(METRIC.backupFailed, MetricUnit.Count, 1);
  metrics.addMetric(METRIC.durationSeconds, MetricUnit.Seconds, durationMs / 1000);
}

/**
 * Backups that failed verification; 0 when all passed. A verify that could not run at all (no
 * backup, store unreadable) counts as one failure: the drill did not prove anything restorable.
 */
export function recordVerifyOutcome(metrics: Metrics, result: VerifyResult | undefined): void {
  const failures = result ? result.backups.filter((b) => !b.ok).length : 1;
  metrics.addMetric(METRIC.verifyFailures, MetricUnit.Count, failures);
}

/**
 * The monitor's report. `HoursSinceLastBackup` is left out when no committed backup exists, so the
 * age alarm (missing data = breaching) fires instead of seeing a reassuring number.
 */
export function recordHealth(metrics: Metrics, report: HealthReport): void {
  if (report.metrics.hoursSinceLastBackup !== null) {
    metrics.addMetric(METRIC.hoursSinceLastBackup, MetricUnit.NoUnit, report.metrics.hoursSinceLastBackup);
  }
  metrics.addMetric(METRIC.healthCritical, MetricUnit.Count, report.metrics.critical);
  metrics.addMetric(METRIC.healthWarning, MetricUnit.Count, report.metrics.warning);
}
