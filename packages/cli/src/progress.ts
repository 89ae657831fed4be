import { formatBytes, formatCount } from '@efs-backup/core';
import type { BackupProgress } from '@efs-backup/core';

/**
 * A backup's progress on a terminal, in one line redrawn in place:
 *
 *   counting (a first backup, before the count ahead of the walk is done):
 *     1,234 entries, 56.0 MiB · 12.3 MiB/s · counting… 8,000 found
 *   with an estimate (a first backup once counted; an incremental from its start):
 *     [████████░░░░░░░░░░░░]  42% · 8,456 / 20,400 entries · 345.0 MiB / 815.0 MiB · 12.3 MiB/s · 1 min 20 s left
 *
 * The percentage and the time left go by entries: the one estimate every run has (a first
 * backup's count ahead reads no sizes), and the one that rules an incremental, where most
 * entries are unchanged and linked, not copied. Bytes are shown beside it. The time left is
 * shown once there is a stable estimate and a rate measured over a few seconds: never `0 s`
 * from nothing, never a guess that jumps while the count is still growing.
 */

/** Rates are measured over this much of the recent past. */
const RATE_WINDOW_MS = 60_000;
/** No rate, and so no time left, before this much has been seen. */
const RATE_MIN_MS = 3_000;

/** Entries and bytes per second over the last minute, from the samples the engine reports. */
export class Rates {
  private readonly samples: { t: number; entries: number; bytes: number }[] = [];

  add(t: number, entries: number, bytes: number): void {
    this.samples.push({ t, entries, bytes });
    while (this.samples.length > 2 && t - this.samples[1]!.t >= RATE_WINDOW_MS)
      this.samples.shift();
  }

  /** Null until RATE_MIN_MS have been seen. */
  get(): { entries: number; bytes: number } | null {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.t - first.t < RATE_MIN_MS) return null;
    const s = (last.t - first.t) / 1000;
    return { entries: (last.entries - first.entries) / s, bytes: (last.bytes - first.bytes) / s };
  }
}

/** Time left, rounded up, as people say it: 45 s, 3 min 20 s, 2 h 5 min. */
export function formatTimeLeft(ms: number): string {
  const s = Math.max(1, Math.ceil(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} days`;
}

const BAR_WIDTH = 20;

/** The time left in ms, or null when it cannot be said yet. */
export function timeLeft(
  p: BackupProgress,
  rates: { entries: number; bytes: number } | null,
): number | null {
  if (p.counting || !p.estimatedEntries || !rates || rates.entries <= 0) return null;
  // Past the estimate (entries added since it was made), how much is left is not known.
  const left = p.estimatedEntries - p.entries;
  return left > 0 ? (left / rates.entries) * 1000 : null;
}

/** The progress line for `p`, at most `columns - 1` characters (a full line would wrap). */
export function progressLine(
  p: BackupProgress,
  rates: { entries: number; bytes: number } | null,
  columns = 80,
): string {
  const rate = rates ? `${formatBytes(Math.round(rates.bytes))}/s` : null;
  const parts: string[] = [];
  let bar: string | null = null;
  if (p.counting || !p.estimatedEntries) {
    parts.push(`${formatCount(p.entries)} entries, ${formatBytes(p.bytes)}`);
    if (rate) parts.push(rate);
    if (p.counting) parts.push(`counting… ${formatCount(p.estimatedEntries ?? 0)} found`);
  } else {
    // Entries added since the estimate can pass it: 99% until the run says it is done.
    const pct = Math.min(99, Math.floor((100 * p.entries) / p.estimatedEntries));
    const filled = Math.floor((BAR_WIDTH * pct) / 100);
    bar = `[${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}]`;
    parts.push(`${String(pct).padStart(3)}%`);
    parts.push(`${formatCount(p.entries)} / ${formatCount(p.estimatedEntries)} entries`);
    parts.push(
      p.estimatedBytes !== null
        ? `${formatBytes(p.bytes)} / ${formatBytes(p.estimatedBytes)}`
        : formatBytes(p.bytes),
    );
    if (rate) parts.push(rate);
    const left = timeLeft(p, rates);
    if (left !== null) parts.push(`${formatTimeLeft(left)} left`);
  }
  const max = Math.max(10, columns - 1);
  const text = parts.join(' · ');
  const line = bar && bar.length + 1 + text.length <= max ? `${bar} ${text}` : text;
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}

export interface ProgressDisplay {
  update(p: BackupProgress): void;
  /** A line of its own (a warning), above the progress line. */
  say(text: string): void;
  /**
   * Takes the progress line away for good: nothing is drawn after it (a signal's message, the
   * run's result). True when a line was cleared (the cursor is at the start of an empty line).
   */
  stop(): boolean;
}

const CLEAR_LINE = '\r\x1b[K';
const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';

/** The progress line on a terminal; nothing drawn when the stream is not one. */
export function progressDisplay(
  stream: NodeJS.WriteStream,
  now: () => number = Date.now,
): ProgressDisplay {
  if (!stream.isTTY) {
    return { update: () => {}, say: (text) => void stream.write(`${text}\n`), stop: () => false };
  }
  const rates = new Rates();
  let line: string | null = null;
  let stopped = false;
  const showCursor = (): void => void stream.write(SHOW_CURSOR);
  return {
    update(p) {
      if (stopped) return;
      rates.add(now(), p.entries, p.bytes);
      if (line === null) {
        stream.write(HIDE_CURSOR);
        // A second Ctrl-C exits at once: the cursor comes back all the same.
        process.once('exit', showCursor);
      }
      line = progressLine(p, rates.get(), stream.columns || 80);
      stream.write(`${CLEAR_LINE}${line}`);
    },
    say(text) {
      stream.write(`${line !== null ? CLEAR_LINE : ''}${text}\n${line ?? ''}`);
    },
    stop() {
      if (stopped) return false;
      stopped = true;
      if (line === null) return false;
      line = null;
      process.off('exit', showCursor);
      stream.write(`${CLEAR_LINE}${SHOW_CURSOR}`);
      return true;
    },
  };
}
