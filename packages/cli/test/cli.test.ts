/**
 * The `efs-backup` command as a user runs it: the real CLI process on real directories.
 * Needs a build (`npm run build`; `npm test` does it first).
 */
import { type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tmpDir } from '../../core/test/fixtures/tmp.js';
import {
  createTree,
  diffTrees,
  dir,
  file,
  symlink,
  type TestEntries,
  sourceAndDestination,
} from '../../core/test/fixtures/tree.js';
import {
  cli,
  cliJson,
  deadPid,
  expectOneLineError,
  fingerprint,
  leaveSocket,
  liveProcess,
  plantLock,
  requireBuild,
  type CliResult,
} from './helpers.js';

beforeAll(requireBuild);

/** 7 entries below the root: 3 regular files (1008 bytes), 1 symlink, 3 directories. */
const knownTree = (): TestEntries => ({
  'a.txt': file('hello\n'),
  sub: dir({
    'b.txt': file('bb'),
    deeper: dir({ 'c.bin': file(Buffer.alloc(1000, 7)) }),
  }),
  link: symlink('a.txt'),
  empty: dir(),
});
const KNOWN = { entries: 7, nonDirs: 4, bytes: 1008 };

function setup(entries: TestEntries = knownTree()): { base: string; src: string; dst: string } {
  return sourceAndDestination(entries, 'efs-backup-cli-');
}

type Rec = { [field: string]: unknown };

const RECORD_FIELDS = [
  'BackupId',
  'Label',
  'Interval',
  'Retain',
  'Source',
  'Prefix',
  'Destination',
  'Status',
  'StartTime',
  'StopTime',
  'Snapshot',
  'NumberOfFiles',
  'NumberOfFilesTransferred',
  'NumberOfFilesLinked',
  'TotalFileSize',
  'TotalTransferredFileSize',
  'NumberOfWarnings',
  'CopyStartTime',
  'CopyStopTime',
  'PruneStartTime',
  'PruneStopTime',
  'SnapshotsPruned',
  'Host',
];
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const STAMP = /^\d{8}T\d{6}Z$/;

const completeSnapshots = (dst: string, label = 'efs-backup', interval = 'daily'): string[] => {
  const d = path.join(dst, label, interval);
  return fs.existsSync(d) ? fs.readdirSync(d).filter((n) => STAMP.test(n)) : [];
};

// ---- 1. bad input ---------------------------------------------------------------------------

