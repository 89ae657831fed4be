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
  /** The EC2 instance that claimed the run (with several workers, the first that joined). */
  WorkerInstance?: string;
  /** Every instance whose worker joined the run (one, or up to the run's Workers). */
  WorkerInstances?: Set<string>;
  /** Workers that may still join: the run's Workers less those joined, plus those gone. */
  Seats?: number;
  /** The joined instances that are gone (terminated): the run is closed when all are. */
  WorkersGone?: Set<string>;
  /**
   * A run of several workers: how each worker's part ended when it did not report the run's
   * end itself (it did not commit: stopped, failed, or another worker committed), by instance.
   * The orchestrator closes a run no worker reported with the most telling of them.
   */
  WorkerEnds?: Record<string, RunRecord>;
  /**
   * When the orchestrator claimed the run's close (ISO), at its last worker's end: one
   * invocation closes it, once.
   */
  Closing?: string;
  /** The worker that began a shared run (took its lock first): it is begun once. */
  Begun?: string;
  /** The worker that wrote the run's end (its committer, with several workers). */
  Reporter?: string;
  /** The instance the group launched for the run, before any worker claimed it (the first). */
  LaunchedInstance?: string;
  /** The instances the group launched for the run and not gone, before any worker claimed it. */
  LaunchedInstances?: Set<string>;
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
  'WorkerInstances',
  'Seats',
  'WorkersGone',
  'WorkerEnds',
  'Closing',
  'Begun',
  'Reporter',
  'LaunchedInstance',
  'LaunchedInstances',
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
