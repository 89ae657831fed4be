/**
 * Restore, verify and browse (issue 3) through the engine's API, on real directories.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adopt,
  backup,
  BackupSet,
  diffManifests,
  EfsBackupError,
  listPath,
  ManifestIndex,
  pathHistory,
  restore,
  verify,
  type RestoreChange,
  type RestoreOptions,
} from '../src/index.js';
import { everyKindTree } from './fixtures/every-kind.js';
import { fingerprint } from './fixtures/fingerprint.js';
import { buildOriginalSet, DAY_STAMPS, fileInodes } from './fixtures/original-set.js';
import { tmpDir } from './fixtures/tmp.js';
import {
  createTree,
  diffTrees,
  dir,
  fifo,
  file,
  hardlink,
  readTree,
  rsyncDifferences,
  symlink,
  type TestEntries,
  sourceAndDestination,
} from './fixtures/tree.js';

// ---- helpers --------------------------------------------------------------------------------

/**
 * Remembers the mtime of `p` to the microsecond (a Date keeps only milliseconds) and returns
 * a function that puts it back, so a damage changes only what it means to change.
 */
function keepMtime(p: string): () => void {
  const st = fs.lstatSync(p, { bigint: true });
  const sec = (ns: bigint): number =>
    Number(ns / 1_000_000_000n) + (Number((ns % 1_000_000_000n) / 1000n) * 1000 + 500) / 1e9;
  return () =>
    (st.isSymbolicLink() ? fs.lutimesSync : fs.utimesSync)(p, sec(st.atimeNs), sec(st.mtimeNs));
}

/** A tree (or nothing, when `root` does not exist). */
const fingerprintOrNone = (root: string): string[] =>
  fs.existsSync(root) ? fingerprint(root) : ['<none>'];

async function expectBadInput(p: Promise<unknown>, message?: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'expected a BAD_INPUT error').toBeInstanceOf(EfsBackupError);
  expect((err as EfsBackupError).code, (err as Error).message).toBe('BAD_INPUT');
  if (message) expect((err as Error).message).toMatch(message);
}

/** Restores and records every change reported. */
async function restoreLogged(
  o: RestoreOptions,
): Promise<{ r: Awaited<ReturnType<typeof restore>>; changes: RestoreChange[] }> {
  const changes: RestoreChange[] = [];
  const r = await restore({ ...o, onChange: (c) => changes.push(c) });
  return { r, changes };
}

const changeLines = (changes: RestoreChange[]): string[] =>
  changes
    .map((c) => `${c.action} ${c.path}${c.reasons.length ? ` (${c.reasons.join(',')})` : ''}`)
    .sort();

function setup(entries: TestEntries): { base: string; src: string; dst: string } {
  return sourceAndDestination(entries, 'efs-restore-');
}

async function backedUp(
  entries: TestEntries,
): Promise<{ base: string; src: string; dst: string; snap: string; stamp: string }> {
  const s = setup(entries);
  const r = await backup({ source: s.src, destination: s.dst });
  expect(r.Status, r.Message).toBe('Success');
  return { ...s, snap: r.snapshotPath!, stamp: r.Snapshot! };
}

/** Compares one restored file with its source: rsync as the judge, and every field we keep. */
function expectSameFile(srcFile: string, restored: string): void {
  const out = execFileSync(
    'rsync',
    ['-aHcn', '--numeric-ids', '--itemize-changes', srcFile, `${path.dirname(restored)}/`],
    { encoding: 'utf8' },
  );
  expect(out.split('\n').filter((l) => l.trim() !== '')).toEqual([]);
  const a = readTree(srcFile).get('.')!;
  const b = readTree(restored).get('.')!;
  for (const f of ['kind', 'mode', 'uid', 'gid', 'size', 'mtimeUs', 'sha256'] as const)
    expect(b[f], f).toBe(a[f]);
  expect(b.blocks).toBeLessThanOrEqual(a.blocks);
}

// ---- round trip -----------------------------------------------------------------------------

describe('round trip: every entry kind comes back as it was', () => {
  let base = '';
  let src = '';
  let dst = '';
  let n = 0;
  const target = (): string => path.join(base, 'targets', String(++n));

  beforeAll(async () => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-restore-rt-'));
    src = path.join(base, 'src');
    dst = path.join(base, 'dst');
    createTree(src, everyKindTree());
    fs.mkdirSync(dst);
    const r = await backup({ source: src, destination: dst });
    expect(r.Status, r.Message).toBe('Success');
  });
  afterAll(() => {
    if (base) fs.rmSync(base, { recursive: true, force: true });
  });

  it.each([
    ['on a local disk (direct calls)', {}],
    ['with many calls in flight (network mode)', { io: 'async' as const, concurrency: 8 }],
  ])(
    'the whole snapshot into an empty target, %s; a second restore writes nothing',
    async (_, extra) => {
      const t = target();
      const { r } = await restoreLogged({
        destination: dst,
        snapshot: 'latest',
        target: t,
        ...extra,
      });
      expect(r.warnings).toEqual([]);
      expect(rsyncDifferences(src, t)).toEqual([]);
      expect(diffTrees(src, t, { sparse: true })).toEqual([]);
      expect(r.created).toBeGreaterThan(50);
      expect(r.linked).toBe(3); // hard/second, hard/other/third, elsewhere-link

      const before = fingerprint(t);
      const again = await restoreLogged({
        destination: dst,
        snapshot: 'latest',
        target: t,
        ...extra,
      });
      expect(again.changes).toEqual([]);
      expect(again.r).toMatchObject({ created: 0, updated: 0, deleted: 0, linked: 0, bytes: 0 });
      const nonDirs = [...readTree(src).values()].filter((e) => e.kind !== 'dir').length;
      expect(again.r.unchanged).toBe(nonDirs);
      expect(fingerprint(t)).toEqual(before);
    },
  );

  it.each(['hard', 'perms', 'owners', 'links', 'times', 'deep/d40/d39'])(
    '--subdir %s (a directory) equals that directory of the source',
    async (sub) => {
      const t = target();
      const { r } = await restoreLogged({
        destination: dst,
        snapshot: 'latest',
        target: t,
        subdir: sub,
      });
      expect(r.warnings).toEqual([]);
      const expected = path.join(src, sub);
      expect(rsyncDifferences(expected, t)).toEqual([]);
      expect(diffTrees(expected, t, { sparse: true })).toEqual([]);

      const before = fingerprint(t);
      const again = await restoreLogged({
        destination: dst,
        snapshot: 'latest',
        target: t,
        subdir: sub,
      });
      expect(again.changes).toEqual([]);
      expect(again.r).toMatchObject({ created: 0, updated: 0, deleted: 0, linked: 0 });
      expect(fingerprint(t)).toEqual(before);
    },
  );

  it.each([
    'plain.txt',
    'sparse',
    'sparse-tail',
    'perms/setuid',
    'perms/mode-000',
    'owners/foreign',
    'times/1970',
    'hard/second', // a second name whose first name is not restored: a plain copy
    'pipe',
    'unicode-ñ-日本語-🙂.txt',
  ])('--subdir %s (a single file) is restored as target/<basename>', async (rel) => {
    const t = target();
    const { r, changes } = await restoreLogged({
      destination: dst,
      snapshot: 'latest',
      target: t,
      subdir: rel,
    });
    expect(r.warnings).toEqual([]);
    const name = path.basename(rel);
    expect(changes).toEqual([{ action: 'create', path: name, reasons: [] }]);
    expect(fs.readdirSync(t)).toEqual([name]);
    expectSameFile(path.join(src, rel), path.join(t, name));

    const before = fingerprint(t);
    const again = await restoreLogged({
      destination: dst,
      snapshot: 'latest',
      target: t,
      subdir: rel,
    });
    expect(again.changes).toEqual([]);
    expect(again.r).toMatchObject({ created: 0, updated: 0, deleted: 0, linked: 0, unchanged: 1 });
    expect(fingerprint(t)).toEqual(before);
  });
});