describe('bad input: exit 2, one line naming the problem, nothing written', () => {
  // Built once; every case must leave it exactly as it was.
  let base = '';
  let src = '';
  let used = '';
  let fresh = '';

  beforeAll(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-cli-bad-'));
    src = path.join(base, 'src');
    createTree(src, { ...knownTree(), inner: dir() });
    fs.writeFileSync(path.join(base, 'a-file'), 'not a directory');
    // A destination that already holds a backup set, and a fresh one.
    used = path.join(base, 'used');
    fresh = path.join(base, 'fresh');
    for (const d of [used, fresh]) createTree(d, { data: dir({ 'x.txt': file('x') }) });
    const first = cli(['backup', '--source', src, '--destination', used]);
    expect(first.status, first.stderr).toBe(0);
  });

  afterAll(() => {
    if (base) fs.rmSync(base, { recursive: true, force: true });
  });

  interface Case {
    name: string;
    args: (dst: string) => string[];
    names: RegExp;
  }
  const backupWith = (dst: string, ...extra: string[]): string[] => [
    'backup',
    '--source',
    src,
    '--destination',
    dst,
    ...extra,
  ];
  const cases: Case[] = [
    {
      name: 'a missing source',
      args: (d) => ['backup', '--source', path.join(base, 'nope'), '--destination', d],
      names: /source \S*nope\S* does not exist/,
    },
    {
      name: 'a source that is a file',
      args: (d) => ['backup', '--source', path.join(base, 'a-file'), '--destination', d],
      names: /source \S*a-file\S* is not a directory/,
    },
    {
      name: 'a missing destination',
      args: () => backupWith(path.join(base, 'not-mounted')),
      names: /destination \S*not-mounted\S* does not exist/,
    },
    {
      name: 'the destination inside the source',
      args: () => backupWith(path.join(src, 'inner')),
      names: /destination \S*inner\S* is inside the source/,
    },
    {
      name: 'the source inside the destination',
      args: (d) => ['backup', '--source', path.join(d, 'data'), '--destination', d],
      names: /source \S*data\S* is inside the destination/,
    },
    ...['0', '-3', '1.5', 'abc'].map((v): Case => ({
      name: `--retain ${v}`,
      args: (d) => backupWith(d, '--retain', v),
      names: new RegExp(`retain .*${v.replace('.', '\\.')}`),
    })),
    ...['', 'a/b', '..', 'x..y', '.hidden'].map((v): Case => ({
      name: `--label '${v}'`,
      args: (d) => backupWith(d, '--label', v),
      names: /label/,
    })),
    ...['two words', 'a/b', '', 'latest', '..'].map((v): Case => ({
      name: `--interval '${v}'`,
      args: (d) => backupWith(d, '--interval', v),
      names: /interval/,
    })),
    ...['0', '0.05', 'abc', '-5'].map((v): Case => ({
      name: `--window ${v}`,
      args: (d) => backupWith(d, '--window', v),
      names: new RegExp(`window .*${v.replace('.', '\\.')}`),
    })),
    {
      name: '--prefix outside the source',
      args: (d) => backupWith(d, '--prefix', '../data'),
      names: /prefix .*\.\./,
    },
    {
      name: '--prefix missing in the source',
      args: (d) => backupWith(d, '--prefix', '/no/such/dir'),
      names: /prefix \/no\/such\/dir does not exist/,
    },
    {
      name: '--prefix naming a file',
      args: (d) => backupWith(d, '--prefix', '/a.txt'),
      names: /prefix \/a\.txt .*is not a directory/,
    },
    {
      name: '--concurrency 0',
      args: (d) => backupWith(d, '--concurrency', '0'),
      names: /concurrency/,
    },
    {
      name: 'no --source',
      args: (d) => ['backup', '--destination', d],
      names: /--source/,
    },
    {
      name: 'no --destination',
      args: () => ['backup', '--source', src],
      names: /--destination/,
    },
    {
      name: 'an unknown option',
      args: (d) => backupWith(d, '--bogus'),
      names: /unknown option.*--bogus/,
    },
    {
      name: 'an unknown command',
      args: () => ['frobnicate'],
      names: /unknown command.*frobnicate/,
    },
    {
      name: 'snapshots of a missing destination',
      args: () => ['snapshots', '--destination', path.join(base, 'not-mounted')],
      names: /destination \S*not-mounted\S* does not exist/,
    },
    {
      name: "snapshots --label 'a/b'",
      args: (d) => ['snapshots', '--destination', d, '--label', 'a/b'],
      names: /label "a\/b"/,
    },
  ];

  it.each(cases)('refuses $name', ({ args, names }) => {
    for (const d of [used, fresh]) {
      const before = fingerprint(base);
      const r = cli(args(d));
      expect(r.status, `${args(d).join(' ')}\n${r.stderr}`).toBe(2);
      expectOneLineError(r, names);
      expect(r.stdout).toBe('');
      expect(fingerprint(base)).toEqual(before);
    }
  });

  it('--help, backup --help and --version exit 0 and write nothing', () => {
    const before = fingerprint(base);
    const top = cli(['--help']);
    expect(top.status).toBe(0);
    expect(top.stdout).toMatch(/^Usage: efs-backup/);
    expect(top.stdout).toMatch(/backup/);
    expect(top.stdout).toMatch(/snapshots/);
    const sub = cli(['backup', '--help']);
    expect(sub.status).toBe(0);
    for (const o of ['--source', '--destination', '--label', '--interval', '--retain', '--json'])
      expect(sub.stdout).toContain(o);
    const version = cli(['--version']);
    expect(version.status).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(fingerprint(base)).toEqual(before);
  });
});

