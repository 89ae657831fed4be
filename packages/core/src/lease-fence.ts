import type { EfsBackupError } from './errors.js';
import type { RunControl, WalkControl } from './run-control.js';

/**
 * One lease as its worker sees it (a unit's, or the commit claim), and the control of the walk
 * that writes under it.
 *
 * A lease is surely the worker's until `sent + ttl`, `sent` being when the call that took or
 * last renewed it was made (by this process's monotonic clock: the store's expiry may already
 * be later). Another worker may take the unit once the store's expiry has passed. So the
 * walk stops writing the unit a third of a lease before that (`lapsed`), which leaves what it
 * has in flight a third of a lease to end before anyone else can start on the same names. A
 * worker that stalls (a paused process, a starved host, a store that does not answer) finds
 * its lease lapsed at its first look afterwards, and gives the unit up instead of writing over
 * its new owner's work; so does one told by the store that the unit is someone else's now.
 *
 * Given up, a unit is not an error of the run: its walk stops, its errors from then on are
 * nobody's (they come from racing the new owner), and the worker goes on with other units.
 */
export class LeaseFence implements WalkControl {
  private validUntil: number;
  private given = false;
  private onGiveUp: (() => void) | null = null;

  constructor(
    private readonly run: RunControl,
    /** When the call that took the lease was made (`performance.now()`). */
    sent: number,
    private readonly ttlMs: number,
  ) {
    this.validUntil = sent + ttlMs;
  }

  /** The unit is given up: lost to another worker, or not renewed in time. */
  get givenUp(): boolean {
    return this.given;
  }

  /** Renewed by a call made at `sent`; nothing for a unit already given up. */
  renewed(sent: number): void {
    if (!this.given) this.validUntil = Math.max(this.validUntil, sent + this.ttlMs);
  }

  /** Stops the unit's walk: no more of its work starts; `f` is told once. */
  giveUp(): void {
    if (this.given) return;
    this.given = true;
    const f = this.onGiveUp;
    this.onGiveUp = null;
    f?.();
  }

  /** `f` is called when the unit is given up (at once if it already was). */
  whenGivenUp(f: () => void): void {
    if (this.given) f();
    else this.onGiveUp = f;
  }

  readonly stopping = (): boolean => this.run.stopping() || this.lapsed();

  fail(err: NodeJS.ErrnoException, rel?: string): boolean {
    if (this.lapsed()) return false;
    return this.run.fail(err, rel);
  }

  failWith(err: EfsBackupError): void {
    if (!this.lapsed()) this.run.failWith(err);
  }

  /** No longer surely the worker's (and so given up): a third of a lease before it can expire. */
  lapsed(): boolean {
    if (!this.given && performance.now() > this.validUntil - this.ttlMs / 3) this.giveUp();
    return this.given;
  }
}