// ---- delete and dry run ---------------------------------------------------------------------

describe('--delete and --dry-run', () => {
  const tree = (): TestEntries => ({
    'keep.txt': file('keep me\n', { mtime: 1_650_000_000 }),
    'change.txt': file('the snapshot version\n', { mtime: 1_650_000_001 }),
    'mode.txt': file('mode\n', { mode: 0o644 }),
    link: symlink('keep.txt'),
    d: dir({ 'inner.txt': file('inner\n'), deep: dir({ 'x.txt': file('x\n') }) }),
  });

  /** A target restored from the snapshot, then changed: extras added, three entries damaged. */
  async function changedTarget(): Promise<{ base: string; src: string; dst: string; t: string }> {
    const { base, src, dst } = await backedUp(tree());
    const t = path.join(base, 'target');
    await restore({ destination: dst, snapshot: 'latest', target: t });
    expect(diffTrees(src, t)).toEqual([]);
    fs.writeFileSync(path.join(t, 'extra.txt'), 'extra');
    createTree(path.join(t, 'extra-dir'), { a: file('a'), sub: dir({ b: file('b') }) });
    fs.writeFileSync(path.join(t, 'd', 'extra-inner.txt'), 'extra inner');
    fs.symlinkSync('/etc', path.join(t, 'd', 'deep', 'extra-link'));
    fs.writeFileSync(path.join(t, 'change.txt'), 'changed in the target, longer\n');
    fs.chmodSync(path.join(t, 'mode.txt'), 0o600);
    fs.rmSync(path.join(t, 'd', 'inner.txt'));
    return { base, src, dst, t };
  }

  const EXTRAS = ['d/deep/extra-link', 'd/extra-inner.txt', 'extra-dir', 'extra.txt'];
  const FIXES = [
    'create d/inner.txt',
    'update . (mtime)',
    'update change.txt (size,mtime)',
    'update d (mtime)',
    'update d/deep (mtime)',
    'update mode.txt (mode)',
  ];

  it('--dry-run writes nothing and reports every change the restore then makes', async () => {
    const { base, dst, t } = await changedTarget();
    for (const del of [false, true]) {
      const before = fingerprint(base);
      const dry = await restoreLogged({
        destination: dst,
        snapshot: 'latest',
        target: t,
        delete: del,
        dryRun: true,
      });
      expect(fingerprint(base)).toEqual(before);
      const expected = [...FIXES, ...(del ? EXTRAS.map((e) => `delete ${e}`) : [])].sort();
      expect(changeLines(dry.changes)).toEqual(expected);
      expect(dry.r).toMatchObject({
        created: 1,
        updated: 5,
        deleted: del ? 4 : 0,
        linked: 0,
        bytes: 0,
      });
    }
    // What the dry run announced is what a real run does.
    const dry = await restoreLogged({
      destination: dst,
      snapshot: 'latest',
      target: t,
      delete: true,
      dryRun: true,
    });
    const real = await restoreLogged({
      destination: dst,
      snapshot: 'latest',
      target: t,
      delete: true,
    });
    expect(changeLines(real.changes)).toEqual(changeLines(dry.changes));
  });

  it('--dry-run into a missing target creates nothing and lists every entry as created', async () => {
    const { base, dst } = await backedUp(tree());
    const t = path.join(base, 'nowhere', 'target');
    const before = fingerprint(base);
    const dry = await restoreLogged({
      destination: dst,
      snapshot: 'latest',
      target: t,
      dryRun: true,
    });
    expect(fingerprint(base)).toEqual(before);
    expect(fs.existsSync(path.join(base, 'nowhere'))).toBe(false);
    expect(changeLines(dry.changes)).toEqual(
      [
        '.',
        'change.txt',
        'd',
        'd/deep',
        'd/deep/x.txt',
        'd/inner.txt',
        'keep.txt',
        'link',
        'mode.txt',
      ].map((p) => `create ${p}`),
    );
  });

  it('without --delete nothing extra is removed; the rest is put back', async () => {
    const { src, dst, t } = await changedTarget();
    const extrasBefore = fingerprint(path.join(t, 'extra-dir'));
    const { r, changes } = await restoreLogged({ destination: dst, snapshot: 'latest', target: t });
    expect(changeLines(changes)).toEqual(FIXES);
    expect(r.deleted).toBe(0);
    expect(diffTrees(src, t)).toEqual(
      [
        'd/deep/extra-link',
        'd/extra-inner.txt',
        'extra-dir',
        'extra-dir/a',
        'extra-dir/sub',
        'extra-dir/sub/b',
        'extra.txt',
      ].map((p) => `extra: ${p}`),
    );
    expect(fingerprint(path.join(t, 'extra-dir'))).toEqual(extrasBefore);
    expect(fs.readlinkSync(path.join(t, 'd', 'deep', 'extra-link'))).toBe('/etc');
  });

  it('--delete removes the extras and only the extras', async () => {
    const { src, dst, t } = await changedTarget();
    // Entries the snapshot holds and the target has unchanged must not be touched at all.
    const untouched = ['keep.txt', 'link', 'd/deep/x.txt'];
    const stateOf = (rel: string): string => fingerprint(path.join(t, rel))[0]!;
    const before = untouched.map(stateOf);
    const { r, changes } = await restoreLogged({
      destination: dst,
      snapshot: 'latest',
      target: t,
      delete: true,
    });
    expect(changeLines(changes)).toEqual([...FIXES, ...EXTRAS.map((e) => `delete ${e}`)].sort());
    expect(r).toMatchObject({ created: 1, updated: 5, deleted: 4, linked: 0 });
    expect(rsyncDifferences(src, t)).toEqual([]);
    expect(diffTrees(src, t)).toEqual([]);
    expect(untouched.map(stateOf)).toEqual(before);
    // /etc, which an extra symlink pointed to, is still there.
    expect(fs.existsSync('/etc/hostname') || fs.existsSync('/etc/passwd')).toBe(true);
  });
});

