import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { entryOf, sameInodeState, toMeta, unchanged, type Meta } from '../src/change.js';
import { LinkGroups } from '../src/link-groups.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-change-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const stat = (p: string): Meta => toMeta(fs.lstatSync(p, { bigint: true }));

describe('toMeta', () => {
  it('gives each kind its manifest kind, and null for what is not backed up', () => {
    fs.writeFileSync(path.join(dir, 'f'), 'abc');
    fs.mkdirSync(path.join(dir, 'd'));
    fs.symlinkSync('f', path.join(dir, 'l'));
    expect(stat(path.join(dir, 'f'))).toMatchObject({ kind: 'f', size: 3, nlink: 1, inode: '' });
    expect(stat(path.join(dir, 'd'))).toMatchObject({ kind: 'd', size: 0 });
    expect(stat(path.join(dir, 'l'))).toMatchObject({ kind: 'l', size: 1 });
    expect(stat('/dev/null').kind).toBeNull();
  });

  it('keys only files with more than one name by inode, and keeps their ctime', () => {
    const a = path.join(dir, 'a');
    fs.writeFileSync(a, 'x');
    fs.linkSync(a, path.join(dir, 'b'));
    const m = stat(a);
    const st = fs.lstatSync(a, { bigint: true });
    expect(m.inode).toBe(`${st.dev}:${st.ino}`);
    expect(BigInt(m.ctimeSec) * 1_000_000_000n + BigInt(m.ctimeNsec)).toBe(st.ctimeNs);
  });

  it("keeps the source's inode number (as a decimal string) and ctime of a file, not of a directory", () => {
    const p = path.join(dir, 'f');
    const st = fs.lstatSync(p, { bigint: true });
    const m = stat(p);
    expect(m.ino).toBe(String(st.ino));
    expect(BigInt(m.ctimeSec) * 1_000_000_000n + BigInt(m.ctimeNsec)).toBe(st.ctimeNs);
    expect(entryOf('f', m, 'd')).toMatchObject({
      ino: m.ino,
      ctimeSec: m.ctimeSec,
      ctimeNsec: m.ctimeNsec,
    });
    const d = stat(path.join(dir, 'd'));
    expect(d).toMatchObject({ ino: '', ctimeSec: 0, ctimeNsec: 0 });
    expect(entryOf('d', d, '')).not.toHaveProperty('ino');
  });

  it('splits times before 1970 into floored seconds and positive nanoseconds', () => {
    const p = path.join(dir, 'old');
    fs.writeFileSync(p, '');
    fs.utimesSync(p, '-1.25', '-1.25');
    expect(stat(p)).toMatchObject({ mtimeSec: -2, mtimeNsec: 750_000_000 });
  });
});

describe('unchanged', () => {
  const base = (): Meta => {
    const p = path.join(dir, 'u');
    fs.writeFileSync(p, 'same');
    return stat(p);
  };

  it('is the same type, size, mtime, mode, owner and (a symlink) target', () => {
    const m = base();
    const prev = entryOf('u', m, 'digest');
    expect(unchanged(prev, m, '')).toBe(true);
    expect(unchanged(undefined, m, '')).toBe(false);
    for (const change of [
      { size: m.size + 1 },
      { mtimeNsec: m.mtimeNsec + 1000 },
      { mtimeSec: m.mtimeSec - 1 },
      { mode: m.mode ^ 0o004 },
      { uid: m.uid + 1 },
      { gid: m.gid + 1 },
      { ino: String(BigInt(m.ino) + 1n) },
      { ctimeNsec: (m.ctimeNsec + 1) % 1_000_000_000 },
      { ctimeSec: m.ctimeSec + 1 },
    ]) {
      expect(unchanged(prev, { ...m, ...change }, ''), JSON.stringify(change)).toBe(false);
    }
    const link: Meta = { ...m, kind: 'l' };
    expect(unchanged(entryOf('u', link, 'to-a'), link, 'to-a')).toBe(true);
    expect(unchanged(entryOf('u', link, 'to-a'), link, 'to-b')).toBe(false);
  });

  it('judges an entry without the source identity (adopted, version 1) by size, mtime, mode and owner', () => {
    const m = base();
    const old = entryOf('u', m, 'digest');
    delete old.ino;
    delete old.ctimeSec;
    delete old.ctimeNsec;
    expect(unchanged(old, { ...m, ino: '1', ctimeSec: 0 }, '')).toBe(true);
  });

  it('is changed when the file is rewritten in place with its size and mtime set back', async () => {
    const p = path.join(dir, 'u');
    base();
    fs.utimesSync(p, 1_000_000, 1_000_000);
    const prev = entryOf('u', stat(p), 'digest');
    await new Promise((r) => setTimeout(r, 20)); // past the clock tick of ctime
    fs.writeFileSync(p, 'SAME');
    fs.utimesSync(p, 1_000_000, 1_000_000);
    const now = stat(p);
    expect(now).toMatchObject({
      size: prev.size,
      mtimeSec: prev.mtimeSec,
      mtimeNsec: prev.mtimeNsec,
    });
    expect(unchanged(prev, now, '')).toBe(false);
  });

  it('tells two states of one inode apart by ctime even when size and mtime are kept', () => {
    const m = base();
    expect(sameInodeState(m, { ...m })).toBe(true);
    expect(sameInodeState(m, { ...m, ctimeNsec: (m.ctimeNsec + 1) % 1_000_000_000 })).toBe(false);
    expect(sameInodeState(m, { ...m, size: m.size + 1 })).toBe(false);
  });
});

describe('LinkGroups', () => {
  const meta = (inode: string, nlink: number): Meta => ({
    kind: 'f',
    mode: 0o100644,
    uid: 0,
    gid: 0,
    size: 1,
    mtimeSec: 1,
    mtimeNsec: 0,
    atime: 1,
    mtime: 1,
    nlink,
    ino: '1',
    ctimeSec: 1,
    ctimeNsec: 0,
    inode,
    sparse: false,
  });
  const rec = entryOf('x', meta('1:1', 3), 'digest');

  it('makes the first name met the first, counts the others, and forgets a group met in full', () => {
    const g = new LinkGroups();
    const m = meta('1:1', 3);
    const first = g.meet(m, 'a/x');
    expect(first.first).toBe('a/x');
    expect(g.meet(m, 'b/y')).toBe(first);
    expect(first.seen).toBe(2);
    expect(g.meet(m, 'c/z')).toBe(first);
    // Met under all three names: a fourth meeting opens a new group.
    expect(g.meet(m, 'd/w').first).toBe('d/w');
  });

  it('wakes the names waiting for the first once it is written, with its entry', () => {
    const g = new LinkGroups();
    const m = meta('2:2', 3);
    const own = g.meet(m, 'a/x');
    const later = g.meet(m, 'b/y');
    const woken: string[] = [];
    later.waiters!.push(() => woken.push('b/y'));
    g.firstWritten(m, own, rec);
    expect(woken).toEqual(['b/y']);
    expect(own.record).toBe(rec);
    expect(own.waiters).toBeNull();
  });

  it('lets the next name become first when the first was given up', () => {
    const g = new LinkGroups();
    const m = meta('3:3', 3);
    const own = g.meet(m, 'a/x');
    let woken = 0;
    own.waiters!.push(() => woken++);
    g.firstWritten(m, own, null);
    expect(woken).toBe(1);
    expect(g.meet(m, 'b/y').first).toBe('b/y');
  });
});
