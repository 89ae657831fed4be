/**
 * Modification times before 1970 (negative seconds, with a fraction): files, directories and
 * symlinks of 1960-01-01T00:00:00.123456Z must be kept, to the microsecond, in the snapshot and
 * in a restore.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  backup,
  cleanup,
  describeRun,
  latestDir,
  restoredDiff,
  rsyncDiff,
  skipReason,
  smallTree,
  tempDir,
  verifyClean,
} from './harness.js';

const skip = skipReason('rsync', 'touch');
let base = '';
afterEach(() => cleanup(base));

const WHEN = '1960-01-01T00:00:00.123456Z';
const WHEN_US = BigInt(Date.UTC(1960, 0, 1)) * 1000n + 123_456n;

/** Every entry below `root` (and root), deepest first, gets mtime WHEN (symlinks themselves). */
function backdate(root: string): void {
  const all: string[] = [];
  const walk = (p: string): void => {
    all.push(p);
    if (fs.lstatSync(p).isDirectory()) for (const n of fs.readdirSync(p)) walk(path.join(p, n));
  };
  walk(root);
  for (const p of all.reverse()) execFileSync('touch', ['-h', '-d', WHEN, p]);
}

const mtimeUs = (p: string): bigint => fs.lstatSync(p, { bigint: true }).mtimeNs / 1000n;

describe.skipIf(skip)('mtimes before 1970', () => {
  it('kept in the snapshot and in a restore; verify clean', () => {
    base = tempDir('efs-faults-mtime-');
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    smallTree(src, 12);
    fs.symlinkSync('nowhere', path.join(src, 'd1', 'dangling'));
    backdate(src);
    expect(mtimeUs(path.join(src, 'd0', 'f0.txt'))).toBe(WHEN_US);
    expect(mtimeUs(path.join(src, 'link'))).toBe(WHEN_US);
    expect(mtimeUs(path.join(src, 'd1'))).toBe(WHEN_US);
    fs.mkdirSync(dst);

    const r = backup(src, dst);
    expect(r.status, describeRun(r)).toBe(0);
    expect(r.json?.Status, describeRun(r)).toBe('Success');
    const snap = latestDir(dst);
    expect(rsyncDiff(src, snap)).toEqual([]);
    for (const rel of ['d0/f0.txt', 'link', 'd1', 'd1/dangling', 'empty'])
      expect(mtimeUs(path.join(snap, rel)), rel).toBe(WHEN_US);
    const v = verifyClean(dst);
    expect(v.ok, v.output).toBe(true);

    const target = path.join(base, 'restored');
    expect(restoredDiff(src, dst, target)).toEqual([]);

    // A second backup finds everything unchanged (the times compare equal) and links it.
    const again = backup(src, dst);
    expect(again.status, describeRun(again)).toBe(0);
    expect(again.json?.NumberOfFilesTransferred, describeRun(again)).toBe(0);
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
  });
});
