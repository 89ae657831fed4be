import fs from 'node:fs';
import path from 'node:path';
import { badInput } from './errors.js';
import { Excludes } from './excludes.js';
import { asyncOps, syncOps, type FsOps } from './fs-ops.js';
import { InFlight } from './inflight.js';
import { defaultConcurrency, isRemote } from './options.js';
import { RestoreLinks } from './restore-links.js';
import { RestoreReport, type RestoreChange, type RestoreResult } from './restore-report.js';
import { checkTarget, RestoreTarget } from './restore-target.js';
import { RestoreWalk } from './restore-walk.js';
import { RestoreWriter } from './restore-writer.js';
import { checkSnapshotPath, entryAt, isGone, openSnapshot, prunedError } from './selectors.js';

export { differences } from './restore-differences.js';
export type { RestoreAction, RestoreChange, RestoreResult } from './restore-report.js';
export { restoreTemporary } from './restore-target.js';

type IoMode = 'sync' | 'async';

export interface RestoreOptions {
  destination: string;
  /** @default 'efs-backup' */
  label?: string;
  /** `latest`, `daily.0`, a stamp or a BackupId. */
  snapshot: string;
  /** Where to restore to; created when missing. May be the live source. */
  target: string;
  /** A directory or a single file inside the snapshot. @default the whole snapshot */
  subdir?: string;
  /**
   * Remove from the target what the snapshot does not hold (a mirror), except what the
   * snapshot's excludes left out (its manifest says which): that stays. @default false
   */
  delete?: boolean;
  /** List what would change; write nothing. @default false */
  dryRun?: boolean;
  /**
   * File-system calls in flight, 1 to 1024. @default from the file-system types of the target
   * and the backup set, as a backup's: the network figure when either is on NFS, EFS or FUSE
   */
  concurrency?: number;
  /**
   * How file-system calls are made: 'async' keeps many in flight (network file systems),
   * 'sync' makes them on the main thread (local disks, where that is cheaper).
   * @default for each side (the snapshot read, the target written), from its file-system type
   */
  io?: IoMode | { snapshot: IoMode; target: IoMode };
  onChange?: (change: RestoreChange) => void;
}

/**
 * Restores a snapshot, a sub-directory or one file into a target: open the snapshot → check
 * the target → walk → relink hard links → figures. Only what differs is written, each file
 * into a new inode renamed over the old name, so a symlink planted in the target is replaced,
 * never followed, and other names of a target file are left alone.
 */
export async function restore(o: RestoreOptions): Promise<RestoreResult> {
  const label = o.label ?? 'efs-backup';
  if (!o.target) throw badInput('target is required');
  if (
    o.concurrency !== undefined &&
    !(Number.isInteger(o.concurrency) && o.concurrency >= 1 && o.concurrency <= 1024)
  ) {
    throw badInput(`concurrency must be an integer from 1 to 1024, not ${o.concurrency}`);
  }
  const { set, snapshot, index } = await openSnapshot(
    o.destination,
    label,
    o.snapshot,
    'being restored',
  );
  try {
    const sub = checkSnapshotPath(index, o.subdir ?? '', 'subdir');
    const root = entryAt(index, sub)!;
    const checked = checkTarget(o.target, set.dir, root, sub);
    const sides = restoreSides(o, { snapshot: set.dir, target: checked.existing });
    const { snapshot: snapIo, target: io } = sides;
    const dryRun = o.dryRun ?? false;
    const pool = new InFlight(sides.concurrency);
    const report = new RestoreReport(snapshot, checked.root, o.onChange, () => pool.halt());
    const target = new RestoreTarget(checked.root, report);
    const writer = new RestoreWriter(snapIo, io, snapshot.path, target, report);
    const links = new RestoreLinks(sub, io, target, writer, report, dryRun);
    const walk = new RestoreWalk(
      index,
      snapIo,
      io,
      pool,
      target,
      writer,
      links,
      report,
      dryRun,
      o.delete ?? false,
      // What the backup left out is not gone: --delete leaves it in the target.
      Excludes.ofHeader(index.header),
    );
    try {
      if (!dryRun) fs.mkdirSync(path.dirname(checked.dst), { recursive: true });
      await walk.run(sub, root, checked.dst);
      if (!report.fatal) await links.relink(pool);
      return report.figures();
    } catch (e) {
      // The snapshot went away under the restore: say why, not which file was missing.
      if (isGone(snapshot)) throw prunedError(snapshot, 'being restored', e);
      throw e;
    }
  } finally {
    index.close();
  }
}

/** Each side's calls, and how many are in flight. */
export interface RestoreSides {
  /** The snapshot side's (read). */
  snapshot: FsOps;
  /** The target side's (written). */
  target: FsOps;
  concurrency: number;
}

/**
 * Each side's calls by its own file system (`at`: a path on each; a file system that cannot
 * be told is taken as a network one), unless `io` forces them; the calls in flight sized for
 * the slower side, as a backup's.
 */
export function restoreSides(
  o: Pick<RestoreOptions, 'io' | 'concurrency'>,
  at: { snapshot: string; target: string },
): RestoreSides {
  const remote = { snapshot: isRemote(at.snapshot), target: isRemote(at.target) };
  const { io } = o;
  return {
    snapshot: sideOps(typeof io === 'object' ? io.snapshot : io, remote.snapshot),
    target: sideOps(typeof io === 'object' ? io.target : io, remote.target),
    // A side on a network file system waits on every call: its default wins.
    concurrency: o.concurrency ?? defaultConcurrency(remote.snapshot ? at.snapshot : at.target),
  };
}

/** One side's calls: direct on a local disk, through the thread pool on a network one. */
function sideOps(forced: IoMode | undefined, remote: boolean): FsOps {
  return (forced ?? (remote ? 'async' : 'sync')) === 'sync' ? syncOps : asyncOps;
}
