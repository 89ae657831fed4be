import path from 'node:path';
import type { Excludes } from './excludes.js';
import type { FsOps } from './fs-ops.js';
import { InFlight, type Job } from './inflight.js';

/**
 * Removes a directory tree with many calls in flight: one readdir per directory (types from
 * the listing, no stat), one unlink per entry, one rmdir per directory after its children.
 * The calls are `io`'s, the destination's own (direct on a local disk, through the pool on a
 * network file system); paths are byte-safe. Calls `cb` when the tree is gone, or with the
 * first error. With `spare`, what the excludes leave out stays, and the directories holding it.
 */
export function removeTree(
  io: FsOps,
  pool: InFlight,
  root: string,
  cb: (err: NodeJS.ErrnoException | null) => void,
  spare?: Spare,
): void {
  // An error is remembered and the walk goes on, so every removable entry is removed.
  let failed: NodeJS.ErrnoException | null = null;
  const fail = (err: NodeJS.ErrnoException, then: () => void): void => {
    failed ??= err;
    then();
  };
  const dryRun = spare?.dryRun ?? false;

  // A job calls `done` only after pushing what follows it, so the pool is never idle while
  // the tree is still being removed (or until it is halted, at the window's end). `parentDone`
  // is told whether the directory was kept (it holds what `spare` spares).
  const removeDir = (
    dir: string,
    rel: string,
    parentDone: (kept?: boolean) => void,
    retried = false,
  ): void => {
    pool.push((done) => {
      io.readdirTypes(dir, (err, entries) => {
        if (err) {
          if (err.code === 'EACCES' && !retried && !dryRun) {
            return makeWritable(io, dir, () => {
              removeDir(dir, rel, parentDone, true);
              done();
            });
          }
          if (err.code === 'ENOENT') parentDone();
          else fail(err, parentDone);
          return done();
        }
        // What the excludes leave out is not the restore's to delete: a tagged directory is
        // kept whole, an excluded entry kept with the directories on its way.
        if (spare?.excludes.tagged(entries)) {
          parentDone(true);
          return done();
        }
        let kept = false;
        /** With `spare`: the children removed whole, told once this directory is known kept. */
        const gone: string[] = [];
        let pending = entries.length + 1;
        const finish = (): void => {
          if (kept) {
            for (const p of gone) spare!.removed(p);
            return parentDone(true);
          }
          if (dryRun) return parentDone();
          pool.push((done2) => {
            io.rmdir(dir, (e) => {
              if (e && e.code !== 'ENOENT') fail(e, parentDone);
              else parentDone();
              done2();
            });
          });
        };
        const childDone = (k = false): void => {
          if (k) kept = true;
          if (--pending === 0) finish();
        };
        const spareChild =
          (p: string) =>
          (k = false): void => {
            if (k) kept = true;
            else gone.push(p);
            if (--pending === 0) finish();
          };
        // Files in a lane per directory: unlinking takes the directory's lock, so spreading
        // the calls over directories keeps them from waiting for each other (see InFlight).
        const lane: Job[] = [];
        for (const entry of entries) {
          const p = path.join(dir, entry.name);
          let childRel = '';
          let thisDone = childDone;
          if (spare) {
            childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
            if (spare.excludes.excludesEntry(rel, entry)) {
              childDone(true);
              continue;
            }
            thisDone = spareChild(p);
          }
          if (entry.isDirectory()) {
            removeDir(p, childRel, thisDone);
            continue;
          }
          if (dryRun) {
            thisDone();
            continue;
          }
          lane.push((done2) => {
            io.unlink(p, (e) => {
              if (e && e.code === 'EISDIR') removeDir(p, childRel, thisDone);
              else if (e && e.code === 'EACCES') {
                return makeWritable(io, dir, () =>
                  io.unlink(p, (e2) => {
                    if (e2 && e2.code !== 'ENOENT') fail(e2, thisDone);
                    else thisDone();
                    done2();
                  }),
                );
              } else if (e && e.code !== 'ENOENT') fail(e, thisDone);
              else thisDone();
              done2();
            });
          });
        }
        pool.pushLane(lane);
        childDone();
        done();
      });
    });
  };

  pool.push((done) => {
    io.lstat(root, (err, st) => {
      if (err) {
        cb(err.code === 'ENOENT' ? null : err);
        return done();
      }
      if (!st.isDirectory()) {
        if (dryRun) {
          spare!.removed(root);
          cb(null);
          return done();
        }
        return io.unlink(root, (e) => {
          if (!e) spare?.removed(root);
          cb(e && e.code !== 'ENOENT' ? e : null);
          done();
        });
      }
      removeDir(root, spare?.rel ?? '', (kept) => {
        if (!kept) spare?.removed(root);
        cb(failed);
      });
      done();
    });
  });
}

/**
 * What a removal leaves in place: what `excludes` leave out of a backup of the tree, whose
 * root is at `rel` (a path relative to the backed-up root), and the directories holding it.
 * `removed` is told each path removed whole (the root, or the topmost of what went); a dry
 * run only tells.
 */
export interface Spare {
  excludes: Excludes;
  rel: string;
  dryRun?: boolean;
  removed(p: string): void;
}

/** A read-only directory (its snapshot's copy of one) must be writable to empty it. */
function makeWritable(io: FsOps, dir: string, next: () => void): void {
  io.chmod(dir, 0o700, () => next());
}

/** Removes one tree (or a single name) on its own with `io`'s calls, a few in flight. */
export function removeAll(
  io: FsOps,
  p: string,
  cb: (err: NodeJS.ErrnoException | null) => void,
): void {
  removeTree(io, new InFlight(8), p, cb);
}

/** `removeAll` for a caller that awaits (bookkeeping outside the hot path). */
export function removedAll(io: FsOps, p: string): Promise<void> {
  return new Promise((resolve, reject) =>
    removeAll(io, p, (err) => (err ? reject(err) : resolve())),
  );
}
