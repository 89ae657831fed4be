/** Time as the scheduler and the run lifecycle see it: the system's, or a test's. */
export interface Clock {
  now(): Date;
  /** Resolves true at `until`, or false as soon as `signal` aborts. */
  sleepUntil(until: Date, signal?: AbortSignal): Promise<boolean>;
}

// setTimeout holds at most 2^31 - 1 ms (24.8 days); longer sleeps are taken in steps.
const MAX_TIMEOUT = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => new Date(),
  sleepUntil(until, signal) {
    return new Promise<boolean>((resolve) => {
      if (signal?.aborted) return resolve(false);
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => {
        clearTimeout(timer);
        resolve(false);
      };
      const step = (): void => {
        const left = until.getTime() - Date.now();
        if (left <= 0) {
          signal?.removeEventListener('abort', onAbort);
          resolve(true);
          return;
        }
        timer = setTimeout(step, Math.min(left, MAX_TIMEOUT));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      step();
    });
  },
};

interface Sleeper {
  until: number;
  resolve: (reached: boolean) => void;
}

/**
 * A clock that moves only when told: tests drive schedules and windows through days in
 * milliseconds. Use dates after the real time: the engine compares its own window deadline
 * with the real clock.
 */
export class ManualClock implements Clock {
  private t: number;
  private sleepers: Sleeper[] = [];

  constructor(start: Date) {
    this.t = start.getTime();
  }

  now(): Date {
    return new Date(this.t);
  }

  sleepUntil(until: Date, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    if (until.getTime() <= this.t) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const s: Sleeper = { until: until.getTime(), resolve };
      this.sleepers.push(s);
      signal?.addEventListener(
        'abort',
        () => {
          this.sleepers = this.sleepers.filter((x) => x !== s);
          resolve(false);
        },
        { once: true },
      );
    });
  }

  /** Moves to `to`, waking every sleeper due on the way in order; then lets them run. */
  async advanceTo(to: Date): Promise<void> {
    const target = to.getTime();
    for (;;) {
      const due = this.sleepers
        .filter((s) => s.until <= target)
        .sort((a, b) => a.until - b.until)[0];
      if (!due) break;
      this.t = Math.max(this.t, due.until);
      this.sleepers = this.sleepers.filter((s) => s !== due);
      due.resolve(true);
      await settle();
    }
    this.t = Math.max(this.t, target);
    await settle();
  }

  /** When the next sleeper wakes, if any sleeps. */
  nextWake(): Date | null {
    const next = Math.min(...this.sleepers.map((s) => s.until));
    return Number.isFinite(next) ? new Date(next) : null;
  }
}

/** Lets promise chains and I/O callbacks that are ready run. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));
