/**
 * verify's damage list and `repair` through the engine's API: what is recorded (snapshot-side
 * inode, content or metadata), one repair per inode however many snapshots share it, the
 * manifest's mode, owner, times and attributes put back after a rewrite (a read-only file, a
 * setuid file, a file capability that a write clears), a symlink's owner, and what a repair
 * leaves standing. Also `entryChanges` naming an attribute change.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup, BackupSet, entryChanges, verify, type ManifestEntry } from '../src/index.js';
import { readDamage } from '../src/damage.js';
import {
  dir,
  file,
  hardlink,
  rsyncDifferences,
  sourceAndDestination,
  symlink,
  type TestEntries,
} from './fixtures/tree.js';

const root = process.getuid?.() === 0;
const hasSetfattr = (() => {
  try {
    execFileSync('setfattr', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** Puts back the times `p` has now, to the microsecond (a Date keeps only milliseconds). */
function keepTimes(p: string): () => void {
  const st = fs.lstatSync(p, { bigint: true });
  const sec = (ns: bigint): number =>
    Number(ns / 1_000_000_000n) + (Number((ns % 1_000_000_000n) / 1000n) * 1000 + 500) / 1e9;
  return () => fs.utimesSync(p, sec(st.atimeNs), sec(st.mtimeNs));
}

/** Flips one byte of `p`, keeping its size, mode and mtime. */
function rot(p: string): void {
  const putBack = keepTimes(p);
  const mode = fs.statSync(p).mode & 0o7777;
  const buf = fs.readFileSync(p);
  buf[1] = buf[1]! ^ 0x40;
  fs.chmodSync(p, 0o600);
  fs.writeFileSync(p, buf);
  fs.chmodSync(p, mode);
  putBack();
}

const ino = (p: string): string => String(fs.lstatSync(p, { bigint: true }).ino);

async function twoSnapshots(entries: TestEntries): Promise<{
  base: string;
  src: string;
  dst: string;
  set: BackupSet;
  older: string;
  newer: string;
}> {
  const { base, src, dst } = sourceAndDestination(entries, 'efs-verify-repair-');
  expect((await backup({ source: src, destination: dst })).Status).toBe('Success');
  fs.writeFileSync(path.join(src, 'changes.txt'), 'the second snapshot differs here\n');
  expect((await backup({ source: src, destination: dst })).Status).toBe('Success');
  const set = new BackupSet(dst, 'efs-backup');
  const [newer, older] = set.snapshots();
  return { base, src, dst, set, older: older!.path, newer: newer!.path };
}