// ---- an older snapshot over a changed target, and over the live source ------------------------

describe('restoring an older snapshot', () => {
  const day1 = (): TestEntries => ({
    'a.txt': file('version one\n', { mtime: 1_650_000_000.25 }),
    'mode.sh': file('#!/bin/sh\n', { mode: 0o755 }),
    owned: file('owned\n', { uid: 1000, gid: 1000 }),
    touched: file('only the mtime changes\n', { mtime: 1_650_000_100 }),
    link: symlink('a.txt'),
    pair: dir({ first: file('pair\n'), second: hardlink('pair/first') }),
    d: dir({ 'removed-later.txt': file('day 1 only\n') }, { mode: 0o750 }),
  });

  /** Two daily snapshots: day 1, then the source changed in every way restore must undo. */
  async function twoDays(): Promise<{ base: string; src: string; dst: string; copy1: string }> {
    const { base, src, dst } = await backedUp(day1());
    const copy1 = path.join(base, 'copy-day1');
    execFileSync('cp', ['-a', src, copy1]);
    fs.writeFileSync(path.join(src, 'a.txt'), 'version two, longer\n');
    fs.chmodSync(path.join(src, 'mode.sh'), 0o600);
    fs.chownSync(path.join(src, 'owned'), 2000, 3000);
    fs.utimesSync(path.join(src, 'touched'), 1_700_000_000, 1_700_000_000);
    fs.rmSync(path.join(src, 'link'));
    fs.symlinkSync('mode.sh', path.join(src, 'link'));
    fs.rmSync(path.join(src, 'pair', 'second'));
    fs.writeFileSync(path.join(src, 'pair', 'second'), 'pair\n'); // no longer a hard link
    fs.rmSync(path.join(src, 'd', 'removed-later.txt'));
    fs.chmodSync(path.join(src, 'd'), 0o700);
    fs.writeFileSync(path.join(src, 'new-on-day-2.txt'), 'new\n');
    const r = await backup({ source: src, destination: dst });
    expect(r.Status).toBe('Success');
    expect(diffTrees(copy1, src).length).toBeGreaterThan(5);
    return { base, src, dst, copy1 };
  }

  it('puts back content, mode, owner, mtimes, link targets and hard links in a changed target', async () => {
    const { base, dst, copy1 } = await twoDays();
    const t = path.join(base, 'target');
    await restore({ destination: dst, snapshot: 'latest', target: t });
    const { r } = await restoreLogged({ destination: dst, snapshot: 'daily.1', target: t });
    expect(r.warnings).toEqual([]);
    // Without --delete the file added on day 2 stays; everything else is day 1 again.
    expect(diffTrees(copy1, t, { sparse: true })).toEqual(['extra: new-on-day-2.txt']);
    await restore({ destination: dst, snapshot: 'daily.1', target: t, delete: true });
    expect(rsyncDifferences(copy1, t)).toEqual([]);
    expect(diffTrees(copy1, t)).toEqual([]);
  });

  it('over the live source, with --delete, makes it day 1 again', async () => {
    const { src, dst, copy1 } = await twoDays();
    const { r } = await restoreLogged({
      destination: dst,
      snapshot: 'daily.1',
      target: src,
      delete: true,
    });
    expect(r.warnings).toEqual([]);
    expect(r.deleted).toBe(1);
    expect(rsyncDifferences(copy1, src)).toEqual([]);
    expect(diffTrees(copy1, src)).toEqual([]);
  });
});

// ---- entries whose type changed in the target, hard-link groups cut by --subdir ---------------

describe('what the target holds in place of an entry', () => {
  it('a directory where a file goes, a file where a directory goes, a directory where a symlink goes', async () => {
    const { base, src, dst } = await backedUp({
      f: file('a file\n'),
      d: dir({ x: file('x\n') }),
      l: symlink('f'),
      p: fifo(),
    });
    const t = path.join(base, 'target');
    createTree(t, {
      f: dir({ inner: dir({ y: file('y') }) }),
      d: file('a file where a directory goes'),
      l: dir({ z: file('z') }),
      p: file('a file where a FIFO goes'),
    });
    const { r, changes } = await restoreLogged({ destination: dst, snapshot: 'latest', target: t });
    expect(r.warnings).toEqual([]);
    expect(changeLines(changes).filter((l) => !l.startsWith('update . '))).toEqual([
      'create d',
      'create d/x',
      'update f (type)',
      'update l (type)',
      'update p (type)',
    ]);
    expect(diffTrees(src, t)).toEqual([]);
  });

  // Regression test for a bug the first version of restore.ts had.
  it('a directory where the second name of a hard link goes', async () => {
    const { base, src, dst } = await backedUp({
      h: dir({ a: file('one inode\n'), b: hardlink('h/a') }),
    });
    const t = path.join(base, 'target');
    createTree(t, { h: dir({ a: dir({ q: file('q') }), b: dir({ r: file('r') }) }) });
    await restore({ destination: dst, snapshot: 'latest', target: t });
    expect(diffTrees(src, t)).toEqual([]);
  });

  // Regression test for a bug the first version of restore.ts had.
  it('--subdir keeps hard links between its names when the first name is outside it', async () => {
    const { base, src, dst } = await backedUp({
      p: dir({ one: file('one inode, four names\n'), two: hardlink('p/one') }),
      q: dir({ three: hardlink('p/one'), four: hardlink('p/one') }),
    });
    for (const sub of ['p', 'q']) {
      const t = path.join(base, `target-${sub}`);
      await restore({ destination: dst, snapshot: 'latest', target: t, subdir: sub });
      expect(diffTrees(path.join(src, sub), t), sub).toEqual([]);
    }
  });
});

