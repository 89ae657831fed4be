import fs from 'node:fs';
import { createHash } from 'node:crypto';
import type { FsOps } from './fs-ops.js';
import {
  CHECKSUM_LINE_LENGTH,
  CHECKSUM_PREFIX,
  decodeEntry,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type ManifestEntry,
  type ManifestHeader,
} from './manifest-format.js';

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
    if (!(h.version <= MANIFEST_VERSION)) {
      throw new Error(
        `manifest ${path} is of version ${h.version}, newer than this efs-backup reads (${MANIFEST_VERSION}): upgrade efs-backup`,
      );
    }
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

  /**
   * Every block in file order, read in one sequential pass of large reads (a shared run's plan
   * reads the whole manifest: a read per directory would cost a round trip each on NFS).
   */
  async eachBlock(cb: (dir: string, entries: Map<string, ManifestEntry>) => void): Promise<void> {
    let header = this.header !== null;
    await scanLines(this.path, undefined, (line) => {
      if (header) {
        header = false;
        return;
      }
      // The checksum line; a block line begins with its directory, a JSON string.
      if (line[0] !== 0x22) return;
      const tab = line.indexOf(9);
      const out = new Map<string, ManifestEntry>();
      parseBlockInto(line, out);
      cb(JSON.parse(line.subarray(0, tab).toString('utf8')) as string, out);
    });
  }

  /** The directory has a block (it held entries). */
  hasDir(dir: string): boolean {
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
