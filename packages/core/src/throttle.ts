import { asyncOps, type FsOps } from './fs-ops.js';

/**
 * Being gentle on a production file system: at most so many bytes read and so many calls made
 * per second, over every call in flight at once (rsync's `--bwlimit`, restic's `--limit-*`).
 *
 * Two token buckets, refilled continuously. A call takes one call token; a read also reserves
 * the bytes it asks for before it starts (and gives back what it did not get), so the calls in
 * flight never hold more than the budget: a pool of 64 reads cannot all start at once and run
 * 64 MiB past the limit. A bucket holds at most a tenth of a second of its rate, so no second
 * sees more than the limit and that tenth. A call the budget cannot take now waits in a FIFO
 * queue, served by one timer: no promise and no timer per call, and no cost at all where no
 * budget is given (`throttled(ops, null)` returns the calls it was given; a run without
 * limits gets none, see `sourceThrottle`).
 *
 * Waiting calls are in three lanes, each first come first served: calls that read nothing (a
 * stat, an open, a listing), small reads (a small file whole), large reads (a chunk of a large
 * file). The oldest waiting call that fits the budget now goes first, so a call never waits
 * behind a read short of bytes, nor a small file's read behind a large file's chunk. With one
 * FIFO, the walk stopped whenever large files were copying at the byte rate and copied no
 * large file while it walked on: a full backup of 839 MiB at 20 MiB/s read at 20 MiB/s for
 * 12 s, then at 2 MiB/s for 4 s, and so on (54 s, against the 42 s its bytes need).
 */

export interface Limits {
  /** Bytes read per second. */
  bytesPerSecond?: number;
  /** File-system calls per second. */
  callsPerSecond?: number;
}

/** How long a full bucket lasts at its rate. */
const BURST_SECONDS = 0.1;
/** A read of at most this many bytes is a small one (a small file, read whole). */
const SMALL_READ = 64 * 1024;

interface Waiting {
  bytes: number;
  run: () => void;
  /** Its place in the one order of the call budget. */
  seq: number;
}

/** A FIFO of waiting calls, its head an index (no shift per call). */
class Queue {
  private items: Array<Waiting | undefined> = [];
  private head = 0;
  get empty(): boolean {
    return this.head === this.items.length;
  }
  peek(): Waiting | undefined {
    return this.items[this.head];
  }
  push(w: Waiting): void {
    this.items.push(w);
  }
  shift(): Waiting {
    const w = this.items[this.head]!;
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return w;
  }
}

class Bucket {
  tokens: number;
  capacity = 0;
  constructor(public rate: number) {
    this.tokens = 0;
    this.setRate(rate);
    this.tokens = this.capacity;
  }
  setRate(rate: number): void {
    this.rate = rate;
    this.capacity = Math.max(1, rate * BURST_SECONDS);
    this.tokens = Math.min(this.tokens, this.capacity);
  }
  refill(seconds: number): void {
    this.tokens = Math.min(this.capacity, this.tokens + seconds * this.rate);
  }
  /** Whether `n` tokens can be taken (a reservation larger than the bucket waits for a full one). */
  has(n: number): boolean {
    return this.tokens >= Math.min(n, this.capacity);
  }
  /** Seconds until `has(n)`. */
  wait(n: number): number {
    return Math.max(0, (Math.min(n, this.capacity) - this.tokens) / this.rate);
  }
}

export interface Clock {
  now(): number;
  setTimeout(f: () => void, ms: number): unknown;
}

const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (f, ms) => setTimeout(f, ms),
};

export class Throttle {
  private calls: Bucket | null = null;
  private bytes: Bucket | null = null;
  /** The lanes: calls that read nothing (every call when no byte rate is set), small reads, large reads. */
  private readonly lanes = [new Queue(), new Queue(), new Queue()] as const;
  private seq = 0;
  private last: number;
  /** When the pending timer fires; null when none is. */
  private timerAt: number | null = null;

  constructor(
    limits: Limits,
    private readonly clock: Clock = realClock,
  ) {
    this.last = clock.now();
    this.setLimits(limits);
  }

  get limits(): Limits {
    return {
      ...(this.bytes ? { bytesPerSecond: this.bytes.rate } : {}),
      ...(this.calls ? { callsPerSecond: this.calls.rate } : {}),
    };
  }

  /** Changes the limits of a running throttle (a slower floor while burst credits are low). */
  setLimits(limits: Limits): void {
    this.refill();
    this.calls = bucket(this.calls, limits.callsPerSecond);
    this.bytes = bucket(this.bytes, limits.bytesPerSecond);
    this.drain();
  }

  /** Runs `run` once one call (and `bytes` bytes read) fit the budget: now, or later. */
  take(bytes: number, run: () => void): void {
    const lane = bytes === 0 || !this.bytes ? 0 : bytes <= SMALL_READ ? 1 : 2;
    // At once when it fits and nothing waits ahead of it in its lane or a lane before it.
    if (
      this.lanes[0].empty &&
      (lane < 1 || this.lanes[1].empty) &&
      (lane < 2 || this.lanes[2].empty)
    ) {
      this.refill();
      if (this.fits(bytes)) {
        this.spend(bytes);
        return run();
      }
    }
    this.lanes[lane].push({ bytes, run, seq: this.seq++ });
    this.schedule();
  }

