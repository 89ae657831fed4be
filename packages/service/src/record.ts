import type { BackupFigures, BackupStatus } from '@efs-backup/core';

/** Days a record (and its log) is kept. */
export const DEFAULT_EXPIRE_DAYS = 90;

/**
 * A run's status. The engine's statuses, plus `Unknown` (the run never reported its end) and
 * `Skipped` (the run was due while another run of its label was going, and did not start).
 */
export type RunStatus = 'Running' | BackupStatus | 'Unknown' | 'Skipped';

/** What a run did: a backup, or a restore of a snapshot. */
export type RunKind = 'backup' | 'restore';

/** One worker's share of a run built by several (scale-out), as the record keeps it. */
export interface WorkerFigure {
  /** The worker's id (on AWS, its instance). */
  Worker: string;
  /** Work units it finished. */
  Units: number;
  /**
   * Of those, units it took over from a worker whose lease had expired (died, or stalled past
   * it); absent when none (and in records made before it was kept).
   */
  TakenOver?: number;
  /** Entries it recorded in the snapshot. */
  Entries: number;
  /** Bytes it copied. */
  Bytes: number;
  /** Time it spent on its units. */
  Seconds: number;
}

/**
 * The record of one run (DESIGN.md): one schema for SQLite and DynamoDB, backups and restores
 * alike. The engine's figures are named as its fields already; the record adds what only the
 * service knows, and allows the times a run that never got going has not got.
 *
 * `Kind` says which fields a run has. One interface (not a union of a backup's and a
 * restore's) because it is one table's row: every reader sees every column, and a store reads
 * an item of either kind back the same way.
 *
 * - A backup: `Interval` and `Retain` are its job's; the restore fields are null.
 * - A restore: `RestoredSnapshot`, `Target`, `Subdir` and `Mirror` say what was asked;
 *   `Interval` is the interval of the snapshot restored (null until it is resolved), `Retain`
 *   is null. `Source` is the backup set (`<backup file system>/<label>`), `Destination` the
 *   target (as `Target`: where the files were written), `Prefix` the sub-directory restored.
 *   Its figures use the backup's fields: `Snapshot` the stamp restored, `NumberOfFiles` the
 *   snapshot's entries looked at (created, updated, linked and unchanged),
 *   `NumberOfFilesTransferred` the files written (created and updated),
 *   `TotalTransferredFileSize` their bytes, `NumberOfFilesLinked` the hard links made,
 *   `NumberOfWarnings`, and `CopyStartTime`/`CopyStopTime` the restore's own times; what only a
 *   mirror does has its own field, `NumberOfFilesDeleted`. The prune fields stay empty.
 */
export interface RunRecord extends Omit<
  BackupFigures,
  'Status' | 'StopTime' | 'CopyStartTime' | 'CopyStopTime' | 'Interval' | 'Retain'
> {
  /** `backup` for a record written before restores were recorded. */
  Kind: RunKind;
  /** The configuration job that ran; null for a command-line backup. */
  Job: string | null;
  /** A backup's interval; a restore's snapshot's interval, null until it is resolved. */
  Interval: string | null;
  /** Null for a restore. */
  Retain: number | null;
  /**
   * What a backup left out: its gitignore-style patterns, in order ([] for none); null for a
   * restore. The snapshot's manifest records them too.
   */
  Exclude: string[] | null;
  /** The names (CACHEDIR.TAG) whose directories' content a backup left out; null for a restore. */
  ExcludeIfPresent: string[] | null;
  /** The snapshot a restore was asked for, as asked (`daily.0`, a stamp); null for a backup. */
  RestoredSnapshot: string | null;
  /** The directory a restore writes into; null for a backup. */
  Target: string | null;
  /** The sub-directory of the snapshot restored; null for a backup or a whole snapshot. */
  Subdir: string | null;
  /** A restore that deletes what the snapshot lacks (`--delete`); null for a backup. */
  Mirror: boolean | null;
  /** Entries a mirror restore deleted from the target; null for a backup. */
  NumberOfFilesDeleted: number | null;
  Schedule: string | null;
  Status: RunStatus;
  /** Null while the run goes. */
  StopTime: string | null;
  CopyStartTime: string | null;
  CopyStopTime: string | null;
  /**
   * How many workers the run was given: 1 for a run of its own (and a restore, and a record
   * written before runs could be shared).
   */
  Workers: number;
  /**
   * A run built by several workers: each one's share (units, entries, bytes, time), in the order
   * they joined; the run's totals are the figures above. Null for a run of one worker.
   */
  WorkerFigures: WorkerFigure[] | null;
  LogLocation: string | null;
  /** Epoch seconds after which the record (and its log) is purged. */
  ExpireItem: number;
}

