/**
 * What a person sees in a terminal: the CLI run on a pseudo-terminal (python3's pty module,
 * pty-run.py), its output replayed on a small terminal model. Ctrl-C during a backup leaves
 * clean lines; the daemon's log is human lines on a terminal. Needs a build, and python3.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { sourceAndDestination } from '../../core/test/fixtures/tree.js';
import { BIN, requireBuild } from './helpers.js';

beforeAll(requireBuild);

const PTY_RUN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'pty-run.py');

/** Why the pseudo-terminal tests cannot run here, printed once; null when they can. */
function noPty(): string | null {
  const r = spawnSync('python3', ['-c', 'import pty, termios, fcntl'], { encoding: 'utf8' });
  if (r.status === 0) return null;
  const why = `python3 with its pty module is needed: ${r.error?.message ?? r.stderr.trim()}`;
  console.warn(`SKIPPED (needs a pseudo-terminal): ${why}`);
  return why;
}
const skip = noPty();

/** The CLI on a pseudo-terminal; with `interruptOn`, Ctrl-C is typed once that text shows. */
function onTerminal(
  args: string[],
  o: { interruptOn?: string; cwd?: string; timeout?: number } = {},
): { status: number | null; out: string } {
  const r = spawnSync(
    'python3',
    [
      PTY_RUN,
      ...(o.interruptOn ? ['--interrupt-on', o.interruptOn] : []),
      '--',
      process.execPath,
      BIN,
      ...args,
    ],
    {
      encoding: 'utf8',
      timeout: o.timeout ?? 60_000,
      cwd: o.cwd,
      env: { ...process.env, NO_COLOR: '1' },
    },
  );
  if (r.error) throw r.error;
  return { status: r.status, out: r.stdout + r.stderr };
}

/**
 * The lines a terminal shows after `out` is written to it: carriage return, line feed, cursor
 * save and restore, column moves and line erasing, as progress bars use them; other escapes
 * (colours, the cursor's visibility, wrapping) change nothing here.
 */
function screen(out: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  let saved = { row: 0, col: 0 };
  for (let i = 0; i < out.length; i++) {
    const ch = out[i]!;
    if (ch === '\x1b') {
      if (out[i + 1] === '7' || out[i + 1] === '8') {
        if (out[i + 1] === '7') saved = { row, col };
        else ({ row, col } = saved);
        i++;
        continue;
      }
      // eslint-disable-next-line no-control-regex
      const m = /^\x1b\[\??([\d;]*)([A-Za-z])/.exec(out.slice(i, i + 16));
      if (m) {
        i += m[0].length - 1;
        const n = Number(m[1] || 0);
        if (m[2] === 'K') lines[row] = n === 2 ? '' : lines[row]!.slice(0, col);
        else if (m[2] === 'G') col = Math.max(0, (n || 1) - 1);
        continue;
      }
    }
    if (ch === '\r') col = 0;
    else if (ch === '\n') {
      row++;
      lines[row] ??= '';
    } else {
      const line = lines[row]!.padEnd(col);
      lines[row] = line.slice(0, col) + ch + line.slice(col + 1);
      col++;
    }
  }
  return lines.filter((l, i) => l !== '' || i < lines.length - 1);
}

const STOPPING =
  'SIGINT: stopping gracefully (the partial snapshot is kept; again to quit at once)';

describe.skipIf(skip)('on a terminal', () => {
  it('Ctrl-C during a backup: the progress line is cleared, the message stands on its own line, nothing is drawn over it', () => {
    const { src, dst } = sourceAndDestination({}, 'efs-backup-terminal-');
    // 40 000 names, so the run is still going when the progress line shows: hard links, which
    // cost no inode to make.
    for (let d = 0; d < 2; d++) {
      const sub = path.join(src, `d${d}`);
      fs.mkdirSync(sub);
      fs.writeFileSync(path.join(sub, 'base'), `base ${d}\n`);
      for (let i = 0; i < 20_000; i++) fs.linkSync(path.join(sub, 'base'), path.join(sub, `l${i}`));
    }
    const { status, out } = onTerminal(['backup', '--source', src, '--destination', dst], {
      interruptOn: ' entries',
    });
    const shown = screen(out);
    expect(status, out).toBe(1); // Incomplete
    const at = shown.indexOf(STOPPING);
    expect(at, JSON.stringify(shown, null, 1)).toBeGreaterThanOrEqual(0);
    // What follows is the run's result, and no progress line.
    expect(shown.slice(at + 1)[0]).toMatch(
      /^Incomplete: the run was stopped before the backup completed/,
    );
    expect(shown.filter((l) => / · |counting…|\d+%/.test(l))).toEqual([]);
    // The cursor is given back.
    expect(out.lastIndexOf('\x1b[?25h')).toBeGreaterThan(out.lastIndexOf('\x1b[?25l'));
  });

  it('the daemon logs human lines on a terminal, by default', () => {
    const { base, src, dst } = sourceAndDestination({}, 'efs-backup-terminal-');
    fs.writeFileSync(path.join(src, 'a.txt'), 'a');
    const config = path.join(base, 'efs-backup.yaml');
    fs.writeFileSync(
      config,
      `jobs:\n  - name: often\n    source: ${src}\n    destination: ${dst}\n    schedule: "* * * * * *"\n`,
    );
    const { out } = onTerminal(['run', '--config', config], { interruptOn: 'often: Success' });
    const shown = screen(out);
    expect(shown).toContainEqual(
      expect.stringMatching(
        /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] INFO: job often: Success: snapshot daily\/\d{8}T\d{6}Z is complete BackupId=\S+ LogLocation=\S+\.log$/,
      ),
    );
    // Ctrl-C: the echoed `^C` does not garble the line that says so.
    expect(shown).toContainEqual(
      expect.stringMatching(
        /^\[[\d :-]+\] INFO: SIGINT: stopping; running backups end Incomplete and are recorded$/,
      ),
    );
    expect(shown.filter((l) => l.startsWith('{'))).toEqual([]);
  });
});
