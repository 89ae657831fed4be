import fs from 'node:fs';
import { blockLine, type ManifestEntry } from './manifest-format.js';

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

function writeAll(
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
