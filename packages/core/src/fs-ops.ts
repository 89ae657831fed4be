import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { decodeDirents, fsPath as b, mayBeLossy, nameFromBytes, shown } from './names.js';

type Cb<T> = (err: NodeJS.ErrnoException | null, value: T) => void;
type Done = (err: NodeJS.ErrnoException | null) => void;

/** Who this process is: owners other than these need root (chown) to be kept. */
export const euid = process.geteuid?.() ?? -1;
export const egid = process.getegid?.() ?? -1;
/**
 * The process's umask, read once (Linux: /proc/self/status; elsewhere every bit, so nothing
 * counts on it).
 */
export const umask = ((): number => {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return parseInt(m[1]!, 8);
  } catch {
    /* not Linux */
  }
  return 0o777;
})();

/** Bytes read or written at once; a file no larger than this is copied with one read. */
export const CHUNK = 1 << 20;

/**
 * A time as utimes takes it: seconds since the epoch. Node takes a negative number for "now",
 * but a numeric string for the time it says, so times before 1970 are strings (see `timeArg`).
 */
export type TimeArg = number | string;

/**
 * The utimes argument for `sec` seconds and `nsec` nanoseconds (floored), to the microsecond:
 * centred in the microsecond, on the side libuv's truncation toward zero keeps it in.
 */
export function timeArg(sec: number, nsec: number): TimeArg {
  const us = Math.floor(nsec / 1000) * 1000;
  if (sec >= 0) return sec + (us + 500) / 1e9;
  return String(sec + (us - 500) / 1e9);
}

/**
 * The file-system calls of the walk, in callback form, two ways:
 * - `asyncOps`: libuv's thread pool, many calls in flight; right where each call waits on a
 *   network (NFS/EFS, FUSE), where a serial walk is hopeless;
 * - `syncOps`: the same calls made directly on the main thread; right on a local disk,
 *   where a metadata call takes microseconds and handing it to a pool thread and back costs
 *   more than the call itself (measured: twice the system time for a no-change backup).
 * Callbacks of `syncOps` run before the call returns; the job runner copes with that.
 *
 * Paths and names are strings in the engine's byte-safe form (names.ts): every path is passed
 * through `fsPath`, and a listing or link target that may have lost bytes to UTF-8 decoding is
 * read again as bytes.
 */
export interface FsOps {
  readonly mode: 'sync' | 'async';
  /**
   * The same side's calls through the thread pool (for a large file, which must not hold the
   * event loop); `asyncOps` when not given.
   */
  readonly pooled?: FsOps;
  lstat(p: string, cb: Cb<fs.BigIntStats>): void;
  readdir(p: string, cb: Cb<string[]>): void;
  /** Names with their types from the listing (d_type), no stat. */
  readdirTypes(p: string, cb: Cb<fs.Dirent[]>): void;
  readlink(p: string, cb: Cb<string>): void;
  mkdir(p: string, mode: number, cb: Done): void;
  chmod(p: string, mode: number, cb: Done): void;
  chown(p: string, uid: number, gid: number, cb: Done): void;
  lchown(p: string, uid: number, gid: number, cb: Done): void;
  utimes(p: string, atime: TimeArg, mtime: TimeArg, cb: Done): void;
  lutimes(p: string, atime: TimeArg, mtime: TimeArg, cb: Done): void;
  link(existing: string, p: string, cb: Done): void;
  /** Renames `from` over `to`, replacing a name there (rename(2)). */
  rename(from: string, to: string, cb: Done): void;
  symlink(target: string, p: string, cb: Done): void;
  unlink(p: string, cb: Done): void;
  rmdir(p: string, cb: Done): void;
  read(fd: number, buf: Buffer, length: number, position: number, cb: Cb<number>): void;
  open(p: string, flags: number, mode: number, cb: Cb<number>): void;
  close(fd: number, cb: Done): void;
  write(fd: number, buf: Buffer, length: number, position: number, cb: Cb<number>): void;
  fchown(fd: number, uid: number, gid: number, cb: Done): void;
  fchmod(fd: number, mode: number, cb: Done): void;
  futimes(fd: number, atime: TimeArg, mtime: TimeArg, cb: Done): void;
  ftruncate(fd: number, length: number, cb: Done): void;
}

