/** What every command prints the same way: its exit codes, and its tables. */

/**
 * Exit codes, one meaning each in every command: 0 success; 1 the command ended but not
 * cleanly (warnings, an incomplete run, damage found); 2 bad input, nothing written; 3 failed.
 */
export const EXIT = { ok: 0, notSuccess: 1, badInput: 2, failed: 3 } as const;

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return (
    [head, ...rows]
      .map((r) =>
        r
          .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}
