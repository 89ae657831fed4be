import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import { CHUNK, syncOps, type FsOps } from './fs-ops.js';
import { shown } from './names.js';

const { O_RDONLY, O_NOFOLLOW } = fs.constants;

/**
 * The content digest of a regular file, as manifests hold it: sha256 of its bytes, base64.
 * `startDigest` and `finishDigest` are for a reader that hashes while it does something else
 * with the bytes (copyFile); `hashFile` reads a file only to hash it.
 */
export function startDigest(): Hash {
  return createHash('sha256');
}

export function finishDigest(hash: Hash): string {
  return hash.digest('base64');
}

export type DigestCallback = (
  err: NodeJS.ErrnoException | null,
  digest: string,
  /** Bytes read (so far, on an error). */
  bytes: number,
) => void;

/**
 * Hashes the regular file at `p`, read with `io` (the side's own calls: direct on a local
 * disk, through the pool on a network file system) a CHUNK at a time until end of file. A
 * symlink is not followed (ELOOP). The path is byte-safe (FsOps passes it through `fsPath`).
 * With `syncOps` the callback runs before `hashFile` returns, however large the file: the
 * event loop waits for the whole file, so a walk hashes with direct calls only the files it
 * would copy with them (smaller than CHUNK, see EntryWriter).
 */
export function hashFile(io: FsOps, p: string, cb: DigestCallback): void {
  io.open(p, O_RDONLY | O_NOFOLLOW, 0, (err, fd) => {
    if (err) return cb(err, '', 0);
    const hash = startDigest();
    const buf = Buffer.allocUnsafe(CHUNK);
    let bytes = 0;
    const end = (e: NodeJS.ErrnoException | null): void => {
      io.close(fd, (ce) => {
        const failed = e ?? ce;
        cb(failed, failed ? '' : finishDigest(hash), bytes);
      });
    };
    // A loop, not recursion, while reads answer at once (syncOps): no stack frame per chunk.
    const readMore = (): void => {
      let again = true;
      while (again) {
        again = false;
        let inCall = true;
        io.read(fd, buf, buf.length, bytes, (e, n) => {
          if (e) return end(e);
          if (n === 0) return end(null);
          hash.update(buf.subarray(0, n));
          bytes += n;
          if (inCall) again = true;
          else readMore();
        });
        inCall = false;
      }
    };
    readMore();
  });
}

/** `hashFile` with direct calls, for synchronous code (adopt): the digest, or a throw. */
export function hashFileSync(p: string): { digest: string; bytes: number } {
  const out: { err?: NodeJS.ErrnoException | null; digest?: string; bytes?: number } = {};
  hashFile(syncOps, p, (err, digest, bytes) => Object.assign(out, { err, digest, bytes }));
  if (out.err) throw out.err;
  if (out.digest === undefined) throw new Error(`hashFileSync: ${shown(p)} was not hashed at once`);
  return { digest: out.digest, bytes: out.bytes! };
}
