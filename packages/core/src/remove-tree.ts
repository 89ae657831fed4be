import fs from 'node:fs';
import path from 'node:path';
import { asyncOps } from './fs-ops.js';
import { InFlight, type Job } from './inflight.js';
import { fsPath } from './names.js';

/**
 * Removes a directory tree with many calls in flight: one readdir per directory (types from
 * the listing, no stat), one unlink per entry, one rmdir per directory after its children.
 * Calls `cb` when the tree is gone, or with the first error.
 */
export function removeTree(
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
      asyncOps.readdirTypes(dir, (err, entries) => {
        if (err) {
          if (err.code === 'EACCES' && !retried) {
            return makeWritable(dir, () => {
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
            fs.rmdir(fsPath(dir), (e) => {
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
            fs.unlink(fsPath(p), (e) => {
              if (e && e.code === 'EISDIR') removeDir(p, childDone);
              else if (e && e.code === 'EACCES') {
                return makeWritable(dir, () =>
                  fs.unlink(fsPath(p), (e2) => {
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
    fs.lstat(fsPath(root), (err, st) => {
      if (err) {
        cb(err.code === 'ENOENT' ? null : err);
        return done();
      }
      if (!st.isDirectory()) {
        return fs.unlink(fsPath(root), (e) => {
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
function makeWritable(dir: string, next: () => void): void {
  fs.chmod(fsPath(dir), 0o700, () => next());
}

/** Removes one tree (or a single name) on its own, a few calls in flight; byte-safe. */
export function removeAll(p: string, cb: (err: NodeJS.ErrnoException | null) => void): void {
  removeTree(new InFlight(8), p, cb);
}
