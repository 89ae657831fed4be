/**
 * The records under faults, as a user meets them on the command line: an unreadable records
 * file is set aside and `history` and `backup` go on; a destination that fills up during a
 * backup (a real, tiny tmpfs) still leaves a history that tells what happened. Needs a build.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dir, file, sourceAndDestination } from '../../core/test/fixtures/tree.js';
import { cli, cliJson, requireBuild } from './helpers.js';

beforeAll(requireBuild);

type Rec = Record<string, unknown>;

const recordsFile = (dst: string): string =>
  path.join(dst, 'efs-backup', '.efs-backup', 'records.sqlite');

describe('an unreadable records file', () => {
  it('history sets it aside, says so naming both files, and lists only the new records; backup goes on', () => {
    const { src, dst } = sourceAndDestination(
      { 'a.txt': file('hello\n'), sub: dir({ 'b.txt': file('bb') }) },
      'efs-backup-record-faults-',
    );
    const first = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(first.result.status, first.result.stderr).toBe(0);
    const records = recordsFile(dst);
    const garbage = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251));
    fs.writeFileSync(records, garbage);

    const h = cliJson<Rec[]>(['history', '--destination', dst]);
    expect(h.result.status, h.result.stderr).toBe(0);
    expect(h.json).toEqual([]);
    const aside = fs
      .readdirSync(path.dirname(records))
      .filter((n) => /^records\.sqlite\.corrupt-\d{8}T\d{6}Z$/.test(n))
      .map((n) => path.join(path.dirname(records), n));
    expect(aside).toHaveLength(1);
    expect(fs.readFileSync(aside[0]!).equals(garbage)).toBe(true);
    expect(h.result.stderr).toMatch(/^warning: the records file \S+ could not be read/m);
    expect(h.result.stderr).toContain(records);
    expect(h.result.stderr).toContain(aside[0]!);

    const second = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(second.result.status, second.result.stderr).toBe(0);
    const text = cli(['history', '--destination', dst]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toContain(second.json.BackupId as string);
    expect(text.stdout).not.toContain(first.json.BackupId as string);
    // Every later history says where the earlier records went.
    expect(text.stderr).toContain(`earlier records of ${records} are in ${aside[0]!}`);
  });

  it('backup sets it aside, warns on stderr naming both files, and records the run in a fresh file', () => {
    const { src, dst } = sourceAndDestination(
      { 'a.txt': file('hello\n') },
      'efs-backup-record-faults-',
    );
    const records = recordsFile(dst);
    fs.mkdirSync(path.dirname(records), { recursive: true });
    fs.writeFileSync(records, 'not a database\n'.repeat(100));
    const run = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(run.result.status, run.result.stderr).toBe(0);
    const aside = fs.readdirSync(path.dirname(records)).filter((n) => n.includes('.corrupt-'));
    expect(aside).toHaveLength(1);
    expect(run.result.stderr).toMatch(
      new RegExp(
        `^warning: the records file ${records.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} could not be read .*set aside as \\S+${aside[0]}`,
        'm',
      ),
    );
    const h = cliJson<Rec[]>(['history', '--destination', dst]);
    expect(h.json.map((r) => r.BackupId)).toEqual([run.json.BackupId]);
  });
});

/** Mounts a tmpfs of `size` at `dir`; null (with the reason) when this machine cannot. */
function mountTmpfs(dir: string, size: string): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], {
    encoding: 'utf8',
  });
  return r.status === 0
    ? null
    : `mount -t tmpfs failed: ${(r.stderr || r.error?.message || '').trim()}`;
}

describe('ENOSPC: the destination fills up during a backup', () => {
  const mounted: string[] = [];
  afterAll(() => {
    for (const m of mounted) spawnSync('umount', [m]);
  });

  it('the run is recorded Failed with ENOSPC, never Running, and never Unknown "killed" by the next run', (ctx) => {
    const { base, src } = sourceAndDestination({}, 'efs-backup-enospc-');
    const dst = path.join(base, 'tiny');
    fs.mkdirSync(dst);
    const why = mountTmpfs(dst, '2m');
    if (why) {
      console.log(`skipped: cannot mount a 2 MB tmpfs (${why})`);
      ctx.skip();
      return;
    }
    mounted.push(dst);
    // ~5 MB of incompressible data: more than the file system holds.
    for (let i = 0; i < 50; i++)
      fs.writeFileSync(
        path.join(src, `f${String(i).padStart(2, '0')}.bin`),
        Buffer.from(Array.from({ length: 100_000 }, (_, j) => (i * 31 + j * 7) & 0xff)),
      );

    const full = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(full.result.status, full.result.stderr).toBe(3);
    expect(full.json).toMatchObject({ Status: 'Failed' });
    expect(full.json.Message).toMatch(/ENOSPC/);

    // Still full: history already tells the truth.
    const during = cliJson<Rec[]>(['history', '--destination', dst]);
    expect(during.result.status, during.result.stderr).toBe(0);
    expect(during.json).toEqual([
      expect.objectContaining({ BackupId: full.json.BackupId, Status: 'Failed' }),
    ]);
    expect(during.json[0]!.Message).toMatch(/ENOSPC/);

    // Room made (the partial removed, a smaller source): the next run, then history.
    for (const d of fs.readdirSync(path.join(dst, 'efs-backup', 'daily')))
      fs.rmSync(path.join(dst, 'efs-backup', 'daily', d), { recursive: true, force: true });
    for (let i = 5; i < 50; i++) fs.rmSync(path.join(src, `f${String(i).padStart(2, '0')}.bin`));
    const next = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(next.result.status, next.result.stderr).toBe(0);
    const after = cliJson<Rec[]>(['history', '--destination', dst]);
    expect(after.json.map((r) => [r.BackupId, r.Status])).toEqual([
      [next.json.BackupId, 'Success'],
      [full.json.BackupId, 'Failed'],
    ]);
    expect(after.json[1]!.Message).toMatch(/ENOSPC/);
    expect(after.json[1]!.Message).not.toMatch(/killed/);
  });
});

describe('a Running record whose log says how the run ended', () => {
  it('history shows how it ended, saying where that comes from', () => {
    const { src, dst } = sourceAndDestination(
      { 'a.txt': file('hello\n') },
      'efs-backup-record-faults-',
    );
    const run = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(run.result.status, run.result.stderr).toBe(0);
    // What a run whose end could not be written leaves: its row Running, its log complete.
    const db = spawnSync(process.execPath, [
      '-e',
      `const D = require(${JSON.stringify(require.resolve('better-sqlite3'))}); const db = new D(process.argv[1]); db.prepare("UPDATE runs SET Status = 'Running', Message = 'the run is going', StopTime = NULL").run(); db.close();`,
      recordsFile(dst),
    ]);
    expect(db.status, String(db.stderr)).toBe(0);
    const h = cliJson<Rec[]>(['history', '--destination', dst]);
    expect(h.json[0]).toMatchObject({
      BackupId: run.json.BackupId,
      Status: 'Success',
      StopTime: run.json.StopTime,
    });
    expect(h.json[0]!.Message).toMatch(
      /from the run's log: its end could not be written to the records/,
    );
  });
});
