import os from 'node:os';
import type { EntryKind } from './manifest.js';
import type { ResolvedOptions } from './options.js';
import type { EntryCount } from './scan.js';

/**
 * What a run tells: its counters, its warnings (the first ones kept, all counted), its
 * progress, and at the end its figures, named as the record's fields. Counted in one place.
 */

export type BackupStatus = 'Success' | 'SuccessWithWarnings' | 'Incomplete' | 'Failed';

/** The run's figures, named as the record's fields (DESIGN.md). */
export interface BackupFigures {
  BackupId: string;
  Label: string;
  Interval: string;
  Retain: number;
  Source: string;
  Prefix: string;
  Destination: string;
  WindowMinutes: number | null;
  Status: BackupStatus;
  Message: string;
  StartTime: string;
  StopTime: string;
  /** The committed snapshot's stamp; null when none was committed. */
  Snapshot: string | null;
  NumberOfFiles: number;
  NumberOfFilesTransferred: number;
  NumberOfFilesLinked: number;
  /**
   * Unchanged files that could not be linked to the previous snapshot (the file system's limit
   * of links per inode, such as EFS's 177, or the previous copy gone) and were copied instead.
   */
  NumberOfFilesCopiedForLinkLimit: number;
  /** Unchanged files whose inode in the previous snapshot `verify` found damaged: copied anew. */
  NumberOfFilesRepaired: number;
  /** Files whose stat was unchanged but whose content was not (found by `checksum`): copied. */
  NumberOfFilesChangedByChecksum: number;
  TotalFileSize: number;
  TotalTransferredFileSize: number;
  NumberOfWarnings: number;
  CopyStartTime: string;
  CopyStopTime: string;
  PruneStartTime: string | null;
  PruneStopTime: string | null;
  SnapshotsPruned: number;
  Host: string;
}

export interface BackupWarning {
  /** Path relative to the source root ('' for the root itself). */
  path: string;
  message: string;
}

export interface BackupProgress {
  /** What the run is doing: copying (the walk). */
  phase: 'copy';
  entries: number;
  bytes: number;
  /**
   * The entries the snapshot will hold, about: the previous snapshot's, or on a first backup
   * those counted ahead of the walk so far (see `counting`); null when neither is known.
   */
  estimatedEntries: number | null;
  /** The previous snapshot's bytes; null on a first backup (the count ahead reads no sizes). */
  estimatedBytes: number | null;
  /** The count ahead of the walk is still going: `estimatedEntries` is what it found so far. */
  counting: boolean;
}

/** One worker's share of a shared run (scale-out). */
export interface WorkerFigures {
  worker: string;
  /** Units it finished, the entries it recorded, the files' bytes it copied, its time. */
  units: number;
  /**
   * Of those, units it took over from a worker whose lease had expired (that worker died, or
   * stalled past its lease): each redone from where that one's journal got to.
   */
  takenOver: number;
  entries: number;
  bytes: number;
  ms: number;
}

export interface BackupResult extends BackupFigures {
  /**
   * A shared run (scale-out): this worker's id, whether it committed, and every worker's
   * figures as the lease store had them when the run ended.
   */
  share?: { worker: string; committed: boolean; workers: WorkerFigures[] };
  /** The first warnings (at most 1000); NumberOfWarnings counts them all. */
  warnings: BackupWarning[];
  /** Where the snapshot is, when one was committed. */
  snapshotPath: string | null;
}

const MAX_WARNINGS_KEPT = 1000;

export type Outcome = 'linked' | 'copied' | 'resumed';
export type CopiedBecause = 'repaired' | 'copiedForLinkLimit' | 'changedByChecksum';

export class RunReport {
  files = 0;
  totalBytes = 0;
  transferred = 0;
  transferredBytes = 0;
  linked = 0;
  copiedForLinkLimit = 0;
  repaired = 0;
  changedByChecksum = 0;
  warningCount = 0;
  readonly warnings: BackupWarning[] = [];
  /** From the previous snapshot's manifest; null on a first backup. */
  estimate: { entries: number; bytes: number } | null = null;
  /** A first backup's count ahead of the walk (scan.ts), when there is no manifest to go by. */
  scan: EntryCount | null = null;

  constructor(
    private readonly onWarning: ((w: BackupWarning) => void) | undefined,
    private readonly onProgress: ((p: BackupProgress) => void) | undefined,
  ) {}

  warn(rel: string, message: string): void {
    this.warningCount++;
    const w = { path: rel, message };
    if (this.warnings.length < MAX_WARNINGS_KEPT) this.warnings.push(w);
    this.onWarning?.(w);
  }

