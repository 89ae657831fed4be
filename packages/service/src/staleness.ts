import { BackupSet, stampToDate } from '@efs-backup/core';
import type { Cron } from 'croner';

/**
 * Have backups stopped happening? The age of a series' newest complete snapshot against a
 * bound: restic users' "last snapshot age". It reads the snapshots themselves, not the run
 * records, so it also tells when the daemon died, the schedule was deleted or the records went
 * elsewhere: whatever the cause, nothing new can be restored.
 */

export interface Staleness {
  /** The newest complete snapshot of the series, or null when there is none yet. */
  newest: { stamp: string; at: string } | null;
  /** Hours since it was taken, to a tenth. */
  ageHours: number | null;
  staleAfterHours: number;
  stale: boolean;
}

/** Used where no schedule says how often a set is backed up (`status --destination`): a day's twice. */
export const DEFAULT_STALE_AFTER_HOURS = 48;

/** The next runs sampled to find a schedule's longest gap (weekdays only: the weekend's). */
const SAMPLED_RUNS = 16;

/**
 * Twice the longest gap between runs of `schedule` (its next runs from `now`), in hours: a
 * schedule that fires daily is stale after two days, one that fires on weekdays after the
 * weekend's gap twice. A schedule with fewer than two runs ahead has no period: none.
 */
export function defaultStaleAfterHours(schedule: Cron, now: Date): number | null {
  const times = schedule.nextRuns(SAMPLED_RUNS, now).map((d) => d.getTime());
  let gap = 0;
  let previous: number | null = null;
  for (const t of times) {
    if (previous !== null) gap = Math.max(gap, t - previous);
    previous = t;
  }
  return gap > 0 ? (2 * gap) / 3_600_000 : null;
}

/** How old the newest complete snapshot of `interval` in `set` is, against `staleAfterHours`. */
export function staleness(
  set: BackupSet,
  interval: string,
  staleAfterHours: number,
  now: Date,
): Staleness {
  const newest = set.snapshots(interval)[0];
  if (!newest) return { newest: null, ageHours: null, staleAfterHours, stale: true };
  const at = stampToDate(newest.stamp);
  const ageHours = Math.round((now.getTime() - at.getTime()) / 360_000) / 10;
  return {
    newest: { stamp: newest.stamp, at: at.toISOString() },
    ageHours,
    staleAfterHours,
    stale: now.getTime() - at.getTime() > staleAfterHours * 3_600_000,
  };
}
