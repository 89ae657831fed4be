import fs from 'node:fs';
import path from 'node:path';
import { badInput } from './errors.js';
import { asyncOps, syncOps, type FsOps } from './fs-ops.js';
import { InFlight } from './inflight.js';
import { isRemote } from './options.js';
import { RestoreLinks } from './restore-links.js';
import { RestoreReport, type RestoreChange, type RestoreResult } from './restore-report.js';
import { checkTarget, RestoreTarget } from './restore-target.js';
import { RestoreWalk } from './restore-walk.js';
import { RestoreWriter } from './restore-writer.js';
import { checkSnapshotPath, entryAt, isGone, openSnapshot, prunedError } from './selectors.js';

export { differences } from './restore-differences.js';
export type { RestoreAction, RestoreChange, RestoreResult } from './restore-report.js';
export { restoreTemporary } from './restore-target.js';

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
  /** Remove from the target what the snapshot does not hold (a mirror). @default false */
  delete?: boolean;
  /** List what would change; write nothing. @default false */
  dryRun?: boolean;
  /** @default from the target's file-system type */
  concurrency?: number;
  /** @default from the target's file-system type */
  io?: 'sync' | 'async';
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
  const { set, snapshot, index } = await openSnapshot(
    path.resolve(o.destination),
    label,
    o.snapshot,
    'being restored',
  );
  try {
    const sub = checkSnapshotPath(index, o.subdir ?? '', 'subdir');
    const root = entryAt(index, sub)!;
    const checked = checkTarget(o.target, set.dir, root, sub);
    // Each side's calls by its own file system: the snapshot's (read) and the target's (written).
    const io = sideOps(o.io, isRemote(checked.existing));
    const snapIo = sideOps(o.io, isRemote(set.dir));
    const dryRun = o.dryRun ?? false;
    const pool = new InFlight(o.concurrency ?? 32);
    const report = new RestoreReport(snapshot, checked.root, o.onChange, () => pool.halt());
    const target = new RestoreTarget(checked.root, report);
    const writer = new RestoreWriter(snapIo, io, snapshot.path, target, report);
    const links = new RestoreLinks(index, sub, target, report, dryRun);
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
    );
    try {
      if (!dryRun) fs.mkdirSync(path.dirname(checked.dst), { recursive: true });
      await walk.run(sub, root, checked.dst);
      if (!report.fatal) links.relink();
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

/** One side's calls: direct on a local disk, through the thread pool on a network one. */
function sideOps(forced: 'sync' | 'async' | undefined, remote: boolean): FsOps {
  return (forced ?? (remote ? 'async' : 'sync')) === 'sync' ? syncOps : asyncOps;
}
