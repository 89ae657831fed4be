/**
 * `efs-backup restore | verify | ls | diff | history | adopt` as a user runs them: the real CLI
 * process on real directories (issue 3). Needs a build (`npm run build`; `npm test` does it).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { everyKindTree } from '../../core/test/fixtures/every-kind.js';
import { buildOriginalSet, DAY_STAMPS, fileInodes } from '../../core/test/fixtures/original-set.js';
import { tmpDir } from '../../core/test/fixtures/tmp.js';
import {
  createTree,
  diffTrees,
  dir,
  fifo,
  file,
  hardlink,
  rsyncDifferences,
  symlink,
  type TestEntries,
  sourceAndDestination,
} from '../../core/test/fixtures/tree.js';
import {
  cli,
  cliJson,
  expectOneLineError,
  fingerprint,
  requireBuild,
  restoreArgs,
  type CliResult,
} from './helpers.js';

beforeAll(requireBuild);

const STAMP = /^\d{8}T\d{6}Z$/;

const ok = (r: CliResult, what = ''): CliResult => {
  expect(r.status, `${what}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`).toBe(0);
  return r;
};

/** `efs-backup backup` of `src` into `dst`; returns the record. */
function backupCli(src: string, dst: string, ...extra: string[]): Record<string, unknown> {
  const { result, json } = cliJson(['backup', '--source', src, '--destination', dst, ...extra]);
  ok(result, 'backup');
  expect(json.Status).toBe('Success');
  expect(json.Snapshot).toMatch(STAMP);
  return json;
}

function setup(entries: TestEntries): { base: string; src: string; dst: string } {
  return sourceAndDestination(entries, 'efs-restore-cli-');
}

/** The numbers of the summary line `restored ...: N created, N updated, ...`. */
function summary(stdout: string): Record<string, number> {
  const m =
    /(would restore|restored) \S+ into .*: (\d+) created, (\d+) updated, (\d+) deleted, (\d+) linked, (\d+) unchanged/.exec(
      stdout,
    );
  expect(m, stdout).not.toBeNull();
  const [, , created, updated, deleted, linked, unchanged] = m!.map(Number);
  return {
    created: created!,
    updated: updated!,
    deleted: deleted!,
    linked: linked!,
    unchanged: unchanged!,
  };
}

// ---- round trip -----------------------------------------------------------------------------

describe('restore: round trip of every entry kind', () => {
  let base = '';
  let src = '';
  let dst = '';
  let stamp = '';
  let n = 0;
  const target = (): string => path.join(base, 'targets', String(++n));

  beforeAll(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-restore-cli-rt-'));
    src = path.join(base, 'src');
    dst = path.join(base, 'dst');
    createTree(src, everyKindTree());
    fs.mkdirSync(dst);
    stamp = backupCli(src, dst).Snapshot as string;
  });
  afterAll(() => {
    if (base) fs.rmSync(base, { recursive: true, force: true });
  });

  it('the whole snapshot into an empty target; a second restore writes nothing', () => {
    const t = target();
    const r = ok(cli(restoreArgs(dst, t)));
    expect(r.stdout).toMatch(
      new RegExp(
        `^restored daily/${stamp} into ${t}: \\d+ created, 0 updated, 0 deleted, 3 linked`,
      ),
    );
    expect(r.stderr).toBe('');
    expect(rsyncDifferences(src, t)).toEqual([]);
    expect(diffTrees(src, t, { sparse: true })).toEqual([]);

    const before = fingerprint(t);
    const again = ok(cli(restoreArgs(dst, t)));
    expect(summary(again.stdout)).toMatchObject({ created: 0, updated: 0, deleted: 0, linked: 0 });
    expect(again.stdout).toContain('(0 B written)');
    expect(fingerprint(t)).toEqual(before);
  });

  it.each(['hard', 'perms', 'owners/foreign-dir'])('--subdir %s (a directory)', (sub) => {
    const t = target();
    ok(cli(restoreArgs(dst, t, '--subdir', sub)));
    expect(rsyncDifferences(path.join(src, sub), t)).toEqual([]);
    expect(diffTrees(path.join(src, sub), t, { sparse: true })).toEqual([]);
    const before = fingerprint(t);
    const again = ok(cli(restoreArgs(dst, t, '--subdir', sub)));
    expect(summary(again.stdout)).toMatchObject({ created: 0, updated: 0, deleted: 0, linked: 0 });
    expect(fingerprint(t)).toEqual(before);
  });

  it.each(['sparse', 'perms/setuid', 'owners/foreign'])('--subdir %s (a single file)', (rel) => {
    const t = target();
    const r = ok(cli(restoreArgs(dst, t, '--subdir', rel)));
    expect(r.stdout).toContain(`daily/${stamp}:${rel} into ${t}: 1 created`);
    const name = path.basename(rel);
    expect(fs.readdirSync(t)).toEqual([name]);
    const out = execFileSync(
      'rsync',
      ['-aHcn', '--numeric-ids', '--itemize-changes', path.join(src, rel), `${t}/`],
      { encoding: 'utf8' },
    );
    expect(out.trim()).toBe('');
    expect(fs.statSync(path.join(t, name)).blocks).toBeLessThanOrEqual(
      fs.statSync(path.join(src, rel)).blocks,
    );
    const before = fingerprint(t);
    const again = ok(cli(restoreArgs(dst, t, '--subdir', rel)));
    expect(summary(again.stdout)).toMatchObject({ created: 0, updated: 0, unchanged: 1 });
    expect(fingerprint(t)).toEqual(before);
  });
});

