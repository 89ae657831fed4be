import { egid, euid, type FsOps, type TimeArg } from './fs-ops.js';

/** The metadata a new entry is given, for a backup and a restore alike. */
export interface EntryMeta {
  mode: number;
  uid: number;
  gid: number;
  atime: TimeArg;
  mtime: TimeArg;
}

/**
 * Gives a new directory, symlink or FIFO its owner, mode and times, in that order (a chown
 * clears the setuid and setgid bits, and each call moves the ctime, so the times go last),
 * never following a symlink (a symlink has no mode of its own). An owner that only root may
 * give is left to `ownerDenied` (a warning), not an error.
 */
export function applyEntryMeta(
  io: FsOps,
  p: string,
  m: EntryMeta,
  isLink: boolean,
  ownerDenied: () => void,
  cb: (err: NodeJS.ErrnoException | null) => void,
): void {
  const times = (): void =>
    isLink ? io.lutimes(p, m.atime, m.mtime, cb) : io.utimes(p, m.atime, m.mtime, cb);
  const mode = (): void =>
    isLink ? times() : io.chmod(p, m.mode & 0o7777, (e) => (e ? cb(e) : times()));
  if (m.uid === euid && m.gid === egid) return mode();
  io.lchown(p, m.uid, m.gid, (e) => {
    if (!e) return mode();
    if (e.code !== 'EPERM') return cb(e);
    ownerDenied();
    mode();
  });
}