describe('bad input: an unreadable source (run as nobody)', () => {
  const canSwitchUser = process.getuid?.() === 0;

  it.skipIf(!canSwitchUser)('refuses a mode-000 source directory with exit 2', () => {
    const base = tmpDir('efs-backup-cli-nobody-');
    fs.chmodSync(base, 0o755);
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    createTree(src, { 'secret.txt': file('secret') });
    fs.chmodSync(src, 0o000);
    fs.mkdirSync(dst, { mode: 0o777 });
    fs.chmodSync(dst, 0o777); // nobody could write here, so a wrong write would show
    const asNobody = { uid: 65534, gid: 65534, cwd: '/' };
    // nobody can run node and read the repository
    const help = cli(['--help'], asNobody);
    expect(help.status, help.stderr).toBe(0);
    // and is refused only by the mode of the source: a readable one works as nobody
    const ok = path.join(base, 'ok');
    createTree(ok, { 'x.txt': file('x') });
    fs.chmodSync(ok, 0o755);
    fs.chmodSync(path.join(ok, 'x.txt'), 0o644);
    for (const p of [ok, path.join(ok, 'x.txt')]) fs.chownSync(p, 65534, 65534);

    const before = fingerprint(base);
    const r = cli(['backup', '--source', src, '--destination', dst], asNobody);
    expect(r.status, r.stderr).toBe(2);
    expectOneLineError(r, /source \S*src\S* is not readable/);
    expect(fingerprint(base)).toEqual(before);

    const good = cli(['backup', '--source', ok, '--destination', dst], asNobody);
    expect(good.status, good.stderr).toBe(0);
    expect(completeSnapshots(dst)).toHaveLength(1);
    fs.chmodSync(src, 0o755);
  });
});

// ---- 2. exit codes and output ---------------------------------------------------------------

