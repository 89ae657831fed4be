/**
 * A bounded set of file-system operations in flight, driven by plain callbacks.
 *
 * The hot path of a backup is one or two calls per file; wrapping each call in a promise
 * roughly doubles the CPU spent per file, so jobs here are callback chains that call
 * `done` once when they are finished. Jobs run last-in first-out, which walks a tree
 * depth-first and keeps the queue as wide as the tree, not as big.
 */
export type Job = (done: () => void) => void;

const SLICE_MS = 20;

export class InFlight {
  readonly limit: number;
  private readonly queue: Job[] = [];
  private active = 0;
  private pumping = false;
  private yielding = false;
  private halted = false;
  private idleWaiters: Array<() => void> = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be >= 1: ${limit}`);
    this.limit = limit;
  }

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.queue.length;
  }

  push(job: Job): void {
    if (this.halted) return;
    this.queue.push(job);
    this.pump();
  }

  /** Starts no more queued jobs; jobs already running finish. */
  halt(): void {
    this.halted = true;
    this.queue.length = 0;
    this.checkIdle();
  }

  /** Calls `cb` once nothing is running and nothing is queued. */
  onIdle(cb: () => void): void {
    this.idleWaiters.push(cb);
    this.checkIdle();
  }

  private readonly resume = (): void => {
    this.yielding = false;
    this.pump();
  };

  private readonly release = (): void => {
    this.active--;
    this.pump();
  };

  private pump(): void {
    // A job may finish synchronously; the flag turns that recursion into this loop.
    if (this.pumping || this.yielding) return;
    this.pumping = true;
    const start = performance.now();
    let started = 0;
    while (this.active < this.limit && this.queue.length > 0) {
      // Jobs that finish synchronously could hold the event loop for the whole tree: yield
      // now and then so timers (window, heartbeat, progress) and signals are served.
      if ((++started & 127) === 0 && performance.now() - start > SLICE_MS) {
        this.yielding = true;
        setImmediate(this.resume);
        break;
      }
      const job = this.queue.pop()!;
      this.active++;
      let called = false;
      job(() => {
        if (called) return;
        called = true;
        this.release();
      });
    }
    this.pumping = false;
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.active === 0 && this.queue.length === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
