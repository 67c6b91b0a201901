import { Logger } from '@aws-lambda-powertools/logger';
import { DescribeFileSystemsCommand, EFSClient } from '@aws-sdk/client-efs';
import type { Context } from 'aws-lambda';
import {
  type EfsUsageSource,
  type HealthOptions,
  type HealthReport,
  runHealthChecks,
} from '../core/checker/health.js';
import { systemClock } from '../core/deps.js';
import { openHandlerStore, readHandlerConfig } from './config.js';
import { HandlerConfigError } from './errors.js';
import { parseMonitorEvent } from './events.js';
import { invocationMetrics, recordHealth } from './metrics.js';

type Env = Readonly<Record<string, string | undefined>>;

/** The monitor's thresholds and the file system it measures, from its environment. */
export interface MonitorConfig {
  readonly health: HealthOptions;
  /** `FILE_SYSTEM_ID`: the media file system, for its metered size; unset = no EFS usage check. */
  readonly fileSystemId: string | undefined;
}

export function readMonitorConfig(env: Env = process.env): MonitorConfig {
  const fileSystemId = env.FILE_SYSTEM_ID?.trim() || undefined;
  if (fileSystemId !== undefined && !/^fs-[0-9a-f]{8,40}$/.test(fileSystemId)) {
    throw new HandlerConfigError(
      `environment variable FILE_SYSTEM_ID must be an EFS file system id such as fs-0123456789abcdef0 (got ${JSON.stringify(fileSystemId)})`,
    );
  }
  return {
    fileSystemId,
    health: {
      maxBackupAgeHours: positiveNumber(env, 'MAX_BACKUP_AGE_HOURS', 48, 'hours'),
      minBackupBytes: positiveNumber(env, 'MIN_BACKUP_BYTES', 1_000_000, 'bytes'),
      maxShrinkPercent: positiveNumber(env, 'MAX_SHRINK_PERCENT', 50, 'percent'),
      retentionDays: positiveNumber(env, 'RETENTION_DAYS', 30, 'days'),
      efsWarnBytes: env.EFS_WARN_BYTES?.trim()
        ? positiveNumber(env, 'EFS_WARN_BYTES', 0, 'bytes')
        : undefined,
    },
  };
}

/**
 * Hourly health check of the backup store (and the media file system's size). Event: `{}`.
 * Publishes HoursSinceLastBackup, HealthCritical and HealthWarning, and returns the report. A
 * critical finding is not an error of this function: the alarms on those metrics do the alerting.
 * It throws only when it cannot check at all (configuration, store unreachable).
 */
export const handler = async (event: unknown = {}, context: Context): Promise<HealthReport> => {
  parseMonitorEvent(event);
  const config = readHandlerConfig();
  const monitor = readMonitorConfig();
  const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME || 'media-backup' });
  logger.addContext(context);
  logger.appendKeys({ operation: 'monitor', requestId: context.awsRequestId });
  const store = openHandlerStore(config);
  const efsClient = monitor.fileSystemId ? new EFSClient({}) : undefined;
  try {
    const report = await runHealthChecks(
      {
        store,
        clock: systemClock,
        logger,
        efs: efsClient && monitor.fileSystemId ? efsUsage(efsClient, monitor.fileSystemId) : undefined,
      },
      monitor.health,
    );
    const metrics = invocationMetrics();
    recordHealth(metrics, report);
    metrics.publishStoredMetrics();
    logger.info('health checked', { status: report.status, metrics: report.metrics });
    return report;
  } finally {
    store.client.destroy();
    efsClient?.destroy();
  }
};

/** The file system's metered size (DescribeFileSystems `SizeInBytes.Value`, updated by EFS about hourly). */
export function efsUsage(client: EFSClient, fileSystemId: string): EfsUsageSource {
  return {
    usedBytes: async () => {
      const out = await client.send(new DescribeFileSystemsCommand({ FileSystemId: fileSystemId }));
      return out.FileSystems?.[0]?.SizeInBytes?.Value;
    },
  };
}

function positiveNumber(env: Env, name: string, fallback: number, unit: string): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || !Number.isFinite(n) || n <= 0) {
    throw new HandlerConfigError(
      `environment variable ${name} must be a positive number of ${unit} (got ${JSON.stringify(raw)})`,
    );
  }
  return n;
}
