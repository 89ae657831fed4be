/**
 * Excludes, as a user gives them: `--exclude` (each gitignore form), `--exclude-from`,
 * `--exclude-if-present`, and a job's `exclude:` and `excludeIfPresent:`. What they leave out
 * is not in the snapshot (rsync with the same excludes and --delete-excluded is the judge), is
 * recorded in the manifest's header and the run's record (history shows it), is not a
 * difference for `verify --source`, and is not deleted by `restore --delete`. An excluded
 * directory is never entered (faultfs and strace show no call on what is below it). Bad
 * patterns are bad input: exit 2, nothing written. Needs a build.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  backup,
  cleanup,
  describeRun,
  latestDir,
  rsyncDiff,
  runCli,
  skipReason,
  snapshotDir,
  stateDir,
  tempDir,
} from './faults/harness.js';
import { expectOneLineError, fingerprint, requireBuild, restoreArgs } from './helpers.js';

beforeAll(requireBuild);

const skip = skipReason('rsync');
let base = '';
afterEach(() => cleanup(base));

/**
 * A source with one entry for each pattern form to leave out, and its near misses to keep:
 * `*.tmp` anywhere with `!keep.tmp` back in, `/logs` at the root only, `build/` directories
 * only, `**\/node_modules/` at any depth, and a directory tagged with CACHEDIR.TAG.
 */
function setup(): { src: string; dst: string } {
  base = tempDir('efs-excludes-');
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  const files: Record<string, string> = {
    'top.txt': 'top\n',
    'a.tmp': 'scratch\n',
    'sub/b.tmp': 'scratch\n',
    'keep.tmp': 'kept\n',
    'logs/x.log': 'log\n',
    'sub/logs/y.log': 'a log below the root\n',
    'sub/build/out.o': 'object\n',
    'docs/build': 'a file named build\n',
    'deep/a/b/node_modules/m.js': 'module\n',
    'deep/a/b/code.js': 'code\n',
    'cache/CACHEDIR.TAG': 'Signature: 8a477f597d28d172789f06886806bc55\n',
    'cache/blob': 'cached\n',
    'cache/inner/more': 'cached\n',
  };
  for (const [rel, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(src, rel)), { recursive: true });
    fs.writeFileSync(path.join(src, rel), body);
  }
  fs.mkdirSync(dst);
  return { src, dst };
}

const PATTERNS = ['*.tmp', '!keep.tmp', '/logs', 'build/', '**/node_modules/'];
const FLAGS = [
  ...PATTERNS.flatMap((p) => ['--exclude', p]),
  '--exclude-if-present',
  'CACHEDIR.TAG',
];
/** The same rules in rsync's words (its first match wins; `/cache/*` keeps the directory). */
const RSYNC_RULES = [
  '--include=keep.tmp',
  '--exclude=*.tmp',
  '--exclude=/logs',
  '--exclude=build/',
  '--exclude=node_modules/',
  '--exclude=/cache/*',
];
/** What the rules leave out of the source of `setup`, and what they keep. */
const LEFT_OUT = [
  'a.tmp',
  'sub/b.tmp',
  'logs',
  'sub/build',
  'deep/a/b/node_modules',
  'cache/blob',
  'cache/CACHEDIR.TAG',
];
const KEPT = ['top.txt', 'keep.tmp', 'sub/logs/y.log', 'docs/build', 'deep/a/b/code.js', 'cache'];

/** The snapshot is the source less what the rules leave out: rsync says so, both ways. */
function expectSnapshotOfRules(src: string, snap: string): void {
  expect(rsyncDiff(src, snap, [...RSYNC_RULES, '--delete-excluded'])).toEqual([]);
  for (const rel of LEFT_OUT) expect(fs.existsSync(path.join(snap, rel)), rel).toBe(false);
  for (const rel of KEPT) expect(fs.existsSync(path.join(snap, rel)), rel).toBe(true);
  expect(fs.readdirSync(path.join(snap, 'cache'))).toEqual([]);
}