  /** Gives back bytes reserved but not read (a short read, an error). */
  refund(bytes: number): void {
    if (!this.bytes || bytes <= 0) return;
    this.bytes.tokens += bytes;
    this.drain();
  }

  private fits(bytes: number): boolean {
    return (
      (!this.calls || this.calls.has(1)) && (!this.bytes || bytes === 0 || this.bytes.has(bytes))
    );
  }

  private spend(bytes: number): void {
    if (this.calls) this.calls.tokens -= 1;
    if (this.bytes) this.bytes.tokens -= bytes;
  }

  private refill(): void {
    const now = this.clock.now();
    const seconds = (now - this.last) / 1000;
    this.last = now;
    this.calls?.refill(seconds);
    this.bytes?.refill(seconds);
  }

  /** The waiting calls that fit now, the oldest first (a lane's head short of bytes is passed). */
  private drain(): void {
    for (;;) {
      if (this.calls && !this.calls.has(1)) return;
      let lane: Queue | null = null;
      for (const q of this.lanes) {
        const w = q.peek();
        if (!w || (w.bytes > 0 && this.bytes && !this.bytes.has(w.bytes))) continue;
        if (!lane || w.seq < lane.peek()!.seq) lane = q;
      }
      if (!lane) return;
      const w = lane.shift();
      this.spend(w.bytes);
      w.run();
      this.refill();
    }
  }

  private schedule(): void {
    if (this.lanes.every((q) => q.empty)) return;
    // The soonest any lane's head fits: a call token, and the bytes of a read.
    const callsWait = this.calls?.wait(1) ?? 0;
    let seconds = Infinity;
    for (const q of this.lanes) {
      const w = q.peek();
      if (!w) continue;
      const bytesWait = w.bytes > 0 ? (this.bytes?.wait(w.bytes) ?? 0) : 0;
      seconds = Math.min(seconds, Math.max(callsWait, bytesWait));
    }
    const ms = Math.max(1, Math.ceil(seconds * 1000));
    const at = this.clock.now() + ms;
    // One timer, the soonest: a small read that came after a large one waits its own while.
    if (this.timerAt !== null && this.timerAt <= at) return;
    this.timerAt = at;
    this.clock.setTimeout(() => {
      if (this.timerAt === at) this.timerAt = null;
      this.refill();
      this.drain();
      this.schedule();
    }, ms);
  }
}

function bucket(old: Bucket | null, rate: number | undefined): Bucket | null {
  if (rate === undefined || !(rate > 0)) return null;
  if (!old) return new Bucket(rate);
  old.setRate(rate);
  return old;
}

/**
 * `ops` with every call through `throttle`: reads reserve their length in bytes. The calls
 * themselves are unchanged, so `mode` is kept; a call that waits runs from a timer, which the
 * walk's job runner takes like any callback that comes later.
 */
export function throttled(ops: FsOps, throttle: Throttle | null): FsOps {
  // A throttle given with no limit yet is kept: its owner may set one while the run goes.
  if (!throttle) return ops;
  const wrapped = wrap(ops, throttle);
  // A large file's calls go through the pool (callsFor): the same budget holds them.
  const pooled = ops.mode === 'async' ? wrapped : wrap(ops.pooled ?? asyncOps, throttle);
  return { ...wrapped, pooled };
}

function wrap(ops: FsOps, t: Throttle): FsOps {
  const gate =
    <A extends unknown[]>(f: (...args: A) => void) =>
    (...args: A): void =>
      t.take(0, () => f(...args));
  return {
    mode: ops.mode,
    lstat: gate(ops.lstat),
    readdir: gate(ops.readdir),
    readdirTypes: gate(ops.readdirTypes),
    readlink: gate(ops.readlink),
    mkdir: gate(ops.mkdir),
    chmod: gate(ops.chmod),
    chown: gate(ops.chown),
    lchown: gate(ops.lchown),
    utimes: gate(ops.utimes),
    lutimes: gate(ops.lutimes),
    link: gate(ops.link),
    rename: gate(ops.rename),
    symlink: gate(ops.symlink),
    unlink: gate(ops.unlink),
    rmdir: gate(ops.rmdir),
    read: (fd, buf, length, position, cb) =>
      t.take(length, () =>
        ops.read(fd, buf, length, position, (err, n) => {
          t.refund(length - (err ? 0 : n));
          cb(err, n);
        }),
      ),
    open: gate(ops.open),
    close: gate(ops.close),
    write: gate(ops.write),
    fchown: gate(ops.fchown),
    fchmod: gate(ops.fchmod),
    futimes: gate(ops.futimes),
    ftruncate: gate(ops.ftruncate),
  };
}
