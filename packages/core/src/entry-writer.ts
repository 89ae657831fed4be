import path from 'node:path';
import type { Meta } from './change.js';
import { entryOf } from './change.js';
import { copyFile, type CopyError, type CopyOptions } from './copy-file.js';
import { applyEntryMeta } from './entry-meta.js';
import { callsFor, egid, euid, mkfifo, type FsOps } from './fs-ops.js';
import type { LinkThread } from './link-thread.js';
import type { ManifestEntry } from './manifest.js';
import { removeAll } from './remove-tree.js';
import type { WalkControl } from './run-control.js';
import type { RunReport } from './run-report.js';
import type { XattrCopy, Xattrs } from './xattrs.js';

/**
 * Carries out what the walk decided for one entry on the destination: a hard link (on the link
 * thread when there is one), or a new copy of a file, symlink or FIFO with its metadata; a
 * name a resumed partial already holds is replaced (EEXIST), and an owner that cannot be kept
 * without root is a warning. Every error goes to the run's control, which decides what it does.
 */
export class EntryWriter {
  constructor(
    private readonly src: FsOps,
    private readonly dst: FsOps,
    private readonly links: LinkThread | null,
    private readonly report: RunReport,
    private readonly control: WalkControl,
    /** A UTF-8 folder on the destination for FIFOs whose path is not UTF-8 (see `mkfifo`). */
    private readonly scratch: string,
    /** Extended attributes, source to destination; null when the run keeps none. */
    private readonly xattrs: XattrCopy | null,
  ) {
    this.copying = {
      stopping: control.stopping,
      // A partial is 0700. A folder's default ACL is written after its children, but a resumed
      // partial (or a unit taken over) may hold folders with theirs, and a folder made in one
      // inherits it: only a run that writes no attributes (none kept, or none supported by
      // the source or the destination, as on EFS) makes its files with their modes.
      modeAtCreate: () => this.xattrs === null || this.xattrs.writesNone,
    };
  }

  private readonly copying: CopyOptions;

  /** The entry `entryOf` makes, with the attributes copied; null (the run told) on an error. */
  private finishEntry(
    rel: string,
    src: string,
    dst: string,
    name: string,
    m: Meta,
    data: string,
    cb: (rec: ManifestEntry | null) => void,
  ): void {
    if (!this.xattrs) return cb(entryOf(name, m, data));
    this.xattrs.read(rel, src, (x) => {
      let set: Xattrs | null = null;
      try {
        if (x) set = this.xattrs!.write(rel, dst, x);
      } catch (e) {
        this.control.fail(e as NodeJS.ErrnoException, rel);
        return cb(null);
      }
      cb(entryOf(name, m, data, undefined, set));
    });
  }

