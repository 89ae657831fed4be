/**
 * The lease store: how the workers of one run share its work. A run of N workers builds one
 * partial; its work is a set of units, each the subtree of one directory (the unit's id is that
 * directory's path relative to the source root, '' for the root itself) less the units inside
 * it. A unit is leased by one worker at a time, with an expiry the worker renews; a worker that
 * dies loses its leases at expiry and another continues its units. When every unit is done,
 * exactly one worker wins the commit claim and commits.
 *
 * One interface, three stores, one contract test suite:
 * - `FileLeaseStore` (core): lease files on the destination, for workers on several hosts that
 *   mount it (each change an atomic `link()` or `rename()`, which NFSv4 and EFS make atomic);
 * - `SqliteLeaseStore` (`@efs-backup/service/local`): N processes on one host, `BEGIN IMMEDIATE`;
 * - `DynamoDbLeaseStore` (`@efs-backup/aws`): workers on EC2, conditional writes.
 *
 * A store is opened for one scope (one backup set's interval: the partial being built there);
 * every method is about that scope only. Times are milliseconds since the epoch, given by the
 * caller (the tests drive a clock), never read by the store itself (but by `clockSkew`, which
 * measures this host's clock).
 */

/** What a run's workers must agree on, written once by the worker that begins the run. */
export interface LeaseRun {
  /** The run's id (the record's BackupId). */
  runId: string;
  /** The stamp of the partial every worker writes into. */
  partialStamp: string;
  /** The stamp the snapshot commits under. */
  stamp: string;
  /** When the run began (ISO 8601). */
  startedAt: string;
  /** How many workers the run was started with (a hint for when to split). */
  workers: number;
}

export type UnitStatus = 'open' | 'leased' | 'done';

/** One unit as the store holds it. */
export interface UnitState {
  unit: string;
  status: UnitStatus;
  /** The lease's holder (its worker id), or '' when open. Kept when done: who finished it. */
  owner: string;
  /** The lease's expiry; 0 when open. */
  expires: number;
  /**
   * How many times the unit was leased in this scope (1 for the first lease). Each attempt
   * writes its own journal file, named by this number.
   */
  attempt: number;
  /** Set once done, by the attempt that finished it. */
  done: UnitDone | null;
}

/** A lease a worker holds. */
export interface UnitLease {
  unit: string;
  attempt: number;
  /**
   * Taken over: the worker whose lease of the unit had expired (it died, or stalled past it).
   * Absent when the unit was open (new, or given back).
   */
  takenFrom?: string;
}

/**
 * A lease just taken at `attempt`: `from` is the holder whose lease had expired when the unit
 * was taken over from it, null when the unit was open.
 */
export function leaseOf(unit: string, attempt: number, from: string | null): UnitLease {
  return from === null ? { unit, attempt } : { unit, attempt, takenFrom: from };
}

/** What the attempt that finished a unit reports (the commit reads it back). */
export interface UnitDone {
  /** Where that attempt's own lines begin in its journal file (the manifest takes them from there). */
  journalStart: number;
  /** Entries recorded, bytes copied, milliseconds the attempt took. */
  entries: number;
  bytes: number;
  files: number;
  ms: number;
  /** The root unit only: the source root's manifest entry, encoded (the manifest's header holds it). */
  root?: string;
  /** The attempt that finished it took it over from this worker (see `UnitLease.takenFrom`). */
  takenFrom?: string;
  /** Files copied and their bytes, files linked, warnings (the run's totals are their sums). */
  transferred?: number;
  transferredBytes?: number;
  linked?: number;
  warnings?: number;
  /**
   * The units its walk met inside it (published then, or known already): the commit waits until
   * each is done, whatever a store's listing shows (an NFS client may list late what another
   * host added).
   */
  children?: string[];
}

export interface UnitCounts {
  /** Leasable now: open, or leased with an expired lease. */
  open: number;
  /** Leased and not expired. */
  leased: number;
  done: number;
}

