/**
 * A run's figures as CloudWatch custom metrics, in the embedded metric format: one JSON line
 * in the orchestrator's log, which CloudWatch Logs turns into metrics in the account's own
 * CloudWatch. Nothing is sent anywhere else.
 */
import type { RunRecord } from '@efs-backup/service';
import type { RunAttributes } from './run-item.js';

export const METRICS_NAMESPACE = 'EfsBackup';

/** Every metric is published with these dimensions: the source file system and the label. */
export const METRIC_DIMENSIONS = ['FileSystemId', 'Label'] as const;

export const BACKUP_METRICS = {
  NumberOfFiles: 'Count',
  NumberOfFilesTransferred: 'Count',
  NumberOfFilesLinked: 'Count',
  /** Unchanged files copied because a hard link failed (EFS: 177 links per file). */
  NumberOfFilesCopiedForLinkLimit: 'Count',
  /** Files copied anew because verify found their previous copy damaged. */
  NumberOfFilesRepaired: 'Count',
  /** Changed files that only a checksum run could see. */
  NumberOfFilesChangedByChecksum: 'Count',
  TotalFileSize: 'Bytes',
  TotalTransferredFileSize: 'Bytes',
  NumberOfWarnings: 'Count',
  SnapshotsPruned: 'Count',
  /** The workers the run was given (the template's Workers). */
  Workers: 'Count',
  DurationSeconds: 'Seconds',
  /** 1 for a run that committed a snapshot (Success, SuccessWithWarnings). */
  RunsSucceeded: 'Count',
  /** 1 for a run that stopped before it committed (Incomplete). */
  RunsIncomplete: 'Count',
  /** 1 for a run that failed, never reported or was skipped. */
  RunsFailed: 'Count',
} as const;

/**
 * The worker's figures of the file systems (RunAttributes), published when the run has them:
 * a run whose worker never started has none.
 */
export const FILE_SYSTEM_METRICS = {
  SourceFileSystemSize: 'Bytes',
  DestinationFileSystemSize: 'Bytes',
  SourceBurstCreditBalanceAtStart: 'Bytes',
  SourceBurstCreditBalanceAtEnd: 'Bytes',
} as const;

export type BackupMetric = keyof typeof BACKUP_METRICS;
export type FileSystemMetric = keyof typeof FILE_SYSTEM_METRICS;

export function metricValues(r: RunRecord): Record<BackupMetric, number> {
  const stop = r.StopTime ? Date.parse(r.StopTime) : Date.parse(r.StartTime);
  return {
    NumberOfFiles: r.NumberOfFiles,
    NumberOfFilesTransferred: r.NumberOfFilesTransferred,
    NumberOfFilesLinked: r.NumberOfFilesLinked,
    NumberOfFilesCopiedForLinkLimit: r.NumberOfFilesCopiedForLinkLimit ?? 0,
    NumberOfFilesRepaired: r.NumberOfFilesRepaired ?? 0,
    NumberOfFilesChangedByChecksum: r.NumberOfFilesChangedByChecksum ?? 0,
    TotalFileSize: r.TotalFileSize,
    TotalTransferredFileSize: r.TotalTransferredFileSize,
    NumberOfWarnings: r.NumberOfWarnings,
    SnapshotsPruned: r.SnapshotsPruned,
    Workers: r.Workers ?? 1,
    DurationSeconds: Math.max(0, Math.round((stop - Date.parse(r.StartTime)) / 1000)),
    RunsSucceeded: r.Status === 'Success' || r.Status === 'SuccessWithWarnings' ? 1 : 0,
    RunsIncomplete: r.Status === 'Incomplete' ? 1 : 0,
    RunsFailed: r.Status === 'Failed' || r.Status === 'Unknown' || r.Status === 'Skipped' ? 1 : 0,
  };
}

/**
 * The embedded-metric-format line of a run's figures; `figures` adds the worker's file-system
 * figures it has, and its instance type as a property (Logs Insights reads it, no metric).
 */
export function metricsLine(
  r: RunRecord,
  fileSystemId: string,
  at: Date,
  figures: Partial<RunAttributes> = {},
): string {
  const extra = Object.fromEntries(
    Object.keys(FILE_SYSTEM_METRICS)
      .map((k) => [k, figures[k as FileSystemMetric]] as const)
      .filter((e): e is readonly [string, number] => typeof e[1] === 'number'),
  );
  const units: Record<string, string> = { ...BACKUP_METRICS, ...FILE_SYSTEM_METRICS };
  return JSON.stringify({
    _aws: {
      Timestamp: at.getTime(),
      CloudWatchMetrics: [
        {
          Namespace: METRICS_NAMESPACE,
          Dimensions: [[...METRIC_DIMENSIONS]],
          Metrics: [...Object.keys(BACKUP_METRICS), ...Object.keys(extra)].map((Name) => ({
            Name,
            Unit: units[Name]!,
          })),
        },
      ],
    },
    FileSystemId: fileSystemId,
    Label: r.Label,
    BackupId: r.BackupId,
    Status: r.Status,
    ...(figures.InstanceType ? { InstanceType: figures.InstanceType } : {}),
    ...metricValues(r),
    ...extra,
  });
}
