/**
 * Backups that heal: `verify` remembers the damage it finds (`.efs-backup/damage.json`), the
 * next backup copies a damaged entry anew instead of linking to it, and `verify --repair`
 * heals an old snapshot in place from the live source (the same inode, so every snapshot
 * sharing it at once), never touching what verified good. Also `verify --source --checksum`,
 * the extended-attribute check, and `diff` naming an attribute change. The real CLI, judged
 * by `rsync -aHAXcn` and by `verify` itself.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { LabelLock } from '@efs-backup/core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  backup,
  cleanup,
  copyTree,
  describeRun,
  latestDir,
  makeWritable,
  rsyncDiff,
  runCli,
  skipReason,
  smallTree,
  snapshotDir,
  snapshots,
  stateDir,
  tempDir,
  verifyClean,
} from './faults/harness.js';

const skip = skipReason('rsync', 'touch');
const xattrSkip =
  skip ??
  skipReason('setfattr', 'getfattr') ??
  (process.getuid?.() === 0 ? null : 'needs root (trusted.* attributes, chown back)');

let base = '';
afterEach(() => cleanup(base));

function setup(prefix: string, n = 10): { src: string; dst: string } {
  base = tempDir(prefix);
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  smallTree(src, n);
  fs.mkdirSync(dst);
  return { src, dst };
}

function verify(dst: string, ...args: string[]): ReturnType<typeof runCli> {
  return runCli(['verify', '--destination', dst, ...args]);
}

/**
 * Bit rot: one byte of `rel` flipped in the snapshot, its size and mtime kept (`touch -r` from
 * the source, which has the same mtime), the modes of the directories on the way put back.
 */
function rot(snap: string, rel: string, src: string): void {
  const dirs = [snap];
  for (const part of path
    .dirname(rel)
    .split('/')
    .filter((p) => p !== '.'))
    dirs.push(path.join(dirs[dirs.length - 1]!, part));
  const modes = dirs.map((d) => fs.statSync(d).mode & 0o7777);
  makeWritable(snap, rel);
  const p = path.join(snap, rel);
  const buf = fs.readFileSync(p);
  buf[5] = buf[5]! ^ 0x20;
  fs.writeFileSync(p, buf);
  execFileSync('touch', ['-r', path.join(src, rel), p]);
  dirs.forEach((d, i) => fs.chmodSync(d, modes[i]!));
}

interface Damage {
  path: string;
  ino: string;
  what: string;
  snapshot: string;
}

function damageList(dst: string): Damage[] | null {
  const f = path.join(stateDir(dst), 'damage.json');
  if (!fs.existsSync(f)) return null;
  return (JSON.parse(fs.readFileSync(f, 'utf8')) as { damage: Damage[] }).damage;
}

const ino = (p: string): string => String(fs.lstatSync(p, { bigint: true }).ino);

/** Every entry's ctime under `root` but those of `except` (relative paths). */
function ctimes(root: string, except: string[]): Map<string, bigint> {
  const out = new Map<string, bigint>();
  const walk = (rel: string): void => {
    const p = rel === '' ? root : path.join(root, rel);
    const st = fs.lstatSync(p, { bigint: true });
    if (!except.includes(rel)) out.set(rel || '.', st.ctimeNs);
    if (st.isDirectory()) for (const n of fs.readdirSync(p)) walk(rel === '' ? n : `${rel}/${n}`);
  };
  walk('');
  return out;
}

