/**
 * A unit's lease as its worker sees it (`LeaseFence`): surely its own until a third of a lease
 * before the store lets another worker take it; from then on the unit's walk stops, and what
 * fails in it is nobody's error.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EfsBackupError } from '../src/errors.js';
import { LeaseFence } from '../src/lease-fence.js';
import { RunControl } from '../src/run-control.js';
import { RunReport } from '../src/run-report.js';

const TTL = 3000;

function setup(): { run: RunControl; fence: LeaseFence; halted: () => number } {
  let halts = 0;
  const run = new RunControl(
    () => halts++,
    new RunReport(undefined, undefined),
    new Date(),
    null,
    () => new Date(),
  );
  return { run, fence: new LeaseFence(run, performance.now(), TTL), halted: () => halts };
}

const eio = (): NodeJS.ErrnoException =>
  Object.assign(new Error('EIO: i/o error, open'), { code: 'EIO' });

describe('LeaseFence', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('holds for two thirds of a lease from the call that took it, then gives the unit up, once', () => {
    const { fence } = setup();
    const told = vi.fn();
    fence.whenGivenUp(told);
    vi.advanceTimersByTime(TTL * (2 / 3) - 10);
    expect(fence.stopping()).toBe(false);
    expect(told).not.toHaveBeenCalled();
    vi.advanceTimersByTime(20);
    expect(fence.stopping()).toBe(true);
    expect(fence.givenUp).toBe(true);
    expect(fence.stopping()).toBe(true);
    expect(told).toHaveBeenCalledTimes(1);
  });

  it('a renewal counts from when its call was made; none counts once the unit is given up', () => {
    const { fence } = setup();
    vi.advanceTimersByTime(1500);
    const sent = performance.now();
    vi.advanceTimersByTime(400); // the call took 400 ms to answer
    fence.renewed(sent);
    vi.advanceTimersByTime(TTL * (2 / 3) - 400 - 10);
    expect(fence.stopping()).toBe(false);
    vi.advanceTimersByTime(20);
    expect(fence.stopping()).toBe(true);
    fence.renewed(performance.now());
    expect(fence.stopping()).toBe(true);
  });

  it('a renewal older than the lease it has does not shorten it', () => {
    const { fence } = setup();
    fence.renewed(performance.now() - 1000);
    vi.advanceTimersByTime(TTL * (2 / 3) - 10);
    expect(fence.stopping()).toBe(false);
  });

  it("given up, a destination error is not the run's: the run goes on", () => {
    const { run, fence, halted } = setup();
    fence.giveUp();
    expect(fence.fail(eio(), 'a/b')).toBe(false);
    fence.failWith(new EfsBackupError('FAILED', 'cannot write the backup'));
    expect(run.fatal).toBeNull();
    expect(run.stopping()).toBe(false);
    expect(halted()).toBe(0);
  });

  it("held, an error is the run's, and the run's stop stops the unit", () => {
    const { run, fence, halted } = setup();
    expect(fence.fail(eio(), 'a/b')).toBe(false);
    expect(run.fatal?.message).toMatch(/EIO/);
    expect(halted()).toBe(1);
    expect(fence.stopping()).toBe(true);
    expect(fence.givenUp).toBe(false);
  });

  it('told it is given up after the fact, a new listener hears it at once', () => {
    const { fence } = setup();
    fence.giveUp();
    const told = vi.fn();
    fence.whenGivenUp(told);
    expect(told).toHaveBeenCalledTimes(1);
  });
});
