/**
 * An unchanged file is a hard link into the previous snapshot; when the link cannot be made
 * (EMLINK: the inode has reached the file system's link limit; or the previous copy is gone)
 * the file must be copied instead, and the run still succeeds.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  backup,
  cleanup,
  describeRun,
  latestDir,
  makeWritable,
  rsyncDiff,
  skipReason,
  smallTree,
  tempDir,
  verifyClean,
} from './harness.js';

const skip = skipReason('faultfs', 'rsync');
let base = '';
afterEach(() => cleanup(base));

function setup(): { src: string; dst: string } {
  base = tempDir('efs-faults-link-');
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  smallTree(src, 20);
  const big = Buffer.alloc(2 << 20);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE((i * 2654435761) >>> 0, i);
  fs.writeFileSync(path.join(src, 'big.bin'), big);
  fs.writeFileSync(path.join(src, 'd1', 'small.bin'), 'small\n');
  fs.mkdirSync(dst);
  const first = backup(src, dst);
  expect(first.status, describeRun(first)).toBe(0);
  return { src, dst };
}

function judgeClean(src: string, dst: string): void {
  expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
  const v = verifyClean(dst);
  expect(v.ok, v.output).toBe(true);
}

describe.skipIf(skip)('a link that fails for an unchanged file', () => {
  it('EMLINK on a 2 MiB and a small unchanged file: copied instead, Success', () => {
    const { src, dst } = setup();
    const r = backup(src, dst, { faults: 'link:big.bin:EMLINK;link:small.bin:EMLINK' });
    expect(r.status, describeRun(r)).toBe(0);
    expect(r.json?.Status, describeRun(r)).toBe('Success');
    expect(r.json).toHaveProperty('NumberOfFilesCopiedForLinkLimit');
    expect(Number(r.json?.NumberOfFilesCopiedForLinkLimit), describeRun(r)).toBeGreaterThanOrEqual(
      1,
    );
    judgeClean(src, dst);
    // The next run, without the fault, links again and is still clean.
    const again = backup(src, dst);
    expect(again.status, describeRun(again)).toBe(0);
    judgeClean(src, dst);
  });

  it('the previous copy of big.bin was deleted by hand: copied from the source, Success', () => {
    const { src, dst } = setup();
    const prev = fs.realpathSync(latestDir(dst));
    makeWritable(prev, 'big.bin');
    fs.rmSync(path.join(prev, 'big.bin'));
    const r = backup(src, dst);
    expect(r.status, describeRun(r)).toBe(0);
    expect(r.json?.Status, describeRun(r)).toBe('Success');
    judgeClean(src, dst);
  });
});