function header(dst: string, stamp: string): Record<string, unknown> {
  const text = fs.readFileSync(path.join(stateDir(dst), 'manifests', `${stamp}.manifest`), 'utf8');
  return JSON.parse(text.slice(0, text.indexOf('\n'))) as Record<string, unknown>;
}

describe('backup --exclude, --exclude-from, --exclude-if-present', () => {
  it.skipIf(skip)(
    'each pattern form leaves out what it matches; the header, the record, history and snapshots say what',
    () => {
      const { src, dst } = setup();
      const r = backup(src, dst, {}, FLAGS);
      expect(r.status, describeRun(r)).toBe(0);
      expect(r.json).toMatchObject({
        Status: 'Success',
        NumberOfWarnings: 0,
        Exclude: PATTERNS,
        ExcludeIfPresent: ['CACHEDIR.TAG'],
      });
      const stamp = String(r.json!.Snapshot);
      expectSnapshotOfRules(src, snapshotDir(dst, stamp));
      expect(header(dst, stamp)).toMatchObject({
        version: 3,
        Exclude: PATTERNS,
        ExcludeIfPresent: ['CACHEDIR.TAG'],
      });

      const h = runCli(['history', '--destination', dst, '--json']);
      expect(h.status, describeRun(h)).toBe(0);
      expect(JSON.parse(h.stdout)).toEqual([r.json]);
      const table = runCli(['history', '--destination', dst]);
      const [heads, row] = table.stdout.split('\n');
      expect(heads).toMatch(/BACKUPID\s+EXCLUDES\s+MESSAGE/);
      expect(row).toContain('*.tmp');
      expect(row).toContain('(if present: CACHEDIR.TAG)');

      const s = runCli(['snapshots', '--destination', dst, '--json']);
      expect(JSON.parse(s.stdout)).toEqual([
        expect.objectContaining({ Exclude: PATTERNS, ExcludeIfPresent: ['CACHEDIR.TAG'] }),
      ]);
      expect(runCli(['snapshots', '--destination', dst]).stdout).toMatch(/EXCLUDES/);
    },
  );

  it.skipIf(skip)(
    "--exclude-from: one pattern a line, comments and blank lines skipped, before --exclude's",
    () => {
      const { src, dst } = setup();
      const rules = path.join(base, 'rules');
      fs.writeFileSync(
        rules,
        ['# scratch', '*.tmp', '', '/logs', 'build/', '   ', '**/node_modules/', ''].join('\n'),
      );
      // A later --exclude re-includes what the file's pattern left out.
      const r = backup(src, dst, {}, [
        '--exclude-from',
        rules,
        '--exclude',
        '!keep.tmp',
        '--exclude-if-present',
        'CACHEDIR.TAG',
      ]);
      expect(r.status, describeRun(r)).toBe(0);
      expect(r.json?.Exclude).toEqual([
        '*.tmp',
        '/logs',
        'build/',
        '**/node_modules/',
        '!keep.tmp',
      ]);
      expectSnapshotOfRules(src, latestDir(dst));
    },
  );

  it.skipIf(skip)('a name that is not UTF-8 is matched by its bytes', () => {
    const { src, dst } = setup();
    const name = (bytes: number[]): Buffer =>
      Buffer.concat([Buffer.from(`${src}/`), Buffer.from(bytes)]);
    fs.writeFileSync(name([0x66, 0xff, 0x2e, 0x6f]), 'f\\xff.o\n'); // f\xff.o
    fs.writeFileSync(name([0x66, 0xfe, 0x2e, 0x6f]), 'f\\xfe.o\n'); // f\xfe.o
    fs.writeFileSync(name([0x67, 0xff, 0x2e, 0x74, 0x6d, 0x70]), 'g\\xff.tmp\n');
    const rules = path.join(base, 'rules');
    fs.writeFileSync(rules, Buffer.from([0x66, 0xff, 0x2a, 0x0a])); // f\xff*
    const r = backup(src, dst, {}, ['--exclude-from', rules, '--exclude', '*.tmp']);
    expect(r.status, describeRun(r)).toBe(0);
    const names = fs
      .readdirSync(latestDir(dst), { encoding: 'buffer' })
      .map((b) => b.toString('latin1'))
      .filter((n) => /^[fg].\./.test(n));
    expect(names).toEqual(['f\xfe.o']);
    // Recorded as the engine keeps names: the same bytes come back.
    expect(r.json?.Exclude).toEqual(['f\udcff*', '*.tmp']);
    const h = runCli(['history', '--destination', dst, '--json']);
    expect((JSON.parse(h.stdout) as { Exclude: string[] }[])[0]!.Exclude).toEqual([
      'f\udcff*',
      '*.tmp',
    ]);
  });

  it.skipIf(skipReason('faultfs', 'strace'))(
    'an excluded directory is not entered: no listing, no lstat of what is inside',
    () => {
      const { src, dst } = setup();
      // Every lstat below a build directory fails: a walk that went in would warn.
      const faults = { faults: 'statx:/sub/build/:EACCES', env: { FAULTFS_LOG: '1' } };
      const control = path.join(base, 'control');
      fs.mkdirSync(control);
      const c = backup(src, control, faults);
      expect(c.status, describeRun(c)).toBe(1);
      expect(c.stderr).toMatch(/warning: sub\/build\/out\.o: cannot read: EACCES/);

      const r = backup(src, dst, faults, ['--exclude', 'build/']);
      expect(r.status, describeRun(r)).toBe(0);
      expect(r.json?.NumberOfWarnings).toBe(0);
      expect(r.stderr).not.toMatch(/faultfs:/);

      // Nor opened to be listed (by the walk, nor by a first backup's count ahead), nor stat'ed
      // itself: strace sees every system call on a path.
      const trace = path.join(base, 'trace');
      const traced = path.join(base, 'traced');
      fs.mkdirSync(traced);
      const t = backup(
        src,
        traced,
        { wrapper: ['strace', '-f', '-qq', '-e', 'trace=%file', '-o', trace] },
        ['--exclude', 'build/'],
      );
      expect(t.status, describeRun(t)).toBe(0);
      const onSource = fs
        .readFileSync(trace, 'latin1')
        .split('\n')
        .filter((l) => l.includes(src));
      expect(onSource.filter((l) => /sub\/+build/.test(l))).toEqual([]);
      // The control: docs/build is a file, which a directory-only pattern keeps, and is read.
      expect(onSource.some((l) => /docs\/+build/.test(l))).toBe(true);
    },
  );
});