  /** One entry is in the snapshot: `bytes` is what was written for it (a copy). */
  count(kind: EntryKind, size: number, how: Outcome, bytes = 0): void {
    this.files++;
    if (kind === 'f') this.totalBytes += size;
    if (how === 'linked') this.linked++;
    else if (how === 'copied') {
      this.transferred++;
      this.transferredBytes += bytes;
    }
  }

  /** A directory is in the snapshot (its entry; its bytes are none). */
  countDir(): void {
    this.files++;
  }

  /** An unchanged file copied anyway: why (a damaged previous copy, the link limit, its checksum). */
  countCopiedBecause(why: CopiedBecause): void {
    this[why]++;
  }

  /** Reports progress every `ms` until the returned function is called (which reports once more). */
  startProgress(ms: number): () => void {
    const t = setInterval(() => this.emit(), ms);
    t.unref();
    return () => {
      clearInterval(t);
      this.emit();
    };
  }

  private emit(): void {
    this.onProgress?.({
      phase: 'copy',
      entries: this.files,
      bytes: this.totalBytes,
      estimatedEntries: this.estimate?.entries ?? this.scan?.entries ?? null,
      estimatedBytes: this.estimate?.bytes ?? null,
      counting: !this.estimate && this.scan !== null && !this.scan.done,
    });
  }

  /** The message of a committed snapshot; `latestError` when `latest` could not be moved. */
  successMessage(name: string, latestError: string | null): string {
    const n = this.warningCount - (latestError ? 1 : 0);
    const parts: string[] = [];
    const notes: string[] = [];
    if (this.repaired > 0)
      notes.push(`repaired: ${this.repaired} (damaged in the previous snapshot, copied anew)`);
    if (this.changedByChecksum > 0)
      notes.push(`${this.changedByChecksum} changed file(s) found by checksum`);
    const noted = notes.length > 0 ? ` (${notes.join('; ')})` : '';
    if (latestError) parts.push(`latest could not be pointed at it (${latestError})`);
    if (n > 0)
      parts.push(`${n} entr${n === 1 ? 'y' : 'ies'} could not be backed up (see the warnings)`);
    return parts.length === 0
      ? `snapshot ${name} is complete${noted}`
      : `snapshot ${name} is complete${noted}, but ${parts.join('; and ')}`;
  }

  /** The run's result, from the options, the times and the counters. */
  result(
    o: ResolvedOptions,
    end: {
      backupId: string;
      status: BackupStatus;
      message: string;
      start: Date;
      stop: Date;
      copyStop: Date;
      snapshot: string | null;
      snapshotPath: string | null;
      pruneStart: Date | null;
      pruneStop: Date | null;
      pruned: number;
    },
  ): BackupResult {
    return {
      BackupId: end.backupId,
      Label: o.label,
      Interval: o.interval,
      Retain: o.retain,
      Source: o.source,
      Prefix: o.prefix,
      Destination: o.destination,
      WindowMinutes: o.windowMinutes,
      Status: end.status,
      Message: end.message,
      StartTime: end.start.toISOString(),
      StopTime: end.stop.toISOString(),
      Snapshot: end.snapshot,
      NumberOfFiles: this.files,
      NumberOfFilesTransferred: this.transferred,
      NumberOfFilesLinked: this.linked,
      NumberOfFilesCopiedForLinkLimit: this.copiedForLinkLimit,
      NumberOfFilesRepaired: this.repaired,
      NumberOfFilesChangedByChecksum: this.changedByChecksum,
      TotalFileSize: this.totalBytes,
      TotalTransferredFileSize: this.transferredBytes,
      NumberOfWarnings: this.warningCount,
      CopyStartTime: end.start.toISOString(),
      CopyStopTime: end.copyStop.toISOString(),
      PruneStartTime: end.pruneStart?.toISOString() ?? null,
      PruneStopTime: end.pruneStop?.toISOString() ?? null,
      SnapshotsPruned: end.pruned,
      Host: os.hostname(),
      warnings: this.warnings,
      snapshotPath: end.snapshotPath,
    };
  }
}

/**
 * One unit's share of a shared run (scale-out), when a worker walks several units at once: its
 * entries and bytes counted here for the unit's figures, and in the run's report, which also
 * takes every warning (a warning is the run's, whichever unit met it).
 */
export class UnitReport extends RunReport {
  constructor(private readonly run: RunReport) {
    super(undefined, undefined);
  }

  override warn(rel: string, message: string): void {
    this.run.warn(rel, message);
  }

  override count(kind: EntryKind, size: number, how: Outcome, bytes = 0): void {
    super.count(kind, size, how, bytes);
    this.run.count(kind, size, how, bytes);
  }

  override countDir(): void {
    super.countDir();
    this.run.countDir();
  }

  override countCopiedBecause(why: CopiedBecause): void {
    super.countCopiedBecause(why);
    this.run.countCopiedBecause(why);
  }
}
