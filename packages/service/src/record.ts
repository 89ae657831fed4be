import type { BackupFigures, BackupStatus } from '@efs-backup/core';

/** Days a record (and its log) is kept. */
export const DEFAULT_EXPIRE_DAYS = 90;

/**
 * A run's status. The engine's statuses, plus `Unknown` (the run never reported its end) and
 * `Skipped` (the run was due while another run of its label was going, and did not start).
 */
export type RunStatus = BackupStatus | 'Unknown' | 'Skipped';

/**
 * The record of one run (DESIGN.md): one schema for SQLite and DynamoDB. The engine's figures
 * are named as its fields already; the record adds what only the service knows, and allows
 * the times a run that never got going has not got.
 */
export interface RunRecord extends Omit<
  BackupFigures,
  'Status' | 'StopTime' | 'CopyStartTime' | 'CopyStopTime'
> {
  /** The configuration job that ran; null for a command-line backup. */
  Job: string | null;
  Schedule: string | null;
  Status: RunStatus;
  /** Null while the run goes. */
  StopTime: string | null;
  CopyStartTime: string | null;
  CopyStopTime: string | null;
  LogLocation: string | null;
  /** Epoch seconds after which the record (and its log) is purged. */
  ExpireItem: number;
}

/** Every field of the record, in the order DESIGN.md lists them. */
export const RECORD_FIELDS = [
  'BackupId',
  'Job',
  'Label',
  'Interval',
  'Retain',
  'Source',
  'Prefix',
  'Destination',
  'WindowMinutes',
  'Schedule',
  'Status',
  'Message',
  'StartTime',
  'StopTime',
  'Snapshot',
  'NumberOfFiles',
  'NumberOfFilesTransferred',
  'NumberOfFilesLinked',
  'NumberOfFilesCopiedForLinkLimit',
  'TotalFileSize',
  'TotalTransferredFileSize',
  'NumberOfWarnings',
  'CopyStartTime',
  'CopyStopTime',
  'PruneStartTime',
  'PruneStopTime',
  'SnapshotsPruned',
  'Host',
  'LogLocation',
  'ExpireItem',
] as const satisfies readonly (keyof RunRecord)[];

/** Statuses a run ends with; `Running` is the only one that is not an end. */
export const END_STATUSES: readonly RunStatus[] = [
  'Success',
  'SuccessWithWarnings',
  'Incomplete',
  'Failed',
  'Unknown',
  'Skipped',
];

/** Epoch seconds `days` after `start`. */
export function expireItem(start: Date, days: number): number {
  return Math.floor(start.getTime() / 1000) + Math.round(days * 86_400);
}

/** The record of a run that has not copied anything (yet, or at all). */
export function emptyFigures(): Pick<
  RunRecord,
  | 'Snapshot'
  | 'NumberOfFiles'
  | 'NumberOfFilesTransferred'
  | 'NumberOfFilesLinked'
  | 'NumberOfFilesCopiedForLinkLimit'
  | 'TotalFileSize'
  | 'TotalTransferredFileSize'
  | 'NumberOfWarnings'
  | 'CopyStartTime'
  | 'CopyStopTime'
  | 'PruneStartTime'
  | 'PruneStopTime'
  | 'SnapshotsPruned'
> {
  return {
    Snapshot: null,
    NumberOfFiles: 0,
    NumberOfFilesTransferred: 0,
    NumberOfFilesLinked: 0,
    NumberOfFilesCopiedForLinkLimit: 0,
    TotalFileSize: 0,
    TotalTransferredFileSize: 0,
    NumberOfWarnings: 0,
    CopyStartTime: null,
    CopyStopTime: null,
    PruneStartTime: null,
    PruneStopTime: null,
    SnapshotsPruned: 0,
  };
}

/** The engine's figures as the record's fields. */
export function figuresOf(
  f: BackupFigures,
): Omit<RunRecord, 'Job' | 'Schedule' | 'LogLocation' | 'ExpireItem'> {
  return {
    BackupId: f.BackupId,
    Label: f.Label,
    Interval: f.Interval,
    Retain: f.Retain,
    Source: f.Source,
    Prefix: f.Prefix,
    Destination: f.Destination,
    WindowMinutes: f.WindowMinutes,
    Status: f.Status,
    Message: f.Message,
    StartTime: f.StartTime,
    StopTime: f.StopTime,
    Snapshot: f.Snapshot,
    NumberOfFiles: f.NumberOfFiles,
    NumberOfFilesTransferred: f.NumberOfFilesTransferred,
    NumberOfFilesLinked: f.NumberOfFilesLinked,
    NumberOfFilesCopiedForLinkLimit: f.NumberOfFilesCopiedForLinkLimit,
    TotalFileSize: f.TotalFileSize,
    TotalTransferredFileSize: f.TotalTransferredFileSize,
    NumberOfWarnings: f.NumberOfWarnings,
    CopyStartTime: f.CopyStartTime,
    CopyStopTime: f.CopyStopTime,
    PruneStartTime: f.PruneStartTime,
    PruneStopTime: f.PruneStopTime,
    SnapshotsPruned: f.SnapshotsPruned,
    Host: f.Host,
  };
}