describe('what a snapshot left out is not missing', () => {
  it.skipIf(skip)(
    'verify --source reports no excluded entry of the source, and still reports the rest',
    () => {
      const { src, dst } = setup();
      expect(backup(src, dst, {}, FLAGS).status).toBe(0);
      const verify = (): ReturnType<typeof runCli> =>
        runCli(['verify', '--destination', dst, '--source', src]);
      const clean = verify();
      expect(clean.status, describeRun(clean)).toBe(0);
      expect(clean.stdout).toContain('the source matches');

      // More of what the rules leave out, at every place they do.
      fs.writeFileSync(path.join(src, 'sub', 'new.tmp'), 'scratch\n');
      fs.writeFileSync(path.join(src, 'cache', 'newer'), 'cached\n');
      fs.writeFileSync(path.join(src, 'logs', 'z.log'), 'log\n');
      fs.mkdirSync(path.join(src, 'docs', 'build.d', 'build'), { recursive: true });
      fs.mkdirSync(path.join(src, 'node_modules', 'left'), { recursive: true });
      const still = verify();
      expect(still.status, describeRun(still)).toBe(1);
      // The one new directory the rules keep is the only difference.
      expect(still.stdout).toContain('in 1 entry:\n  added: docs/build.d\n');
      expect(still.stdout).not.toMatch(/added: (sub\/new|cache|logs|node_modules)/);
    },
  );

  it.skipIf(skip)(
    'restore --delete over the live tree keeps what the snapshot left out, and deletes the rest',
    () => {
      const { src, dst } = setup();
      expect(backup(src, dst, {}, FLAGS).status).toBe(0);
      const target = path.join(base, 'target');
      execFileSync('cp', ['-a', `${src}/.`, target]);
      const add = (rel: string, body = 'new\n'): void => {
        fs.mkdirSync(path.dirname(path.join(target, rel)), { recursive: true });
        fs.writeFileSync(path.join(target, rel), body);
      };
      add('stray.txt'); // not in the snapshot, not excluded: deleted
      add('cache/fresh'); // in a tagged directory: kept
      add('new.tmp'); // excluded: kept
      add('newdir/x.tmp'); // a new directory: what the rules leave out of it is kept
      add('newdir/y.txt');
      add('newdir/sub/z.txt');
      add('gone/g.txt'); // a new directory with nothing excluded: deleted whole
      add('newtag/CACHEDIR.TAG'); // a new tagged directory: kept whole
      add('newtag/data');
      const before = fingerprint(target);

      const dry = runCli(restoreArgs(dst, target, '--delete', '--dry-run'));
      expect(dry.status, describeRun(dry)).toBe(0);
      expect(fingerprint(target)).toEqual(before);
      const deletes = (out: string): string[] =>
        out
          .split('\n')
          .filter((l) => l.startsWith('delete '))
          .sort();
      const expected = [
        'delete gone',
        'delete newdir/sub',
        'delete newdir/y.txt',
        'delete stray.txt',
      ];
      expect(deletes(dry.stdout)).toEqual(expected);

      const r = runCli(restoreArgs(dst, target, '--delete'));
      expect(r.status, describeRun(r)).toBe(0);
      expect(r.stdout).toContain('4 deleted');
      for (const rel of ['stray.txt', 'gone', 'newdir/y.txt', 'newdir/sub'])
        expect(fs.existsSync(path.join(target, rel)), rel).toBe(false);
      for (const rel of [
        ...LEFT_OUT,
        'cache/fresh',
        'new.tmp',
        'newdir/x.tmp',
        'newtag/CACHEDIR.TAG',
        'newtag/data',
      ])
        expect(fs.existsSync(path.join(target, rel)), rel).toBe(true);
      // Else the target is the source the snapshot was made of: nothing excluded went.
      const extras = ['/new.tmp', '/newdir/', '/newtag/', '/cache/fresh'];
      expect(
        rsyncDiff(
          src,
          target,
          extras.map((e) => `--exclude=${e}`),
        ),
      ).toEqual([]);
    },
  );
});