describe('a good backup', () => {
  // One window rule everywhere (command line, configuration, service, engine): minutes, at
  // least 0.1, fractions allowed.
  it('takes a fractional window (--window 0.5) and records it', () => {
    const { src, dst } = setup();
    const { result, json } = cliJson<Rec>([
      'backup',
      '--source',
      src,
      '--destination',
      dst,
      '--window',
      '0.5',
    ]);
    expect(result.status, result.stderr).toBe(0);
    expect(json.Status).toBe('Success');
    expect(json.WindowMinutes).toBe(0.5);
  });

  it('exits 0 and --json prints the record with the right figures', () => {
    const { src, dst } = setup();
    const { result, json } = cliJson<Rec>([
      'backup',
      '--source',
      src,
      '--destination',
      dst,
      '--label',
      'projects',
      '--retain',
      '3',
    ]);
    expect(result.status, result.stderr).toBe(0);
    for (const f of RECORD_FIELDS) expect(json, `field ${f}`).toHaveProperty(f);
    expect(json.BackupId).toMatch(/^[0-9a-f-]{36}$/);
    expect(json).toMatchObject({
      Label: 'projects',
      Interval: 'daily',
      Retain: 3,
      Source: fs.realpathSync(src),
      Prefix: '/',
      Destination: fs.realpathSync(dst),
      Status: 'Success',
      NumberOfFiles: KNOWN.entries,
      NumberOfFilesTransferred: KNOWN.nonDirs,
      NumberOfFilesLinked: 0,
      TotalFileSize: KNOWN.bytes,
      TotalTransferredFileSize: KNOWN.bytes,
      NumberOfWarnings: 0,
      SnapshotsPruned: 0,
      Host: os.hostname(),
    });
    expect(json.Snapshot).toMatch(STAMP);
    const times = [
      'StartTime',
      'CopyStartTime',
      'CopyStopTime',
      'PruneStartTime',
      'PruneStopTime',
      'StopTime',
    ].map((f) => json[f] as string);
    for (const t of times) expect(t).toMatch(ISO);
    expect([...times].sort()).toEqual(times);
    // The record names the snapshot that is on disk, and it is the source.
    const snap = path.join(dst, 'projects', 'daily', json.Snapshot as string);
    expect(diffTrees(src, snap)).toEqual([]);
    expect(fs.readlinkSync(path.join(dst, 'projects', 'latest'))).toBe(`daily/${json.Snapshot}`);

    // A second run after one change: one file copied, the rest linked.
    fs.writeFileSync(path.join(src, 'sub', 'b.txt'), 'bbb');
    fs.utimesSync(path.join(src, 'sub', 'b.txt'), 1_800_000_000, 1_800_000_000);
    const second = cliJson<Rec>([
      'backup',
      '--source',
      src,
      '--destination',
      dst,
      '--label',
      'projects',
    ]);
    expect(second.result.status, second.result.stderr).toBe(0);
    expect(second.json).toMatchObject({
      Status: 'Success',
      NumberOfFiles: KNOWN.entries,
      NumberOfFilesTransferred: 1,
      NumberOfFilesLinked: KNOWN.nonDirs - 1,
      TotalFileSize: KNOWN.bytes + 1,
      TotalTransferredFileSize: 3,
      NumberOfWarnings: 0,
    });
    expect(second.json.BackupId).not.toBe(json.BackupId);
    expect(second.json.Snapshot).not.toBe(json.Snapshot);
    const snap2 = path.join(dst, 'projects', 'daily', second.json.Snapshot as string);
    expect(diffTrees(src, snap2)).toEqual([]);
    expect(fs.statSync(path.join(snap2, 'a.txt')).ino).toBe(
      fs.statSync(path.join(snap, 'a.txt')).ino,
    );
    expect(fs.readFileSync(path.join(snap, 'sub', 'b.txt'), 'utf8')).toBe('bb');
  });

  it('without --json prints a summary and exits 0', () => {
    const { src, dst } = setup();
    const r = cli(['backup', '--source', src, '--destination', dst]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Success: snapshot daily\/\d{8}T\d{6}Z is complete/);
    expect(r.stdout).toContain(`${KNOWN.entries} entries`);
    expect(r.stderr).not.toMatch(/^warning:/m);
  });

  it('a socket in the source is skipped with a warning: exit 1, SuccessWithWarnings', () => {
    const { src, dst } = setup();
    leaveSocket(path.join(src, 'sub', 'app.sock'));
    const { result, json } = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(result.status, result.stderr).toBe(1);
    expect(json.Status).toBe('SuccessWithWarnings');
    expect(json.NumberOfWarnings).toBe(1);
    expect(json.NumberOfFiles).toBe(KNOWN.entries);
    expect(json.Snapshot).toMatch(STAMP);
    expect(result.stderr).toMatch(/^warning: sub\/app\.sock: .*socket/m);
    expect(result.stderr).not.toMatch(/^\s+at /m);
    // Committed all the same, without the socket.
    const snap = path.join(dst, 'efs-backup', 'daily', json.Snapshot as string);
    expect(diffTrees(src, snap, { ignore: (rel) => rel === 'sub/app.sock' })).toEqual([]);
    expect(fs.existsSync(path.join(snap, 'sub', 'app.sock'))).toBe(false);
  });

  it('--prefix /sub backs up only that sub-tree', () => {
    const { src, dst } = setup();
    const { result, json } = cliJson<Rec>([
      'backup',
      '--source',
      src,
      '--destination',
      dst,
      '--prefix',
      '/sub',
    ]);
    expect(result.status, result.stderr).toBe(0);
    expect(json).toMatchObject({
      Prefix: '/sub',
      Source: fs.realpathSync(src),
      NumberOfFiles: 3,
      TotalFileSize: 1002,
    });
    const snap = path.join(dst, 'efs-backup', 'daily', json.Snapshot as string);
    expect(diffTrees(path.join(src, 'sub'), snap)).toEqual([]);
    expect(fs.existsSync(path.join(snap, 'a.txt'))).toBe(false);
  });

  it('--retain 1 keeps only the newest snapshot', () => {
    const { src, dst } = setup();
    const first = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(first.result.status).toBe(0);
    fs.writeFileSync(path.join(src, 'a.txt'), 'changed\n');
    const second = cliJson<Rec>(['backup', '--source', src, '--destination', dst, '--retain', '1']);
    expect(second.result.status, second.result.stderr).toBe(0);
    expect(second.json).toMatchObject({ Retain: 1, SnapshotsPruned: 1 });
    expect(completeSnapshots(dst)).toEqual([second.json.Snapshot]);
    expect(fs.readFileSync(path.join(dst, 'efs-backup', 'latest', 'a.txt'), 'utf8')).toBe(
      'changed\n',
    );
  });
});

