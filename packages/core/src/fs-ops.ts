import fs from 'node:fs';

type Cb<T> = (err: NodeJS.ErrnoException | null, value: T) => void;
type Done = (err: NodeJS.ErrnoException | null) => void;

/**
 * The file-system calls of the walk, in callback form, two ways:
 * - `asyncOps`: libuv's thread pool, many calls in flight; right where each call waits on a
 *   network (NFS/EFS, FUSE), where a serial walk is hopeless;
 * - `syncOps`: the same calls made directly on the main thread; right on a local disk,
 *   where a metadata call takes microseconds and handing it to a pool thread and back costs
 *   more than the call itself (measured: twice the system time for a no-change backup).
 * Callbacks of `syncOps` run before the call returns; the job runner copes with that.
 */
export interface FsOps {
  readonly mode: 'sync' | 'async';
  lstat(p: string, cb: Cb<fs.BigIntStats>): void;
  readdir(p: string, cb: Cb<string[]>): void;
  /** Names with their types from the listing (d_type), no stat. */
  readdirTypes(p: string, cb: Cb<fs.Dirent[]>): void;
  readlink(p: string, cb: Cb<string>): void;
  mkdir(p: string, mode: number, cb: Done): void;
  chmod(p: string, mode: number, cb: Done): void;
  chown(p: string, uid: number, gid: number, cb: Done): void;
  lchown(p: string, uid: number, gid: number, cb: Done): void;
  utimes(p: string, atime: number, mtime: number, cb: Done): void;
  lutimes(p: string, atime: number, mtime: number, cb: Done): void;
  link(existing: string, p: string, cb: Done): void;
  symlink(target: string, p: string, cb: Done): void;
  unlink(p: string, cb: Done): void;
  read(fd: number, buf: Buffer, length: number, position: number, cb: Cb<number>): void;
  open(p: string, flags: number, mode: number, cb: Cb<number>): void;
  close(fd: number, cb: Done): void;
  write(fd: number, buf: Buffer, length: number, position: number, cb: Cb<number>): void;
  fchown(fd: number, uid: number, gid: number, cb: Done): void;
  fchmod(fd: number, mode: number, cb: Done): void;
  futimes(fd: number, atime: number, mtime: number, cb: Done): void;
  ftruncate(fd: number, length: number, cb: Done): void;
}

export const asyncOps: FsOps = {
  mode: 'async',
  lstat: (p, cb) => fs.lstat(p, { bigint: true }, cb),
  readdir: (p, cb) => fs.readdir(p, cb),
  readdirTypes: (p, cb) => fs.readdir(p, { withFileTypes: true }, cb),
  readlink: (p, cb) => fs.readlink(p, cb),
  mkdir: (p, mode, cb) => fs.mkdir(p, mode, (e) => cb(e)),
  chmod: (p, mode, cb) => fs.chmod(p, mode, cb),
  chown: (p, uid, gid, cb) => fs.chown(p, uid, gid, cb),
  lchown: (p, uid, gid, cb) => fs.lchown(p, uid, gid, cb),
  utimes: (p, a, m, cb) => fs.utimes(p, a, m, cb),
  lutimes: (p, a, m, cb) => fs.lutimes(p, a, m, cb),
  link: (existing, p, cb) => fs.link(existing, p, cb),
  symlink: (target, p, cb) => fs.symlink(target, p, cb),
  unlink: (p, cb) => fs.unlink(p, cb),
  read: (fd, buf, length, position, cb) => fs.read(fd, buf, 0, length, position, cb),
  open: (p, flags, mode, cb) => fs.open(p, flags, mode, cb),
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
  lstat: (p, cb) => call(() => fs.lstatSync(p, { bigint: true }), cb),
  readdir: (p, cb) => call(() => fs.readdirSync(p), cb),
  readdirTypes: (p, cb) => call(() => fs.readdirSync(p, { withFileTypes: true }), cb),
  readlink: (p, cb) => call(() => fs.readlinkSync(p), cb),
  mkdir: (p, mode, cb) => call(() => void fs.mkdirSync(p, mode), cb),
  chmod: (p, mode, cb) => call(() => fs.chmodSync(p, mode), cb),
  chown: (p, uid, gid, cb) => call(() => fs.chownSync(p, uid, gid), cb),
  lchown: (p, uid, gid, cb) => call(() => fs.lchownSync(p, uid, gid), cb),
  utimes: (p, a, m, cb) => call(() => fs.utimesSync(p, a, m), cb),
  lutimes: (p, a, m, cb) => call(() => fs.lutimesSync(p, a, m), cb),
  link: (existing, p, cb) => call(() => fs.linkSync(existing, p), cb),
  symlink: (target, p, cb) => call(() => fs.symlinkSync(target, p), cb),
  unlink: (p, cb) => call(() => fs.unlinkSync(p), cb),
  read: (fd, buf, length, position, cb) =>
    call(() => fs.readSync(fd, buf, 0, length, position), cb),
  open: (p, flags, mode, cb) => call(() => fs.openSync(p, flags, mode), cb),
  close: (fd, cb) => call(() => fs.closeSync(fd), cb),
  write: (fd, buf, length, position, cb) =>
    call(() => fs.writeSync(fd, buf, 0, length, position), cb),
  fchown: (fd, uid, gid, cb) => call(() => fs.fchownSync(fd, uid, gid), cb),
  fchmod: (fd, mode, cb) => call(() => fs.fchmodSync(fd, mode), cb),
  futimes: (fd, a, m, cb) => call(() => fs.futimesSync(fd, a, m), cb),
  ftruncate: (fd, length, cb) => call(() => fs.ftruncateSync(fd, length), cb),
};