describe('a job of the configuration', () => {
  const config = (src: string, dst: string, extra: string): string => {
    const f = path.join(base, 'efs-backup.yaml');
    fs.writeFileSync(
      f,
      `jobs:
  - name: projects
    source: ${src}
    destination: ${dst}
    schedule: "0 2 * * *"
${extra}`,
    );
    return f;
  };

  it.skipIf(skip)('exclude: and excludeIfPresent: leave out what the flags do, recorded', () => {
    const { src, dst } = setup();
    const f = config(
      src,
      dst,
      `    exclude:\n${PATTERNS.map((p) => `      - "${p}"`).join('\n')}\n    excludeIfPresent: [CACHEDIR.TAG]\n`,
    );
    const r = runCli(['backup', '--job', 'projects', '--config', f, '--json']);
    expect(r.status, describeRun(r)).toBe(0);
    expect(r.json).toMatchObject({ Job: 'projects', Exclude: PATTERNS });
    expectSnapshotOfRules(src, latestDir(dst));
    const h = runCli(['history', '--job', 'projects', '--config', f, '--json']);
    expect(JSON.parse(h.stdout)).toEqual([r.json]);
    // The job says what to leave out: a flag cannot add to it.
    const flag = runCli(['backup', '--job', 'projects', '--config', f, '--exclude', 'x']);
    expect(flag.status).toBe(2);
    expectOneLineError(flag, /--exclude cannot be given with --job/);
  });

  it('a bad pattern or name is refused when the configuration is read: file:line: key, nothing written', () => {
    const { src, dst } = setup();
    const f = config(
      src,
      dst,
      `    exclude:\n      - "*.tmp"\n      - "#cache"\n    excludeIfPresent: [a/b]\n`,
    );
    const before = fingerprint(base);
    const r = runCli(['backup', '--job', 'projects', '--config', f]);
    expect(r.status, describeRun(r)).toBe(2);
    expect(r.stderr).toContain(
      `${f}:8: jobs[0].exclude[1] is "#cache", a pattern that starts with "#", which makes it a comment in gitignore syntax`,
    );
    expect(r.stderr).toContain(
      `${f}:9: jobs[0].excludeIfPresent[0] is "a/b", a name that contains "/"`,
    );
    expect(fingerprint(base)).toEqual(before);
  });
});