export const asyncOps: FsOps = {
  mode: 'async',
  lstat: (p, cb) => fs.lstat(b(p), { bigint: true }, cb),
  readdir: (p, cb) =>
    fs.readdir(b(p), (err, names) => {
      if (err || !names.some(mayBeLossy)) return cb(err, names);
      fs.readdir(b(p), { encoding: 'buffer' }, (e, raw) => cb(e, e ? [] : raw.map(nameFromBytes)));
    }),
  readdirTypes: (p, cb) =>
    fs.readdir(b(p), { withFileTypes: true }, (err, list) => {
      if (err || !list.some((d) => mayBeLossy(d.name))) return cb(err, list);
      fs.readdir(b(p), { withFileTypes: true, encoding: 'buffer' }, (e, raw) =>
        cb(e, e ? [] : decodeDirents(raw)),
      );
    }),
  readlink: (p, cb) =>
    fs.readlink(b(p), (err, target) => {
      if (err || !mayBeLossy(target)) return cb(err, target);
      fs.readlink(b(p), { encoding: 'buffer' }, (e, raw) => cb(e, e ? '' : nameFromBytes(raw)));
    }),
  mkdir: (p, mode, cb) => fs.mkdir(b(p), mode, (e) => cb(e)),
  chmod: (p, mode, cb) => fs.chmod(b(p), mode, cb),
  chown: (p, uid, gid, cb) => fs.chown(b(p), uid, gid, cb),
  lchown: (p, uid, gid, cb) => fs.lchown(b(p), uid, gid, cb),
  utimes: (p, a, m, cb) => fs.utimes(b(p), a, m, cb),
  lutimes: (p, a, m, cb) => fs.lutimes(b(p), a, m, cb),
  link: (existing, p, cb) => fs.link(b(existing), b(p), cb),
  rename: (from, to, cb) => fs.rename(b(from), b(to), cb),
  symlink: (target, p, cb) => fs.symlink(b(target), b(p), cb),
  unlink: (p, cb) => fs.unlink(b(p), cb),
  rmdir: (p, cb) => fs.rmdir(b(p), cb),
  read: (fd, buf, length, position, cb) => fs.read(fd, buf, 0, length, position, cb),
  open: (p, flags, mode, cb) => fs.open(b(p), flags, mode, cb),
  close: (fd, cb) => fs.close(fd, cb),
  write: (fd, buf, length, position, cb) => fs.write(fd, buf, 0, length, position, cb),
  fchown: (fd, uid, gid, cb) => fs.fchown(fd, uid, gid, cb),
  fchmod: (fd, mode, cb) => fs.fchmod(fd, mode, cb),
  futimes: (fd, a, m, cb) => fs.futimes(fd, a, m, cb),
  ftruncate: (fd, length, cb) => fs.ftruncate(fd, length, cb),
};

function call<T>(f: () => T, cb: Cb<T>): void {
  let value: T;
  try {
    value = f();
  } catch (e) {
    return cb(e as NodeJS.ErrnoException, undefined as T);
  }
  cb(null, value);
}