  /** Writes a new copy of a file, symlink or FIFO; `cb(null)` when it was given up with a warning. */
  create(
    rel: string,
    src: string,
    dst: string,
    m: Meta,
    target: string,
    cb: (rec: ManifestEntry | null) => void,
  ): void {
    const name = path.basename(dst);
    // The name is there already (a resumed partial): replaced, unless the walk is stopping. A
    // unit whose lease was lost may find there what its new owner wrote, and leaves it be.
    const retryOnExists = (attempt: (again: () => void) => void): void => {
      attempt(() => {
        if (this.control.stopping()) return cb(null);
        this.replace(dst, (e) => (e ? (this.control.fail(e), cb(null)) : attempt(() => cb(null))));
      });
    };
    if (m.kind === 'f') {
      return retryOnExists((again) => {
        // Files of one chunk are copied with direct calls when the walk makes them (local
        // disk); larger ones always go through the pool, so the event loop keeps turning.
        copyFile(
          callsFor(this.src, m.size),
          callsFor(this.dst, m.size),
          src,
          dst,
          m.size,
          m,
          this.copying,
          (err: CopyError | null, res) => {
            if (err) {
              if (err.code === 'ESTOPPED') return cb(null);
              if (err.side === 'destination' && err.code === 'EEXIST') return again();
              if (err.side === 'source') {
                this.report.warn(
                  rel,
                  err.code === 'ENOENT'
                    ? 'vanished during the backup'
                    : `cannot read: ${err.message}`,
                );
                return this.dst.unlink(dst, () => cb(null));
              }
              if (err.code === 'EPERM' && err.syscall === 'fchown')
                return this.ownerLost(rel, dst, src, m, target, cb);
              this.control.fail(err, rel);
              return cb(null);
            }
            this.report.count('f', m.size, 'copied', res!.bytes);
            this.finishEntry(rel, src, dst, name, { ...m, size: res!.bytes }, res!.digest, cb);
          },
        );
      });
    }
    if (m.kind === 'l') {
      return retryOnExists((again) => {
        this.dst.symlink(target, dst, (err) => {
          if (err) return err.code === 'EEXIST' ? again() : (this.control.fail(err, rel), cb(null));
          this.setMeta(rel, dst, m, true, (e) => {
            if (e) return (this.control.fail(e), cb(null));
            this.report.count(m.kind!, m.size, 'copied');
            this.finishEntry(rel, src, dst, name, m, target, cb);
          });
        });
      });
    }
    retryOnExists((again) => {
      mkfifo(dst, this.scratch, (err) => {
        if (err) {
          if (err.code === 'EEXIST') return again();
          this.control.fail(err, rel);
          return cb(null);
        }
        this.setMeta(rel, dst, m, false, (e) => {
          if (e) return (this.control.fail(e), cb(null));
          this.report.count(m.kind!, m.size, 'copied');
          this.finishEntry(rel, src, dst, name, m, '', cb);
        });
      });
    });
  }

  /** Not root and the file belongs to someone else: keep it, owned by us, with a warning. */
  private ownerLost(
    rel: string,
    dst: string,
    src: string,
    m: Meta,
    target: string,
    cb: (rec: ManifestEntry | null) => void,
  ): void {
    this.report.warn(rel, 'owner not kept: changing owners needs root');
    this.dst.unlink(dst, () =>
      this.create(rel, src, dst, { ...m, uid: euid, gid: egid }, target, cb),
    );
  }

  /** Owner, mode and times of a new symlink or FIFO (never following a symlink). */
  private setMeta(
    rel: string,
    dst: string,
    m: Meta,
    isLink: boolean,
    cb: (err: NodeJS.ErrnoException | null) => void,
  ): void {
    applyEntryMeta(this.dst, dst, m, isLink, () => this.ownerNotKept(rel), cb);
  }

  /** Hard-links `from` to `dst`, replacing what a resumed partial left at `dst`. */
  private link(from: string, dst: string, cb: (err: NodeJS.ErrnoException | null) => void): void {
    const again = (err: NodeJS.ErrnoException | null): void => {
      if (!err || err.code !== 'EEXIST') return cb(err);
      this.replace(dst, (e) => (e ? cb(e) : this.linkOnce(from, dst, cb)));
    };
    this.linkOnce(from, dst, again);
  }

  private linkOnce(
    from: string,
    dst: string,
    cb: (err: NodeJS.ErrnoException | null) => void,
  ): void {
    if (this.links) this.links.link(from, dst, cb);
    else this.dst.link(from, dst, cb);
  }

  /**
   * Hard-links `from` to `dst` as the entry's job `done`. A link queued for the link thread
   * holds no slot of the walk (the batch it goes in holds one), so the walk goes on filling
   * batches: the job ends as soon as the link is queued (queued first, so the walk never
   * looks idle in between), and `cb` gets a no-op as the entry's completion. Whatever the
   * entry does after such a link (a fallback copy) must take a slot of its own. Without the
   * link thread, `cb` gets `done` itself.
   */
  linkQueued(
    from: string,
    dst: string,
    done: () => void,
    cb: (err: NodeJS.ErrnoException | null, slot: () => void) => void,
  ): void {
    if (!this.links) return this.link(from, dst, (err) => cb(err, done));
    this.link(from, dst, (err) => cb(err, noop));
    done();
  }

