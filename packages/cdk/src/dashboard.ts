/**
 * The backup's CloudWatch dashboard: both file systems' throughput and burst credits, the
 * orchestrator's invocations and errors, and each run's figures (the custom metrics the
 * orchestrator logs in the embedded metric format).
 */
import { BACKUP_METRICS, METRICS_NAMESPACE, type BackupMetric } from '@efs-backup/aws/contract';
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

export interface BackupDashboardProps {
  readonly sourceFileSystemId: string;
  readonly backupFileSystemId: string;
  readonly orchestrator: lambda.IFunction;
  readonly label: string;
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
    const run = (name: BackupMetric, statistic = 'Maximum'): cloudwatch.Metric =>
      new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: name,
        dimensionsMap: { FileSystemId: props.sourceFileSystemId, Label: props.label },
        statistic,
        period: Duration.days(1),
        unit: cloudwatch.Unit[BACKUP_METRICS[name].toUpperCase() as 'COUNT' | 'BYTES' | 'SECONDS'],
        label: name,
      });

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.days(7),
      widgets: [
        [
          new cloudwatch.TextWidget({
            markdown:
              '# efs-backup\nThe source and backup file systems, the orchestrator, and the figures of each run (one point a day).',
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
      ],
    });
  }
}
