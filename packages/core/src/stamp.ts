/** A snapshot's name: its run's start time, UTC, ISO 8601 basic (20261126T020000Z). */
export const STAMP_PATTERN = /^\d{8}T\d{6}Z$/;

export function isStamp(name: string): boolean {
  return STAMP_PATTERN.test(name);
}

export function toStamp(date: Date): string {
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
}

export function stampToDate(stamp: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(stamp);
  if (!m) throw new Error(`not a stamp: ${stamp}`);
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

/**
 * The first stamp at or after `date`, and after `newest` when given, that `taken` does not
 * hold (two runs in one second must not collide).
 */
export function uniqueStamp(
  date: Date,
  taken: (stamp: string) => boolean,
  newest?: string,
): string {
  let t = Math.floor(date.getTime() / 1000) * 1000;
  if (newest !== undefined) t = Math.max(t, stampToDate(newest).getTime() + 1000);
  for (;;) {
    const stamp = toStamp(new Date(t));
    if (!taken(stamp)) return stamp;
    t += 1000;
  }
}
