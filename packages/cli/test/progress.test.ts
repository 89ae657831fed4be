/** The progress line, as a pure function of the engine's progress and the rates seen so far. */
import type { BackupProgress } from '@efs-backup/core';
import { describe, expect, it } from 'vitest';
import { formatTimeLeft, progressLine, Rates, timeLeft } from '../src/progress.js';

const MiB = 1024 * 1024;

const first = (o: Partial<BackupProgress>): BackupProgress => ({
  phase: 'copy',
  entries: 0,
  bytes: 0,
  estimatedEntries: null,
  estimatedBytes: null,
  counting: true,
  ...o,
});
const incremental = (o: Partial<BackupProgress>): BackupProgress => ({
  phase: 'copy',
  entries: 0,
  bytes: 0,
  estimatedEntries: 20_400,
  estimatedBytes: 815 * MiB,
  counting: false,
  ...o,
});

describe('the progress line', () => {
  it('while a first backup is still counting: counts, the rate, what was found; no percentage, no time left', () => {
    const line = progressLine(
      first({ entries: 1234, bytes: 56 * MiB, estimatedEntries: 8000 }),
      { entries: 400, bytes: 12.3 * MiB },
      120,
    );
    expect(line).toBe('1,234 entries, 56.0 MiB · 12.3 MiB/s · counting… 8,000 found');
  });

  it('a first backup once counted: bar, percentage, entries of the estimate, bytes so far, rate, time left', () => {
    const line = progressLine(
      first({ entries: 8456, bytes: 345 * MiB, estimatedEntries: 20_400, counting: false }),
      { entries: 100, bytes: 12.3 * MiB },
      120,
    );
    expect(line).toBe(
      '[████████░░░░░░░░░░░░]  41% · 8,456 / 20,400 entries · 345.0 MiB · 12.3 MiB/s · 2 min 0 s left',
    );
  });

  it("an incremental from its start: the manifest's estimate, bytes of bytes; no time left until a rate is measured (never `0 s left`)", () => {
    const atStart = progressLine(incremental({ entries: 0 }), null, 120);
    expect(atStart).toBe('[░░░░░░░░░░░░░░░░░░░░]   0% · 0 / 20,400 entries · 0 B / 815.0 MiB');
    expect(atStart).not.toMatch(/left/);
    const later = progressLine(
      incremental({ entries: 10_200, bytes: 400 * MiB }),
      { entries: 1020, bytes: 40 * MiB },
      120,
    );
    expect(later).toBe(
      '[██████████░░░░░░░░░░]  50% · 10,200 / 20,400 entries · 400.0 MiB / 815.0 MiB · 40.0 MiB/s · 10 s left',
    );
  });

  it('stays below 100% while entries pass the estimate, and fits the terminal (no wrap)', () => {
    const over = progressLine(incremental({ entries: 30_000 }), { entries: 10, bytes: 0 }, 200);
    expect(over).toMatch(/^\[█{19}░\] {2}99% · 30,000 \/ 20,400 entries/);
    expect(over).not.toMatch(/left/);
    for (const columns of [40, 60, 80]) {
      const line = progressLine(
        incremental({ entries: 10_200 }),
        { entries: 1020, bytes: 40 * MiB },
        columns,
      );
      expect(line.length).toBeLessThanOrEqual(columns - 1);
    }
    // Narrow: the bar goes first, the figures stay.
    expect(progressLine(incremental({ entries: 10_200 }), null, 70)).toBe(
      ' 50% · 10,200 / 20,400 entries · 0 B / 815.0 MiB',
    );
  });
});

describe('rates and the time left', () => {
  it('no rate before 3 s of samples, then the rate over the last minute', () => {
    const r = new Rates();
    r.add(0, 0, 0);
    r.add(2000, 200, 2 * MiB);
    expect(r.get()).toBeNull();
    r.add(4000, 400, 4 * MiB);
    expect(r.get()).toEqual({ entries: 100, bytes: MiB });
    // Past a minute, the old samples no longer count: the rate follows what goes on now.
    for (let t = 5000; t <= 125_000; t += 1000) r.add(t, 400 + (t - 4000) / 100, 4 * MiB);
    expect(r.get()!.entries).toBeCloseTo(10, 5);
  });

  it('no time left while counting, without an estimate, or without a rate', () => {
    const rate = { entries: 10, bytes: 0 };
    expect(timeLeft(first({ estimatedEntries: 500 }), rate)).toBeNull();
    expect(timeLeft(first({ estimatedEntries: null, counting: false }), rate)).toBeNull();
    expect(timeLeft(incremental({}), null)).toBeNull();
    expect(timeLeft(incremental({}), { entries: 0, bytes: 0 })).toBeNull();
    expect(timeLeft(incremental({ entries: 20_000 }), rate)).toBe(40_000);
  });

  it('says the time left as people do, rounded up', () => {
    expect(formatTimeLeft(1)).toBe('1 s');
    expect(formatTimeLeft(44_100)).toBe('45 s');
    expect(formatTimeLeft(200_000)).toBe('3 min 20 s');
    expect(formatTimeLeft(7_500_000)).toBe('2 h 5 min');
    expect(formatTimeLeft(5 * 86_400_000)).toBe('5 days');
  });
});
