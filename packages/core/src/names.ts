import { isUtf8 } from 'node:buffer';
import type fs from 'node:fs';

/**
 * Linux names are bytes, and not every name is valid UTF-8. The engine keeps names as strings
 * (cheap to join, compare and store as JSON) in the form Python calls "surrogateescape": valid
 * UTF-8 is decoded as usual, and each byte that is not part of a valid sequence becomes the
 * lone surrogate U+DC00 + byte. Valid UTF-8 never decodes to a lone surrogate, so the mapping
 * is one to one: `n\xff` and the valid name `n\uFFFD` stay two names. A string holding such a
 * surrogate is not well formed; `fsPath` turns it back into its bytes for the system call.
 */

const ESCAPE_BASE = 0xdc00;

/** The name of a byte string (surrogateescape decoding). */
export function nameFromBytes(b: Buffer): string {
  if (isUtf8(b)) return b.toString('utf8');
  let out = '';
  let i = 0;
  while (i < b.length) {
    const len = validSequence(b, i);
    if (len > 0) {
      out += b.toString('utf8', i, i + len);
      i += len;
    } else {
      out += String.fromCharCode(ESCAPE_BASE + b[i]!);
      i++;
    }
  }
  return out;
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0 when there is none. */
function validSequence(b: Buffer, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  let len: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c === 0xe0) lo = 0xa0;
    if (c === 0xed) hi = 0x9f; // no surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c === 0xf0) lo = 0x90;
    if (c === 0xf4) hi = 0x8f;
  } else return 0;
  if (i + len > b.length) return 0;
  const second = b[i + 1]!;
  if (second < lo || second > hi) return 0;
  for (let k = 2; k < len; k++) {
    const x = b[i + k]!;
    if (x < 0x80 || x > 0xbf) return 0;
  }
  return len;
}

/** The bytes of a name or path (the inverse of `nameFromBytes`). */
export function bytesOfName(s: string): Buffer {
  if (s.isWellFormed()) return Buffer.from(s, 'utf8');
  const parts: Buffer[] = [];
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    const high = u >= 0xd800 && u <= 0xdbff;
    const paired = high && i + 1 < s.length && isLow(s.charCodeAt(i + 1));
    if (paired) {
      i++;
      continue;
    }
    if (isLow(u) || high) {
      if (i > run) parts.push(Buffer.from(s.slice(run, i), 'utf8'));
      if (u < ESCAPE_BASE + 0x80 || u > ESCAPE_BASE + 0xff) {
        throw new Error(`not a name: a lone surrogate U+${u.toString(16).toUpperCase()}`);
      }
      parts.push(Buffer.of(u - ESCAPE_BASE));
      run = i + 1;
    }
  }
  if (run < s.length) parts.push(Buffer.from(s.slice(run), 'utf8'));
  return Buffer.concat(parts);
}

function isLow(u: number): boolean {
  return u >= 0xdc00 && u <= 0xdfff;
}

/** A path as the system call takes it: the string itself, or its bytes when it is not UTF-8. */
export function fsPath(p: string): string | Buffer {
  return p.isWellFormed() ? p : bytesOfName(p);
}

/** True when a name read as UTF-8 may have lost bytes (the listing is read again as bytes). */
export function mayBeLossy(name: string): boolean {
  return name.includes('\uFFFD');
}

/** A directory's entries with their names as bytes decoded by `nameFromBytes`. */
export function decodeDirents(list: fs.Dirent<Buffer>[]): fs.Dirent[] {
  const out = list as unknown as fs.Dirent[];
  for (const d of out) (d as { name: string }).name = nameFromBytes(d.name as unknown as Buffer);
  return out;
}

/**
 * A name or path for people to read: bytes that are not UTF-8 as `\xNN`, control characters
 * as `\n`, `\t` or `\xNN`, backslashes doubled, so every name prints on one line and two names
 * never print the same.
 */
export function shown(s: string): string {
  // eslint-disable-next-line no-control-regex
  if (s.isWellFormed() && !/[\u0000-\u001f\u007f\\]/.test(s)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    if (u === 0x5c) out += '\\\\';
    else if (u === 0x0a) out += '\\n';
    else if (u === 0x09) out += '\\t';
    else if (u < 0x20 || u === 0x7f) out += `\\x${u.toString(16).padStart(2, '0')}`;
    else if (u >= ESCAPE_BASE + 0x80 && u <= ESCAPE_BASE + 0xff)
      out += `\\x${(u - ESCAPE_BASE).toString(16)}`;
    else out += s[i];
  }
  return out;
}
