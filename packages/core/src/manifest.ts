import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { dirname } from 'node:path';
import type { FsOps } from './fs-ops.js';

/**
 * A snapshot's manifest: every entry with its source metadata and a content digest.
 *
 * File layout (UTF-8 lines):
 *   {header JSON}                       the snapshot's identity, figures and root directory
 *   "dir/path"\t[[entry], [entry], ...]  one or more blocks per directory, children only
 *   #sha256 <hex>                       checksum of every byte before this line
 *
 * A run's journal holds block lines only, appended as entries are written, so an interrupted
 * run knows what its partial already holds. The manifest is the header, the blocks this run
 * wrote, and the checksum. Blocks are looked up by directory, so a run reads the previous
 * manifest one directory at a time instead of holding it in memory.
 */
export type EntryKind = 'f' | 'd' | 'l' | 'p';

export interface ManifestEntry {
  name: string;
  kind: EntryKind;
  /** st_mode, type bits included. */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes for a file; 0 for anything else. */
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Content digest of a file (sha256, base64), or a symlink's target; '' otherwise. */
  data: string;
  /** For the second and later names of one inode: the snapshot-relative path of the first. */
  link?: string;
}

const NS = 1_000_000_000n;

/** Whole seconds and nanoseconds of a BigInt nanosecond time (floored, for times before 1970). */
export function splitNs(ns: bigint): [number, number] {
  let s = ns / NS;
  let n = ns % NS;
  if (n < 0n) {
    n += NS;
    s -= 1n;
  }
  return [Number(s), Number(n)];
}

export const MANIFEST_FORMAT = 'efs-backup-manifest';
export const MANIFEST_VERSION = 1;

export interface ManifestHeader {
  format: typeof MANIFEST_FORMAT;
  version: number;
  BackupId: string;
  Label: string;
  Interval: string;
  Snapshot: string;
  Source: string;
  Prefix: string;
  StartTime: string;
  StopTime: string;
  NumberOfFiles: number;
  TotalFileSize: number;
  root: unknown[];
}

type EncodedEntry = [
  string,
  EntryKind,
  number,
  number,
  number,
  number,
  number,
  number,
  string,
  string?,
];

export function encodeEntry(e: ManifestEntry): EncodedEntry {
  const out: EncodedEntry = [
    e.name,
    e.kind,
    e.mode,
    e.uid,
    e.gid,
    e.size,
    e.mtimeSec,
    e.mtimeNsec,
    e.data,
  ];
  if (e.link !== undefined) out.push(e.link);
  return out;
}

export function decodeEntry(a: unknown): ManifestEntry {
  if (!Array.isArray(a) || a.length < 9) throw new Error('malformed manifest entry');
  const e: ManifestEntry = {
    name: a[0] as string,
    kind: a[1] as EntryKind,
    mode: a[2] as number,
    uid: a[3] as number,
    gid: a[4] as number,
    size: a[5] as number,
    mtimeSec: a[6] as number,
    mtimeNsec: a[7] as number,
    data: a[8] as string,
  };
  if (a.length > 9) e.link = a[9] as string;
  return e;
}

export function blockLine(dir: string, entries: ManifestEntry[]): string {
  return JSON.stringify(dir) + '\t' + JSON.stringify(entries.map(encodeEntry)) + '\n';
}

const CHECKSUM_PREFIX = '#sha256 ';
const CHECKSUM_LINE_LENGTH = CHECKSUM_PREFIX.length + 64 + 1;

/** Appends block lines to a journal, one write at a time, batched. */
export class JournalWriter {
  private fd: number;
  private position: number;
  private pending: string[] = [];
  private pendingBytes = 0;
  private writing = false;
  private flushWaiters: Array<(err: Error | null) => void> = [];
  private error: Error | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly onError: ((err: Error) => void) | null;

  private constructor(fd: number, position: number, onError: ((err: Error) => void) | null) {
    this.fd = fd;
    this.position = position;
    this.onError = onError;
  }

  /**
   * Opens (or creates) a journal; a torn last line from a killed run is cut off. A write that
   * fails is reported once to `onError` as it happens (and to every later flush): a journal
   * that lost lines must not become a manifest.
   */
  static open(path: string, onError: ((err: Error) => void) | null = null): JournalWriter {
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    const size = fs.fstatSync(fd).size;
    let end = size;
    if (size > 0) {
      // Find the last newline: everything after it is a torn write.
      const chunk = Buffer.alloc(Math.min(size, 1 << 20));
      let pos = size;
      end = 0;
      while (pos > 0) {
        const len = Math.min(chunk.length, pos);
        pos -= len;
        fs.readSync(fd, chunk, 0, len, pos);
        const nl = chunk.subarray(0, len).lastIndexOf(10);
        if (nl >= 0) {
          end = pos + nl + 1;
          break;
        }
      }
      if (end !== size) fs.ftruncateSync(fd, end);
    }
    const w = new JournalWriter(fd, end, onError);
    w.timer = setInterval(() => w.flush(() => {}), 2000);
    w.timer.unref();
    return w;
  }