  /**
   * Makes a directory of the partial (mode 0700 while it is written); `existed` when a resumed
   * partial already holds it, made writable again. Anything else in its place is replaced.
   */
  makeDir(dst: string, cb: (err: NodeJS.ErrnoException | null, existed: boolean) => void): void {
    this.dst.mkdir(dst, 0o700, (err) => {
      if (!err) return cb(null, false);
      if (err.code !== 'EEXIST') return cb(err, false);
      this.dst.lstat(dst, (e, st) => {
        if (!e && st.isDirectory()) return this.dst.chmod(dst, 0o700, (e2) => cb(e2, true));
        this.replace(dst, (e3) => {
          if (e3) return cb(e3, false);
          this.dst.mkdir(dst, 0o700, (e4) => cb(e4, false));
        });
      });
    });
  }

  /** A directory of the partial made if it is not there; one that is stays as it is. */
  ensureDir(dst: string, cb: (err: NodeJS.ErrnoException | null) => void): void {
    this.dst.mkdir(dst, 0o700, (err) => {
      if (!err || err.code !== 'EEXIST') return cb(err);
      this.dst.lstat(dst, (e, st) => {
        if (!e && st.isDirectory()) return cb(null);
        this.makeDir(dst, (e2) => cb(e2));
      });
    });
  }

  /** A resumed partial's directory may hold names the source no longer has: removed. */
  removeExtras(dir: string, keep: string[], next: () => void): void {
    this.dst.readdir(dir, (err, existing) => {
      if (err) return next();
      const kept = new Set(keep);
      const extras = existing.filter((n) => !kept.has(n));
      let left = extras.length;
      if (left === 0) return next();
      for (const n of extras) {
        removeAll(this.dst, `${dir}/${n}`, (e) => {
          if (e) this.control.fail(e);
          if (--left === 0) next();
        });
      }
    });
  }

  /** Removes a name from the partial; only ever a name this run is about to write. */
  replace(dst: string, cb: (err: NodeJS.ErrnoException | null) => void): void {
    this.dst.unlink(dst, (err) => {
      if (!err || err.code === 'ENOENT') return cb(null);
      if (err.code === 'EISDIR' || err.code === 'EPERM') return removeAll(this.dst, dst, cb);
      cb(err);
    });
  }

  /**
   * A new directory's attributes, written as it is made, except its default ACL, which would
   * be inherited by the copies written into it: that one waits for `dirMeta` (`later`).
   * `recorded` is what the manifest says the directory holds once it is finished.
   */
  dirXattrs(rel: string, src: string, dst: string, cb: (x: DirXattrs | Error) => void): void {
    if (!this.xattrs) return cb(NO_XATTRS);
    this.xattrs.read(rel, src, (x) => {
      if (!x) return cb(NO_XATTRS);
      let out: DirXattrs;
      try {
        out = this.xattrs!.writeDir(rel, dst, x);
      } catch (e) {
        return cb(e as Error);
      }
      cb(out);
    });
  }

  /** Owner, mode and times of a directory, once its children are written; then `later`. */
  dirMeta(
    rel: string,
    dst: string,
    m: Meta,
    later: Xattrs | null,
    cb: (err: NodeJS.ErrnoException | null) => void,
  ): void {
    applyEntryMeta(
      this.dst,
      dst,
      m,
      false,
      () => this.ownerNotKept(rel),
      (err) => {
        if (err || !later) return cb(err);
        try {
          this.xattrs!.write(rel, dst, later);
        } catch (e) {
          return cb(e as NodeJS.ErrnoException);
        }
        cb(null);
      },
    );
  }

  /** Without root, foreign owners cannot be kept: a warning, not a failure. */
  private ownerNotKept(rel: string): void {
    this.report.warn(rel, 'owner not kept: changing owners needs root');
  }
}

function noop(): void {}

/** A new directory's attributes: what its entry records, and what is written after its children. */
export interface DirXattrs {
  recorded: Xattrs | null;
  later: Xattrs | null;
}

const NO_XATTRS: DirXattrs = { recorded: null, later: null };
