import fs from 'node:fs';
import type { FsOps } from './fs-ops.js';
import { bytesOfName, decodeDirents, mayBeLossy, nameFromBytes } from './names.js';

type Cb<T> = (err: NodeJS.ErrnoException | null, value: T) => void;

/**
 * The FsOps calls of restore and verify, safe for names that are not UTF-8 (see names.ts).
 *
 * A path that holds a byte escape is never handed to `io`: that call is made here, on its bytes
 * (a Buffer path). Every other path goes to `io` as it is, so this stays right whether or not
 * `io` itself converts with `fsPath` (then it simply never sees such a path from here).
 * Listings and link targets that may have lost bytes when read as UTF-8 are read again as bytes.
 */
export function byteSafe(io: FsOps): FsOps {
  const raw = (p: string): Buffer | null => (p.isWellFormed() ? null : bytesOfName(p));
  return {
    ...io,
    lstat: (p, cb) => {
      const b = raw(p);
      return b ? fs.lstat(b, { bigint: true }, cb) : io.lstat(p, cb);
    },
    readdir: (p, cb) => {
      const b = raw(p);
      const again = (): void =>
        fs.readdir(b ?? p, { encoding: 'buffer' }, (err, names) =>
          err ? cb(err, []) : cb(null, names.map(nameFromBytes)),
        );
      if (b) return again();
      io.readdir(p, (err, names) => {
        if (err || !names.some(mayBeLossy)) return cb(err, names);
        again();
      });
    },
    readdirTypes: (p, cb) => {
      const b = raw(p);
      const again = (): void =>
        fs.readdir(b ?? p, { encoding: 'buffer', withFileTypes: true }, (err, list) =>
          err ? cb(err, []) : cb(null, decodeDirents(list)),
        );
      if (b) return again();
      io.readdirTypes(p, (err, list) => {
        if (err || !list.some((d) => mayBeLossy(d.name))) return cb(err, list);
        again();
      });
    },
    readlink: (p, cb) => {
      const b = raw(p);
      const again = (): void =>
        fs.readlink(b ?? p, { encoding: 'buffer' }, (err, t) =>
          err ? cb(err, '') : cb(null, nameFromBytes(t)),
        );
      if (b) return again();
      io.readlink(p, (err, t) => (err || !mayBeLossy(t) ? cb(err, t) : again()));
    },
    mkdir: (p, mode, cb) => {
      const b = raw(p);
      return b ? fs.mkdir(b, mode, (e) => cb(e)) : io.mkdir(p, mode, cb);
    },
    chmod: (p, mode, cb) => {
      const b = raw(p);
      return b ? fs.chmod(b, mode, cb) : io.chmod(p, mode, cb);
    },
    chown: (p, uid, gid, cb) => {
      const b = raw(p);
      return b ? fs.chown(b, uid, gid, cb) : io.chown(p, uid, gid, cb);
    },
    lchown: (p, uid, gid, cb) => {
      const b = raw(p);
      return b ? fs.lchown(b, uid, gid, cb) : io.lchown(p, uid, gid, cb);
    },
    utimes: (p, a, m, cb) => {
      const b = raw(p);
      return b ? fs.utimes(b, a, m, cb) : io.utimes(p, a, m, cb);
    },
    lutimes: (p, a, m, cb) => {
      const b = raw(p);
      return b ? fs.lutimes(b, a, m, cb) : io.lutimes(p, a, m, cb);
    },
    link: (existing, p, cb) => {
      const a = raw(existing);
      const b = raw(p);
      return a || b ? fs.link(a ?? existing, b ?? p, cb) : io.link(existing, p, cb);
    },
    symlink: (target, p, cb) => {
      const a = raw(target);
      const b = raw(p);
      return a || b ? fs.symlink(a ?? target, b ?? p, cb) : io.symlink(target, p, cb);
    },
    unlink: (p, cb) => {
      const b = raw(p);
      return b ? fs.unlink(b, cb) : io.unlink(p, cb);
    },
    open: (p, flags, mode, cb: Cb<number>) => {
      const b = raw(p);
      return b ? fs.open(b, flags, mode, cb) : io.open(p, flags, mode, cb);
    },
  };
}