export interface LeaseStore {
  /**
   * Begins a run in this scope, or joins the one begun: the first call for a run writes `run`
   * (a conditional write) and returns it; a call while that run is the scope's returns the
   * stored run unchanged (the caller must then use its partial). A different `runId` over a
   * run of the SAME partial continues it: units done or leased go back to open (their attempt
   * counters and journals kept, so the new run resumes what the old one wrote), and the new run
   * is stored. Over a run of ANOTHER partial, every unit is dropped first. The root unit ''
   * is added (open) if it is not there: with the run or soon after it, so a worker that reads
   * the run may list no unit at all for a moment (or longer, through a listing that lags);
   * the commit waits for the root to be done.
   */
  begin(run: LeaseRun): Promise<LeaseRun>;
  /** The scope's run, or null when none was begun (or it was cleared). */
  run(): Promise<LeaseRun | null>;
  /** Adds units, open; a unit already known (in any state) is left exactly as it is. */
  publish(units: readonly string[]): Promise<void>;
  /**
   * Leases one unit to `worker`: an open one, or one whose lease expired before `now` (then
   * taken from its holder, whom the lease names: `takenFrom`). Its attempt is incremented.
   * Null when no unit is leasable now. Two workers never get the same unit's lease at once.
   */
  acquire(worker: string, now: number, ttlMs: number): Promise<UnitLease | null>;
  /**
   * Extends `worker`'s leases to `now + ttlMs`. Returns the units among `leases` that are no
   * longer this worker's at that attempt (expired and taken by another, or done): the worker
   * must stop writing them at once.
   */
  renew(
    worker: string,
    leases: readonly UnitLease[],
    now: number,
    ttlMs: number,
  ): Promise<string[]>;
  /**
   * Marks a unit done, only while `lease` (its unit and attempt) is still `worker`'s (an expired
   * lease no one took yet still counts). False when it was lost: the worker's work on it is void.
   */
  complete(worker: string, lease: UnitLease, done: UnitDone): Promise<boolean>;
  /** Gives a lease back unfinished (a stopped worker): open again at once; not `worker`'s, nothing. */
  release(worker: string, lease: UnitLease): Promise<void>;
  counts(now: number): Promise<UnitCounts>;
  /** Every unit of the scope with its state. */
  units(): Promise<UnitState[]>;
  /**
   * The commit claim, a lease of its own: true when `worker` holds it now (taken, renewed, or
   * taken over once its holder's expired). Only one worker holds it at a time.
   */
  claimCommit(worker: string, now: number, ttlMs: number): Promise<boolean>;
  /** The run committed: the scope's run, units and claim are removed. */
  clear(): Promise<void>;
  /** Lets go of what the store holds open (a database handle); no change to its state. */
  close(): Promise<void>;
  /**
   * How far this host's clock (`Date.now()`) is ahead of the clock the store's other hosts are
   * measured against (negative: behind), in ms; 0 within what one call can tell. Only a store
   * shared by hosts with clocks of their own has it: an expiry written by one host is judged by
   * another's clock, so their difference eats into the margin a lease fence leaves (a third of
   * a lease).
   */
  clockSkew?(): Promise<ClockSkew>;
}

/** What `LeaseStore.clockSkew` measured, and against whose clock. */
export interface ClockSkew {
  ms: number;
  /** The clock it was measured against, as a message names it ("the file server's"). */
  against: string;
}

/**
 * The least skew (`ClockSkew.ms`) that fits one look at another clock: it read somewhere from
 * `low` to `high` (a time to the second spans one) at a moment this host's clock put between
 * `before` and `after` (the call's round trip); 0 when the two overlap.
 */
export function skewFrom(before: number, after: number, low: number, high: number): number {
  if (before > high) return before - high;
  if (after < low) return after - low;
  return 0;
}

/**
 * The most a worker's clock may be off its store's (see `clockSkew`): a twelfth of a lease,
 * so two hosts off in opposite directions stay within half the fence's margin, but at least
 * 1 s (what a file's time can lag the clock it is read against, and the coarsest NFS servers'
 * times, stay well inside that).
 */
export function clockSkewLimitMs(leaseMs: number): number {
  return Math.max(1000, leaseMs / 12);
}

/** How many store calls a lease store keeps in flight for a call over many units. */
export const LEASE_CALLS_IN_FLIGHT = 16;

/** Shuffles in place: many workers listing at once try the units in different orders. */
export function shuffle<T>(a: T[]): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
}

/** `fn` over every item, `LEASE_CALLS_IN_FLIGHT` at a time (a store call per unit, not one per promise at once). */
export async function eachLimited<T>(
  items: readonly T[],
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(LEASE_CALLS_IN_FLIGHT, items.length) }, lane));
}

/**
 * A store's answer that it cannot be reached for now and the call had no effect, so it may be
 * made again: a lock another process holds (SQLite's write lock; a worker stopped inside one of
 * its transactions holds it until it wakes), a request throttled. A store throws it at once
 * rather than block its process: the worker waits for the store without stopping its walks,
 * and a stop ends the wait (`patientStore`).
 */
export class LeaseStoreBusy extends Error {
  override readonly name = 'LeaseStoreBusy';
  constructor(
    /** The store, as a message names it ("the lease store /x/leases.sqlite"). */
    readonly store: string,
    /** Why it did not answer, as a message says it ("locked by another process"). */
    readonly why: string,
    options?: ErrorOptions,
  ) {
    super(`${store} is ${why}`, options);
  }
}
