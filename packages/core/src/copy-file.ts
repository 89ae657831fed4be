import fs from 'node:fs';
import { finishDigest, startDigest } from './digest.js';
import { CHUNK, egid, euid, umask, type FsOps, type TimeArg } from './fs-ops.js';

const { O_RDONLY, O_NOFOLLOW, O_WRONLY, O_CREAT, O_EXCL } = fs.constants;
export { CHUNK } from './fs-ops.js';
const SPARSE_BLOCK = 4096;
const ZEROS = Buffer.alloc(SPARSE_BLOCK);

export interface CopyMeta {
  mode: number;
  uid: number;
  gid: number;
  atime: TimeArg;
  /** Seconds since the epoch, fractional: what utimes takes (see `timeArg`). */
  mtime: TimeArg;
  /** Write zero blocks as holes (the source is sparse). */
  sparse: boolean;
}

export interface CopyOptions {
  /** Asked before each chunk: true ends the copy (ESTOPPED). */
  stopping: () => boolean;
  /**
   * Asked per file: it may be made with its final mode, which spares a call (fchmod) per file.
   * True where its folder is one nobody else reads (a backup's partial, 0700) and none of its
   * folders has a default ACL (which would mask the mode it is made with, as a umask does).
   */
  modeAtCreate: () => boolean;
}

/**
 * The mode a file can be made with, or null when it must be set after (made 0600): one the
 * umask would change, a setuid, setgid or sticky bit (a chown after clears them), or one the
 * owner cannot write (some NFS servers check each write against the file's mode).
 */
function createMode(meta: CopyMeta, ownOwner: boolean, o: CopyOptions): number | null {
  if (!ownOwner || !o.modeAtCreate()) return null;
  const mode = meta.mode & 0o7777;
  if (mode & (0o7000 | umask) || !(mode & 0o200)) return null;
  return mode;
}

export interface CopyResult {
  bytes: number;
  digest: string;
}

/** Which side of a copy failed: a source failure is a warning, a destination failure ends the run. */
export type CopyError = NodeJS.ErrnoException & { side: 'source' | 'destination' };

function tag(err: NodeJS.ErrnoException, side: 'source' | 'destination'): CopyError {
  return Object.assign(err, { side });
}

/**
 * Copies one regular file into a new inode at `dst`, reading with `io` and writing with `out`
 * (each side's own calls: direct on a local disk, many in flight on a network file system), hashing while it copies, then sets owner,
 * mode and times on the open descriptor. `dst` must not exist: an existing name may be a hard
 * link into an older snapshot, and writing through it would change that snapshot.
 */
export function copyFile(
  io: FsOps,
  out: FsOps,
  src: string,
  dst: string,
  size: number,
  meta: CopyMeta,
  o: CopyOptions,
  cb: (err: CopyError | null, result: CopyResult | null) => void,
): void {
  // Made by this process, the file is its own: no chown when the owner wanted is.
  const ownOwner = meta.uid === euid && meta.gid === egid;
  const made = createMode(meta, ownOwner, o);
  io.open(src, O_RDONLY | O_NOFOLLOW, 0, (err, sfd) => {
    if (err) return cb(tag(err, 'source'), null);
    out.open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, made ?? 0o600, (err2, dfd) => {
      if (err2) return io.close(sfd, () => cb(tag(err2, 'destination'), null));
      const hash = startDigest();
      // Small files: one read of size+1 bytes sees the end of file without a second call.
      const buf = Buffer.allocUnsafe(Math.min(size + 1, CHUNK));
      let pos = 0;
      let holeAtEnd = false;
      const fail = (e: CopyError): void => {
        io.close(sfd, () => out.close(dfd, () => cb(e, null)));
      };
      const finish = (): void => {
        const truncate = (next: () => void): void => {
          if (!holeAtEnd) return next();
          out.ftruncate(dfd, pos, (e) => (e ? fail(tag(e, 'destination')) : next()));
        };
        truncate(() => {
          const chown = (next: () => void): void => {
            if (ownOwner) return next();
            out.fchown(dfd, meta.uid, meta.gid, (e) => (e ? fail(tag(e, 'destination')) : next()));
          };
          const chmod = (next: () => void): void => {
            if (made !== null) return next();
            out.fchmod(dfd, meta.mode & 0o7777, (e) => (e ? fail(tag(e, 'destination')) : next()));
          };
          chown(() => {
            chmod(() => {
              out.futimes(dfd, meta.atime, meta.mtime, (e2) => {
                if (e2) return fail(tag(e2, 'destination'));
                out.close(dfd, (e3) => {
                  io.close(sfd, () => {
                    if (e3) return cb(tag(e3, 'destination'), null);
                    cb(null, { bytes: pos, digest: finishDigest(hash) });
                  });
                });
              });
            });
          });
        });
      };
      const readMore = (): void => {
        if (o.stopping())
          return fail(
            tag(Object.assign(new Error('stopped'), { code: 'ESTOPPED' }), 'destination'),
          );
        io.read(sfd, buf, buf.length, pos, (e, n) => {
          if (e) return fail(tag(e, 'source'));
          if (n === 0) return finish();
          const data = buf.subarray(0, n);
          hash.update(data);
          const at = pos;
          pos += n;
          const short = n < buf.length;
          const next = short ? finish : readMore;
          if (meta.sparse)
            return writeSparse(out, dfd, data, at, (we, hole) => {
              if (we) return fail(tag(we, 'destination'));
              holeAtEnd = hole;
              next();
            });
          writeAt(out, dfd, data, at, (we) => (we ? fail(tag(we, 'destination')) : next()));
        });
      };
      readMore();
    });
  });
}

function writeAt(
  io: FsOps,
  fd: number,
  data: Buffer,
  position: number,
  cb: (err: NodeJS.ErrnoException | null) => void,
): void {
  io.write(fd, data, data.length, position, (err, n) => {
    if (err) return cb(err);
    if (n < data.length) return writeAt(io, fd, data.subarray(n), position + n, cb);
    cb(null);
  });
}

/** Writes the non-zero 4 KiB blocks of `data`, leaving holes for the zero ones. */
function writeSparse(
  io: FsOps,
  fd: number,
  data: Buffer,
  position: number,
  cb: (err: NodeJS.ErrnoException | null, endsInHole: boolean) => void,
): void {
  const runs: Array<[number, number]> = [];
  let runStart = -1;
  for (let off = 0; off < data.length; off += SPARSE_BLOCK) {
    const end = Math.min(off + SPARSE_BLOCK, data.length);
    const zero = data
      .subarray(off, end)
      .equals(end - off === SPARSE_BLOCK ? ZEROS : ZEROS.subarray(0, end - off));
    if (!zero && runStart < 0) runStart = off;
    if (zero && runStart >= 0) {
      runs.push([runStart, off]);
      runStart = -1;
    }
  }
  if (runStart >= 0) runs.push([runStart, data.length]);
  const endsInHole = runs.length === 0 || runs[runs.length - 1]![1] !== data.length;
  let i = 0;
  const next = (err: NodeJS.ErrnoException | null): void => {
    if (err) return cb(err, false);
    const run = runs[i++];
    if (!run) return cb(null, endsInHole);
    writeAt(io, fd, data.subarray(run[0], run[1]), position + run[0], next);
  };
  next(null);
}
