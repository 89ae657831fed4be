import type { Dirent } from 'node:fs';
import { openBase, type BaseSnapshot } from './base-snapshot.js';
import { EntryWriter } from './entry-writer.js';
import { EfsBackupError } from './errors.js';
import { Excludes } from './excludes.js';
import { commitPartial, openPartial, prepareSet, type PartialSnapshot } from './partial.js';
import { type BackupResult, type BackupStatus } from './run-report.js';
import {
  journalFailure,
  openRun,
  pruneAfterCommit,
  runResult,
  stoppedMessage,
} from './run-parts.js';
import { Scanner } from './scan.js';
import { sharedBackup } from './shared.js';
import type { BackupRunOptions } from './start.js';
import { Walk } from './walk.js';
import { XattrCopy } from './xattrs.js';

export type {
  BackupFigures,
  BackupProgress,
  BackupResult,
  BackupStatus,
  BackupWarning,
  WorkerFigures,
} from './run-report.js';
export { pointLatest } from './partial.js';
export { startBackup } from './start.js';
export type { BackupRunOptions, ShareOptions, StartedBackup } from './start.js';

/**
 * Makes one snapshot: lock → base → partial → walk → commit → prune → figures. Never throws
 * for a run that started (the result says how it ended); bad input and a held lock throw.
 */
export async function backup(options: BackupRunOptions): Promise<BackupResult> {
  if (options.share) return sharedBackup(options, options.share);
  const parts = openRun(options);
  const { backupId, o, lock, now, start, set, report, pool, control, src, dst, links } = parts;

  let base: BaseSnapshot | null = null;
  let partial: PartialSnapshot | null = null;
  let copyStop = start;
  let prune: Awaited<ReturnType<typeof pruneAfterCommit>> | null = null;
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
      control.failWith(journalFailure(set.journalPath(p.partialStamp), err)),
    );
    partial = p;
    const xattrs = XattrCopy.open(o.xattrs, report, src.mode === 'async');
    const writer = new EntryWriter(src, dst, links, report, control, p.dir, xattrs);
    // No manifest to estimate from (a first backup): the source is counted ahead of the walk,
    // from the listings the walk then takes over, when someone watches the progress.
    const excludes = Excludes.of(o);
    // What the walk leaves out is neither counted nor entered by the count ahead.
    const filter = excludes ? (rel: string, list: Dirent[]) => excludes.filter(rel, list) : null;
    const scanner =
      !base && options.onProgress
        ? new Scanner(o.sourceRoot, src, scanLimit(o.concurrency), undefined, filter)
        : null;
    report.scan = scanner;
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
      scanner,
      excludes,
    );
    control.begin(options.signal);
    const endProgress = report.startProgress(options.progressIntervalMs ?? 250);
    scanner?.start();
    try {
      await walk.run();
    } finally {
      scanner?.stop();
      await links?.close();
      control.end();
      endProgress();
    }
    walk.journalOpenDirs();
    xattrs?.finish();
    const journalError = await new Promise<Error | null>((resolve) => p.journal.flush(resolve));
    if (journalError)
      control.failWith(journalFailure(set.journalPath(p.partialStamp), journalError));
    copyStop = now();
    if (control.fatal) throw control.fatal;
    if (control.stopReason || !walk.complete) {
      status = 'Incomplete';
      message = stoppedMessage(control, walk.unfinished());
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
        exclude: o.exclude,
        excludeIfPresent: o.excludeIfPresent,
      };
      const { latestError } = await commitPartial(set, p, facts, lock, report);
      snapshot = p.stamp;
      prune = await pruneAfterCommit(parts, options.signal);
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
  return runResult(parts, { status, message, copyStop, snapshot, prune });
}

/** Listings the count ahead keeps in flight: a small share of the walk's calls. */
function scanLimit(concurrency: number): number {
  return Math.max(2, Math.ceil(concurrency / 8));
}
