/**
 * A bounded set of file-system operations in flight, driven by plain callbacks.
 *
 * The hot path of a backup is one or two calls per file; wrapping each call in a promise
 * roughly doubles the CPU spent per file, so jobs here are callback chains that call
 * `done` once when they are finished. Jobs run last-in first-out, which walks a tree
 * depth-first and keeps the queue as wide as the tree, not as big.
 *
 * A directory's entries can go in a lane of their own: lanes are served in turn, one job
 * each, so the calls in flight are spread over many directories. On a network file system
 * that matters: creating a name takes the directory's lock, so calls that all create names in
 * one directory wait for each other however many are in flight. Listing a directory can be
 * deferred until fewer than `maxLanes` lanes are open, which bounds what is held in memory.
 *
 * Heavy jobs (a large file's copy) take at most a quarter of the slots; one that must wait
 * holds none. Under a byte budget a large copy lasts seconds: when they could take every slot,
 * the walk stopped finding work while they copied, then copied nothing while it found more
 * (a full backup at 20 MiB/s ran at 2 MiB/s for 15 of its 54 s).
 */
export type Job = (done: () => void) => void;

/** The queued jobs of one directory. */
export interface Lane {
  jobs: Job[];
  next: number;
}

const SLICE_MS = 20;

export class InFlight {
  readonly limit: number;
  private readonly queue: Job[] = [];
  private readonly deferred: Job[] = [];
  private readonly ring: Lane[] = [];
  private ringPos = 0;
  private readonly maxLanes: number;
  private active = 0;
  private pumping = false;
  private yielding = false;
  private halted = false;
  private idleWaiters: Array<() => void> = [];
  /** At most this many heavy jobs at once. */
  readonly heavyLimit: number;
  private heavyActive = 0;
  private readonly heavyWaiting: Job[] = [];
  /** Called when nothing is left to start: a last chance to queue work held back for batching. */
  onStarve: (() => void) | null = null;

  constructor(limit: number, maxLanes = Math.max(16, limit * 4)) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be >= 1: ${limit}`);
    this.limit = limit;
    this.maxLanes = maxLanes;
    this.heavyLimit = Math.max(1, Math.ceil(limit / 4));
  }

  get queued(): number {
    let n = this.queue.length + this.deferred.length + this.heavyWaiting.length;
    for (const lane of this.ring) n += lane.jobs.length - lane.next;
    return n;
  }

  push(job: Job): void {
    if (this.halted) return;
    this.queue.push(job);
    this.pump();
  }

  /** Queues one directory's jobs as a lane, served in turn with the other lanes. */
  pushLane(jobs: Job[]): void {
    if (this.halted || jobs.length === 0) return;
    this.ring.push({ jobs, next: 0 });
    this.pump();
  }

  /** Queues a job that opens a new lane (a directory listing): it waits while many are open. */
  defer(job: Job): void {
    if (this.halted) return;
    this.deferred.push(job);
    this.pump();
  }

  /**
   * Runs a heavy job in the slot `done` holds (the caller's job becomes it), or, while
   * `heavyLimit` run, gives that slot back and runs it later in a slot of its own.
   */
  heavy(job: Job, done: () => void): void {
    if (this.halted) return done();
    if (this.heavyActive < this.heavyLimit) {
      this.heavyActive++;
      return job(this.heavyDone(done));
    }
    this.heavyWaiting.push(job);
    done();
  }

  private heavyDone(done: () => void): () => void {
    let called = false;
    return () => {
      if (called) return;
      called = true;
      this.heavyActive--;
      // The next one is queued before this slot is given back: the pool is never idle between.
      const next = this.heavyWaiting.shift();
      if (next) {
        this.heavyActive++;
        this.push((d) => next(this.heavyDone(d)));
      }
      done();
    };
  }

  /** Starts no more queued jobs; jobs already running finish. */
  halt(): void {
    this.halted = true;
    this.queue.length = 0;
    this.deferred.length = 0;
    this.heavyWaiting.length = 0;
    this.ring.length = 0;
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
    while (this.active < this.limit) {
      // Jobs that finish synchronously could hold the event loop for the whole tree: yield
      // now and then so timers (window, heartbeat, progress) and signals are served.
      if ((++started & 127) === 0 && performance.now() - start > SLICE_MS) {
        this.yielding = true;
        setImmediate(this.resume);
        break;
      }
      let job = this.next();
      if (!job && this.onStarve) {
        this.onStarve();
        job = this.next();
      }
      if (!job) break;
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

  /** Plain jobs first, then a new lane while few are open, then the lanes in turn. */
  private next(): Job | undefined {
    if (this.queue.length > 0) return this.queue.pop();
    if (this.deferred.length > 0 && (this.ring.length < this.maxLanes || this.ring.length === 0)) {
      return this.deferred.pop();
    }
    if (this.ring.length === 0) return undefined;
    if (this.ringPos >= this.ring.length) this.ringPos = 0;
    const lane = this.ring[this.ringPos]!;
    const job = lane.jobs[lane.next]!;
    lane.jobs[lane.next++] = undefined as unknown as Job; // let the closure go
    if (lane.next >= lane.jobs.length) this.ring.splice(this.ringPos, 1);
    else this.ringPos++;
    return job;
  }

  private checkIdle(): void {
    // A pump that gave the loop back resumes soon and looks again; idle is only what it finds
    // with onStarve asked too (work held back for a batch is work still to do).
    if (this.pumping || this.yielding) return;
    if (this.active === 0 && this.queued === 0 && this.idleWaiters.length > 0) {
      if (this.onStarve && !this.halted) {
        this.onStarve();
        if (this.active > 0 || this.queued > 0) return;
      }
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
