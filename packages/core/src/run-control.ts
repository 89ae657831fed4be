import { EfsBackupError } from './errors.js';
import type { RunReport } from './run-report.js';

/** Destination errors that concern one entry, not the run (see `RunControl.fail`). */
const PER_ENTRY_CODES = new Set(['ENAMETOOLONG', 'EILSEQ']);

/**
 * When a window of `minutes` started at `start` stops new work (epoch ms): a tenth of the
 * window, at most a minute, is kept for the commit and what follows it. Null: no window.
 */
export function windowDeadline(start: Date, minutes: number | null): number | null {
  if (minutes === null) return null;
  return start.getTime() + minutes * 60_000 - Math.min(60_000, minutes * 6_000);
}

/**
 * What a walk and its writer ask of the run: whether to start more work, and what an error
 * does. The run's `RunControl`, or one unit's `LeaseFence` (a shared run), which also stops
 * the unit's walk alone once its lease is no longer surely this worker's.
 */
export type WalkControl = Pick<RunControl, 'fail' | 'failWith' | 'stopping'>;

/**
 * Why a run stops: its window, its signal, or the first fatal error. The one place that decides
 * what an error does to the run; the walk asks `stopping()` before each new piece of work.
 */
export class RunControl {
  stopReason: 'window' | 'signal' | null = null;
  fatal: EfsBackupError | null = null;
  readonly deadline: number | null;
  private timer: NodeJS.Timeout | null = null;
  private signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.stop('signal');

  constructor(
    /** Starts no more work (the walk's pool). */
    private readonly halt: () => void,
    private readonly report: RunReport,
    start: Date,
    windowMinutes: number | null,
    private readonly now: () => Date,
  ) {
    this.deadline = windowDeadline(start, windowMinutes);
  }

  /** Watches the signal and the window until `end()`. */
  begin(signal: AbortSignal | undefined): void {
    this.signal = signal;
    signal?.addEventListener('abort', this.onAbort);
    if (signal?.aborted) this.stop('signal');
    if (this.deadline !== null) this.timer = setInterval(() => this.checkDeadline(), 1000);
    this.checkDeadline();
  }

  end(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.signal?.removeEventListener('abort', this.onAbort);
  }

  stop(reason: 'window' | 'signal'): void {
    if (this.stopReason) return;
    this.stopReason = reason;
    this.halt();
  }

  readonly stopping = (): boolean => this.stopReason !== null || this.fatal !== null;

  /**
   * What a destination error does. Most end the run (nothing is committed; the partial is
   * kept); a few concern one entry only (`rel`): a path too long for the destination, or a
   * name it does not take. Those are a warning for that entry, which is left out, so one deep
   * path cannot stop every backup. Returns true when the run goes on.
   */
  fail(err: NodeJS.ErrnoException, rel?: string): boolean {
    if (rel !== undefined && err.code !== undefined && PER_ENTRY_CODES.has(err.code)) {
      this.report.warn(rel, `cannot be created on the destination (${err.code}): ${err.message}`);
      return true;
    }
    this.failWith(
      new EfsBackupError('FAILED', `cannot write the backup: ${err.message}`, { cause: err }),
    );
    return false;
  }

  /** Ends the run with this error (the first one wins). */
  failWith(err: EfsBackupError): void {
    this.fatal ??= err;
    this.halt();
  }

  private checkDeadline(): void {
    // The run's own clock (`now`), so a run started at a given time ends by that time's window.
    if (this.deadline !== null && this.now().getTime() >= this.deadline) this.stop('window');
  }
}