// ---- traversal ------------------------------------------------------------------------------

describe('restore stays inside the snapshot and inside the target', () => {
  const tree = (): TestEntries => ({
    dir: dir({ 'a.txt': file('snapshot a\n'), sub: dir({ 'b.txt': file('snapshot b\n') }) }),
    'file.txt': file('snapshot file\n'),
    nested: dir({ real: dir({ 'c.txt': file('snapshot c\n') }) }),
    pipe: fifo({ mode: 0o600 }),
    hard: dir({ first: file('linked\n'), second: hardlink('hard/first') }),
    'etc-link': symlink('/etc'),
    'out-link': symlink('../../outside'),
  });

  /** A directory and files outside the target that a planted symlink points to. */
  function outside(base: string): string {
    const o = path.join(base, 'outside');
    createTree(o, {
      'victim-dir': dir({
        'a.txt': file('outside a, must stay\n'),
        sub: dir({ 'b.txt': file('ob') }),
      }),
      'victim.txt': file('outside file, must stay\n'),
      'victim-2.txt': file('another outside file\n'),
      'victim-3.txt': file('a third outside file\n'),
      'victim-4.txt': file('a fourth outside file\n'),
    });
    return o;
  }

  it.each([
    ['..', /\.\./],
    ['../outside', /\.\./],
    ['dir/../..', /\.\./],
    ['dir/../../outside/victim.txt', /\.\./],
    ['/etc', /absolute/],
    ['/etc/passwd', /absolute/],
    ['etc-link', /symlink/],
    ['etc-link/passwd', /symlink/],
    ['out-link', /symlink/],
    ['out-link/victim.txt', /symlink/],
    ['no/such/path', /not in the snapshot/],
    ['file.txt/below', /not a directory/],
  ])('--subdir %s is refused (BAD_INPUT) and nothing is written', async (sub, message) => {
    const { base, dst } = await backedUp(tree());
    outside(base);
    const t = path.join(base, 'target');
    const before = fingerprint(base);
    for (const dryRun of [false, true]) {
      await expectBadInput(
        restore({ destination: dst, snapshot: 'latest', target: t, subdir: sub, dryRun }),
        message,
      );
    }
    expect(fs.existsSync(t)).toBe(false);
    expect(fingerprint(base)).toEqual(before);
  });

  it('an absolute --subdir naming a path of the source is refused too', async () => {
    const { base, src, dst } = await backedUp(tree());
    const t = path.join(base, 'target');
    const before = fingerprint(base);
    await expectBadInput(
      restore({ destination: dst, snapshot: 'latest', target: t, subdir: path.join(src, 'dir') }),
      /absolute/,
    );
    expect(fingerprint(base)).toEqual(before);
  });

  it('symlinks planted in the target are replaced, never followed', async () => {
    const { base, src, dst } = await backedUp(tree());
    const o = outside(base);
    const t = path.join(base, 'target');
    fs.mkdirSync(path.join(t, 'nested'), { recursive: true });
    fs.symlinkSync(path.join(o, 'victim-dir'), path.join(t, 'dir'));
    fs.symlinkSync(path.join(o, 'victim.txt'), path.join(t, 'file.txt'));
    fs.symlinkSync(path.join(o, 'victim-dir'), path.join(t, 'nested', 'real'));
    fs.symlinkSync(path.join(o, 'victim-2.txt'), path.join(t, 'pipe'));
    fs.mkdirSync(path.join(t, 'hard'));
    fs.symlinkSync(path.join(o, 'victim-3.txt'), path.join(t, 'hard', 'second'));
    fs.symlinkSync(path.join(o, 'victim-4.txt'), path.join(t, 'hard', 'first'));
    const outsideBefore = fingerprint(o);

    const { r } = await restoreLogged({ destination: dst, snapshot: 'latest', target: t });
    expect(r.warnings).toEqual([]);
    expect(fingerprint(o)).toEqual(outsideBefore);
    for (const p of ['dir', 'nested/real'])
      expect(fs.lstatSync(path.join(t, p)).isDirectory()).toBe(true);
    for (const p of ['file.txt', 'hard/first', 'hard/second'])
      expect(fs.lstatSync(path.join(t, p)).isFile(), p).toBe(true);
    expect(fs.lstatSync(path.join(t, 'pipe')).isFIFO()).toBe(true);
    expect(rsyncDifferences(src, t)).toEqual([]);
    expect(diffTrees(src, t)).toEqual([]);
  });

  it('a planted symlink is replaced when one file or one directory is restored', async () => {
    const { base, src, dst } = await backedUp(tree());
    const o = outside(base);
    const t = path.join(base, 'target');
    fs.mkdirSync(t);
    fs.symlinkSync(path.join(o, 'victim.txt'), path.join(t, 'a.txt'));
    fs.symlinkSync(path.join(o, 'victim-dir'), path.join(t, 'sub'));
    const outsideBefore = fingerprint(o);
    await restore({ destination: dst, snapshot: 'latest', target: t, subdir: 'dir/a.txt' });
    await restore({ destination: dst, snapshot: 'latest', target: t, subdir: 'dir' });
    expect(fingerprint(o)).toEqual(outsideBefore);
    expect(diffTrees(path.join(src, 'dir'), t)).toEqual([]);
  });

  it('--delete removes a planted symlink to an outside directory without following it', async () => {
    const { base, src, dst } = await backedUp(tree());
    const o = outside(base);
    const t = path.join(base, 'target');
    await restore({ destination: dst, snapshot: 'latest', target: t });
    fs.symlinkSync(path.join(o, 'victim-dir'), path.join(t, 'extra-link'));
    fs.symlinkSync(path.join(o, 'victim-dir'), path.join(t, 'dir', 'sub', 'extra-link'));
    const outsideBefore = fingerprint(o);
    const { r } = await restoreLogged({
      destination: dst,
      snapshot: 'latest',
      target: t,
      delete: true,
    });
    expect(r.deleted).toBe(2);
    expect(fingerprint(o)).toEqual(outsideBefore);
    expect(diffTrees(src, t)).toEqual([]);
  });

  it('a target inside the backup set is refused (BAD_INPUT), nothing written', async () => {
    const { base, dst, snap } = await backedUp(tree());
    const set = path.join(dst, 'efs-backup');
    const before = fingerprint(base);
    for (const t of [
      set,
      path.join(set, 'restored'),
      path.join(set, '.efs-backup', 'x'),
      snap,
      path.join(snap, 'dir'),
      path.join(set, 'latest'),
      path.join(set, 'latest', 'new'),
    ]) {
      await expectBadInput(
        restore({ destination: dst, snapshot: 'latest', target: t }),
        /inside the backup set/,
      );
    }
    expect(fingerprint(base)).toEqual(before);
  });

  it('a target that reaches the backup set through an existing symlink is refused', async () => {
    const { base, dst } = await backedUp(tree());
    const set = path.join(dst, 'efs-backup');
    fs.symlinkSync(set, path.join(base, 'to-set'));
    const before = fingerprint(base);
    await expectBadInput(
      restore({ destination: dst, snapshot: 'latest', target: path.join(base, 'to-set') }),
      /inside the backup set/,
    );
    expect(fingerprint(base)).toEqual(before);
  });

  // Regression test for a bug the first version of restore.ts had.
  it('a missing target below a symlink into the backup set is refused', async () => {
    const { base, dst } = await backedUp(tree());
    const set = path.join(dst, 'efs-backup');
    fs.symlinkSync(set, path.join(base, 'to-set'));
    const before = fingerprint(base);
    await expectBadInput(
      restore({ destination: dst, snapshot: 'latest', target: path.join(base, 'to-set', 'new') }),
      /inside the backup set/,
    );
    expect(fingerprint(base)).toEqual(before);
  });
});

