/**
 * The journal (`.efs-backup/manifests/<stamp>.journal`) is what the manifest is made of: a run
 * that cannot write or open it must fail, commit nothing, and leave the earlier snapshots as
 * they were; the next run without the fault must succeed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  backup,
  cleanup,
  copyTree,
  describeRun,
  latestDir,
  rsyncDiff,
  runCli,
  skipReason,
  smallTree,
  snapshotDir,
  snapshots,
  sourceAndDestination,
  tempDir,
  verifyClean,
} from './harness.js';

const skip = skipReason('faultfs', 'rsync');
let base = '';
afterEach(() => cleanup(base));
beforeAll(() => {
  const r = runCli(['--version']);
  if (r.status !== 0) throw new Error(`the CLI does not run: ${describeRun(r)}`);
});

describe.skipIf(skip)('journal write error (write:.journal:EIO)', () => {
  it('first backup: exit 3 Failed naming the journal, nothing committed; then a clean run', () => {
    let src: string, dst: string;
    ({ base, src, dst } = sourceAndDestination('efs-faults-journal-', 30));

    const r = backup(src, dst, { faults: 'write:.journal:EIO' });
    expect(r.status, describeRun(r)).toBe(3);
    expect(r.json?.Status, describeRun(r)).toBe('Failed');
    expect(String(r.json?.Message), describeRun(r)).toMatch(/journal/i);
    expect(String(r.json?.Message), describeRun(r)).toMatch(/EIO|i\/o error|write/i);
    expect(snapshots(dst), 'no snapshot may be committed').toEqual([]);

    const again = backup(src, dst);
    expect(again.status, describeRun(again)).toBe(0);
    expect(again.json?.Status).toBe('Success');
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    const v = verifyClean(dst);
    expect(v.ok, v.output).toBe(true);
  });

  it('incremental backup: exit 3 Failed, the earlier snapshot intact; then a clean run', () => {
    base = tempDir('efs-faults-journal-');
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    const before = path.join(base, 'before');
    smallTree(src, 30);
    fs.mkdirSync(dst);
    const first = backup(src, dst);
    expect(first.status, describeRun(first)).toBe(0);
    const firstStamp = String(first.json?.Snapshot);
    copyTree(src, before);

    // Change the source so the second run has work of its own to journal.
    smallTree(path.join(src, 'added'), 10, 'v2');

    const r = backup(src, dst, { faults: 'write:.journal:EIO' });
    expect(r.status, describeRun(r)).toBe(3);
    expect(r.json?.Status, describeRun(r)).toBe('Failed');
    expect(String(r.json?.Message), describeRun(r)).toMatch(/journal/i);
    expect(snapshots(dst), 'no new snapshot may be committed').toEqual([firstStamp]);
    expect(rsyncDiff(before, snapshotDir(dst, firstStamp))).toEqual([]);
    const v0 = verifyClean(dst, undefined, firstStamp);
    expect(v0.ok, v0.output).toBe(true);

    const again = backup(src, dst);
    expect(again.status, describeRun(again)).toBe(0);
    expect(again.json?.Status).toBe('Success');
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    const v = verifyClean(dst);
    expect(v.ok, v.output).toBe(true);
  });
});

describe.skipIf(skip)('journal cannot be opened (open:.journal:EPERM) on an incremental', () => {
  it('the process exits 3 (within 30 s) and the earlier snapshot is intact', () => {
    let src: string, dst: string;
    ({ base, src, dst } = sourceAndDestination('efs-faults-journal-', 30));
    const first = backup(src, dst);
    expect(first.status, describeRun(first)).toBe(0);
    smallTree(path.join(src, 'added'), 5, 'v2');

    const r = backup(src, dst, { faults: 'open:.journal:EPERM', timeoutMs: 30_000 });
    expect(r.timedOut, `still running after 30 s: ${describeRun(r)}`).toBe(false);
    expect(r.status, describeRun(r)).toBe(3);
    expect(r.json?.Status, describeRun(r)).toBe('Failed');
    expect(snapshots(dst)).toEqual([String(first.json?.Snapshot)]);

    const again = backup(src, dst);
    expect(again.status, describeRun(again)).toBe(0);
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
  }, 60_000);
});
