import fs from 'node:fs';
import path from 'node:path';
import type { InFlight } from './inflight.js';

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

  const removeDir = (dir: string, parentDone: () => void): void => {
    pool.push((done) => {
      fs.readdir(dir, { withFileTypes: true }, (err, entries) => {
        if (err) {
          done();
          if (err.code === 'ENOENT') return parentDone();
          if (err.code === 'EACCES') return makeWritable(dir, () => removeDir(dir, parentDone));
          return fail(err, parentDone);
        }
        let pending = entries.length + 1;
        const childDone = (): void => {
          if (--pending > 0) return;
          pool.push((done2) => {
            fs.rmdir(dir, (e) => {
              done2();
              if (e && e.code !== 'ENOENT') return fail(e, parentDone);
              parentDone();
            });
          });
        };
        for (const entry of entries) {
          const p = path.join(dir, entry.name);
          if (entry.isDirectory()) {
            removeDir(p, childDone);
          } else {
            pool.push((done2) => {
              fs.unlink(p, (e) => {
                done2();
                if (e && e.code === 'EISDIR') return removeDir(p, childDone);
                if (e && e.code === 'EACCES')
                  return makeWritable(dir, () => fs.unlink(p, () => childDone()));
                if (e && e.code !== 'ENOENT') return fail(e, childDone);
                childDone();
              });
            });
          }
        }
        done();
        childDone();
      });
    });
  };

  fs.lstat(root, (err, st) => {
    if (err) return cb(err.code === 'ENOENT' ? null : err);
    if (!st.isDirectory()) return fs.unlink(root, (e) => cb(e && e.code !== 'ENOENT' ? e : null));
    removeDir(root, () => cb(failed));
  });
}

/** A read-only directory (its snapshot's copy of one) must be writable to empty it. */
function makeWritable(dir: string, next: () => void): void {
  fs.chmod(dir, 0o700, () => next());
}
