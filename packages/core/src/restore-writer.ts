import { copyFile, type CopyError, type CopyOptions } from './copy-file.js';
import { applyEntryMeta } from './entry-meta.js';
import { callsFor, egid, euid, mkfifo, timeArg, type FsOps } from './fs-ops.js';
import type { ManifestEntry } from './manifest.js';
import { shown } from './names.js';
import { removeAll } from './remove-tree.js';
import type { RestoreReport } from './restore-report.js';
import type { RestoreTarget } from './restore-target.js';
import { XattrCopy, type Xattrs } from './xattrs.js';

type Done = (err: Error | null) => void;

/**
 * Writes one entry of the snapshot into the target: a new inode (a file copied from the
 * snapshot, a symlink or a FIFO) at a temporary name, given its metadata, then renamed over
 * the entry's name, replacing whatever stood there (a directory too). A directory's own
 * metadata, once its children are written. Every call on the target goes through its `io`.
 */
export class RestoreWriter {
  private readonly stopping = (): boolean => this.report.fatal !== null;
  /** A restore writes into folders of the target's own (default ACLs of their own). */
  private readonly copying: CopyOptions = { stopping: this.stopping, modeAtCreate: () => false };
  /** Owners (`uid:gid`) this process was refused: their files are written as its own. */
  private readonly deniedOwners = new Set<string>();
  /** Opened at the first entry with attributes; null where they cannot be written. */
  private xattrs: XattrCopy | null | undefined;

  constructor(
    /** The snapshot side's calls (file reads). */
    private readonly snapIo: FsOps,
    /** The target side's calls. */
    private readonly io: FsOps,
    private readonly snapshotPath: string,
    private readonly target: RestoreTarget,
    private readonly report: RestoreReport,
  ) {}

  /** Writes a new inode at a temporary name, then renames it over `dst`. */
  write(rel: string, dst: string, e: ManifestEntry, cb: Done): void {
    const tmp = this.target.temporary(dst);
    const commit = (err: Error | null): void => {
      // The attributes go on the temporary name (always UTF-8), last: after the owner, which
      // would clear a file capability.
      if (!err && e.xattrs) err = this.writeXattrs(dst, tmp, e.xattrs);
      if (err) return this.io.unlink(tmp, () => cb(err));
      this.putInPlace(tmp, dst, cb);
    };
    if (e.kind === 'f') return this.copy(rel, dst, tmp, e, commit);
    if (e.kind === 'l') {
      return this.io.symlink(e.data, tmp, (err) =>
        err ? cb(err) : this.meta(tmp, e, true, commit, dst),
      );
    }
    // A path that is not UTF-8 is made in the target's root (same file system), then linked.
    mkfifo(tmp, this.target.root, (err) => (err ? cb(err) : this.meta(tmp, e, false, commit, dst)));
  }

  /**
   * Renames the new inode at `tmp` over `dst`, replacing a directory that stands there; on
   * failure `tmp` is removed.
   */
  putInPlace(tmp: string, dst: string, cb: Done): void {
    const failed = (err: Error): void => this.io.unlink(tmp, () => cb(err));
    this.io.rename(tmp, dst, (re) => {
      if (!re) return cb(null);
      if (re.code !== 'EISDIR' && re.code !== 'ENOTEMPTY' && re.code !== 'EEXIST') {
        return failed(re);
      }
      // A directory stands where this name goes.
      removeAll(this.io, dst, (rme) => {
        if (rme) return failed(rme);
        this.io.rename(tmp, dst, (re2) => (re2 ? failed(re2) : cb(null)));
      });
    });
  }

  /**
   * Copies a file from the snapshot to `tmp`. An owner that needs root is a warning: the file
   * is written again, owned by this process (once refused, an owner's other files at once).
   */
  private copy(rel: string, dst: string, tmp: string, e: ManifestEntry, cb: Done): void {
    const owner = `${e.uid}:${e.gid}`;
    const denied = this.deniedOwners.has(owner);
    const t = timeArg(e.mtimeSec, e.mtimeNsec);
    const meta = denied
      ? { mode: e.mode, uid: euid, gid: egid, atime: t, mtime: t, sparse: true }
      : { mode: e.mode, uid: e.uid, gid: e.gid, atime: t, mtime: t, sparse: true };
    copyFile(
      callsFor(this.snapIo, e.size),
      callsFor(this.io, e.size),
      rel === '' ? this.snapshotPath : `${this.snapshotPath}/${rel}`,
      tmp,
      e.size,
      meta,
      this.copying,
      (err, res) => {
        if (err && ownerRefused(err) && !denied) {
          this.deniedOwners.add(owner);
          return this.io.unlink(tmp, (ue) => (ue ? cb(ue) : this.copy(rel, dst, tmp, e, cb)));
        }
        if (err) return cb(err);
        if (denied) this.ownerNotRestored(dst);
        this.report.result.bytes += res!.bytes;
        if (res!.digest !== e.data) {
          this.report.warn(
            `${shown(this.report.relative(dst))}: the snapshot's data does not match its manifest (run verify)`,
          );
        }
        cb(null);
      },
    );
  }

  /**
   * Owner, mode and times of `p` from its entry; an owner that needs root is a warning, which
   * names `name` (the entry's own name, when `p` is its temporary one).
   */
  meta(p: string, e: ManifestEntry, isLink: boolean, cb: Done, name = p): void {
    const t = timeArg(e.mtimeSec, e.mtimeNsec);
    const meta = { mode: e.mode, uid: e.uid, gid: e.gid, atime: t, mtime: t };
    applyEntryMeta(this.io, p, meta, isLink, () => this.ownerNotRestored(name), cb);
  }

  /** The entry's extended attributes and ACLs on `p`; an error ends the restore. */
  writeXattrs(dst: string, p: string, x: Xattrs): Error | null {
    this.xattrs ??= XattrCopy.open(true, {
      warn: (_rel, message) => this.report.warn(`${shown(this.report.relative(dst))}: ${message}`),
    });
    if (!this.xattrs) return null;
    try {
      this.xattrs.write(dst, p, x);
      return null;
    } catch (e) {
      return e as Error;
    }
  }

  private ownerNotRestored(dst: string): void {
    this.report.warn(`${shown(this.report.relative(dst))}: owner not restored (needs root)`);
  }
}

/** The destination refused to give the copy its owner (only root may). */
function ownerRefused(err: CopyError): boolean {
  return err.side === 'destination' && err.code === 'EPERM' && err.syscall === 'fchown';
}