/** Every field of the record, in the order DESIGN.md lists them. */
export const RECORD_FIELDS = [
  'BackupId',
  'Kind',
  'Job',
  'Label',
  'Interval',
  'Retain',
  'Source',
  'Prefix',
  'Exclude',
  'ExcludeIfPresent',
  'Destination',
  'RestoredSnapshot',
  'Target',
  'Subdir',
  'Mirror',
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
  'NumberOfFilesRepaired',
  'NumberOfFilesChangedByChecksum',
  'TotalFileSize',
  'TotalTransferredFileSize',
  'NumberOfWarnings',
  'CopyStartTime',
  'CopyStopTime',
  'PruneStartTime',
  'PruneStopTime',
  'SnapshotsPruned',
  'NumberOfFilesDeleted',
  'Host',
  'Workers',
  'WorkerFigures',
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
  | 'NumberOfFilesRepaired'
  | 'NumberOfFilesChangedByChecksum'
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
    NumberOfFilesRepaired: 0,
    NumberOfFilesChangedByChecksum: 0,
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

/** The fields only a restore has. */
type RestoreField = 'RestoredSnapshot' | 'Target' | 'Subdir' | 'Mirror' | 'NumberOfFilesDeleted';
/** The fields only a backup has. */
type BackupField = 'Exclude' | 'ExcludeIfPresent';

/** The engine's figures as the record's fields. */
export function figuresOf(
  f: BackupFigures,
): Omit<
  RunRecord,
  | 'Job'
  | 'Schedule'
  | 'LogLocation'
  | 'ExpireItem'
  | 'Kind'
  | 'Workers'
  | 'WorkerFigures'
  | RestoreField
  | BackupField
> {
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
    NumberOfFilesRepaired: f.NumberOfFilesRepaired,
    NumberOfFilesChangedByChecksum: f.NumberOfFilesChangedByChecksum,
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

/** What is known of a run at its start, whatever it does. */
interface RunStart {
  /** The run's id: the record's key. */
  id: string;
  /** The configuration job; null (the default) for a command-line run. */
  job?: string | null;
  label: string;
  source: string;
  prefix: string;
  windowMinutes?: number | null;
  schedule?: string | null;
  start: Date;
  /** Where the run goes (`pending` while no worker has claimed it). */
  host: string;
  /** Days the record is kept. */
  expireDays: number;
  /** @default 'the run is going' */
  message?: string;
  /** How many workers the run is given (scale-out). @default 1 */
  workers?: number;
}

/** A backup at its start. */
export interface BackupStart extends RunStart {
  kind?: 'backup';
  interval: string;
  retain: number;
  destination: string;
  /** @default [] */
  exclude?: string[];
  /** @default [] */
  excludeIfPresent?: string[];
}

/** A restore at its start: its target is its destination. */
export interface RestoreStart extends RunStart {
  kind: 'restore';
  /** The snapshot as asked for (`daily.0`, a stamp). */
  snapshot: string;
  target: string;
  subdir?: string | null;
  mirror: boolean;
}

/**
 * The Running record of a new run, from what is known at its start, with empty figures: the
 * one place a record is made (the lifecycle, the orchestrator and the AWS workers).
 */
export function newRunRecord(run: BackupStart | RestoreStart): RunRecord {
  const kind: Pick<
    RunRecord,
    'Kind' | 'Interval' | 'Retain' | 'Destination' | RestoreField | BackupField
  > =
    run.kind === 'restore'
      ? {
          Kind: 'restore',
          Interval: null,
          Retain: null,
          Exclude: null,
          ExcludeIfPresent: null,
          Destination: run.target,
          RestoredSnapshot: run.snapshot,
          Target: run.target,
          Subdir: run.subdir ?? null,
          Mirror: run.mirror,
          NumberOfFilesDeleted: 0,
        }
      : {
          Kind: 'backup',
          Interval: run.interval,
          Retain: run.retain,
          Exclude: [...(run.exclude ?? [])],
          ExcludeIfPresent: [...(run.excludeIfPresent ?? [])],
          Destination: run.destination,
          RestoredSnapshot: null,
          Target: null,
          Subdir: null,
          Mirror: null,
          NumberOfFilesDeleted: null,
        };
  return {
    BackupId: run.id,
    Job: run.job ?? null,
    Label: run.label,
    Source: run.source,
    Prefix: run.prefix,
    WindowMinutes: run.windowMinutes ?? null,
    Schedule: run.schedule ?? null,
    Status: 'Running',
    Message: run.message ?? 'the run is going',
    StartTime: run.start.toISOString(),
    StopTime: null,
    ...emptyFigures(),
    ...kind,
    Host: run.host,
    Workers: run.workers ?? 1,
    WorkerFigures: null,
    LogLocation: null,
    ExpireItem: expireItem(run.start, run.expireDays),
  };
}