export const syncOps: FsOps = {
  mode: 'sync',
  lstat: (p, cb) => call(() => fs.lstatSync(b(p), { bigint: true }), cb),
  readdir: (p, cb) => call(() => readdirSync(p), cb),
  readdirTypes: (p, cb) => call(() => readdirTypesSync(p), cb),
  readlink: (p, cb) => call(() => readlinkSync(p), cb),
  mkdir: (p, mode, cb) => call(() => void fs.mkdirSync(b(p), mode), cb),
  chmod: (p, mode, cb) => call(() => fs.chmodSync(b(p), mode), cb),
  chown: (p, uid, gid, cb) => call(() => fs.chownSync(b(p), uid, gid), cb),
  lchown: (p, uid, gid, cb) => call(() => fs.lchownSync(b(p), uid, gid), cb),
  utimes: (p, a, m, cb) => call(() => fs.utimesSync(b(p), a, m), cb),
  lutimes: (p, a, m, cb) => call(() => fs.lutimesSync(b(p), a, m), cb),
  link: (existing, p, cb) => call(() => fs.linkSync(b(existing), b(p)), cb),
  rename: (from, to, cb) => call(() => fs.renameSync(b(from), b(to)), cb),
  symlink: (target, p, cb) => call(() => fs.symlinkSync(b(target), b(p)), cb),
  unlink: (p, cb) => call(() => fs.unlinkSync(b(p)), cb),
  rmdir: (p, cb) => call(() => fs.rmdirSync(b(p)), cb),
  read: (fd, buf, length, position, cb) =>
    call(() => fs.readSync(fd, buf, 0, length, position), cb),
  open: (p, flags, mode, cb) => call(() => fs.openSync(b(p), flags, mode), cb),
  close: (fd, cb) => call(() => fs.closeSync(fd), cb),
  write: (fd, buf, length, position, cb) =>
    call(() => fs.writeSync(fd, buf, 0, length, position), cb),
  fchown: (fd, uid, gid, cb) => call(() => fs.fchownSync(fd, uid, gid), cb),
  fchmod: (fd, mode, cb) => call(() => fs.fchmodSync(fd, mode), cb),
  futimes: (fd, a, m, cb) => call(() => fs.futimesSync(fd, a, m), cb),
  ftruncate: (fd, length, cb) => call(() => fs.ftruncateSync(fd, length), cb),
};

/**
 * The calls for one file of a side: direct ones for a file of one chunk where the side makes
 * direct calls (a local disk), else the side's pooled ones, so a large file never holds the
 * event loop for the whole of its copy or hash.
 */
export function callsFor(side: FsOps, size: number): FsOps {
  return size < CHUNK && side.mode === 'sync' ? side : (side.pooled ?? asyncOps);
}

/** A directory's names, byte-safe. */
export function readdirSync(p: string): string[] {
  const names = fs.readdirSync(b(p));
  if (!names.some(mayBeLossy)) return names;
  return fs.readdirSync(b(p), { encoding: 'buffer' }).map(nameFromBytes);
}

/** A directory's entries with their types (d_type), byte-safe. */
export function readdirTypesSync(p: string): fs.Dirent[] {
  const list = fs.readdirSync(b(p), { withFileTypes: true });
  if (!list.some((d) => mayBeLossy(d.name))) return list;
  return decodeDirents(fs.readdirSync(b(p), { withFileTypes: true, encoding: 'buffer' }));
}

/** A symlink's target, byte-safe. */
export function readlinkSync(p: string): string {
  const target = fs.readlinkSync(b(p));
  if (!mayBeLossy(target)) return target;
  return nameFromBytes(fs.readlinkSync(b(p), { encoding: 'buffer' }));
}

let fifos = 0;

/**
 * Makes a FIFO (mode 0600) at `p`, failing with EEXIST when the name is taken. Node has no
 * mkfifo(2); coreutils' mkfifo takes its path as an argument string, so a path that is not
 * UTF-8 is made under a temporary name in `scratch` (a UTF-8 folder on the same file system)
 * and linked into place.
 */
export function mkfifo(p: string, scratch: string, cb: Done): void {
  const direct = p.isWellFormed();
  const at = direct ? p : `${scratch}/.efs-fifo-${process.pid}-${++fifos}`;
  execFile('mkfifo', ['-m', '600', '--', at], (err, _out, stderr) => {
    if (err) {
      const e: NodeJS.ErrnoException = new Error(
        `mkfifo ${shown(p)}: ${stderr.trim() || err.message}`,
      );
      e.code = /exists/i.test(stderr)
        ? 'EEXIST'
        : /too long/i.test(stderr)
          ? 'ENAMETOOLONG'
          : 'EIO';
      return cb(e);
    }
    if (direct) return cb(null);
    fs.link(at, b(p), (le) => fs.unlink(at, () => cb(le)));
  });
}
