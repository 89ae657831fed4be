import { describe, expect, it } from 'vitest';
import { LeaseStoreBusy, type LeaseStore } from '../src/leases.js';
import { patientStore, StoreWaitStopped } from '../src/patient-store.js';

/**
 * A store whose every call is recorded (its name and the `now` it was given) and answers busy
 * while `busy()` says so, as SQLite's does while another process holds its write lock.
 */
function flaky(busy: () => boolean): { store: LeaseStore; calls: Array<[string, number?]> } {
  const calls: Array<[string, number?]> = [];
  const answer = <T>(name: string, value: T, now?: number): Promise<T> => {
    calls.push(now === undefined ? [name] : [name, now]);
    return busy()
      ? Promise.reject(
          new LeaseStoreBusy('the lease store /x/leases.sqlite', 'locked by another process'),
        )
      : Promise.resolve(value);
  };
  const store: LeaseStore = {
    begin: (run) => answer('begin', run),
    run: () => answer('run', null),
    publish: () => answer('publish', undefined),
    acquire: (_w, now) => answer('acquire', { unit: 'a', attempt: 1 }, now),
    renew: (_w, _l, now) => answer('renew', [], now),
    complete: () => answer('complete', true),
    release: () => answer('release', undefined),
    counts: (now) => answer('counts', { open: 1, leased: 0, done: 0 }, now),
    units: () => answer('units', []),
    claimCommit: (_w, now) => answer('claimCommit', true, now),
    clear: () => answer('clear', undefined),
    close: () => Promise.resolve(),
  };
  return { store, calls };
}

describe('patientStore: a lease store that answers busy', () => {
  it('each call is made again until the store answers, told the time it is made again at', async () => {
    const until = Date.now() + 300;
    const { store, calls } = flaky(() => Date.now() < until);
    const notices: string[] = [];
    const patient = patientStore(store, { stopping: () => false, notice: (m) => notices.push(m) });
    const asked = 1_000_000;
    expect(await patient.acquire('w', asked, 1000)).toEqual({ unit: 'a', attempt: 1 });
    const nows = calls.map(([, now]) => now!);
    expect(nows.length).toBeGreaterThan(2);
    expect(nows[0]).toBe(asked);
    // Moved on by the wait: the last one by about the 300 ms the store was busy.
    for (let i = 1; i < nows.length; i++) expect(nows[i]!).toBeGreaterThan(nows[i - 1]!);
    expect(nows.at(-1)! - asked).toBeGreaterThanOrEqual(250);
    expect(notices).toEqual([]);
    calls.length = 0;
    expect(await patient.complete('w', { unit: 'a', attempt: 1 }, {} as never)).toBe(true);
    expect(calls).toEqual([['complete']]);
  });

  it('renew is not made again (the next heartbeat is): its busy answer is the caller’s', async () => {
    const { store, calls } = flaky(() => true);
    const patient = patientStore(store, { stopping: () => false });
    await expect(patient.renew('w', [], 5, 1000)).rejects.toBeInstanceOf(LeaseStoreBusy);
    expect(calls).toEqual([['renew', 5]]);
  });

  it('a stop ends the wait at once: StoreWaitStopped, which names the store', async () => {
    const { store } = flaky(() => true);
    let stop = false;
    const patient = patientStore(store, { stopping: () => stop });
    const t = performance.now();
    setTimeout(() => (stop = true), 1000);
    const e = await patient.counts(0).then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(StoreWaitStopped);
    expect((e as Error).message).toBe(
      'the lease store /x/leases.sqlite is locked by another process; the run stopped while waiting for it',
    );
    // Seen within a pause's slice (100 ms) of the stop.
    expect(performance.now() - t).toBeLessThan(1400);
    // Already stopping: one try, then the stop.
    await expect(patient.units()).rejects.toBeInstanceOf(StoreWaitStopped);
  });

  it('a long wait is told after 5 s, then each time it has doubled', async () => {
    const until = Date.now() + 11_000;
    const { store } = flaky(() => Date.now() < until);
    const notices: string[] = [];
    const patient = patientStore(store, { stopping: () => false, notice: (m) => notices.push(m) });
    await patient.publish(['a']);
    expect(notices).toEqual([
      'the lease store /x/leases.sqlite has been locked by another process for 5 s; waiting',
      'the lease store /x/leases.sqlite has been locked by another process for 10 s; waiting',
    ]);
  }, 20_000);

  it('any other error is the caller’s at once', async () => {
    const { store } = flaky(() => false);
    let calls = 0;
    store.units = () => {
      calls++;
      return Promise.reject(new Error('EIO'));
    };
    await expect(patientStore(store, { stopping: () => false }).units()).rejects.toThrow('EIO');
    expect(calls).toBe(1);
  });
});