describe('a target that holds the backup set', () => {
  // Regression test for a bug the first version of restore.ts had.
  it('is refused with --delete, and the set is left as it was', async () => {
    const { base, dst } = await backedUp({ a: file('a\n'), d: dir({ b: file('b\n') }) });
    const before = fingerprint(base);
    for (const t of [dst, base]) {
      await expectBadInput(
        restore({ destination: dst, snapshot: 'latest', target: t, delete: true }),
      );
    }
    expect(fingerprint(base)).toEqual(before);
  });
});

// ---- verify ---------------------------------------------------------------------------------

describe('verify', () => {
  const tree = (): TestEntries => ({
    d: dir({
      'f.txt': file('0123456789abcdef0123456789abcdef\n'),
      'g.txt': file('g'.repeat(4096)),
    }),
    'mode.txt': file('mode\n', { mode: 0o640 }),
    'owned.txt': file('owned\n', { uid: 1500, gid: 1600 }),
    link: symlink('d/f.txt'),
    hard: dir({ first: file('one inode\n'), second: hardlink('hard/first') }),
    pipe: fifo(),
  });

  /** Runs `damage` on the snapshot, then puts back the mtimes of the directories it touched. */
  function damaged(snap: string, dirs: string[], damage: () => void): void {
    const putBack = dirs.map((d) => keepMtime(path.join(snap, d)));
    damage();
    for (const f of putBack) f();
  }

  it('passes on a good snapshot of every entry kind', async () => {
    const { dst, snap } = await backedUp(everyKindTree());
    const [v] = await verify({ destination: dst });
    expect(v!.problems).toEqual([]);
    expect(v!.sourceDifferences).toBeNull();
    expect(v!.entries).toBe(readTree(snap).size - 1);
    expect(v!.bytes).toBeGreaterThan(72 * 1024 * 1024); // both sparse files re-read
  });

  interface Damage {
    name: string;
    dirs: string[];
    damage: (snap: string) => void;
    /** The exact problem list; each must name the damaged path. */
    problems: RegExp[];
  }
  const cases: Damage[] = [
    {
      name: 'a flipped byte (same size, same mtime)',
      dirs: [],
      damage: (s) => {
        const p = path.join(s, 'd', 'f.txt');
        const putBack = keepMtime(p);
        const buf = fs.readFileSync(p);
        buf[7] = buf[7]! ^ 0x01;
        fs.writeFileSync(p, buf);
        putBack();
      },
      problems: [/^changed: d\/f\.txt: content/],
    },
    {
      name: 'a truncated file',
      dirs: [],
      damage: (s) => {
        const p = path.join(s, 'd', 'g.txt');
        const putBack = keepMtime(p);
        fs.truncateSync(p, 100);
        putBack();
      },
      problems: [/^changed: d\/g\.txt: size$/, /^changed: d\/g\.txt: content/],
    },
    {
      name: 'a removed file',
      dirs: ['d'],
      damage: (s) => fs.rmSync(path.join(s, 'd', 'f.txt')),
      problems: [/^missing: d\/f\.txt$/],
    },
    {
      name: 'an added file',
      dirs: ['d'],
      damage: (s) => fs.writeFileSync(path.join(s, 'd', 'added.txt'), 'not in the manifest'),
      problems: [/^extra: d\/added\.txt$/],
    },
    {
      name: 'a chmod',
      dirs: [],
      damage: (s) => fs.chmodSync(path.join(s, 'mode.txt'), 0o666),
      problems: [/^changed: mode\.txt: mode$/],
    },
    {
      name: 'a chown',
      dirs: [],
      damage: (s) => fs.chownSync(path.join(s, 'owned.txt'), 1500, 1601),
      problems: [/^changed: owned\.txt: owner$/],
    },
    {
      name: 'a retargeted symlink',
      dirs: ['.'],
      damage: (s) => {
        const p = path.join(s, 'link');
        const putBack = keepMtime(p);
        fs.rmSync(p);
        fs.symlinkSync('d/g.txt', p);
        putBack();
      },
      problems: [/^changed: link: target$/],
    },
    {
      name: 'a broken hard link (one name replaced by a copy)',
      dirs: ['hard'],
      damage: (s) => {
        const p = path.join(s, 'hard', 'second');
        execFileSync('cp', ['-p', p, `${p}.copy`]);
        fs.renameSync(`${p}.copy`, p);
      },
      // Either name may be the manifest's first one.
      problems: [/^changed: hard\/(first|second): no longer a hard link to hard\/(first|second)$/],
    },
    {
      name: 'a file replaced by a directory',
      dirs: ['d'],
      damage: (s) => {
        fs.rmSync(path.join(s, 'd', 'f.txt'));
        fs.mkdirSync(path.join(s, 'd', 'f.txt'));
      },
      problems: [/^changed: d\/f\.txt: type$/],
    },
  ];

  it.each(cases)('catches $name and names the path', async ({ dirs, damage, problems }) => {
    const { dst, snap } = await backedUp(tree());
    const [good] = await verify({ destination: dst, snapshot: 'latest' });
    expect(good!.problems).toEqual([]);
    damaged(snap, dirs, () => damage(snap));
    const [v] = await verify({ destination: dst, snapshot: 'latest' });
    const got = [...v!.problems].sort();
    expect(got, got.join('\n')).toHaveLength(problems.length);
    for (const re of problems)
      expect(
        got.some((l) => re.test(l)),
        `${re} in\n${got.join('\n')}`,
      ).toBe(true);
  });

  it('--all checks every snapshot and reports each one', async () => {
    const { src, dst } = await backedUp(tree());
    fs.writeFileSync(path.join(src, 'd', 'f.txt'), 'changed before the second backup\n');
    const second = await backup({ source: src, destination: dst });
    const set = new BackupSet(dst, 'efs-backup');
    const [newer, older] = set.snapshots();
    expect(newer!.stamp).toBe(second.Snapshot);
    // d/f.txt is not shared between the two snapshots: damage the older one only.
    const p = path.join(older!.path, 'd', 'f.txt');
    const putBack = keepMtime(p);
    fs.writeFileSync(p, Buffer.from(fs.readFileSync(p).toString().toUpperCase()));
    putBack();

    const latest = await verify({ destination: dst });
    expect(latest.map((v) => v.problems)).toEqual([[]]);
    const all = await verify({ destination: dst, all: true });
    expect(all.map((v) => v.snapshot.stamp).sort()).toEqual([older!.stamp, newer!.stamp].sort());
    const byStamp = new Map(all.map((v) => [v.snapshot.stamp, v.problems]));
    expect(byStamp.get(newer!.stamp)).toEqual([]);
    expect(byStamp.get(older!.stamp)).toHaveLength(1);
    expect(byStamp.get(older!.stamp)![0]).toMatch(/^changed: d\/f\.txt: content/);
  });

  it('reports a snapshot whose manifest is damaged', async () => {
    const { dst, stamp } = await backedUp(tree());
    const m = new BackupSet(dst, 'efs-backup').manifestPath(stamp);
    fs.writeFileSync(m, fs.readFileSync(m, 'utf8').replace('"f.txt"', '"F.txt"'));
    const [v] = await verify({ destination: dst });
    expect(v!.problems).toHaveLength(1);
    expect(v!.problems[0]).toMatch(/^manifest: .*checksum/);
    const all = await verify({ destination: dst, all: true });
    expect(all[0]!.problems).toEqual(v!.problems);
  });

  it('--source lists what the live source added, removed and changed', async () => {
    const { src, dst } = await backedUp(tree());
    const [clean] = await verify({ destination: dst, source: src });
    expect(clean!.sourceDifferences).toEqual([]);
    fs.writeFileSync(path.join(src, 'd', 'new.txt'), 'new');
    fs.rmSync(path.join(src, 'd', 'f.txt'));
    fs.chmodSync(path.join(src, 'mode.txt'), 0o600);
    fs.writeFileSync(path.join(src, 'd', 'g.txt'), 'shorter');
    fs.rmSync(path.join(src, 'link'));
    fs.symlinkSync('elsewhere', path.join(src, 'link'));
    const [v] = await verify({ destination: dst, source: src });
    expect(v!.problems).toEqual([]);
    const diffs = [...v!.sourceDifferences!].sort();
    expect(diffs).toHaveLength(5);
    expect(diffs[0]).toBe('added: d/new.txt');
    expect(diffs[1]).toMatch(/^changed: d\/g\.txt: size/);
    expect(diffs[2]).toMatch(/^changed: link: target/);
    expect(diffs[3]).toBe('changed: mode.txt: mode');
    expect(diffs[4]).toBe('removed: d/f.txt');
  });
});

