import { Duration } from 'aws-cdk-lib';
import { Metric } from 'aws-cdk-lib/aws-cloudwatch';

/** CloudWatch namespace of every metric the media-backup functions publish (EMF, powertools Metrics). */
export const METRIC_NAMESPACE = 'MediaBackup';

/** The one dimension of every media-backup metric; its value is the function's `STACK_NAME`. */
export const STACK_DIMENSION = 'Stack';

/**
 * The metrics the handlers publish, by the function that publishes them. The names are a contract
 * with `lambda/handlers` (powertools Metrics): renaming one here silently empties its alarm.
 */
export const METRIC_NAMES = {
  backup: [
    'BackupSucceeded',
    'BackupFailed',
    'ArchiveBytes',
    'SourceBytes',
    'ChangedFiles',
    'DurationSeconds',
  ],
  verify: ['VerifyFailures'],
  // HoursSinceLastBackup is left out while no committed backup exists: missing data is an alarm.
  monitor: ['HoursSinceLastBackup', 'HealthCritical', 'HealthWarning'],
  notify: ['NotificationFailures'],
} as const;

/** Any metric name of {@link METRIC_NAMES}. */
export type BackupMetricName = (typeof METRIC_NAMES)[keyof typeof METRIC_NAMES][number];

/** How a metric is aggregated per period. */
export interface BackupMetricOptions {
  /**
   * CloudWatch statistic (`Sum`, `Maximum`, `Average`, ...).
   *
   * @default 'Sum'
   */
  readonly statistic?: string;

  /**
   * Aggregation period.
   *
   * @default Duration.minutes(5)
   */
  readonly period?: Duration;

  /**
   * Label in graphs.
   *
   * @default - none (graphs show the metric name)
   */
  readonly label?: string;
}

/**
 * The custom metrics of one deployment (namespace `MediaBackup`, dimension `Stack`), defined once
 * and shared by the alarms and the dashboard.
 */
export class BackupMetrics {
  constructor(
    /** The deployment's `STACK_NAME`: the value of the `Stack` dimension. */
    readonly stackName: string,
  ) {}

  /** The metric `name` of this deployment. */
  public metric(name: BackupMetricName, options: BackupMetricOptions = {}): Metric {
    return new Metric({
      namespace: METRIC_NAMESPACE,
      metricName: name,
      dimensionsMap: { [STACK_DIMENSION]: this.stackName },
      statistic: options.statistic ?? 'Sum',
      period: options.period ?? Duration.minutes(5),
      // A label would turn an alarm's metric into the `Metrics` array form; graphs show the name anyway.
      ...(options.label === undefined ? {} : { label: options.label }),
    });
  }

  /** Age of the newest committed backup in hours, as the hourly monitor last measured it. */
  public hoursSinceLastBackup(period = Duration.hours(1)): Metric {
    return this.metric('HoursSinceLastBackup', { statistic: 'Maximum', period });
  }

  /** Backup runs that failed. */
  public backupFailed(period = Duration.minutes(5)): Metric {
    return this.metric('BackupFailed', { period });
  }

  /** Backup runs that committed. */
  public backupSucceeded(period = Duration.minutes(5)): Metric {
    return this.metric('BackupSucceeded', { period });
  }

  /** Backups a verify run found damaged. */
  public verifyFailures(period = Duration.minutes(5)): Metric {
    return this.metric('VerifyFailures', { period });
  }

  /** Critical findings of the monitor's last run (stale, missing, empty or shrunken backups). */
  public healthCritical(period = Duration.hours(1)): Metric {
    return this.metric('HealthCritical', { statistic: 'Maximum', period });
  }

  /** Warnings of the monitor's last run. */
  public healthWarning(period = Duration.hours(1)): Metric {
    return this.metric('HealthWarning', { statistic: 'Maximum', period });
  }

  /** Emails the notify function failed to send. */
  public notificationFailures(period = Duration.minutes(5)): Metric {
    return this.metric('NotificationFailures', { period });
  }
}