  /** Where this run's first line begins. */
  get offset(): number {
    return this.position + this.pendingBytes;
  }

  add(dir: string, entries: ManifestEntry[]): void {
    if (entries.length === 0) return;
    const line = blockLine(dir, entries);
    this.pending.push(line);
    this.pendingBytes += Buffer.byteLength(line);
    if (this.pendingBytes >= 1 << 20) this.kick();
  }

  flush(cb: (err: Error | null) => void): void {
    this.flushWaiters.push(cb);
    this.kick();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private kick(): void {
    if (this.writing) return;
    if (this.error || this.pending.length === 0) {
      const waiters = this.flushWaiters;
      this.flushWaiters = [];
      for (const w of waiters) w(this.error);
      return;
    }
    const buf = Buffer.from(this.pending.join(''));
    this.pending = [];
    this.pendingBytes = 0;
    this.writing = true;
    writeAll(this.fd, buf, this.position, (err) => {
      this.writing = false;
      if (err) {
        this.error = err;
        this.onError?.(err);
      } else this.position += buf.length;
      this.kick();
    });
  }
}

export function writeAll(
  fd: number,
  buf: Buffer,
  position: number,
  cb: (err: NodeJS.ErrnoException | null) => void,
): void {
  let off = 0;
  const step = (): void => {
    if (off >= buf.length) return cb(null);
    fs.write(fd, buf, off, buf.length - off, position + off, (err, n) => {
      if (err) return cb(err);
      off += n;
      step();
    });
  };
  step();
}

/** Lines of a file, with their byte offsets, streamed. */
async function scanLines(
  path: string,
  end: number | undefined,
  onLine: (line: Buffer, offset: number) => void,
  onChunk?: (chunk: Buffer) => void,
): Promise<void> {
  const stream = fs.createReadStream(path, {
    highWaterMark: 1 << 20,
    ...(end !== undefined ? { end: end - 1 } : {}),
  });
  let carry: Buffer = Buffer.alloc(0);
  let carryOffset = 0;
  let offset = 0;
  if (end === 0) {
    stream.destroy();
    return;
  }
  for await (const raw of stream) {
    const chunk = raw as Buffer;
    onChunk?.(chunk);
    let start = 0;
    let buf = chunk;
    let base = offset;
    if (carry.length > 0) {
      buf = Buffer.concat([carry, chunk]);
      base = carryOffset;
    }
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl < 0) break;
      onLine(buf.subarray(start, nl), base + start);
      start = nl + 1;
    }
    carry = start < buf.length ? Buffer.from(buf.subarray(start)) : Buffer.alloc(0);
    carryOffset = base + start;
    offset += chunk.length;
  }
}

interface BlockRef {
  offset: number;
  length: number;
}

/** Reads blocks of a manifest or journal by directory. */
export class ManifestIndex {
  readonly path: string;
  readonly header: ManifestHeader | null;
  private readonly blocks: Map<string, BlockRef[]>;
  private fd: number | null = null;

  private constructor(
    path: string,
    header: ManifestHeader | null,
    blocks: Map<string, BlockRef[]>,
  ) {
    this.path = path;
    this.header = header;
    this.blocks = blocks;
  }

  get directories(): number {
    return this.blocks.size;
  }