// ---- --delete and --dry-run -----------------------------------------------------------------

describe('restore --delete and --dry-run', () => {
  async function changedTarget(): Promise<{ base: string; src: string; dst: string; t: string }> {
    const { base, src, dst } = setup({
      'keep.txt': file('keep\n'),
      'change.txt': file('snapshot version\n'),
      'mode.txt': file('m\n', { mode: 0o644 }),
      d: dir({ 'inner.txt': file('inner\n') }),
    });
    backupCli(src, dst);
    const t = path.join(base, 'target');
    ok(cli(restoreArgs(dst, t)));
    fs.writeFileSync(path.join(t, 'extra.txt'), 'extra');
    createTree(path.join(t, 'extra-dir'), { a: file('a') });
    fs.writeFileSync(path.join(t, 'd', 'extra-inner.txt'), 'x');
    fs.writeFileSync(path.join(t, 'change.txt'), 'changed in the target\n!');
    fs.chmodSync(path.join(t, 'mode.txt'), 0o600);
    fs.rmSync(path.join(t, 'd', 'inner.txt'));
    return { base, src, dst, t };
  }

  const FIXES = [
    'create d/inner.txt',
    'update . (mtime)',
    'update change.txt (size, mtime)',
    'update d (mtime)',
    'update mode.txt (mode)',
  ];
  const DELETES = ['delete d/extra-inner.txt', 'delete extra-dir', 'delete extra.txt'];
  const changeLines = (stdout: string): string[] =>
    stdout
      .split('\n')
      .filter((l) => /^(create|update|delete|link) /.test(l))
      .map((l) => l.replace(/ +/, ' '))
      .sort();

  it('--dry-run lists what would change and writes nothing', async () => {
    const { base, dst, t } = await changedTarget();
    const before = fingerprint(base);
    const plain = ok(cli(restoreArgs(dst, t, '--dry-run')));
    expect(changeLines(plain.stdout)).toEqual(FIXES);
    expect(plain.stdout).toMatch(
      /would restore daily\/\S+ into .*: 1 created, 4 updated, 0 deleted/,
    );
    const del = ok(cli(restoreArgs(dst, t, '--dry-run', '--delete')));
    expect(changeLines(del.stdout)).toEqual([...FIXES, ...DELETES].sort());
    expect(summary(del.stdout)).toMatchObject({ created: 1, updated: 4, deleted: 3 });
    const { result, json } = cliJson<{ changes: Array<{ action: string; path: string }> }>(
      restoreArgs(dst, t, '--dry-run', '--delete'),
    );
    ok(result);
    expect(
      json.changes
        .filter((c) => c.action === 'delete')
        .map((c) => c.path)
        .sort(),
    ).toEqual(['d/extra-inner.txt', 'extra-dir', 'extra.txt']);
    expect(fingerprint(base)).toEqual(before);
  });

  it('without --delete the extras stay; with it they go, and only they', async () => {
    const { src, dst, t } = await changedTarget();
    const keep = fingerprint(path.join(t, 'keep.txt'));
    ok(cli(restoreArgs(dst, t)));
    expect(diffTrees(src, t)).toEqual([
      'extra: d/extra-inner.txt',
      'extra: extra-dir',
      'extra: extra-dir/a',
      'extra: extra.txt',
    ]);
    const r = ok(cli(restoreArgs(dst, t, '--delete')));
    expect(summary(r.stdout)).toMatchObject({ created: 0, updated: 2, deleted: 3 });
    expect(rsyncDifferences(src, t)).toEqual([]);
    expect(diffTrees(src, t)).toEqual([]);
    expect(fingerprint(path.join(t, 'keep.txt'))).toEqual(keep);
  });

  it('an older snapshot over the live source, with --delete, puts back day 1', () => {
    const { base, src, dst } = setup({
      'a.txt': file('day one\n', { mtime: 1_650_000_000 }),
      'mode.sh': file('#!/bin/sh\n', { mode: 0o755 }),
      owned: file('o\n', { uid: 1000, gid: 1000 }),
      link: symlink('a.txt'),
    });
    backupCli(src, dst);
    const day1 = path.join(base, 'day1');
    execFileSync('cp', ['-a', src, day1]);
    fs.writeFileSync(path.join(src, 'a.txt'), 'day two\n');
    fs.chmodSync(path.join(src, 'mode.sh'), 0o644);
    fs.chownSync(path.join(src, 'owned'), 7, 7);
    fs.rmSync(path.join(src, 'link'));
    fs.symlinkSync('owned', path.join(src, 'link'));
    fs.writeFileSync(path.join(src, 'new.txt'), 'new\n');
    backupCli(src, dst);
    ok(
      cli(['restore', '--destination', dst, '--snapshot', 'daily.1', '--target', src, '--delete']),
    );
    expect(rsyncDifferences(day1, src)).toEqual([]);
    expect(diffTrees(day1, src)).toEqual([]);
  });
});

