import { randomUUID } from 'node:crypto';
import { EfsBackupError } from './errors.js';
import { InFlight } from './inflight.js';
import { BackupSet } from './layout.js';
import { LinkThread } from './link-thread.js';
import type { LabelLock } from './lock.js';
import type { FsOps } from './fs-ops.js';
import type { ResolvedOptions } from './options.js';
import { prune, type PruneResult } from './prune.js';
import { RunControl } from './run-control.js';
import { RunReport, type BackupResult, type BackupStatus } from './run-report.js';
import { sideOps, sourceThrottle, startBackup, type BackupRunOptions } from './start.js';
import { throttled } from './throttle.js';

/** What every backup run is made of before its walk: a run of its own and a shared run's worker alike. */
export interface RunParts {
  backupId: string;
  o: ResolvedOptions;
  lock: LabelLock;
  now: () => Date;
  start: Date;
  set: BackupSet;
  report: RunReport;
  pool: InFlight;
  control: RunControl;
  src: FsOps;
  dst: FsOps;
  /** Direct calls on a local destination: its links go to a thread of their own. */
  links: LinkThread | null;
}

/** Options resolved and the lock taken (unless `started` did both), each side's calls chosen. */
export function openRun(options: BackupRunOptions): RunParts {
  const backupId = options.backupId ?? randomUUID();
  const { options: o, lock } = options.started ?? startBackup({ ...options, backupId });
  const now = options.now ?? (() => new Date());
  const start = now();
  const report = new RunReport(options.onWarning, options.onProgress);
  const pool = new InFlight(o.concurrency);
  const control = new RunControl(() => pool.halt(), report, start, o.windowMinutes, now);
  const io = options.io;
  // Gentle on the source (--max-mibps, --max-ops): every call on it, the pool's too, shares one budget.
  const src = throttled(
    sideOps(typeof io === 'object' ? io.source : io, o.sourceRemote),
    options.throttle ?? sourceThrottle(o),
  );
  const dst = sideOps(typeof io === 'object' ? io.destination : io, o.destinationRemote);
  const links = dst.mode === 'sync' ? new LinkThread(pool) : null;
  if (links) pool.onStarve = () => links.flush();
  const set = new BackupSet(o.destination, o.label);
  return { backupId, o, lock, now, start, set, report, pool, control, src, dst, links };
}

const NEXT_RUN = 'the next run continues from where this one stopped';

/**
 * The message of a run that ended before its snapshot was complete; `unfinished` says what a
 * walk that ended early with no stop left undone (an engine error).
 */
export function stoppedMessage(control: RunControl, unfinished = ''): string {
  return control.stopReason === 'signal'
    ? `the run was stopped before the backup completed; ${NEXT_RUN}`
    : control.stopReason === 'window'
      ? `the backup window ended before the backup completed; ${NEXT_RUN}`
      : `the walk ended before every entry was written (an engine error${unfinished ? `: ${unfinished}` : ''}); ${NEXT_RUN}`;
}

/** Retention, once a snapshot is committed: its warnings are the run's. */
export async function pruneAfterCommit(
  parts: RunParts,
  signal: AbortSignal | undefined,
): Promise<{ pruneStart: Date; pruned: PruneResult; pruneStop: Date }> {
  const { o, set, dst, control, now, report } = parts;
  const pruneStart = now();
  const pruned = await prune(set, o.interval, o.retain, {
    concurrency: o.concurrency,
    io: dst,
    deadline: control.deadline,
    now: () => now().getTime(),
    ...(signal ? { signal } : {}),
  });
  const pruneStop = now();
  for (const w of pruned.warnings) report.warn('', w);
  return { pruneStart, pruned, pruneStop };
}

export function journalFailure(journal: string, err: Error): EfsBackupError {
  return new EfsBackupError('FAILED', `cannot write the journal ${journal}: ${err.message}`, {
    cause: err,
  });
}

/** How a run ended, as its result says it: its figures from the report. */
export function runResult(
  parts: RunParts,
  end: {
    status: BackupStatus;
    message: string;
    copyStop: Date;
    snapshot: string | null;
    prune: { pruneStart: Date; pruned: PruneResult; pruneStop: Date } | null;
  },
): BackupResult {
  const { o, set, report, backupId, start, now } = parts;
  return report.result(o, {
    backupId,
    status: end.status,
    message: end.message,
    start,
    stop: now(),
    copyStop: end.copyStop,
    snapshot: end.snapshot,
    snapshotPath: end.snapshot ? set.snapshotDir(o.interval, end.snapshot) : null,
    pruneStart: end.prune?.pruneStart ?? null,
    pruneStop: end.prune?.pruneStop ?? null,
    pruned: end.prune?.pruned.pruned ?? 0,
  });
}
