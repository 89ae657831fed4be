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
 */

export interface Limits {
  /** Bytes read per second. */
  bytesPerSecond?: number;
  /** File-system calls per second. */
  callsPerSecond?: number;
}

/** How long a full bucket lasts at its rate. */
const BURST_SECONDS = 0.1;

interface Waiting {
  bytes: number;
  run: () => void;
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
  private readonly queue: Array<Waiting | undefined> = [];
  private head = 0;
  private last: number;
  private timer = false;

  constructor(
    limits: Limits,
    private readonly clock: Clock = realClock,
  ) {
    this.last = clock.now();
    this.setLimits(limits);
  }

  /** Whether any limit is set. */
  get limited(): boolean {
    return this.calls !== null || this.bytes !== null;
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
    if (this.head === this.queue.length) {
      this.refill();
      if (this.fits(bytes)) {
        this.spend(bytes);
        return run();
      }
    }
    this.queue.push({ bytes, run });
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

  private drain(): void {
    while (this.head < this.queue.length) {
      const w = this.queue[this.head];
      if (!w || (this.limited && !this.fits(w.bytes))) break;
      this.queue[this.head++] = undefined;
      this.spend(w.bytes);
      w.run();
      this.refill();
    }
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  private schedule(): void {
    if (this.timer || this.head === this.queue.length) return;
    const bytes = this.queue[this.head]?.bytes ?? 0;
    const seconds = Math.max(this.calls?.wait(1) ?? 0, bytes ? (this.bytes?.wait(bytes) ?? 0) : 0);
    this.timer = true;
    this.clock.setTimeout(
      () => {
        this.timer = false;
        this.refill();
        this.drain();
        this.schedule();
      },
      Math.max(1, Math.ceil(seconds * 1000)),
    );
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