describe.skipIf(skip)(
  'verify remembers damage, the next backup and verify --repair heal it',
  () => {
    it('bit rot: recorded, copied anew by the next backup, healed in place in the old snapshot', () => {
      const { src, dst } = setup('efs-repair-rot-');
      // A second name of the rotting file: one inode, one repair for both names.
      fs.linkSync(path.join(src, 'd0', 'f0.txt'), path.join(src, 'd0', 'f0.hard'));
      const first = backup(src, dst);
      expect(first.json?.Status, describeRun(first)).toBe('Success');
      const asBackedUp = path.join(base, 'as-backed-up');
      copyTree(src, asBackedUp);
      const [s1] = snapshots(dst);
      const old = snapshotDir(dst, s1!);
      const A = 'd0/f0.txt';
      const B = 'd2/f2.txt';
      rot(old, A, src);
      rot(old, B, src);
      const inoA = ino(path.join(old, A));

      // verify finds both, says where it recorded them and what the next backup does.
      const v = verify(dst);
      expect(v.status, describeRun(v)).toBe(1);
      expect(v.stdout).toMatch(/^ {2}changed: d0\/f0\.txt: content /m);
      expect(v.stdout).toMatch(/^ {2}changed: d0\/f0\.hard: content /m);
      expect(v.stdout).toMatch(/^ {2}changed: d2\/f2\.txt: content /m);
      expect(v.stdout).toContain(path.join(stateDir(dst), 'damage.json'));
      expect(v.stdout).toMatch(/the next backup copies them anew/);
      const recorded = damageList(dst)!;
      expect(recorded.map((d) => [d.path, d.what, d.snapshot]).sort()).toEqual([
        ['d0/f0.hard', 'content', s1],
        ['d0/f0.txt', 'content', s1],
        ['d2/f2.txt', 'content', s1],
      ]);
      expect(recorded.find((d) => d.path === A)!.ino).toBe(inoA);

      // B changes in the source; A does not: the backup copies A anew rather than linking the rot.
      fs.writeFileSync(path.join(src, B), 'B has changed since the first backup\n');
      const second = backup(src, dst);
      expect(second.json?.Status, describeRun(second)).toBe('Success');
      expect(second.json?.NumberOfFilesRepaired, describeRun(second)).toBe(1);
      expect(String(second.json?.Message)).toMatch(/repaired: 1/);
      expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
      let clean = verifyClean(dst);
      expect(clean.ok, clean.output).toBe(true);
      expect(ino(path.join(latestDir(dst), A))).not.toBe(inoA);

      // --repair heals A in place (same inode); B's source changed: not repaired, exit 1.
      const good = ctimes(old, [A, 'd0/f0.hard', B]);
      const r = verify(dst, '--snapshot', s1!, '--repair', '--source', src);
      expect(r.status, describeRun(r)).toBe(1);
      expect(r.stdout).toMatch(/^ {2}repaired: d0\/f0\.txt: content rewritten in place/m);
      expect(r.stdout).toMatch(/^ {2}repaired: d0\/f0\.hard: /m);
      expect(r.stdout).toMatch(/^ {2}not repaired: d2\/f2\.txt: the source changed/m);
      expect(ino(path.join(old, A))).toBe(inoA);
      expect(fs.readFileSync(path.join(old, A))).toEqual(fs.readFileSync(path.join(src, A)));
      expect(ctimes(old, [A, 'd0/f0.hard', B])).toEqual(good);
      expect(damageList(dst)!.map((d) => d.path)).toEqual([B]);
      const still = verify(dst, '--snapshot', s1!);
      expect(still.status, describeRun(still)).toBe(1);
      expect(still.stdout).toMatch(/^DAMAGED .*: 1 problem\(s\)$/m);
      expect(still.stdout).not.toMatch(/f0\./);

      // B's source back as it was: the second repair heals it too, and the set is whole.
      fs.copyFileSync(path.join(asBackedUp, B), path.join(src, B));
      const again = verify(dst, '--all', '--repair', '--source', src);
      expect(again.status, describeRun(again)).toBe(0);
      expect(again.stdout).toMatch(/^ {2}repaired: d2\/f2\.txt: /m);
      expect(damageList(dst)).toBeNull();
      for (const s of snapshots(dst)) {
        clean = verifyClean(dst, undefined, s);
        expect(clean.ok, clean.output).toBe(true);
      }
      expect(rsyncDiff(asBackedUp, old)).toEqual([]);
      expect(ctimes(old, [A, 'd0/f0.hard', B])).toEqual(good);
    });

    it('metadata damage (a chmod, a chown inside a snapshot) is recorded and put back', () => {
      const { src, dst } = setup('efs-repair-meta-');
      expect(backup(src, dst).json?.Status).toBe('Success');
      const snap = fs.realpathSync(latestDir(dst));
      fs.chmodSync(path.join(snap, 'd1', 'sub', 'f1.txt'), 0o600);
      fs.chmodSync(path.join(snap, 'd3'), 0o700);
      if (process.getuid?.() === 0) fs.chownSync(path.join(snap, 'd4', 'f4.txt'), 1234, 1234);
      const good = ctimes(snap, ['d1/sub/f1.txt', 'd3', 'd4/f4.txt']);
      const v = verify(dst);
      expect(v.status, describeRun(v)).toBe(1);
      expect(v.stdout).toMatch(/^ {2}changed: d1\/sub\/f1\.txt: mode$/m);
      expect(v.stdout).toMatch(/^ {2}changed: d3: mode$/m);
      const recorded = damageList(dst)!;
      expect(new Set(recorded.map((d) => d.what))).toEqual(new Set(['metadata']));
      expect(recorded.map((d) => d.path)).toContain('d1/sub/f1.txt');

      const r = verify(dst, '--repair', '--source', src);
      expect(r.status, describeRun(r)).toBe(0);
      expect(r.stdout).toMatch(/^ {2}repaired: d1\/sub\/f1\.txt: metadata put back/m);
      expect(damageList(dst)).toBeNull();
      const clean = verifyClean(dst);
      expect(clean.ok, clean.output).toBe(true);
      expect(rsyncDiff(src, snap)).toEqual([]);
      expect(ctimes(snap, ['d1/sub/f1.txt', 'd3', 'd4/f4.txt'])).toEqual(good);

      // A clean verify clears what an earlier one recorded.
      fs.chmodSync(path.join(snap, 'd1', 'sub', 'f1.txt'), 0o600);
      expect(verify(dst).status).toBe(1);
      expect(damageList(dst)).toHaveLength(1);
      fs.chmodSync(
        path.join(snap, 'd1', 'sub', 'f1.txt'),
        fs.statSync(path.join(src, 'd1', 'sub', 'f1.txt')).mode & 0o7777,
      );
      expect(verify(dst).status).toBe(0);
      expect(damageList(dst)).toBeNull();
    });

    it('--repair while another run holds the lock: exit 3 with the lock message, nothing written', () => {
      const { src, dst } = setup('efs-repair-lock-');
      expect(backup(src, dst).json?.Status).toBe('Success');
      const snap = fs.realpathSync(latestDir(dst));
      rot(snap, 'd0/f0.txt', src);
      const rotten = fs.readFileSync(path.join(snap, 'd0', 'f0.txt'));
      const lock = LabelLock.acquire(path.join(stateDir(dst), 'lock'), 'a-test-holding-the-lock');
      try {
        const r = verify(dst, '--repair', '--source', src);
        expect(r.status, describeRun(r)).toBe(3);
        expect(r.stderr).toMatch(/another run \(a-test-holding-the-lock/);
        expect(fs.readFileSync(path.join(snap, 'd0', 'f0.txt'))).toEqual(rotten);
      } finally {
        lock.release();
      }
      const r = verify(dst, '--repair', '--source', src);
      expect(r.status, describeRun(r)).toBe(0);
      expect(fs.existsSync(path.join(stateDir(dst), 'lock'))).toBe(false);
      expect(rsyncDiff(src, snap)).toEqual([]);
    });
  },
);

describe.skipIf(skip)('verify --source', () => {
  it('--checksum catches a same-size, same-mtime change that plain --source misses', () => {
    const { src, dst } = setup('efs-repair-checksum-');
    expect(backup(src, dst).json?.Status).toBe('Success');
    const p = path.join(src, 'd3', 'sub', 'f3.txt');
    const ref = path.join(base, 'ref');
    fs.copyFileSync(p, ref);
    execFileSync('touch', ['-r', p, ref]);
    const buf = fs.readFileSync(p);
    buf[0] = buf[0]! ^ 0x01;
    fs.writeFileSync(p, buf);
    execFileSync('touch', ['-r', ref, p]);

    const plain = verify(dst, '--source', src);
    expect(plain.status, describeRun(plain)).toBe(0);
    expect(plain.stdout).toContain('the source matches');
    const sums = verify(dst, '--source', src, '--checksum');
    expect(sums.status, describeRun(sums)).toBe(1);
    expect(sums.stdout).toMatch(/differs from daily\/\S+ in 1 entry:/);
    expect(sums.stdout).toMatch(/^ {2}changed: d3\/sub\/f3\.txt: content$/m);
    // The source's change is not damage of the snapshot.
    expect(damageList(dst)).toBeNull();
  });

  it('bad input: a missing source, --all with --snapshot, --repair or --checksum without --source', () => {
    const { src, dst } = setup('efs-repair-input-', 3);
    expect(backup(src, dst).json?.Status).toBe('Success');
    const nope = path.join(base, 'nope');
    const cases: Array<{ args: string[]; message: RegExp }> = [
      { args: ['--source', nope], message: new RegExp(`source ${nope} does not exist`) },
      { args: ['--all', '--snapshot', 'latest'], message: /--all .*--snapshot latest/ },
      { args: ['--repair'], message: /--repair .*--source/ },
      { args: ['--checksum'], message: /--checksum .*--source/ },
    ];
    for (const c of cases) {
      const r = verify(dst, ...c.args);
      expect(r.status, `${c.args.join(' ')}: ${describeRun(r)}`).toBe(2);
      expect(r.stderr).toMatch(c.message);
      expect(r.stdout).not.toMatch(/removed: /);
    }
    expect(damageList(dst)).toBeNull();
  });
});

describe.skipIf(xattrSkip)('extended attributes in verify and diff', () => {
  const attr = (p: string, ...args: string[]): void =>
    void execFileSync('setfattr', ['-h', ...args, p]);

  it('an attribute added to or removed from a snapshot entry is damage, reported and put back', () => {
    const { src, dst } = setup('efs-repair-xattr-');
    attr(path.join(src, 'd0', 'f0.txt'), '-n', 'user.color', '-v', 'red');
    expect(backup(src, dst).json?.Status).toBe('Success');
    const snap = fs.realpathSync(latestDir(dst));
    attr(path.join(snap, 'd2', 'f2.txt'), '-n', 'user.rot', '-v', 'x');
    attr(path.join(snap, 'link'), '-n', 'trusted.rot', '-v', 'y');
    attr(path.join(snap, 'd0', 'f0.txt'), '-x', 'user.color');
    const good = ctimes(snap, ['d2/f2.txt', 'link', 'd0/f0.txt']);
    const v = verify(dst);
    expect(v.status, describeRun(v)).toBe(1);
    for (const rel of ['d2/f2.txt', 'link', 'd0/f0.txt'])
      expect(v.stdout).toContain(`  changed: ${rel}: extended attributes\n`);
    expect(damageList(dst)).toHaveLength(3);

    const r = verify(dst, '--repair', '--source', src);
    expect(r.status, describeRun(r)).toBe(0);
    const clean = verifyClean(dst);
    expect(clean.ok, clean.output).toBe(true);
    expect(rsyncDiff(src, snap)).toEqual([]);
    expect(ctimes(snap, ['d2/f2.txt', 'link', 'd0/f0.txt'])).toEqual(good);
  });

  it('diff shows an attribute change between two snapshots as a change', () => {
    const { src, dst } = setup('efs-repair-xattr-diff-');
    attr(path.join(src, 'd1', 'sub', 'f1.txt'), '-n', 'user.color', '-v', 'red');
    expect(backup(src, dst).json?.Status).toBe('Success');
    attr(path.join(src, 'd1', 'sub', 'f1.txt'), '-n', 'user.color', '-v', 'blue');
    expect(backup(src, dst).json?.Status).toBe('Success');
    const r = runCli(['diff', 'daily.1', 'daily.0', '--destination', dst]);
    expect(r.status, describeRun(r)).toBe(0);
    expect(r.stdout).toMatch(/^~ d1\/sub\/f1\.txt \(.*; xattrs\)$/m);
    expect(r.stdout).toMatch(/0 added, 0 removed, 1 changed/);
    const j = runCli(['diff', 'daily.1', 'daily.0', '--destination', dst, '--json']);
    expect(JSON.parse(j.stdout)).toEqual([
      expect.objectContaining({ change: 'changed', path: 'd1/sub/f1.txt', what: ['xattrs'] }),
    ]);
  });
});