// ---- traversal ------------------------------------------------------------------------------

describe('restore refuses to leave the snapshot or the target', () => {
  let base = '';
  let src = '';
  let dst = '';
  let outside = '';

  beforeAll(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-restore-cli-trav-'));
    src = path.join(base, 'src');
    dst = path.join(base, 'dst');
    outside = path.join(base, 'outside');
    createTree(src, {
      dir: dir({ 'a.txt': file('snapshot a\n'), sub: dir({ 'b.txt': file('snapshot b\n') }) }),
      'file.txt': file('snapshot file\n'),
      pipe: fifo(),
      'etc-link': symlink('/etc'),
      'out-link': symlink('../outside'),
    });
    createTree(outside, {
      'victim-dir': dir({ 'a.txt': file('outside a\n'), sub: dir({ 'b.txt': file('ob') }) }),
      'victim.txt': file('outside file\n'),
    });
    fs.mkdirSync(dst);
    backupCli(src, dst);
  });
  afterAll(() => {
    if (base) fs.rmSync(base, { recursive: true, force: true });
  });

  it.each([
    ['..', /\.\./],
    ['dir/../../outside', /\.\./],
    ['/etc', /absolute/],
    ['etc-link', /symlink/],
    ['etc-link/passwd', /symlink/],
    ['out-link/victim.txt', /symlink/],
  ])('--subdir %s: exit 2, one line, nothing written', (sub, names) => {
    const t = path.join(base, 'target-refused');
    const before = fingerprint(base);
    for (const extra of [[], ['--dry-run'], ['--delete']]) {
      const r = cli(restoreArgs(dst, t, '--subdir', sub, ...extra));
      expect(r.status, r.stderr).toBe(2);
      expectOneLineError(r, names);
      expect(r.stdout).toBe('');
    }
    expect(fs.existsSync(t)).toBe(false);
    expect(fingerprint(base)).toEqual(before);
  });

  it('a target inside the backup set: exit 2, nothing written', () => {
    const before = fingerprint(base);
    for (const t of [
      path.join(dst, 'efs-backup', 'restored'),
      path.join(dst, 'efs-backup', 'latest'),
      path.join(dst, 'efs-backup', 'daily'),
    ]) {
      const r = cli(restoreArgs(dst, t, '--delete'));
      expect(r.status, r.stderr).toBe(2);
      expectOneLineError(r, /inside the backup set/);
    }
    expect(fingerprint(base)).toEqual(before);
  });

  it('symlinks planted in the target are replaced, never followed', () => {
    const t = path.join(base, 'target-planted');
    fs.mkdirSync(t);
    fs.symlinkSync(path.join(outside, 'victim-dir'), path.join(t, 'dir'));
    fs.symlinkSync(path.join(outside, 'victim.txt'), path.join(t, 'file.txt'));
    fs.symlinkSync(path.join(outside, 'victim.txt'), path.join(t, 'pipe'));
    fs.symlinkSync(path.join(outside, 'victim-dir'), path.join(t, 'extra'));
    const before = fingerprint(outside);
    const r = ok(cli(restoreArgs(dst, t, '--delete')));
    expect(summary(r.stdout)).toMatchObject({ deleted: 1 });
    expect(fingerprint(outside)).toEqual(before);
    expect(fs.lstatSync(path.join(t, 'dir')).isDirectory()).toBe(true);
    expect(fs.lstatSync(path.join(t, 'file.txt')).isFile()).toBe(true);
    expect(diffTrees(src, t)).toEqual([]);
  });
});

