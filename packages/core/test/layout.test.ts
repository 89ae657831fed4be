import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BackupSet, ensureDir } from '../src/layout.js';
import { tmpDir } from './fixtures/tmp.js';

describe('BackupSet listings', () => {
  it('are read afresh each time, unless remembered; forget() drops what was remembered', () => {
    const dst = tmpDir();
    const set = new BackupSet(dst, 'efs-backup');
    fs.mkdirSync(path.join(set.dir, 'daily', '20260101T000000Z'), { recursive: true });
    expect(set.snapshots().map((s) => s.stamp)).toEqual(['20260101T000000Z']);
    fs.mkdirSync(path.join(set.dir, 'daily', '20260102T000000Z'));
    expect(set.snapshots().map((s) => s.stamp)).toEqual(['20260102T000000Z', '20260101T000000Z']);

    set.remember();
    expect(set.stampsInUse()).toEqual(new Set(['20260101T000000Z', '20260102T000000Z']));
    fs.mkdirSync(path.join(set.dir, 'daily', '.20260103T000000Z.partial'));
    fs.mkdirSync(path.join(set.dir, 'weekly'));
    // What the holder of the lock has not announced is not seen...
    expect(set.hidden('daily', 'partial')).toEqual([]);
    expect(set.intervals()).toEqual(['daily']);
    // ...until it says the set changed.
    set.forget();
    expect(set.hidden('daily', 'partial')).toEqual(['20260103T000000Z']);
    expect(set.intervals().sort()).toEqual(['daily', 'weekly']);
    expect(set.stampsInUse()).toEqual(
      new Set(['20260101T000000Z', '20260102T000000Z', '20260103T000000Z']),
    );
  });

  it('of a folder that cannot be read are empty', () => {
    const set = new BackupSet(tmpDir(), 'missing');
    set.remember();
    expect(set.intervals()).toEqual([]);
    expect(set.names(set.manifestsDir)).toEqual([]);
  });
});

describe('ensureDir', () => {
  it('makes missing folders (and parents) 0700, leaves an existing folder as it is', () => {
    const base = tmpDir();
    const deep = path.join(base, 'a', 'b', 'c');
    ensureDir(deep);
    expect(fs.statSync(deep).isDirectory()).toBe(true);
    expect(fs.statSync(deep).mode & 0o777).toBe(0o700);
    fs.chmodSync(deep, 0o750);
    fs.writeFileSync(path.join(deep, 'kept'), 'x');
    ensureDir(deep);
    expect(fs.statSync(deep).mode & 0o777).toBe(0o750);
    expect(fs.readdirSync(deep)).toEqual(['kept']);
  });

  it('refuses a name that is a file', () => {
    const file = path.join(tmpDir(), 'f');
    fs.writeFileSync(file, 'x');
    expect(() => ensureDir(file)).toThrow(/EEXIST/);
  });
});