describe('verify records damage; repair heals it in place', () => {
  it('one inode shared by two snapshots: recorded in each, repaired once, both records dropped', async () => {
    const { src, dst, set, older, newer } = await twoSnapshots({
      'shared.txt': file('one inode in both snapshots\n'),
      'readonly.txt': file('a read-only file\n', { mode: 0o444 }),
      'setuid.bin': file('#!/bin/sh\necho hi\n', { mode: 0o4755 }),
      'other.txt': file('never damaged\n'),
    });
    const shared = path.join(newer, 'shared.txt');
    expect(ino(shared)).toBe(ino(path.join(older, 'shared.txt')));
    for (const n of ['shared.txt', 'readonly.txt', 'setuid.bin']) rot(path.join(newer, n));

    const found = await verify({ destination: dst, all: true });
    expect(found.map((v) => v.damage.length)).toEqual([3, 3]);
    const records = readDamage(set);
    expect(records).toHaveLength(6);
    expect(new Set(records.filter((d) => d.path === 'shared.txt').map((d) => d.ino))).toEqual(
      new Set([ino(shared)]),
    );
    expect(found[0]!.damageFile).toBe(path.join(set.dataDir, 'damage.json'));

    const otherCtime = fs.lstatSync(path.join(newer, 'other.txt'), { bigint: true }).ctimeNs;
    const repaired = await verify({ destination: dst, all: true, repair: true, source: src });
    for (const v of repaired) {
      expect(v.notRepaired, v.notRepaired!.join('\n')).toEqual([]);
      expect(v.repaired).toHaveLength(3);
      expect(v.remaining).toEqual([]);
      expect(v.damage).toEqual([]);
    }
    expect(readDamage(set)).toEqual([]);
    expect(fs.lstatSync(path.join(newer, 'other.txt'), { bigint: true }).ctimeNs).toBe(otherCtime);
    expect(fs.statSync(path.join(newer, 'readonly.txt')).mode & 0o7777).toBe(0o444);
    expect(fs.statSync(path.join(newer, 'setuid.bin')).mode & 0o7777).toBe(0o4755);
    expect((await verify({ destination: dst, all: true })).map((v) => v.problems)).toEqual([
      [],
      [],
    ]);
    expect(rsyncDifferences(src, newer)).toEqual([]);
  });

  it('what a repair cannot treat stays: a missing name, a broken hard link; exit-worthy `remaining`', async () => {
    const { src, dst, set, newer } = await twoSnapshots({
      d: dir({ 'a.txt': file('a\n'), 'b.txt': file('b\n') }),
      hard: dir({ first: file('one inode\n'), second: hardlink('hard/first') }),
    });
    rot(path.join(newer, 'd', 'a.txt'));
    const putD = keepTimes(path.join(newer, 'd'));
    fs.rmSync(path.join(newer, 'd', 'b.txt'));
    putD();
    const second = path.join(newer, 'hard', 'second');
    const putHard = keepTimes(path.join(newer, 'hard'));
    execFileSync('cp', ['-p', second, `${second}.copy`]);
    fs.renameSync(`${second}.copy`, second);
    putHard();

    const [v] = await verify({ destination: dst, repair: true, source: src });
    expect(v!.repaired).toEqual(['d/a.txt: content rewritten in place from the source']);
    expect(v!.notRepaired).toEqual([]);
    expect([...v!.remaining!].sort()).toEqual([
      expect.stringMatching(/^changed: hard\/(first|second): no longer a hard link/),
      'missing: d/b.txt',
    ]);
    expect(readDamage(set)).toEqual([]);
  });

  it('a snapshot directory replaced by a symlink is not followed: nothing outside is read or written', async () => {
    const { base, src, dst, newer } = await twoSnapshots({
      d: dir({ 'f.txt': file('in the snapshot\n', { mode: 0o644 }) }),
    });
    // Outside the snapshot: the same name, another mode, another content.
    const outside = path.join(path.dirname(dst), 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'f.txt'), 'outside the snapshot\n', { mode: 0o600 });
    const before = fs.lstatSync(path.join(outside, 'f.txt'), { bigint: true });
    const putRoot = keepTimes(newer);
    fs.renameSync(path.join(newer, 'd'), path.join(base, 'moved-away'));
    fs.symlinkSync(outside, path.join(newer, 'd'));
    putRoot();
    const [v] = await verify({ destination: dst, repair: true, source: src });
    expect(v!.problems).toEqual(['changed: d: type']);
    expect(v!.repaired).toEqual([]);
    expect(v!.remaining).toEqual(['changed: d: type']);
    const after = fs.lstatSync(path.join(outside, 'f.txt'), { bigint: true });
    expect([after.ctimeNs, after.mode]).toEqual([before.ctimeNs, before.mode]);
    expect(fs.readFileSync(path.join(outside, 'f.txt'), 'utf8')).toBe('outside the snapshot\n');
  });

  it.skipIf(!root)('a symlink whose owner changed is put back with lchown', async () => {
    const { src, dst, set, newer } = await twoSnapshots({
      'f.txt': file('f\n'),
      link: symlink('f.txt', { uid: 1500, gid: 1600 }),
    });
    fs.lchownSync(path.join(newer, 'link'), 0, 0);
    const [v] = await verify({ destination: dst });
    expect(v!.problems).toEqual(['changed: link: owner']);
    expect(readDamage(set).map((d) => [d.path, d.what])).toEqual([['link', 'metadata']]);
    const [r] = await verify({ destination: dst, repair: true, source: src });
    expect(r!.repaired).toEqual(['link: metadata put back from the manifest']);
    expect(fs.lstatSync(path.join(newer, 'link')).uid).toBe(1500);
    expect(readDamage(set)).toEqual([]);
  });

  it.skipIf(!root || !hasSetfattr)(
    'a file capability, which a write clears, is put back after the rewrite',
    async () => {
      const { src, dst } = await twoSnapshots({ 'cap.bin': file('pretend binary\n') });
      // The first backup had no capability: add it to the source and back up again.
      execFileSync('setfattr', [
        '-n',
        'security.capability',
        '-v',
        '0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=',
        path.join(src, 'cap.bin'),
      ]);
      const r = await backup({ source: src, destination: dst });
      expect(r.Status).toBe('Success');
      const snap = r.snapshotPath!;
      rot(path.join(snap, 'cap.bin'));
      const [v] = await verify({ destination: dst });
      expect(v!.problems.some((p) => p.startsWith('changed: cap.bin: content'))).toBe(true);
      const [fixed] = await verify({ destination: dst, repair: true, source: src });
      expect(fixed!.notRepaired).toEqual([]);
      expect(fixed!.repaired).toEqual(['cap.bin: content rewritten in place from the source']);
      expect(
        execFileSync('getfattr', ['-n', 'security.capability', path.join(snap, 'cap.bin')], {
          encoding: 'utf8',
        }),
      ).toMatch(/security\.capability=/);
    },
  );
});

describe('entryChanges', () => {
  const e = (xattrs?: Record<string, string>): ManifestEntry => ({
    name: 'f',
    kind: 'f',
    mode: 0o100644,
    uid: 0,
    gid: 0,
    size: 1,
    mtimeSec: 1,
    mtimeNsec: 0,
    data: 'x',
    ...(xattrs ? { xattrs } : {}),
  });
  it('names an attribute change, and only that', () => {
    expect(entryChanges(e({ 'user.a': 'MQ==' }), e({ 'user.a': 'Mg==' }))).toEqual(['xattrs']);
    expect(entryChanges(e(), e({ 'user.a': 'MQ==' }))).toEqual(['xattrs']);
    expect(entryChanges(e({ 'user.a': 'MQ==' }), e({ 'user.a': 'MQ==' }))).toEqual([]);
    expect(entryChanges(e(), e())).toEqual([]);
  });
});