describe('snapshots', () => {
  it('lists newest first, daily.0 marked latest; --json gives an array', () => {
    const { src, dst } = setup();
    const ids: Rec[] = [];
    for (let i = 0; i < 3; i++) {
      fs.writeFileSync(path.join(src, 'a.txt'), `version ${i}\n`);
      const { result, json } = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
      expect(result.status, result.stderr).toBe(0);
      ids.push(json);
    }
    const newestFirst = [...ids].reverse();

    const text = cli(['snapshots', '--destination', dst]);
    expect(text.status, text.stderr).toBe(0);
    const rows = text.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^SNAPSHOT\s+STAMP/);
    expect(rows.slice(1).map((r) => r.split(/\s+/).slice(0, 2))).toEqual(
      newestFirst.map((r, i) => [`daily.${i}`, r.Snapshot]),
    );
    expect(rows[1]).toMatch(/\blatest$/);
    for (const r of rows.slice(2)) expect(r).not.toMatch(/latest/);

    const list = cliJson<Array<Rec>>(['snapshots', '--destination', dst]);
    expect(list.result.status).toBe(0);
    expect(Array.isArray(list.json)).toBe(true);
    expect(list.json.map((s) => [s.interval, s.stamp, s.latest, s.BackupId])).toEqual(
      newestFirst.map((r, i) => ['daily', r.Snapshot, i === 0, r.BackupId]),
    );
    expect(list.json[0]!.NumberOfFiles).toBe(KNOWN.entries);

    // A newer weekly becomes latest; the dailies keep their order.
    const weekly = cliJson<Rec>([
      'backup',
      '--source',
      src,
      '--destination',
      dst,
      '--interval',
      'weekly',
    ]);
    expect(weekly.result.status).toBe(0);
    const after = cliJson<Array<Rec>>(['snapshots', '--destination', dst]).json;
    expect(after.map((s) => [s.interval, s.stamp, s.latest])).toEqual([
      ['weekly', weekly.json.Snapshot, true],
      ...newestFirst.map((r) => ['daily', r.Snapshot, false]),
    ]);
    const text2 = cli(['snapshots', '--destination', dst]).stdout.split('\n');
    expect(text2[1]).toMatch(/^weekly\.0\s.*latest$/);
    expect(text2[2]).toMatch(/^daily\.0\s/);
  });

  it('an empty destination holds no backup set: exit 2, as verify says it (one-answer.test.ts); left empty', () => {
    const { dst } = setup();
    const text = cli(['snapshots', '--destination', dst]);
    expect(text.status).toBe(2);
    expectOneLineError(
      text,
      /^efs-backup: no backup set efs-backup on \S+ \(it holds no folder\)$/,
    );
    expect(fs.readdirSync(dst)).toEqual([]);
  });

  it('a set without a complete snapshot yet lists none (exit 0, [] as JSON)', () => {
    const { dst } = setup();
    fs.mkdirSync(path.join(dst, 'efs-backup', '.efs-backup'), { recursive: true });
    const text = cli(['snapshots', '--destination', dst]);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^no snapshots in /);
    const json = cliJson<unknown[]>(['snapshots', '--destination', dst]);
    expect(json.result.status).toBe(0);
    expect(json.json).toEqual([]);
  });
});

