import type { RunRecord } from '@efs-backup/service';

/**
 * What the AWS workflow keeps beside a run's record, in the same DynamoDB item: the record's
 * writes (an update of the record's fields) leave these alone.
 */
export interface RunAttributes {
  /** A plain success is notified too. */
  NotifyOnSuccess?: boolean;
  /** When EventBridge delivered the start (ISO): the run's scheduled start. */
  ScheduledTime?: string;
  /** When the worker must stop: the window's end less the stop margin (ISO). */
  StopAt?: string;
  /** The one-time EventBridge rule that stops the run. */
  StopRule?: string;
  /** `launching` until a worker claims the run, then `running`, then `done`. */
  WorkerState?: 'launching' | 'running' | 'done';
  /** The EC2 instance that claimed the run. */
  WorkerInstance?: string;
  /** The instance the group launched for the run, before any worker claimed it. */
  LaunchedInstance?: string;
  /** How many times the group failed to launch an instance for the run. */
  LaunchFailures?: number;
  /** The Auto Scaling activity of the last launch failure counted (a redelivery counts once). */
  LaunchActivity?: string;
  /** Why the last launch failed, as Auto Scaling said. */
  LaunchError?: string;
  /** The worker's instance type (from the instance metadata). */
  InstanceType?: string;
  /** The source file system's metered size at the run's start (bytes, DescribeFileSystems). */
  SourceFileSystemSize?: number;
  /** The backup file system's metered size at the run's start (bytes). */
  DestinationFileSystemSize?: number;
  /** Of which in Infrequent Access (bytes). */
  DestinationFileSystemSizeInIA?: number;
  /** Of which in Archive (bytes). */
  DestinationFileSystemSizeInArchive?: number;
  /** The source's throughput mode: `bursting`, `elastic` or `provisioned`. */
  SourceThroughputMode?: string;
  /** The source's burst credits (bytes) when the worker started; in Bursting mode only. */
  SourceBurstCreditBalanceAtStart?: number;
  /** The source's burst credits (bytes) when the worker ended; in Bursting mode only. */
  SourceBurstCreditBalanceAtEnd?: number;
  /** The SSM command that told the worker to stop. */
  StopCommandId?: string;
  /** Where its output is: `s3://<log bucket>/ssm-logs/<command>/<instance>/`. */
  StopCommandOutput?: string;
  /** When the notice of the run's end went out (ISO); absent while none has. */
  Notified?: string;
  /** When the orchestrator saw the worker gone and closed the run (ISO). */
  Closed?: string;
}

export type RunItem = RunRecord & RunAttributes;

export const RUN_ATTRIBUTES = [
  'NotifyOnSuccess',
  'ScheduledTime',
  'StopAt',
  'StopRule',
  'WorkerState',
  'WorkerInstance',
  'LaunchedInstance',
  'LaunchFailures',
  'LaunchActivity',
  'LaunchError',
  'InstanceType',
  'SourceFileSystemSize',
  'DestinationFileSystemSize',
  'DestinationFileSystemSizeInIA',
  'DestinationFileSystemSizeInArchive',
  'SourceThroughputMode',
  'SourceBurstCreditBalanceAtStart',
  'SourceBurstCreditBalanceAtEnd',
  'StopCommandId',
  'StopCommandOutput',
  'Notified',
  'Closed',
] as const satisfies readonly (keyof RunAttributes)[];
