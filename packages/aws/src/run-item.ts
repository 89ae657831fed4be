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
  'Notified',
  'Closed',
] as const satisfies readonly (keyof RunAttributes)[];