// ---- ls, diff, history from manifests ---------------------------------------------------------

describe('ls, diff and history read manifests only', () => {
  it('answer for a known sequence of snapshots whose trees are gone', async () => {
    const { base, src, dst } = setup({
      'a.txt': file('one', { mtime: 1_700_000_000 }),
      'b.txt': file('bee', { mtime: 1_700_000_000 }),
      d: dir({ 'c.txt': file('sea'), e: dir() }),
    });
    const runs: string[] = [];
    const run = async (): Promise<void> => {
      const r = await backup({ source: src, destination: dst, backupId: `run-${runs.length + 1}` });
      expect(r.Status).toBe('Success');
      runs.push(r.Snapshot!);
    };
    await run(); // 1
    fs.writeFileSync(path.join(src, 'a.txt'), 'one two');
    fs.utimesSync(path.join(src, 'a.txt'), 1_700_000_100, 1_700_000_100);
    fs.rmSync(path.join(src, 'b.txt'));
    fs.writeFileSync(path.join(src, 'd', 'new.txt'), 'new!');
    await run(); // 2: a changed, b removed, d/new added
    fs.chmodSync(path.join(src, 'a.txt'), 0o600);
    await run(); // 3: a's mode
    await run(); // 4: nothing

    // The snapshot trees are moved away and empty directories left in their place.
    const set = new BackupSet(dst, 'efs-backup');
    fs.mkdirSync(path.join(base, 'away'));
    for (const s of runs) {
      fs.renameSync(set.snapshotDir('daily', s), path.join(base, 'away', s));
      fs.mkdirSync(set.snapshotDir('daily', s));
    }
    const open = (s: string): Promise<ManifestIndex> =>
      ManifestIndex.openManifest(set.manifestPath(s));
    const [m1, m2, m3, m4] = await Promise.all(runs.map(open));

    try {
      expect(listPath(m1!, '').map((e) => `${e.kind} ${e.path} ${e.size}`)).toEqual([
        'f a.txt 3',
        'f b.txt 3',
        'd d 0',
      ]);
      expect(listPath(m2!, 'd').map((e) => e.path)).toEqual(['d/c.txt', 'd/e', 'd/new.txt']);
      expect(listPath(m2!, 'd/e')).toEqual([]);
      const single = listPath(m3!, 'a.txt');
      expect(single).toHaveLength(1);
      expect(single[0]).toMatchObject({ path: 'a.txt', kind: 'f', size: 7 });
      expect(single[0]!.mode & 0o7777).toBe(0o600);
      expect(() => listPath(m1!, '../x')).toThrow(/\.\./);
      expect(() => listPath(m1!, 'd/missing')).toThrow(/not in the snapshot/);

      expect(diffManifests(m1!, m2!)).toEqual([
        {
          change: 'changed',
          path: 'a.txt',
          kind: 'f',
          sizeBefore: 3,
          sizeAfter: 7,
          what: ['content', 'size', 'mtime'],
        },
        { change: 'removed', path: 'b.txt', kind: 'f', sizeBefore: 3, sizeAfter: null, what: [] },
        { change: 'added', path: 'd/new.txt', kind: 'f', sizeBefore: null, sizeAfter: 4, what: [] },
      ]);
      expect(diffManifests(m2!, m3!).map((l) => `${l.change} ${l.path} ${l.what}`)).toEqual([
        'changed a.txt mode',
      ]);
      expect(diffManifests(m3!, m4!)).toEqual([]);
      expect(diffManifests(m2!, m1!).map((l) => `${l.change} ${l.path}`)).toEqual([
        'changed a.txt',
        'added b.txt',
        'removed d/new.txt',
      ]);

      const history = await pathHistory(set, 'a.txt');
      expect(history.map((v) => v.snapshots.map((s) => s.stamp))).toEqual([
        [runs[0]],
        [runs[1]],
        [runs[2], runs[3]],
      ]);
      expect(history.map((v) => [v.entry.size, v.entry.mode & 0o777, v.entry.mtimeSec])).toEqual([
        [3, 0o644 & ~process.umask(), 1_700_000_000],
        [7, 0o644 & ~process.umask(), 1_700_000_100],
        [7, 0o600, 1_700_000_100],
      ]);
      expect((await pathHistory(set, 'b.txt')).map((v) => v.snapshots.length)).toEqual([1]);
      expect((await pathHistory(set, 'd/new.txt')).map((v) => v.snapshots.length)).toEqual([3]);
      // A path inside the snapshots is relative, as ls and restore --subdir say too.
      await expect(pathHistory(set, '/d/new.txt')).rejects.toThrow(/must be relative/);
      expect(await pathHistory(set, 'never.txt')).toEqual([]);
      await expect(pathHistory(set, '../a.txt')).rejects.toThrow(/\.\./);
    } finally {
      for (const m of [m1, m2, m3, m4]) m!.close();
    }
    // The trees were really gone: a restore of the hollow snapshot holds nothing.
    expect(fs.readdirSync(set.snapshotDir('daily', runs[3]!))).toEqual([]);
  });
});

