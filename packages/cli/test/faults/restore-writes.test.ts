/**
 * A restore whose writes into the target fail: putting a new inode in place (rename), linking
 * a second name after the walk (link), removing an extra with --delete (unlink). Each ends the
 * run as "restore stopped: …" (exit 3), leaves no temporary file in the target, and a rerun
 * without the fault restores the snapshot exactly.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { restoreArgs } from '../helpers.js';
import {
  backup,
  cleanup,
  describeRun,
  rsyncDiff,
  runCli,
  skipReason,
  smallTree,
  tempDir,
} from './harness.js';

const skip = skipReason('faultfs', 'rsync');
let base = '';
afterEach(() => cleanup(base));

function setup(): { src: string; dst: string; target: string } {
  base = tempDir('efs-faults-restore-');
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  smallTree(src, 12);
  fs.linkSync(path.join(src, 'd0', 'f0.txt'), path.join(src, 'd2', 'second-name.txt'));
  fs.mkdirSync(dst);
  const b = backup(src, dst);
  expect(b.status, describeRun(b)).toBe(0);
  const target = path.join(base, 'target');
  fs.mkdirSync(path.join(target, 'gone', 'deeper'), { recursive: true });
  fs.writeFileSync(path.join(target, 'gone', 'deeper', 'x'), 'extra\n');
  return { src, dst, target };
}

/** Every `.efs-restore-*` name below `root`. */
function temporaries(root: string): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    for (const d of fs.readdirSync(p, { withFileTypes: true })) {
      const c = path.join(p, d.name);
      if (d.name.startsWith('.efs-restore-')) out.push(path.relative(root, c));
      else if (d.isDirectory()) walk(c);
    }
  };
  walk(root);
  return out;
}

describe.skipIf(skip)('a restore whose writes into the target fail', () => {
  it.each([
    ['a new inode cannot be put in place (rename EIO)', 'rename:.efs-restore-:EIO', /EIO/],
    ['a second name cannot be linked (link EMLINK)', 'link:.efs-restore-:EMLINK', /EMLINK/],
    ['an extra cannot be removed (unlink EIO)', 'unlink:target/gone/:EIO', /EIO/],
  ])('%s: restore stopped, no temporary left, a rerun is exact', (_what, faults, error) => {
    const { src, dst, target } = setup();
    const r = runCli(restoreArgs(dst, target, '--delete'), { faults });
    expect(r.status, describeRun(r)).toBe(3);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines, describeRun(r)).toHaveLength(1);
    expect(lines[0]).toMatch(/^efs-backup: restore stopped: /);
    expect(lines[0]).toMatch(error);
    expect(temporaries(target)).toEqual([]);

    const again = runCli(restoreArgs(dst, target, '--delete'));
    expect(again.status, describeRun(again)).toBe(0);
    expect(rsyncDiff(src, target)).toEqual([]);
  });
});
