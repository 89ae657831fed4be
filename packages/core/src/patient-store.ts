import { setTimeout as sleep } from 'node:timers/promises';
import { LeaseStoreBusy, type LeaseStore } from './leases.js';

/** The first pause after a busy answer, and the longest: a stop is seen within the longest. */
const FIRST_PAUSE_MS = 20;
const LONGEST_PAUSE_MS = 500;
/** When a wait is first told, then each time it has doubled. */
const FIRST_NOTICE_MS = 5000;

/** A wait for the store ended by the run's stop: the run is stopped, not failed. */
export class StoreWaitStopped extends Error {
  override readonly name = 'StoreWaitStopped';
  constructor(cause: LeaseStoreBusy) {
    super(`${cause.message}; the run stopped while waiting for it`, { cause });
  }
}

export interface Patience {
  /** True once the run stops: a wait ends at once, with `StoreWaitStopped`. */
  stopping: () => boolean;
  /** Told of a long wait (after 5 s, then each time it has doubled). */
  notice?: (message: string) => void;
}

/**
 * `store` waiting out its busy answers (`LeaseStoreBusy`): each call is made again, after a
 * pause that grows to half a second, until the store answers or the run stops. The process's
 * loop is free meanwhile (the walks go on; a lease the worker cannot renew meanwhile lapses
 * and its fence gives the unit up, as with any store that does not answer). A call made again
 * is told the time it is made again at (its `now` moved on by the wait): an expiry is never
 * earlier than the caller's fence believes, and a lease is judged expired by the time it is
 * taken at. `renew` is not made again: the next heartbeat is.
 */
export function patientStore(store: LeaseStore, patience: Patience): LeaseStore {
  async function again<T>(call: (waited: number) => Promise<T>): Promise<T> {
    const began = Date.now();
    let waited = 0;
    let pause = FIRST_PAUSE_MS;
    let notice = FIRST_NOTICE_MS;
    for (;;) {
      try {
        return await call(waited);
      } catch (e) {
        if (!(e instanceof LeaseStoreBusy)) throw e;
        const until = Date.now() + pause;
        while (Date.now() < until && !patience.stopping())
          await sleep(Math.min(100, until - Date.now()));
        if (patience.stopping()) throw new StoreWaitStopped(e);
        pause = Math.min(LONGEST_PAUSE_MS, pause * 2);
        waited = Date.now() - began;
        if (waited >= notice) {
          patience.notice?.(
            `${e.store} has been ${e.why} for ${Math.round(waited / 1000)} s; waiting`,
          );
          notice *= 2;
        }
      }
    }
  }
  const patient: LeaseStore = {
    begin: (run) => again(() => store.begin(run)),
    run: () => again(() => store.run()),
    publish: (units) => again(() => store.publish(units)),
    acquire: (worker, now, ttlMs) => again((waited) => store.acquire(worker, now + waited, ttlMs)),
    renew: (worker, leases, now, ttlMs) => store.renew(worker, leases, now, ttlMs),
    complete: (worker, lease, done) => again(() => store.complete(worker, lease, done)),
    release: (worker, lease) => again(() => store.release(worker, lease)),
    counts: (now) => again((waited) => store.counts(now + waited)),
    units: () => again(() => store.units()),
    claimCommit: (worker, now, ttlMs) =>
      again((waited) => store.claimCommit(worker, now + waited, ttlMs)),
    clear: () => again(() => store.clear()),
    close: () => store.close(),
  };
  if (store.clockSkew) patient.clockSkew = () => store.clockSkew!();
  return patient;
}