// ---- selectors ------------------------------------------------------------------------------

describe('selectors', () => {
  it('latest, <interval>.<n>, a stamp and a BackupId select the right snapshot', async () => {
    const { base, src, dst } = setup({ 'which.txt': file('one') });
    const made: Record<string, string> = {};
    for (const [id, interval, content] of [
      ['run-one', 'daily', 'one'],
      ['run-two', 'daily', 'two'],
      ['run-three', 'weekly', 'three'],
    ] as const) {
      fs.writeFileSync(path.join(src, 'which.txt'), content);
      const r = await backup({ source: src, destination: dst, interval, backupId: id });
      expect(r.Status).toBe('Success');
      made[content] = r.Snapshot!;
    }
    let n = 0;
    const pick = async (snapshot: string): Promise<[string, string]> => {
      const t = path.join(base, `t${++n}`);
      const { r } = await restoreLogged({
        destination: dst,
        snapshot,
        target: t,
        subdir: 'which.txt',
      });
      return [fs.readFileSync(path.join(t, 'which.txt'), 'utf8'), r.snapshot.stamp];
    };
    const cases: Array<[string, string]> = [
      ['latest', 'three'],
      ['daily.0', 'two'],
      ['daily.1', 'one'],
      ['weekly.0', 'three'],
      [made.one!, 'one'],
      [made.two!, 'two'],
      ['run-one', 'one'],
      ['run-two', 'two'],
      ['run-three', 'three'],
    ];
    for (const [sel, want] of cases) expect(await pick(sel), sel).toEqual([want, made[want]]);

    const [v] = await verify({ destination: dst, snapshot: 'run-one' });
    expect(v!.snapshot.stamp).toBe(made.one);

    const before = fingerprint(base);
    for (const bad of [
      'daily.2',
      'weekly.1',
      'hourly.0',
      'nope',
      '20000101T000000Z',
      'daily.x',
      '',
    ]) {
      await expectBadInput(
        restore({ destination: dst, snapshot: bad, target: path.join(base, 'bad') }),
      );
      await expectBadInput(verify({ destination: dst, snapshot: bad }));
    }
    expect(fingerprint(base)).toEqual(before);
    await expectBadInput(
      restore({
        destination: dst,
        label: 'no-such-label',
        snapshot: 'latest',
        target: path.join(base, 'bad'),
      }),
    );
    expect(fingerprintOrNone(path.join(base, 'bad'))).toEqual(['<none>']);
  });
});

// ---- adopt ----------------------------------------------------------------------------------