// ---- 3. the lock ----------------------------------------------------------------------------

describe('the lock', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  // A refused run chmods <label> to the mode it already has (BackupRun.prepareDirs runs before
  // the lock is taken), which moves only its ctime; contents, modes and owners must not change.
  const NO_CTIME = { ctime: false };

  function live(): number {
    const c = liveProcess();
    children.push(c);
    return c.pid!;
  }

  function expectRefused(r: CliResult, pid: number, host = os.hostname()): void {
    expect(r.status, r.stderr).toBe(3);
    const line = expectOneLineError(r, /another run/);
    expect(line).toContain('other-run-0000');
    expect(line).toContain(`pid ${pid}`);
    expect(line).toContain(host);
  }

  it('a live lock of this host refuses the run with exit 3, naming the other run; nothing written', () => {
    const { base, src, dst } = setup();
    expect(cli(['backup', '--source', src, '--destination', dst]).status).toBe(0);
    const pid = live();
    plantLock(dst, { pid });
    fs.writeFileSync(path.join(src, 'a.txt'), 'changed');
    const before = fingerprint(base, NO_CTIME);
    const r = cli(['backup', '--source', src, '--destination', dst]);
    expectRefused(r, pid);
    expect(fingerprint(base, NO_CTIME)).toEqual(before);
  });

  it('a live lock of another host (fresh heartbeat) refuses the run', () => {
    const { base, src, dst } = setup();
    expect(cli(['backup', '--source', src, '--destination', dst]).status).toBe(0);
    plantLock(dst, { pid: 1, host: 'some-other-worker' });
    const before = fingerprint(base, NO_CTIME);
    const r = cli(['backup', '--source', src, '--destination', dst]);
    expectRefused(r, 1, 'some-other-worker');
    expect(fingerprint(base, NO_CTIME)).toEqual(before);
  });

  // Regression: the set's directories were once made before the lock was taken.
  it('a refused run writes nothing in a set that has no snapshot yet', () => {
    const { base, src, dst } = setup();
    const pid = live();
    plantLock(dst, { pid });
    const before = fingerprint(base, NO_CTIME);
    const r = cli(['backup', '--source', src, '--destination', dst, '--interval', 'weekly']);
    expectRefused(r, pid);
    expect(fingerprint(base, NO_CTIME)).toEqual(before);
  });

  // A live process may be paused (SIGSTOP, a suspended VM, an NFS stall) far past the stale
  // limit: its lock is judged by its liveness, never by the age of its heartbeat.
  it('a lock of this host whose process is alive is refused, however old its heartbeat', () => {
    const { base, src, dst } = setup();
    const pid = live();
    plantLock(dst, { pid, heartbeatAgoMs: 10 * 60_000 });
    const before = fingerprint(base, NO_CTIME);
    const r = cli(['backup', '--source', src, '--destination', dst]);
    expectRefused(r, pid);
    expect(fingerprint(base, NO_CTIME)).toEqual(before);
  });

  it.each([
    ['whose pid is dead on this host', () => ({ pid: deadPid() })],
    [
      'of another host whose heartbeat is older than the stale limit',
      () => ({ pid: 1, host: 'some-other-worker', heartbeatAgoMs: 10 * 60_000 }),
    ],
  ])('a lock %s is taken over and the backup succeeds', (_name, lock) => {
    const { src, dst } = setup();
    const file = plantLock(dst, lock());
    const { result, json } = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(result.status, result.stderr).toBe(0);
    expect(json.Status).toBe('Success');
    expect(completeSnapshots(dst)).toEqual([json.Snapshot]);
    // Released at the end: nothing of the old lock or the take-over is left.
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.readdirSync(path.dirname(file)).filter((n) => n.startsWith('lock'))).toEqual([]);
  });
});
