import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { dirname } from 'node:path';
import { CHECKSUM_PREFIX, type ManifestHeader } from './manifest-format.js';

/** The manifest module: its format, the journal writer, the index, and the commit's writer. */
export * from './manifest-format.js';
export { JournalWriter } from './journal.js';
export { ManifestIndex } from './manifest-index.js';

/** Lines of one journal file, from a byte offset to its end. */
export interface JournalSegment {
  path: string;
  from: number;
}

/**
 * Writes a manifest: header, then `journal` bytes from `from` to its end (or each segment's, in
 * turn: a shared run's journals, one per unit), then the checksum. Written to a temporary name
 * and renamed, so a manifest is either whole or absent.
 */
export function writeManifest(
  path: string,
  header: ManifestHeader,
  journal: string | readonly JournalSegment[],
  from = 0,
): void {
  const segments = typeof journal === 'string' ? [{ path: journal, from }] : journal;
  const tmp = `${path}.tmp`;
  const hash = createHash('sha256');
  const out = fs.openSync(tmp, 'w', 0o600);
  let written = false;
  try {
    let pos = 0;
    const put = (buf: Buffer): void => {
      hash.update(buf);
      let off = 0;
      while (off < buf.length) off += fs.writeSync(out, buf, off, buf.length - off, pos + off);
      pos += buf.length;
    };
    put(Buffer.from(JSON.stringify(header) + '\n'));
    const buf = Buffer.allocUnsafe(1 << 20);
    for (const seg of segments) {
      if (!fs.existsSync(seg.path)) continue;
      const src = fs.openSync(seg.path, 'r');
      try {
        let at = seg.from;
        for (;;) {
          const n = fs.readSync(src, buf, 0, buf.length, at);
          if (n === 0) break;
          put(buf.subarray(0, n));
          at += n;
        }
      } finally {
        fs.closeSync(src);
      }
    }
    const tail = Buffer.from(`${CHECKSUM_PREFIX}${hash.digest('hex')}\n`);
    fs.writeSync(out, tail, 0, tail.length, pos);
    fs.fsyncSync(out);
    written = true;
  } finally {
    fs.closeSync(out);
    if (!written) fs.rmSync(tmp, { force: true });
  }
  try {
    fs.renameSync(tmp, path);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  // The rename itself made durable: its folder fsynced.
  const dir = fs.openSync(dirname(path), 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}