describe("adopt: the original solution's daily.N set", () => {
  it('becomes snapshots in place, copying no data; each restores to its day', async () => {
    const base = tmpDir('efs-adopt-');
    const o = buildOriginalSet(base, 'projects');
    // The set holds each day as it was (the fixture is right).
    for (const day of [0, 1, 2])
      expect(
        diffTrees(o.days[day]!, path.join(o.dir, `daily.${2 - day}`)),
        `day ${day + 1}`,
      ).toEqual([]);
    const inodes = [0, 1, 2].map((n) => fileInodes(path.join(o.dir, `daily.${n}`)));
    // The original set shares unchanged files across days, as rsync --link-dest made it.
    expect(inodes[0]!.get('keep.txt')).toBe(inodes[2]!.get('keep.txt'));

    const adopted = adopt({ destination: o.destination, label: o.label });
    expect(adopted.map((a) => `${a.from} -> ${a.interval}/${a.stamp}`)).toEqual([
      `daily.2 -> daily/${DAY_STAMPS[0]}`,
      `daily.1 -> daily/${DAY_STAMPS[1]}`,
      `daily.0 -> daily/${DAY_STAMPS[2]}`,
    ]);
    const set = new BackupSet(o.destination, o.label);
    expect(fs.readdirSync(o.dir).sort()).toEqual(['.efs-backup', 'daily', 'latest']);
    expect(fs.readlinkSync(set.latestLink)).toBe(`daily/${DAY_STAMPS[2]}`);
    expect(fs.statSync(o.dir).mode & 0o777).toBe(0o700);

    // No file data copied: every file is the inode it was.
    DAY_STAMPS.forEach((stamp, day) => {
      const now = fileInodes(set.snapshotDir('daily', stamp));
      expect(now, `day ${day + 1}`).toEqual(inodes[2 - day]);
    });

    // daily.2 is day 1, daily.1 day 2, daily.0 and latest day 3.
    const selectors: Array<[string, number]> = [
      ['daily.2', 0],
      ['daily.1', 1],
      ['daily.0', 2],
      ['latest', 2],
      [DAY_STAMPS[0]!, 0],
    ];
    for (const [sel, day] of selectors) {
      const t = path.join(base, 'restored', sel);
      const r = await restore({
        destination: o.destination,
        label: o.label,
        snapshot: sel,
        target: t,
      });
      expect(r.warnings, sel).toEqual([]);
      expect(rsyncDifferences(o.days[day]!, t), sel).toEqual([]);
      expect(diffTrees(o.days[day]!, t), sel).toEqual([]);
    }

    const results = await verify({ destination: o.destination, label: o.label, all: true });
    expect(results).toHaveLength(3);
    for (const v of results) expect(v.problems, v.snapshot.stamp).toEqual([]);

    // history and diff work on adopted snapshots.
    const history = await pathHistory(set, 'change.txt');
    expect(history.map((v) => v.entry.size)).toEqual([12, 20, 3]);

    // A following backup links unchanged files to the newest adopted snapshot.
    fs.writeFileSync(path.join(o.src, 'change.txt'), 'day 4\n');
    const next = await backup({ source: o.src, destination: o.destination, label: o.label });
    expect(next.Status, next.Message).toBe('Success');
    expect(next.NumberOfFilesTransferred).toBe(1);
    const newest = set.snapshotDir('daily', DAY_STAMPS[2]!);
    for (const rel of ['keep.txt', 'owned', 'mode.sh', 'pair/a', 'pair/b', 'docs/a.md', 'day3.txt'])
      expect(fs.lstatSync(path.join(next.snapshotPath!, rel)).ino, rel).toBe(
        fs.lstatSync(path.join(newest, rel)).ino,
      );
    expect(rsyncDifferences(o.src, next.snapshotPath!)).toEqual([]);
  });

  it('keeps the days in order when every daily.N has the same mtime', async () => {
    const base = tmpDir('efs-adopt-');
    const same = new Date('2023-07-01T08:00:00Z');
    const o = buildOriginalSet(base, 'efs-backup', [same, same, same]);
    const adopted = adopt({ destination: o.destination, label: o.label });
    expect(adopted.map((a) => `${a.from} ${a.stamp}`)).toEqual([
      'daily.2 20230701T080000Z',
      'daily.1 20230701T080001Z',
      'daily.0 20230701T080002Z',
    ]);
    for (const [sel, day] of [
      ['daily.2', 0],
      ['daily.1', 1],
      ['latest', 2],
    ] as const) {
      const t = path.join(base, 'restored', sel);
      await restore({ destination: o.destination, snapshot: sel, target: t });
      expect(rsyncDifferences(o.days[day]!, t), sel).toEqual([]);
      expect(diffTrees(o.days[day]!, t), sel).toEqual([]);
    }
  });

  it('adopts names that are not UTF-8, byte for byte, and restores them', async () => {
    const base = tmpDir('efs-adopt-');
    const set = path.join(base, 'dst', 'efs-backup', 'daily.0');
    fs.mkdirSync(set, { recursive: true });
    const bad = Buffer.from('n\xff', 'latin1');
    fs.writeFileSync(Buffer.concat([Buffer.from(`${set}/`), bad]), 'bytes');
    fs.writeFileSync(path.join(set, 'n\uFFFD'), 'valid');
    fs.symlinkSync(Buffer.from('t\xfe', 'latin1'), path.join(set, 'link'));
    const adopted = adopt({ destination: path.join(base, 'dst'), label: 'efs-backup' });
    expect(adopted).toHaveLength(1);
    const [v] = await verify({ destination: path.join(base, 'dst') });
    expect(v!.problems).toEqual([]);
    expect(v!.entries).toBe(3);
    const t = path.join(base, 'restored');
    await restore({ destination: path.join(base, 'dst'), snapshot: 'latest', target: t });
    const names = fs.readdirSync(t, { encoding: 'buffer' }).map((b) => b.toString('latin1'));
    expect(names.sort()).toEqual(
      ['link', 'n\xff', Buffer.from('n\uFFFD').toString('latin1')].sort(),
    );
    expect(fs.readFileSync(Buffer.concat([Buffer.from(`${t}/`), bad]), 'utf8')).toBe('bytes');
    expect(fs.readlinkSync(path.join(t, 'link'), { encoding: 'buffer' }).toString('latin1')).toBe(
      't\xfe',
    );
  });

  it('refuses a label with no daily.N directories (BAD_INPUT), writing nothing', async () => {
    const base = tmpDir('efs-adopt-');
    fs.mkdirSync(path.join(base, 'dst', 'plain', 'something'), { recursive: true });
    const before = fingerprint(base);
    await expectBadInput(
      Promise.resolve().then(() => adopt({ destination: path.join(base, 'dst'), label: 'plain' })),
    );
    await expectBadInput(
      Promise.resolve().then(() =>
        adopt({ destination: path.join(base, 'dst'), label: 'missing' }),
      ),
    );
    expect(fingerprint(base)).toEqual(before);
  });
});
