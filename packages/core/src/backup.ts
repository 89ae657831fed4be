import { randomUUID } from 'node:crypto';
import { openBase, type BaseSnapshot } from './base-snapshot.js';
import { EntryWriter } from './entry-writer.js';
import { EfsBackupError } from './errors.js';
import { asyncOps, syncOps, type FsOps } from './fs-ops.js';
import { InFlight } from './inflight.js';
import { BackupSet, ensureDir } from './layout.js';
import { LinkThread } from './link-thread.js';
import { LabelLock } from './lock.js';
import { resolveBackupOptions, type BackupOptions, type ResolvedOptions } from './options.js';
import { commitPartial, openPartial, prepareSet, type PartialSnapshot } from './partial.js';
import { prune, type PruneResult } from './prune.js';
import { RunControl } from './run-control.js';
import {
  RunReport,
  type BackupProgress,
  type BackupResult,
  type BackupStatus,
  type BackupWarning,
} from './run-report.js';
import { Walk } from './walk.js';
import { XattrCopy } from './xattrs.js';

export type {
  BackupFigures,
  BackupProgress,
  BackupResult,
  BackupStatus,
  BackupWarning,
} from './run-report.js';
export { pointLatest } from './partial.js';

type IoMode = 'sync' | 'async';

export interface BackupRunOptions extends BackupOptions {
  /** The run's id (the record's key). @default a random UUID */
  backupId?: string;
  /** Stops the run gracefully; the partial is kept and the run is Incomplete. */
  signal?: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
  onWarning?: (w: BackupWarning) => void;
  /** @default 250 */
  progressIntervalMs?: number;
  /** @default () => new Date() */
  now?: () => Date;
  /**
   * How metadata calls are made: 'async' keeps many in flight (network file systems),
   * 'sync' makes them on the main thread (local disks, where that is cheaper).
   * @default for each side, from that side's file-system type
   */
  io?: IoMode | { source: IoMode; destination: IoMode };
  /** The run as `startBackup` began it (its options win over the ones above). */
  started?: StartedBackup;
}

const NEXT_RUN = 'the next run continues from where this one stopped';

/** A run whose options are resolved and whose set's lock is held: nothing is written yet. */
export interface StartedBackup {
  readonly options: ResolvedOptions;
  readonly lock: LabelLock;
}

/**
 * The refusals, once: bad input (BAD_INPUT) and a live lock (LOCKED) throw before anything
 * is written. A caller that records runs (the service) starts a run with this, records it, and
 * hands it to `backup()` as `started`, so the options are resolved and the lock taken once.
 * The caller releases the lock if it never calls `backup()`.
 */