// Regression: a target holding the set was once accepted, and --delete removed the whole set.
it('restore --delete into the destination itself is refused (exit 2) and the set survives', () => {
  const { base, src, dst } = setup({ 'a.txt': file('a\n') });
  backupCli(src, dst);
  const before = fingerprint(base);
  const r = cli(restoreArgs(dst, dst, '--delete'));
  expect(fs.existsSync(path.join(dst, 'efs-backup', 'latest'))).toBe(true);
  expect(r.status, r.stderr).toBe(2);
  expect(fingerprint(base)).toEqual(before);
});

// ---- verify ---------------------------------------------------------------------------------

describe('verify', () => {
  const tree = (): TestEntries => ({
    d: dir({ 'f.txt': file('0123456789abcdef\n'), 'g.txt': file('g'.repeat(2048)) }),
    'mode.txt': file('m\n', { mode: 0o640 }),
    'owned.txt': file('o\n', { uid: 1500, gid: 1600 }),
    link: symlink('d/f.txt'),
    hard: dir({ first: file('one inode\n'), second: hardlink('hard/first') }),
  });

  /** Puts an entry's mtime back to the microsecond after `change` (a Date keeps only ms). */
  function keepingMtime(p: string, change: () => void): void {
    const st = fs.lstatSync(p, { bigint: true });
    change();
    const sec = (ns: bigint): number =>
      Number(ns / 1_000_000_000n) + (Number((ns % 1_000_000_000n) / 1000n) * 1000 + 500) / 1e9;
    (st.isSymbolicLink() ? fs.lutimesSync : fs.utimesSync)(p, sec(st.atimeNs), sec(st.mtimeNs));
  }

  it('exit 0 on a good snapshot', () => {
    const { src, dst } = setup(tree());
    const stamp = backupCli(src, dst).Snapshot as string;
    const r = ok(cli(['verify', '--destination', dst]));
    expect(r.stdout).toMatch(new RegExp(`^ok daily/${stamp}: 9 entries, `));
  });

  const cases: Array<{ name: string; damage: (snap: string) => void; names: RegExp }> = [
    {
      name: 'a flipped byte',
      damage: (s) =>
        keepingMtime(path.join(s, 'd', 'f.txt'), () => {
          const p = path.join(s, 'd', 'f.txt');
          const b = fs.readFileSync(p);
          b[3] = b[3]! ^ 0x10;
          fs.writeFileSync(p, b);
        }),
      names: /^ {2}changed: d\/f\.txt: content/m,
    },
    {
      name: 'a truncated file',
      damage: (s) => fs.truncateSync(path.join(s, 'd', 'g.txt'), 10),
      names: /^ {2}changed: d\/g\.txt: size/m,
    },
    {
      name: 'a removed file',
      damage: (s) => fs.rmSync(path.join(s, 'd', 'f.txt')),
      names: /^ {2}missing: d\/f\.txt$/m,
    },
    {
      name: 'an added file',
      damage: (s) => fs.writeFileSync(path.join(s, 'd', 'new.txt'), 'new'),
      names: /^ {2}extra: d\/new\.txt$/m,
    },
    {
      name: 'a chmod',
      damage: (s) => fs.chmodSync(path.join(s, 'mode.txt'), 0o644),
      names: /^ {2}changed: mode\.txt: mode$/m,
    },
    {
      name: 'a chown',
      damage: (s) => fs.chownSync(path.join(s, 'owned.txt'), 0, 0),
      names: /^ {2}changed: owned\.txt: owner$/m,
    },
    {
      name: 'a retargeted symlink',
      damage: (s) =>
        keepingMtime(path.join(s, 'link'), () => {
          fs.rmSync(path.join(s, 'link'));
          fs.symlinkSync('mode.txt', path.join(s, 'link'));
        }),
      names: /^ {2}changed: link: target$/m,
    },
    {
      name: 'a broken hard link',
      damage: (s) => {
        const p = path.join(s, 'hard', 'second');
        execFileSync('cp', ['-p', p, `${p}.tmp`]);
        fs.renameSync(`${p}.tmp`, p);
      },
      names: /^ {2}changed: hard\/(first|second): no longer a hard link to hard\/(first|second)$/m,
    },
  ];

  it.each(cases)('exit 1 and a list naming the path: $name', ({ damage, names }) => {
    const { src, dst } = setup(tree());
    const stamp = backupCli(src, dst).Snapshot as string;
    ok(cli(['verify', '--destination', dst, '--snapshot', stamp]));
    damage(path.join(dst, 'efs-backup', 'daily', stamp));
    const r = cli(['verify', '--destination', dst, '--snapshot', stamp]);
    expect(r.status, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^DAMAGED daily/${stamp}: \\d+ problem\\(s\\)`));
    expect(r.stdout).toMatch(names);
    const { result, json } = cliJson<Array<{ problems: string[] }>>([
      'verify',
      '--destination',
      dst,
    ]);
    expect(result.status).toBe(1);
    expect(json[0]!.problems.some((p) => names.test(`  ${p}`))).toBe(true);
  });

  it('--all checks every snapshot; --source reports the live source', () => {
    const { src, dst } = setup(tree());
    const s1 = backupCli(src, dst).Snapshot as string;
    fs.writeFileSync(path.join(src, 'd', 'f.txt'), 'second version\n');
    const s2 = backupCli(src, dst).Snapshot as string;
    // f.txt differs between the snapshots: damage the older one only.
    fs.appendFileSync(path.join(dst, 'efs-backup', 'daily', s1, 'd', 'f.txt'), 'rot');
    ok(cli(['verify', '--destination', dst]));
    const all = cli(['verify', '--destination', dst, '--all']);
    expect(all.status).toBe(1);
    expect(all.stdout).toMatch(new RegExp(`^ok daily/${s2}: `, 'm'));
    expect(all.stdout).toMatch(new RegExp(`^DAMAGED daily/${s1}: `, 'm'));
    expect(all.stdout).toMatch(/^ {2}changed: d\/f\.txt: /m);

    const same = ok(cli(['verify', '--destination', dst, '--source', src]));
    expect(same.stdout).toContain(`the source matches daily/${s2}`);
    fs.writeFileSync(path.join(src, 'added.txt'), 'added');
    fs.rmSync(path.join(src, 'd', 'g.txt'));
    fs.chmodSync(path.join(src, 'mode.txt'), 0o600);
    const differs = cli(['verify', '--destination', dst, '--source', src]);
    expect(differs.status).toBe(1);
    expect(differs.stdout).toMatch(/differs from daily\/\S+ in 3 entries/);
    for (const line of ['added: added.txt', 'removed: d/g.txt', 'changed: mode.txt: mode'])
      expect(differs.stdout).toContain(`  ${line}\n`);
  });
});

// ---- ls, diff, history ----------------------------------------------------------------------

describe('ls, diff and history answer from manifests alone', () => {
  it('for a known sequence of snapshots whose trees are moved away', () => {
    const T1 = 1_700_000_000; // 2023-11-14T22:13:20Z
    const { base, src, dst } = setup({
      'a.txt': file('one', { mode: 0o644, mtime: T1 }),
      'b.txt': file('bee', { mode: 0o640, mtime: T1 }),
      d: dir({ 'c.txt': file('sea', { mode: 0o644, mtime: T1 }) }, { mode: 0o755, mtime: T1 }),
      l: symlink('a.txt'),
    });
    const s: string[] = [];
    s.push(backupCli(src, dst).Snapshot as string);
    fs.writeFileSync(path.join(src, 'a.txt'), 'one two');
    fs.utimesSync(path.join(src, 'a.txt'), T1 + 100, T1 + 100);
    fs.rmSync(path.join(src, 'b.txt'));
    fs.writeFileSync(path.join(src, 'd', 'new.txt'), 'new!');
    s.push(backupCli(src, dst).Snapshot as string);
    fs.chmodSync(path.join(src, 'a.txt'), 0o600);
    s.push(backupCli(src, dst).Snapshot as string);
    s.push(backupCli(src, dst).Snapshot as string);

    const daily = path.join(dst, 'efs-backup', 'daily');
    fs.mkdirSync(path.join(base, 'away'));
    for (const stamp of s) {
      fs.renameSync(path.join(daily, stamp), path.join(base, 'away', stamp));
      fs.mkdirSync(path.join(daily, stamp));
    }

    const ls = ok(cli(['ls', '--destination', dst, '--snapshot', s[0]!]));
    const lines = ls.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^-rw-r--r-- +0 +0 +3 2023-11-14T22:13:20\.000Z a\.txt$/);
    expect(lines[1]).toMatch(/^-rw-r----- +0 +0 +3 2023-11-14T22:13:20\.000Z b\.txt$/);
    expect(lines[2]).toMatch(/^drwxr-xr-x +0 +0 +\d+ 2023-11-14T22:13:20\.000Z d$/);
    expect(lines[3]).toMatch(/^l[rwx-]{9} +0 +0 +\d+ \S+ l -> a\.txt$/);
    const lsDir = ok(cli(['ls', 'd', '--destination', dst, '--snapshot', 'daily.2']));
    expect(
      lsDir.stdout
        .trimEnd()
        .split('\n')
        .map((l) => l.split(' ').pop()),
    ).toEqual(['c.txt', 'new.txt']);
    const lsFile = ok(cli(['ls', 'a.txt', '--destination', dst]));
    expect(lsFile.stdout).toMatch(/^-rw------- +0 +0 +7 2023-11-14T22:15:00\.000Z a\.txt\n$/);
    const { json } = cliJson<Array<{ path: string }>>(['ls', 'd', '--destination', dst]);
    expect(json.map((e) => e.path)).toEqual(['d/c.txt', 'd/new.txt']);
    const badLs = cli(['ls', '../x', '--destination', dst]);
    expect(badLs.status).toBe(2);
    expectOneLineError(badLs, /\.\./);

    const diff = ok(cli(['diff', s[0]!, s[1]!, '--destination', dst]));
    expect(diff.stdout).toBe(
      [
        '~ a.txt (3 B -> 7 B; content, size, mtime)',
        '- b.txt (3 B)',
        '+ d/new.txt (4 B)',
        '1 added, 1 removed, 1 changed',
        '',
      ].join('\n'),
    );
    const diffMode = ok(cli(['diff', 'daily.2', 'daily.1', '--destination', dst]));
    expect(diffMode.stdout).toBe('~ a.txt (7 B -> 7 B; mode)\n0 added, 0 removed, 1 changed\n');
    const none = ok(cli(['diff', 'daily.1', 'latest', '--destination', dst]));
    expect(none.stdout).toBe('0 added, 0 removed, 0 changed\n');

    const history = ok(cli(['history', 'a.txt', '--destination', dst]));
    const h = history.stdout.trimEnd().split('\n');
    expect(h).toHaveLength(3);
    expect(h[0]).toMatch(
      new RegExp(`^${s[0]}  -rw-r--r--  modified 2023-11-14T22:13:20\\.000Z  3 B, sha256 `),
    );
    expect(h[1]).toMatch(
      new RegExp(`^${s[1]}  -rw-r--r--  modified 2023-11-14T22:15:00\\.000Z  7 B, sha256 `),
    );
    expect(h[2]).toMatch(
      new RegExp(
        `^${s[2]} \\.\\. ${s[3]} \\(2 snapshots\\)  -rw-------  modified 2023-11-14T22:15:00\\.000Z  7 B`,
      ),
    );
    const gone = ok(cli(['history', 'b.txt', '--destination', dst]));
    expect(gone.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(gone.stdout).toMatch(new RegExp(`^${s[0]}  -rw-r-----`));
    const never = ok(cli(['history', 'never.txt', '--destination', dst]));
    expect(never.stdout).toMatch(/never\.txt is in no snapshot/);

    // The trees really were gone.
    for (const stamp of s) expect(fs.readdirSync(path.join(daily, stamp))).toEqual([]);
  });
});

// ---- selectors ------------------------------------------------------------------------------

describe('selectors', () => {
  it('latest, daily.0, daily.1, a stamp and a BackupId; a bad one is exit 2', () => {
    const { base, src, dst } = setup({ 'which.txt': file('one') });
    const made: Record<string, Record<string, unknown>> = {};
    for (const v of ['one', 'two', 'three']) {
      fs.writeFileSync(path.join(src, 'which.txt'), v);
      made[v] = backupCli(src, dst);
    }
    let n = 0;
    const pick = (sel: string): string => {
      const t = path.join(base, `t${++n}`);
      ok(
        cli([
          'restore',
          '--destination',
          dst,
          '--snapshot',
          sel,
          '--target',
          t,
          '--subdir',
          'which.txt',
        ]),
        sel,
      );
      return fs.readFileSync(path.join(t, 'which.txt'), 'utf8');
    };
    expect(pick('latest')).toBe('three');
    expect(pick('daily.0')).toBe('three');
    expect(pick('daily.1')).toBe('two');
    expect(pick('daily.2')).toBe('one');
    expect(pick(made.two!.Snapshot as string)).toBe('two');
    expect(pick(made.one!.BackupId as string)).toBe('one');
    expect(pick(made.three!.BackupId as string)).toBe('three');
    const ls = ok(
      cli(['ls', 'which.txt', '--destination', dst, '--snapshot', made.one!.BackupId as string]),
    );
    expect(ls.stdout).toMatch(/ 3 \S+ which\.txt$/m);

    const before = fingerprint(base);
    for (const bad of ['daily.3', 'weekly.0', 'nope', '20000101T000000Z', 'daily.x']) {
      for (const args of [
        ['restore', '--destination', dst, '--snapshot', bad, '--target', path.join(base, 'bad')],
        ['verify', '--destination', dst, '--snapshot', bad],
        ['ls', '--destination', dst, '--snapshot', bad],
        ['diff', bad, 'latest', '--destination', dst],
      ]) {
        const r = cli(args);
        expect(r.status, `${args.join(' ')}\n${r.stderr}`).toBe(2);
        expectOneLineError(r, /snapshot/);
      }
    }
    const noSet = cli([
      'restore',
      '--destination',
      dst,
      '--label',
      'other',
      '--snapshot',
      'latest',
      '--target',
      path.join(base, 'bad'),
    ]);
    expect(noSet.status).toBe(2);
    expectOneLineError(noSet, /no backup set other/);
    expect(fingerprint(base)).toEqual(before);
  });
});

// ---- adopt ----------------------------------------------------------------------------------

describe('adopt', () => {
  it("turns the original's daily.N set into snapshots, in place; restore daily.2 is day 1", () => {
    const base = tmpDir('efs-adopt-cli-');
    const o = buildOriginalSet(base, 'projects');
    const inodes = [2, 1, 0].map((n) => fileInodes(path.join(o.dir, `daily.${n}`)));

    const r = ok(cli(['adopt', '--destination', o.destination, '--label', o.label]));
    expect(r.stdout.trimEnd().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^daily\\.2 -> daily/${DAY_STAMPS[0]} \\(\\d+ entries\\)$`)),
      expect.stringMatching(new RegExp(`^daily\\.1 -> daily/${DAY_STAMPS[1]} \\(\\d+ entries\\)$`)),
      expect.stringMatching(new RegExp(`^daily\\.0 -> daily/${DAY_STAMPS[2]} \\(\\d+ entries\\)$`)),
    ]);
    DAY_STAMPS.forEach((stamp, day) =>
      expect(fileInodes(path.join(o.dir, 'daily', stamp)), `day ${day + 1}`).toEqual(inodes[day]),
    );

    for (const [sel, day] of [
      ['daily.2', 0],
      ['daily.1', 1],
      ['daily.0', 2],
      ['latest', 2],
    ] as const) {
      const t = path.join(base, 'restored', sel);
      ok(
        cli([
          'restore',
          '--destination',
          o.destination,
          '--label',
          o.label,
          '--snapshot',
          sel,
          '--target',
          t,
        ]),
        sel,
      );
      expect(rsyncDifferences(o.days[day]!, t), sel).toEqual([]);
      expect(diffTrees(o.days[day]!, t), sel).toEqual([]);
    }

    const v = ok(cli(['verify', '--destination', o.destination, '--label', o.label, '--all']));
    expect(
      v.stdout
        .trimEnd()
        .split('\n')
        .filter((l) => l.startsWith('ok ')),
    ).toHaveLength(3);
    const snaps = cliJson<Array<{ stamp: string }>>([
      'snapshots',
      '--destination',
      o.destination,
      '--label',
      o.label,
    ]);
    expect(snaps.json.map((x) => x.stamp)).toEqual([...DAY_STAMPS].reverse());

    // The next backup links everything unchanged to the newest adopted snapshot.
    fs.writeFileSync(path.join(o.src, 'docs', 'a.md'), '# a, changed on day 4\n');
    const next = backupCli(o.src, o.destination, '--label', o.label);
    expect(next.NumberOfFilesTransferred).toBe(1);
    const snap = path.join(o.dir, 'daily', next.Snapshot as string);
    const newest = path.join(o.dir, 'daily', DAY_STAMPS[2]!);
    for (const rel of ['keep.txt', 'change.txt', 'owned', 'pair/a', 'day3.txt'])
      expect(fs.lstatSync(path.join(snap, rel)).ino, rel).toBe(
        fs.lstatSync(path.join(newest, rel)).ino,
      );
    expect(rsyncDifferences(o.src, snap)).toEqual([]);

    // Adopting again finds nothing left to adopt.
    const again = cli(['adopt', '--destination', o.destination, '--label', o.label]);
    expect(again.status).toBe(2);
    expectOneLineError(again, /daily\.0/);
  });
});
