/**
 * The backup's CloudWatch dashboard: both file systems' throughput, burst credits and storage
 * by class, the orchestrator's invocations and errors, each run's figures (the custom metrics
 * the orchestrator logs in the embedded metric format: the file systems' sizes and the
 * source's burst credits at the run's start and end among them), and the last runs with their
 * instance type, from the orchestrator's log.
 */
import {
  BACKUP_METRICS,
  FILE_SYSTEM_METRICS,
  METRICS_NAMESPACE,
  type BackupMetric,
  type FileSystemMetric,
} from '@efs-backup/aws/contract';
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

export interface BackupDashboardProps {
  readonly sourceFileSystemId: string;
  readonly backupFileSystemId: string;
  readonly orchestrator: lambda.IFunction;
  /** The orchestrator's log group: its lines of each run's end are the last-runs table. */
  readonly orchestratorLogs: logs.ILogGroup;
  readonly label: string;
  /** Shown in the header. */
  readonly instanceType: string;
  /** The backup file system's throughput mode, shown in the header. */
  readonly throughputMode: string;
  /** @default CloudFormation's (the construct's id and a random suffix) */
  readonly dashboardName?: string;
}

const PERIOD = Duration.minutes(5);

function efsMetric(
  fileSystemId: string,
  metricName: string,
  statistic: string,
  label: string,
): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: 'AWS/EFS',
    metricName,
    dimensionsMap: { FileSystemId: fileSystemId },
    statistic,
    period: PERIOD,
    label,
  });
}

/** Bytes per second over each period, from a file system's TotalIOBytes. */
function throughput(fileSystemId: string, label: string, id: string): cloudwatch.MathExpression {
  return new cloudwatch.MathExpression({
    expression: `${id} / PERIOD(${id})`,
    usingMetrics: { [id]: efsMetric(fileSystemId, 'TotalIOBytes', 'Sum', label) },
    label: `${label} (bytes/s)`,
    period: PERIOD,
  });
}

export class BackupDashboard extends Construct {
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: BackupDashboardProps) {
    super(scope, id);
    const units: Record<BackupMetric | FileSystemMetric, string> = {
      ...BACKUP_METRICS,
      ...FILE_SYSTEM_METRICS,
    };
    const run = (name: BackupMetric | FileSystemMetric, statistic = 'Maximum'): cloudwatch.Metric =>
      new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: name,
        dimensionsMap: { FileSystemId: props.sourceFileSystemId, Label: props.label },
        statistic,
        period: Duration.days(1),
        unit: cloudwatch.Unit[units[name].toUpperCase() as 'COUNT' | 'BYTES' | 'SECONDS'],
        label: name,
      });
    // EFS reports StorageBytes every 15 minutes, per storage class.
    const storage = (fileSystemId: string, storageClass: string, label: string) =>
      new cloudwatch.Metric({
        namespace: 'AWS/EFS',
        metricName: 'StorageBytes',
        dimensionsMap: { FileSystemId: fileSystemId, StorageClass: storageClass },
        statistic: 'Average',
        period: Duration.hours(1),
        label,
      });

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      ...(props.dashboardName ? { dashboardName: props.dashboardName } : {}),
      defaultInterval: Duration.days(7),
      widgets: [
        [
          new cloudwatch.TextWidget({
            markdown: `# efs-backup\nThe source and backup file systems, the orchestrator, and the figures of each run (one point a day). Worker: ${props.instanceType}; backup file system throughput: ${props.throughputMode}.`,
            width: 24,
            height: 2,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Throughput',
            left: [
              throughput(props.sourceFileSystemId, 'Source', 'src'),
              throughput(props.backupFileSystemId, 'Backup', 'dst'),
            ],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Burst credit balance',
            left: [
              efsMetric(props.sourceFileSystemId, 'BurstCreditBalance', 'Minimum', 'Source'),
              efsMetric(props.backupFileSystemId, 'BurstCreditBalance', 'Minimum', 'Backup'),
            ],
            width: 12,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Orchestrator',
            left: [
              props.orchestrator.metricInvocations({ period: PERIOD }),
              props.orchestrator.metricErrors({ period: PERIOD }),
            ],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Runs',
            left: [
              run('RunsSucceeded', 'Sum'),
              run('RunsIncomplete', 'Sum'),
              run('RunsFailed', 'Sum'),
            ],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Run duration',
            left: [run('DurationSeconds')],
            width: 8,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Storage (bytes): both file systems, the backup by class',
            left: [
              storage(props.sourceFileSystemId, 'Total', 'Source'),
              storage(props.backupFileSystemId, 'Total', 'Backup'),
              storage(props.backupFileSystemId, 'Standard', 'Backup: Standard'),
              storage(props.backupFileSystemId, 'IA', 'Backup: Infrequent Access'),
              storage(props.backupFileSystemId, 'Archive', 'Backup: Archive'),
            ],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'File systems at each run (bytes)',
            left: [run('SourceFileSystemSize'), run('DestinationFileSystemSize')],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: "Source burst credits at each run's start and end",
            left: [run('SourceBurstCreditBalanceAtStart'), run('SourceBurstCreditBalanceAtEnd')],
            width: 8,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Entries',
            left: [
              run('NumberOfFiles'),
              run('NumberOfFilesTransferred'),
              run('NumberOfFilesLinked'),
            ],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Bytes',
            left: [run('TotalFileSize'), run('TotalTransferredFileSize')],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Warnings and pruned snapshots',
            left: [run('NumberOfWarnings'), run('SnapshotsPruned')],
            width: 8,
          }),
        ],
        [
          new cloudwatch.LogQueryWidget({
            title: 'The last runs',
            logGroupNames: [props.orchestratorLogs.logGroupName],
            queryLines: [
              'fields @timestamp, BackupId, Status, DurationSeconds, NumberOfFiles, TotalTransferredFileSize, InstanceType, SourceBurstCreditBalanceAtStart, SourceBurstCreditBalanceAtEnd',
              'filter ispresent(RunsSucceeded)',
              'sort @timestamp desc',
              'limit 30',
            ],
            view: cloudwatch.LogQueryVisualizationType.TABLE,
            width: 24,
            height: 8,
          }),
        ],
      ],
    });
  }
}