export function startBackup(options: BackupOptions & { backupId?: string }): StartedBackup {
  const o = resolveBackupOptions(options);
  const set = new BackupSet(o.destination, o.label);
  try {
    // Only what the lock needs is made before it is held (nothing, for an existing set).
    ensureDir(set.dataDir);
    return { options: o, lock: LabelLock.acquire(set.lockFile, options.backupId ?? randomUUID()) };
  } catch (e) {
    if (e instanceof EfsBackupError) throw e;
    throw new EfsBackupError(
      'FAILED',
      `cannot lock the backup set ${set.dir}: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
}

/**
 * Makes one snapshot: lock → base → partial → walk → commit → prune → figures. Never throws
 * for a run that started (the result says how it ended); bad input and a held lock throw.
 */
export async function backup(options: BackupRunOptions): Promise<BackupResult> {
  const backupId = options.backupId ?? randomUUID();
  const { options: o, lock } = options.started ?? startBackup({ ...options, backupId });
  const now = options.now ?? (() => new Date());
  const start = now();
  const set = new BackupSet(o.destination, o.label);
  const report = new RunReport(options.onWarning, options.onProgress);
  const pool = new InFlight(o.concurrency);
  const control = new RunControl(() => pool.halt(), report, start, o.windowMinutes, now);
  const io = options.io;
  const src = sideOps(typeof io === 'object' ? io.source : io, o.sourceRemote);
  const dst = sideOps(typeof io === 'object' ? io.destination : io, o.destinationRemote);
  // Direct calls on a local destination: its links go to a thread of their own (LinkThread).
  const links = dst.mode === 'sync' ? new LinkThread(pool) : null;
  if (links) pool.onStarve = () => links.flush();

  let base: BaseSnapshot | null = null;
  let partial: PartialSnapshot | null = null;
  let copyStop = start;
  let pruned: PruneResult | null = null;
  let pruneStart: Date | null = null;
  let pruneStop: Date | null = null;
  let snapshot: string | null = null;
  let status: BackupStatus;
  let message: string;
  try {
    // Found at a heartbeat: another run took the lock (this one was paused past the stale
    // limit). Stop writing at once; nothing is committed.
    lock.whenLost((why) =>
      control.failWith(
        new EfsBackupError(
          'FAILED',
          `this run lost its lock and stopped without committing: ${why}`,
        ),
      ),
    );
    set.remember(); // the lock is held: only this run changes the set now
    prepareSet(set, o.interval);
    base = await openBase(set, report);
    if (base) links?.start();
    const p: PartialSnapshot = openPartial(set, o.interval, start, (err) =>
      control.failWith(journalFailure(set, p, err)),
    );
    partial = p;
    const xattrs = XattrCopy.open(o.xattrs, report);
    const writer = new EntryWriter(src, dst, links, report, control, p.dir, xattrs);
    const walk = new Walk(
      o.sourceRoot,
      p,
      set.journalPath(p.partialStamp),
      base,
      src,
      dst,
      pool,
      writer,
      report,
      control,
      o.checksum,
    );
    control.begin(options.signal);
    const endProgress = report.startProgress(options.progressIntervalMs ?? 250);
    try {
      await walk.run();
    } finally {
      await links?.close();
      control.end();
      endProgress();
    }
    walk.journalOpenDirs();
    xattrs?.finish();
    const journalError = await new Promise<Error | null>((resolve) => p.journal.flush(resolve));
    if (journalError) control.failWith(journalFailure(set, p, journalError));
    copyStop = now();
    if (control.fatal) throw control.fatal;
    if (control.stopReason || !walk.complete) {
      status = 'Incomplete';
      message =
        control.stopReason === 'signal'
          ? `the run was stopped before the backup completed; ${NEXT_RUN}`
          : control.stopReason === 'window'
            ? `the backup window ended before the backup completed; ${NEXT_RUN}`
            : `the walk ended before every entry was written (an engine error); ${NEXT_RUN}`;
    } else {
      const facts = {
        backupId,
        label: o.label,
        interval: o.interval,
        source: o.source,
        prefix: o.prefix,
        start,
        stop: copyStop,
        files: report.files,
        bytes: report.totalBytes,
        root: walk.rootRecord!,
      };
      const { latestError } = await commitPartial(set, p, facts, lock, report);
      snapshot = p.stamp;
      pruneStart = now();
      pruned = await prune(set, o.interval, o.retain, {
        concurrency: o.concurrency,
        io: dst,
        deadline: control.deadline,
        now: () => now().getTime(),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      pruneStop = now();
      for (const w of pruned.warnings) report.warn('', w);
      status = report.warningCount > 0 ? 'SuccessWithWarnings' : 'Success';
      message = report.successMessage(`${o.interval}/${snapshot}`, latestError);
    }
  } catch (e) {
    status = 'Failed';
    message = e instanceof Error ? e.message : String(e);
  } finally {
    // Every way out ends what the run started, so the process can exit.
    await links?.close();
    partial?.journal.close();
    base?.index.close();
    lock.release();
  }
  return report.result(o, {
    backupId,
    status,
    message,
    start,
    stop: now(),
    copyStop,
    snapshot,
    snapshotPath: snapshot ? set.snapshotDir(o.interval, snapshot) : null,
    pruneStart,
    pruneStop,
    pruned: pruned?.pruned ?? 0,
  });
}

function journalFailure(set: BackupSet, p: PartialSnapshot, err: Error): EfsBackupError {
  return new EfsBackupError(
    'FAILED',
    `cannot write the journal ${set.journalPath(p.partialStamp)}: ${err.message}`,
    { cause: err },
  );
}

/**
 * One side's calls: direct on a local disk, where a call takes microseconds; many in flight
 * through the thread pool on NFS, EFS or FUSE, where each waits on the network. `forced`
 * (the run's `io` option) overrides the choice.
 */
function sideOps(forced: IoMode | undefined, remote: boolean): FsOps {
  return (forced ?? (remote ? 'async' : 'sync')) === 'sync' ? syncOps : asyncOps;
}
