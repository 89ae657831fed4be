import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
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
 * Writes a manifest: header, then `journal` bytes from `from` to its end, then the checksum.
 * Written to a temporary name and renamed, so a manifest is either whole or absent.
 */
export function writeManifest(
  path: string,
  header: ManifestHeader,
  journal: string,
  from = 0,
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
    put(headerLine(header));
    if (fs.existsSync(journal)) {
      const buf = Buffer.allocUnsafe(1 << 20);
      const src = fs.openSync(journal, 'r');
      try {
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
    const tail = checksumLine(hash);
    fs.writeSync(out, tail, 0, tail.length, pos);
    fs.fsyncSync(out);
    written = true;
  } finally {
    fs.closeSync(out);
    if (!written) fs.rmSync(tmp, { force: true });
  }
  renameDurably(tmp, path);
}

/**
 * A shared run's manifest: header, each unit's journal (from its offset) in turn, checksum.
 * The journals are many small files: several are opened and their first bytes read ahead while
 * one is written, since on a network file system each open, read and close is a round trip.
 * The rest of a journal is read straight into the one buffer the writes are gathered in (each
 * write is a round trip too), so the commit holds about what a run of its own does: one
 * buffer, and the few first chunks read ahead.
 */
export async function writeManifestSegments(
  path: string,
  header: ManifestHeader,
  segments: readonly JournalSegment[],
): Promise<void> {
  const tmp = `${path}.tmp`;
  const hash = createHash('sha256');
  const out = await fsp.open(tmp, 'w', 0o600);
  let written = false;
  try {
    // With one journal's first chunk, the 1 MiB a run of its own reads its journal through.
    const staged = Buffer.allocUnsafe((1 << 20) - FIRST_CHUNK);
    let used = 0;
    let pos = 0;
    const flush = async (): Promise<void> => {
      for (let off = 0; off < used;) {
        off += (await out.write(staged, off, used - off, pos + off)).bytesWritten;
      }
      pos += used;
      used = 0;
    };
    // The next n bytes of the buffer are the manifest's.
    const took = (n: number): void => {
      hash.update(staged.subarray(used, used + n));
      used += n;
    };
    const put = async (buf: Buffer): Promise<void> => {
      for (let off = 0; off < buf.length;) {
        const n = buf.copy(staged, used, off);
        took(n);
        off += n;
        if (used === staged.length) await flush();
      }
    };
    await put(headerLine(header));
    for await (const seg of openedSegments(segments)) {
      if (seg.first.length > 0) await put(seg.first);
      if (!seg.file) continue;
      try {
        for (let at = seg.at; ;) {
          if (used === staged.length) await flush();
          const { bytesRead } = await seg.file.read(staged, used, staged.length - used, at);
          if (bytesRead === 0) break;
          took(bytesRead);
          at += bytesRead;
        }
      } finally {
        await seg.file.close();
      }
    }
    const tail = checksumLine(hash);
    if (used + tail.length > staged.length) await flush();
    used += tail.copy(staged, used);
    await flush();
    await out.sync();
    written = true;
  } finally {
    await out.close();
    if (!written) fs.rmSync(tmp, { force: true });
  }
  renameDurably(tmp, path);
}

/** Segments read ahead at most; each holds its first chunk until its turn. */
const READ_AHEAD = 16;
const FIRST_CHUNK = 256 << 10;

interface Opened {
  /** Open while there is more to read than `first`; its reader closes it. */
  file: FileHandle | null;
  first: Buffer;
  at: number;
}

/**
 * The segments opened in order, each with its first chunk, several ahead; a missing segment (a
 * unit that wrote nothing) is none.
 */
async function* openedSegments(segments: readonly JournalSegment[]): AsyncGenerator<Opened> {
  const ahead: Array<Promise<Opened | null>> = [];
  let next = 0;
  const fill = (): void => {
    while (next < segments.length && ahead.length < READ_AHEAD) {
      const p = openSegment(segments[next++]!);
      p.catch(() => {}); // awaited in its turn; until then its error is held
      ahead.push(p);
    }
  };
  try {
    fill();
    while (ahead.length > 0) {
      const seg = await ahead.shift()!;
      fill();
      if (seg) yield seg;
    }
  } finally {
    // Given up part way (an error): what was opened ahead is closed.
    for (const p of ahead)
      void p.then(
        (s) => s?.file?.close(),
        () => {},
      );
  }
}

async function openSegment(seg: JournalSegment): Promise<Opened | null> {
  let file: FileHandle;
  try {
    file = await fsp.open(seg.path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const buf = Buffer.allocUnsafe(FIRST_CHUNK);
    const { bytesRead } = await file.read(buf, 0, buf.length, seg.from);
    if (bytesRead < buf.length) {
      await file.close();
      // A short journal: only its bytes are kept while it waits for its turn.
      return {
        file: null,
        first: Buffer.from(buf.subarray(0, bytesRead)),
        at: seg.from + bytesRead,
      };
    }
    return { file, first: buf, at: seg.from + bytesRead };
  } catch (e) {
    await file.close();
    throw e;
  }
}

function headerLine(header: ManifestHeader): Buffer {
  return Buffer.from(JSON.stringify(header) + '\n');
}

function checksumLine(hash: ReturnType<typeof createHash>): Buffer {
  return Buffer.from(`${CHECKSUM_PREFIX}${hash.digest('hex')}\n`);
}

/** The temporary file renamed to its name, the rename made durable (its folder fsynced). */
function renameDurably(tmp: string, path: string): void {
  try {
    fs.renameSync(tmp, path);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  const dir = fs.openSync(dirname(path), 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}
