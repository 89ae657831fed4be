import path from 'node:path';
import type { FsOps } from './fs-ops.js';
import { InFlight, type Job } from './inflight.js';

/**
 * Removes a directory tree with many calls in flight: one readdir per directory (types from
 * the listing, no stat), one unlink per entry, one rmdir per directory after its children.
 * The calls are `io`'s, the destination's own (direct on a local disk, through the pool on a
 * network file system); paths are byte-safe. Calls `cb` when the tree is gone, or with the
 * first error.
 */
export function removeTree(
  io: FsOps,
  pool: InFlight,
  root: string,
  cb: (err: NodeJS.ErrnoException | null) => void,
): void {
  // An error is remembered and the walk goes on, so every removable entry is removed.
  let failed: NodeJS.ErrnoException | null = null;
  const fail = (err: NodeJS.ErrnoException, then: () => void): void => {
    failed ??= err;
    then();
  };

  // A job calls `done` only after pushing what follows it, so the pool is never idle while
  // the tree is still being removed (or until it is halted, at the window's end).
  const removeDir = (dir: string, parentDone: () => void, retried = false): void => {
    pool.push((done) => {
      io.readdirTypes(dir, (err, entries) => {
        if (err) {
          if (err.code === 'EACCES' && !retried) {
            return makeWritable(io, dir, () => {
              removeDir(dir, parentDone, true);
              done();
            });
          }
          if (err.code === 'ENOENT') parentDone();
          else fail(err, parentDone);
          return done();
        }
        let pending = entries.length + 1;
        const childDone = (): void => {
          if (--pending > 0) return;
          pool.push((done2) => {
            io.rmdir(dir, (e) => {
              if (e && e.code !== 'ENOENT') fail(e, parentDone);
              else parentDone();
              done2();
            });
          });
        };
        // Files in a lane per directory: unlinking takes the directory's lock, so spreading
        // the calls over directories keeps them from waiting for each other (see InFlight).
        const lane: Job[] = [];
        for (const entry of entries) {
          const p = path.join(dir, entry.name);
          if (entry.isDirectory()) {
            removeDir(p, childDone);
            continue;
          }
          lane.push((done2) => {
            io.unlink(p, (e) => {
              if (e && e.code === 'EISDIR') removeDir(p, childDone);
              else if (e && e.code === 'EACCES') {
                return makeWritable(io, dir, () =>
                  io.unlink(p, (e2) => {
                    if (e2 && e2.code !== 'ENOENT') fail(e2, childDone);
                    else childDone();
                    done2();
                  }),
                );
              } else if (e && e.code !== 'ENOENT') fail(e, childDone);
              else childDone();
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
        return io.unlink(root, (e) => {
          cb(e && e.code !== 'ENOENT' ? e : null);
          done();
        });
      }
      removeDir(root, () => cb(failed));
      done();
    });
  });
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
