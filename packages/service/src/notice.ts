import { formatBytes, formatCount } from '@efs-backup/core';
import type { Notice } from './ports.js';
import type { RunRecord, RunStatus, WorkerFigure } from './record.js';

/** Failures and partial results always notify; a plain success only when asked. */
export function shouldNotify(status: RunStatus, notifyOnSuccess: boolean): boolean {
  if (status === 'Running') return false;
  if (status === 'Success') return notifyOnSuccess;
  return true;
}

const HEADLINE: Record<RunStatus, string> = {
  Running: 'is running',
  Success: 'succeeded',
  SuccessWithWarnings: 'succeeded with warnings',
  Incomplete: 'is incomplete',
  Failed: 'failed',
  Unknown: 'never reported its end',
  Skipped: 'was skipped',
};

/** What a person should do about a run that ended this way. */
export function whatToDo(r: RunRecord): string {
  const retry = r.Job
    ? `efs-backup backup --job ${r.Job}`
    : `efs-backup backup --source ${r.Source} --destination ${r.Destination}`;
  switch (r.Status) {
    case 'Success':
    case 'Running':
      return 'Nothing to do.';
    case 'SuccessWithWarnings':
      return `The snapshot holds everything else. Read the warnings in the log; fix the permissions of unreadable entries (entries that vanished while being read need nothing).`;
    case 'Incomplete':
      return /window/.test(r.Message)
        ? 'Nothing to do if the next runs catch up; if runs keep ending incomplete, give the job a longer windowMinutes or schedule it more often.'
        : 'Nothing to do: the next run continues from where this one stopped.';
    case 'Failed':
      return `Check that the source and the destination are mounted and writable and that no other host writes this backup set, then run \`${retry}\` to try again.`;
    case 'Unknown':
      return `Check the host ${r.Host} (it may have been restarted or killed the backup) and the free space of the destination (a full one cannot take the run's end); the next run continues from the partial snapshot, or run \`${retry}\` now.`;
    case 'Skipped':
      return 'If runs of this backup set often overlap, space their schedules further apart or shorten windowMinutes.';
  }
}

function took(r: RunRecord): string {
  if (!r.StopTime) return '';
  const s = Math.max(0, (Date.parse(r.StopTime) - Date.parse(r.StartTime)) / 1000);
  return s < 60
    ? `${s.toFixed(1)} s`
    : s < 3600
      ? `${(s / 60).toFixed(1)} min`
      : `${(s / 3600).toFixed(1)} h`;
}

/** Unchanged files copied because a hard link to the previous snapshot failed, when any. */
export function linkLimit(r: Pick<RunRecord, 'NumberOfFilesCopiedForLinkLimit'>): string {
  const n = r.NumberOfFilesCopiedForLinkLimit ?? 0;
  return n > 0
    ? `, of which ${formatCount(n)} unchanged but copied because a hard link to the previous snapshot failed (the file system's limit of links per file)`
    : '';
}

/**
 * The name of what was backed up, for headlines: the job, else label and interval; for a
 * restore, the snapshot restored.
 */
export function runName(r: RunRecord): string {
  if (r.Kind === 'restore') return `restore of ${r.RestoredSnapshot ?? '?'} of ${r.Label}`;
  return r.Job ? `job ${r.Job} (${r.Label}/${r.Interval})` : `${r.Label}/${r.Interval}`;
}

/** Each worker's share of a run built by several: `i-1 40 entries (1.2 MB), 3 units in 2.0 s; ...`. */
function workerShares(figures: WorkerFigure[]): string {
  return figures
    .map(
      (w) =>
        `${w.Worker} ${formatCount(w.Entries)} ${w.Entries === 1 ? 'entry' : 'entries'} (${formatBytes(w.Bytes)}), ${w.Units} unit${w.Units === 1 ? '' : 's'}${w.TakenOver ? ` (${w.TakenOver} taken over from a worker that stopped renewing its lease)` : ''} in ${w.Seconds.toFixed(1)} s`,
    )
    .join('; ');
}

/** The human summary of a run: the end of its log and the body of its notices. */
export function summary(r: RunRecord): string {
  const lines = [
    `efs-backup ${runName(r)} ${HEADLINE[r.Status]}: ${r.Message}`,
    `What to do: ${whatToDo(r)}`,
    '',
    `  Status        ${r.Status}`,
    `  Source        ${r.Source}${r.Prefix && r.Prefix !== '/' ? ` (prefix ${r.Prefix})` : ''}`,
    `  Destination   ${r.Destination}/${r.Label}`,
    r.Kind === 'restore'
      ? `  Restored      ${r.RestoredSnapshot ?? '?'}${r.Subdir ? ` (${r.Subdir})` : ''} into ${r.Target ?? r.Destination}${r.Mirror ? ', mirror: what the snapshot lacks deleted' : ''}`
      : `  Interval      ${r.Interval}, retain ${r.Retain}${r.Schedule ? `, schedule "${r.Schedule}"` : ''}${r.WindowMinutes !== null ? `, window ${r.WindowMinutes} min` : ''}`,
    `  Started       ${r.StartTime}`,
    `  Stopped       ${r.StopTime ?? '-'}${r.StopTime ? ` (${took(r)})` : ''}`,
  ];
  if (r.Status !== 'Skipped') {
    lines.push(
      `  Snapshot      ${r.Snapshot ? `${r.Interval}/${r.Snapshot}` : 'none committed'}`,
      `  Entries       ${formatCount(r.NumberOfFiles)} (${formatBytes(r.TotalFileSize)}): ${formatCount(r.NumberOfFilesTransferred)} copied (${formatBytes(r.TotalTransferredFileSize)})${linkLimit(r)}, ${formatCount(r.NumberOfFilesLinked)} unchanged and linked`,
      `  Warnings      ${r.NumberOfWarnings}`,
      `  Pruned        ${r.SnapshotsPruned} old snapshot(s)`,
    );
  }
  lines.push(`  Host          ${r.Host}`);
  if (r.WorkerFigures?.length)
    lines.push(`  Workers       ${r.Workers}: ${workerShares(r.WorkerFigures)}`);
  lines.push(`  BackupId      ${r.BackupId}`);
  if (r.LogLocation) lines.push(`  Log           ${r.LogLocation}`);
  return lines.join('\n') + '\n';
}

export function composeNotice(r: RunRecord): Notice {
  return {
    record: r,
    subject: `[efs-backup] ${r.Status}: ${runName(r)} on ${r.Host}`,
    text: `efs-backup ${runName(r)} on ${r.Host} ${HEADLINE[r.Status]}: ${r.Message}. ${whatToDo(r)}`,
    body: summary(r),
  };
}