describe('bad excludes are bad input: exit 2, one line naming it, nothing written', () => {
  it.each([
    [['--exclude', ''], /the exclude pattern "" is blank/],
    [['--exclude', '#x'], /the exclude pattern "#x" starts with "#"/],
    [['--exclude', 'a\\'], /lone backslash/],
    [['--exclude-if-present', 'a/b'], /the exclude-if-present name "a\/b" contains "\/"/],
    [['--exclude-from', 'NOPE'], /exclude file .*NOPE does not exist/],
    [['--exclude-from', 'RULES'], /RULES:2: the pattern "!" names no path/],
  ])('%j', (args, message) => {
    const { src, dst } = setup();
    fs.writeFileSync(path.join(base, 'RULES'), '*.tmp\n!\n');
    const given = args.map((a) => (a === 'NOPE' || a === 'RULES' ? path.join(base, a) : a));
    const before = fingerprint(base);
    const r = runCli(['backup', '--source', src, '--destination', dst, ...given]);
    expect(r.status, describeRun(r)).toBe(2);
    expectOneLineError(r, message);
    expect(fingerprint(base)).toEqual(before);
  });
});

describe('excludes across runs', () => {
  it.skipIf(skip)(
    'a path excluded now is not in the new snapshot; without the pattern it comes back, copied',
    () => {
      const { src, dst } = setup();
      const all = backup(src, dst);
      expect(all.status, describeRun(all)).toBe(0);
      const some = backup(src, dst, {}, ['--exclude', '*.tmp']);
      expect(some.status, describeRun(some)).toBe(0);
      const snap = snapshotDir(dst, String(some.json!.Snapshot));
      expect(rsyncDiff(src, snap, ['--exclude=*.tmp', '--delete-excluded'])).toEqual([]);
      // The earlier snapshot keeps its own.
      expect(fs.existsSync(path.join(snapshotDir(dst, String(all.json!.Snapshot)), 'a.tmp'))).toBe(
        true,
      );
      const back = backup(src, dst);
      expect(back.status, describeRun(back)).toBe(0);
      expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
      // The three .tmp files are copied anew (the snapshot before lacks them), the rest linked.
      expect(back.json).toMatchObject({ NumberOfFilesTransferred: 3, Exclude: [] });
      expect(header(dst, String(back.json!.Snapshot))).toMatchObject({ version: 2 });
      expect(header(dst, String(back.json!.Snapshot))).not.toHaveProperty('Exclude');
    },
  );

  it.skipIf(skipReason('faultfs', 'rsync'))(
    'a partial resumed with other excludes: the snapshot has what the last run includes, no more, no less',
    () => {
      const { src, dst } = setup();
      // The commit fails: the partial stays, holding everything, for the next run to resume.
      const failed = backup(src, dst, { faults: 'rename:.partial:EIO' });
      expect(failed.status, describeRun(failed)).toBe(3);
      const r = backup(src, dst, {}, FLAGS);
      expect(r.status, describeRun(r)).toBe(0);
      expectSnapshotOfRules(src, latestDir(dst));
      const check = runCli(['verify', '--destination', dst]);
      expect(check.status, describeRun(check)).toBe(0);

      // The other way: a partial made with the excludes, resumed without them.
      fs.writeFileSync(path.join(src, 'more.txt'), 'more\n');
      const failed2 = backup(src, dst, { faults: 'rename:.partial:EIO' }, FLAGS);
      expect(failed2.status, describeRun(failed2)).toBe(3);
      const all = backup(src, dst);
      expect(all.status, describeRun(all)).toBe(0);
      expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    },
  );
});