  /** Opens a committed manifest, checking its checksum. Throws when it is damaged. */
  static async openManifest(path: string): Promise<ManifestIndex> {
    const size = fs.statSync(path).size;
    if (size < CHECKSUM_LINE_LENGTH) throw new Error(`manifest ${path} is truncated`);
    const bodyEnd = size - CHECKSUM_LINE_LENGTH;
    const tail = Buffer.alloc(CHECKSUM_LINE_LENGTH);
    const fd = fs.openSync(path, 'r');
    try {
      fs.readSync(fd, tail, 0, CHECKSUM_LINE_LENGTH, bodyEnd);
    } finally {
      fs.closeSync(fd);
    }
    const tailText = tail.toString('latin1');
    if (!tailText.startsWith(CHECKSUM_PREFIX) || !tailText.endsWith('\n')) {
      throw new Error(`manifest ${path} has no checksum line`);
    }
    const expected = tailText.slice(CHECKSUM_PREFIX.length, -1);
    const hash = createHash('sha256');
    const blocks = new Map<string, BlockRef[]>();
    let header: unknown = undefined;
    // A damaged line is noted and the scan goes on: the checksum, which covers every byte, says
    // first whether the file was damaged after it was written.
    let malformed: string | null = null;
    await scanLines(
      path,
      bodyEnd,
      (line, offset) => {
        if (malformed !== null) return;
        try {
          if (header === undefined) header = JSON.parse(line.toString('utf8'));
          else indexBlock(blocks, line, offset);
        } catch (e) {
          malformed = (e as Error).message;
        }
      },
      (chunk) => hash.update(chunk),
    );
    const actual = hash.digest('hex');
    if (actual !== expected) throw new Error(`manifest ${path} fails its checksum`);
    if (malformed !== null) throw new Error(`manifest ${path} is malformed: ${malformed}`);
    if (header === undefined) throw new Error(`manifest ${path} has no header`);
    const h = header as ManifestHeader | null;
    if (h?.format !== MANIFEST_FORMAT) throw new Error(`${path} is not a manifest`);
    return new ManifestIndex(path, h, blocks);
  }

  /** Opens a journal (block lines only); a missing journal is empty. */
  static async openJournal(path: string): Promise<ManifestIndex> {
    const blocks = new Map<string, BlockRef[]>();
    if (fs.existsSync(path)) {
      await scanLines(path, undefined, (line, offset) => indexBlock(blocks, line, offset));
    }
    return new ManifestIndex(path, null, blocks);
  }

  has(dir: string): boolean {
    return this.blocks.has(dir);
  }

  /** Every directory with a block, in no particular order. */
  dirs(): IterableIterator<string> {
    return this.blocks.keys();
  }

  /** The entries of one directory; later blocks win over earlier ones for the same name. */
  readDir(
    io: Pick<FsOps, 'read'>,
    dir: string,
    cb: (err: Error | null, entries: Map<string, ManifestEntry> | null) => void,
  ): void {
    const refs = this.blocks.get(dir);
    if (!refs) return cb(null, null);
    if (this.fd === null) {
      try {
        this.fd = fs.openSync(this.path, 'r');
      } catch (e) {
        return cb(e as Error, null);
      }
    }
    const fd = this.fd;
    const out = new Map<string, ManifestEntry>();
    let i = 0;
    const next = (): void => {
      const ref = refs[i++];
      if (!ref) return cb(null, out);
      const buf = Buffer.allocUnsafe(ref.length);
      io.read(fd, buf, ref.length, ref.offset, (err, n) => {
        if (err) return cb(err, null);
        try {
          parseBlockInto(buf.subarray(0, n), out);
        } catch (e) {
          return cb(e as Error, null);
        }
        next();
      });
    };
    next();
  }

  readDirSync(dir: string): Map<string, ManifestEntry> | null {
    const refs = this.blocks.get(dir);
    if (!refs) return null;
    const fd = fs.openSync(this.path, 'r');
    try {
      const out = new Map<string, ManifestEntry>();
      for (const ref of refs) {
        const buf = Buffer.allocUnsafe(ref.length);
        const n = fs.readSync(fd, buf, 0, ref.length, ref.offset);
        parseBlockInto(buf.subarray(0, n), out);
      }
      return out;
    } finally {
      fs.closeSync(fd);
    }
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function indexBlock(blocks: Map<string, BlockRef[]>, line: Buffer, offset: number): void {
  const tab = line.indexOf(9);
  if (tab < 0) throw new Error('malformed manifest block');
  const dir = JSON.parse(line.subarray(0, tab).toString('utf8')) as string;
  const ref = { offset, length: line.length };
  const list = blocks.get(dir);
  if (list) list.push(ref);
  else blocks.set(dir, [ref]);
}

function parseBlockInto(line: Buffer, out: Map<string, ManifestEntry>): void {
  const tab = line.indexOf(9);
  const entries = JSON.parse(line.subarray(tab + 1).toString('utf8')) as unknown[];
  for (const raw of entries) {
    const e = decodeEntry(raw);
    out.set(e.name, e);
  }
}

/**
 * Writes a manifest: header, then `journal` bytes from `from` to its end, then the checksum.
 * Written to a temporary name and renamed, so a manifest is either whole or absent.
 */
export function writeManifest(
  path: string,
  header: ManifestHeader,
  journal: string,
  from: number,
): void {
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
    if (fs.existsSync(journal)) {
      const src = fs.openSync(journal, 'r');
      try {
        const buf = Buffer.allocUnsafe(1 << 20);
        let at = from;
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
