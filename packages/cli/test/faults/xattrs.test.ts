/**
 * Extended attributes and POSIX ACLs: user attributes, access and default ACLs, file
 * capabilities (`security.capability`), an attribute on a directory and one on a symlink. Kept
 * in the snapshot and in a restore (judged by `rsync -aHAXcn`); an attribute change is a new
 * copy, never a change of an old snapshot; a destination without them is told once per run.
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
  snapshotDir,
  snapshots,
  tempDir,
  verifyClean,
} from './harness.js';

const skip =
  skipReason('rsync', 'setfattr', 'getfattr', 'setfacl') ??
  (process.getuid?.() === 0 ? null : 'needs root (security.* and trusted.* attributes)');
if (skip) console.log(`skipped: extended attribute tests: ${skip}`);

let base = '';
afterEach(() => cleanup(base));

const CAPABILITY = '0sAQAAAgAgAAAAAAAAAAAAAAAAAAA='; // cap_net_raw+ep

function attr(p: string, name: string, value: string): void {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, p]);
}

function attrs(p: string): string {
  return execFileSync('getfattr', ['-h', '-d', '-m', '-', '--absolute-names', p])
    .toString()
    .split('\n')
    .slice(1)
    .join('\n');
}

/** A small tree whose entries carry every kind of attribute. */
function attributedTree(src: string): void {
  smallTree(src, 10);
  const f = path.join(src, 'd0', 'f0.txt');
  attr(f, 'user.color', 'red');
  attr(f, 'security.capability', CAPABILITY);
  execFileSync('setfacl', ['-m', 'u:nobody:r', f]);
  attr(path.join(src, 'd1'), 'user.project', 'alpha');
  // A default ACL: inherited by what is made in d2 from now on (f2 before, new.txt after).
  execFileSync('setfacl', ['-d', '-m', 'u:nobody:rx', path.join(src, 'd2')]);
  fs.writeFileSync(path.join(src, 'd2', 'new.txt'), 'inherits the default ACL\n');
  attr(path.join(src, 'link'), 'trusted.note', 'on the symlink itself');
}

describe.skipIf(skip)('extended attributes and ACLs', () => {
  it('are kept in the snapshot and a restore; an attribute change is a new copy, the old snapshot untouched', async () => {
    base = tempDir('efs-faults-xattr-');
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    attributedTree(src);
    fs.mkdirSync(dst);
    const r = backup(src, dst);
    expect(r.json?.Status, describeRun(r)).toBe('Success');
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    expect(attrs(path.join(latestDir(dst), 'd2', 'new.txt'))).toMatch(/posix_acl_access/);
    expect(attrs(path.join(latestDir(dst), 'd2', 'f2.txt'))).toBe(
      attrs(path.join(src, 'd2', 'f2.txt')),
    );
    let v = verifyClean(dst);
    expect(v.ok, v.output).toBe(true);

    const target = path.join(base, 'restored');
    expect(restoredDiff(src, dst, target)).toEqual([]);

    // Only an attribute changes: size, mtime and content stay.
    await new Promise((res) => setTimeout(res, 20));
    const f = path.join(src, 'd0', 'f0.txt');
    attr(f, 'user.color', 'blue');
    const second = backup(src, dst);
    expect(second.json?.Status, describeRun(second)).toBe('Success');
    expect(second.json?.NumberOfFilesTransferred, describeRun(second)).toBe(1);
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    const [older] = snapshots(dst);
    expect(attrs(path.join(snapshotDir(dst, older!), 'd0', 'f0.txt'))).toMatch(/user.color="red"/);
    v = verifyClean(dst);
    expect(v.ok, v.output).toBe(true);
  });

  it('a destination without them (ENOTSUP, as EFS): told once per run, the rest backed up', () => {
    const why = skipReason('strace');
    if (why) return console.log(`skipped: ${why}`);
    base = tempDir('efs-faults-xattr-enotsup-');
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    attributedTree(src);
    fs.mkdirSync(dst);
    const r = backup(src, dst, {
      wrapper: [
        'strace',
        '-f',
        '-qq',
        '-o',
        '/dev/null',
        '-e',
        'inject=lsetxattr:error=EOPNOTSUPP',
      ],
    });
    expect(r.json?.Status, describeRun(r)).toBe('SuccessWithWarnings');
    expect(r.json?.NumberOfWarnings, describeRun(r)).toBe(1);
    expect(r.stderr).toMatch(/destination does not support them/);
    expect(rsyncDiff(src, latestDir(dst), ['--no-A', '--no-X'])).toEqual([]);
    const v = verifyClean(dst);
    expect(v.ok, v.output).toBe(true);
  });

  it('--no-xattrs keeps none, and says nothing', () => {
    base = tempDir('efs-faults-xattr-off-');
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    attributedTree(src);
    fs.mkdirSync(dst);
    const r = backup(src, dst, {}, ['--no-xattrs']);
    expect(r.json?.Status, describeRun(r)).toBe('Success');
    expect(attrs(path.join(latestDir(dst), 'd0', 'f0.txt'))).toBe('');
    expect(rsyncDiff(src, latestDir(dst), ['--no-A', '--no-X'])).toEqual([]);
  });
});
