import fs from 'node:fs';
import { copyFile, CHUNK } from './copy-file.js';
import { applyEntryMeta } from './entry-meta.js';
import { asyncOps, mkfifo, syncOps, timeArg, type FsOps } from './fs-ops.js';
import type { ManifestEntry } from './manifest.js';
import { fsPath, shown } from './names.js';
import type { RestoreReport } from './restore-report.js';
import type { RestoreTarget } from './restore-target.js';

/**
 * Writes one entry of the snapshot into the target: a new inode (a file copied from the
 * snapshot, a symlink or a FIFO) at a temporary name, given its metadata, then renamed over
 * the entry's name, replacing whatever stood there (a directory too). A directory's own
 * metadata, once its children are written.
 */
export class RestoreWriter {
  private readonly stopping = (): boolean => this.report.fatal !== null;

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
  write(rel: string, dst: string, e: ManifestEntry, cb: (err: Error | null) => void): void {
    const tmp = this.target.temporary(dst);
    const commit = (err: Error | null): void => {
      if (err) return fs.rm(fsPath(tmp), { force: true }, () => cb(err));
      fs.rename(fsPath(tmp), fsPath(dst), (re) => {
        if (!re) return cb(null);
        if (re.code !== 'EISDIR' && re.code !== 'ENOTEMPTY' && re.code !== 'EEXIST') return cb(re);
        // A directory stands where a file goes.
        fs.rm(fsPath(dst), { recursive: true, force: true }, (rme) =>
          rme ? cb(rme) : fs.rename(fsPath(tmp), fsPath(dst), (re2) => cb(re2)),
        );
      });
    };
    if (e.kind === 'f') {
      const t = timeArg(e.mtimeSec, e.mtimeNsec);
      const meta = { mode: e.mode, uid: e.uid, gid: e.gid, atime: t, mtime: t, sparse: true };
      const small = e.size < CHUNK;
      return copyFile(
        small && this.snapIo.mode === 'sync' ? syncOps : asyncOps,
        small && this.io.mode === 'sync' ? syncOps : asyncOps,
        rel === '' ? this.snapshotPath : `${this.snapshotPath}/${rel}`,
        tmp,
        e.size,
        meta,
        this.stopping,
        (err, res) => {
          if (err) return commit(err);
          this.report.result.bytes += res!.bytes;
          if (res!.digest !== e.data) {
            this.report.warn(
              `${shown(rel)}: the snapshot's data does not match its manifest (run verify)`,
            );
          }
          commit(null);
        },
      );
    }
    if (e.kind === 'l') {
      return fs.symlink(fsPath(e.data), fsPath(tmp), (err) => {
        if (err) return cb(err);
        this.meta(tmp, e, true, commit);
      });
    }
    // A path that is not UTF-8 is made in the target's root (same file system), then linked.
    mkfifo(tmp, this.target.root, (err) => (err ? cb(err) : this.meta(tmp, e, false, commit)));
  }

  /** Owner, mode and times of `p` from its entry; an owner that needs root is a warning. */
  meta(p: string, e: ManifestEntry, isLink: boolean, cb: (err: Error | null) => void): void {
    const t = timeArg(e.mtimeSec, e.mtimeNsec);
    const meta = { mode: e.mode, uid: e.uid, gid: e.gid, atime: t, mtime: t };
    const denied = (): void => {
      this.report.warn(`${shown(this.report.relative(p))}: owner not restored (needs root)`);
    };
    applyEntryMeta(this.io, p, meta, isLink, denied, cb);
  }
}
