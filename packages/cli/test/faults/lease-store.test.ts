/**
 * The lease store of a shared run (`--workers N` on a local disk: SQLite in the set's
 * `.efs-backup/`) cannot be written: its disk is full. The run ends Failed at once, naming the
 * store, every worker with it; the snapshots there are untouched; the next run commits. And the
 * lease files cleared while another worker still writes one: no warning.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  backup,
  cleanup,
  copyTree,
  describeRun,
  rsyncDiff,
  skipReason,
  snapshotDir,
  snapshots,
  sourceAndDestination,
  verifyClean,
} from './harness.js';

const skip = skipReason('faultfs', 'rsync');
let base = '';
afterEach(() => cleanup(base));

const WORKERS = ['--workers', '3'];

describe.skipIf(skip)('the lease store cannot be written (write:leases.sqlite:ENOSPC)', () => {
  // Each process of the run counts its own writes to the store: the first one (its schema and
  // the run's begin), one made as the first units are shared out, and one among later units'.
  for (const skipped of [0, 5, 20, 150]) {
    it(`after ${skipped} writes to it: the run ends Failed at once naming the store, the snapshot before untouched; the next run commits`, () => {
      let src: string, dst: string;
      ({ base, src, dst } = sourceAndDestination('efs-faults-leases-', 200));
      const first = backup(src, dst, {}, WORKERS);
      expect(first.status, describeRun(first)).toBe(0);
      const before = path.join(base, 'before');
      copyTree(src, before);
      fs.writeFileSync(path.join(src, 'd1', 'new.txt'), 'new\n');

      // The lease lasts its default minute: a worker left waiting for a run never begun (seen
      // before the fix: the command waited for it) ends only then, past the timeout.
      const r = backup(
        src,
        dst,
        { faults: `write:leases.sqlite:ENOSPC:skip=${skipped}:times=1`, timeoutMs: 40_000 },
        [...WORKERS, '--max-ops', '2000'],
      );
      expect(r.timedOut, describeRun(r)).toBe(false);
      expect(r.status, describeRun(r)).toBe(3);
      expect(r.json?.Status, describeRun(r)).toBe('Failed');
      expect(String(r.json?.Message)).toMatch(/leases\.sqlite: database or disk is full/);
      expect(snapshots(dst)).toEqual([first.json!.Snapshot]);
      expect(rsyncDiff(before, snapshotDir(dst, String(first.json!.Snapshot)))).toEqual([]);
      const v = verifyClean(dst);
      expect(v.ok, v.output).toBe(true);

      const next = backup(src, dst, {}, WORKERS);
      expect(next.status, describeRun(next)).toBe(0);
      expect(next.json?.Status).toBe('Success');
      expect(rsyncDiff(src, snapshotDir(dst, String(next.json!.Snapshot)))).toEqual([]);
      const w = verifyClean(dst);
      expect(w.ok, w.output).toBe(true);
    });
  }
});

// The committing worker clears the lease files while another worker of the run may still be
// writing one (a temp file on its way to a rename, a last heartbeat): the folder's removal then
// meets a name it did not list. Seen once in twelve runs here as a warning that made a good run
// SuccessWithWarnings; ENOTEMPTY from that rmdir is the race's answer, made here every time.
describe.skipIf(skip)('lease files: another worker still writing as the run is cleared', () => {
  for (const folder of ['tmp', 'workers']) {
    it(`rmdir of the store's ${folder}/ answers ENOTEMPTY: the run is a plain Success, and so is the next`, () => {
      let src: string, dst: string;
      ({ base, src, dst } = sourceAndDestination('efs-faults-leases-', 200));
      const files = { EFS_BACKUP_LEASES: 'files' };
      const r = backup(
        src,
        dst,
        { faults: `rmdir:/leases/daily/${folder}:ENOTEMPTY`, env: { ...files, FAULTFS_LOG: '1' } },
        WORKERS,
      );
      // The fault was met (a plain Success proves nothing without it).
      expect(r.stderr).toMatch(
        new RegExp(`faultfs: rmdir\\(.*/leases/daily/${folder}\\) -> Directory not empty`),
      );
      expect(r.status, describeRun(r)).toBe(0);
      expect(r.json?.Status, describeRun(r)).toBe('Success');
      expect(rsyncDiff(src, snapshotDir(dst, String(r.json!.Snapshot)))).toEqual([]);
      fs.writeFileSync(path.join(src, 'd1', 'new.txt'), 'new\n');
      const next = backup(src, dst, { env: files }, WORKERS);
      expect(next.status, describeRun(next)).toBe(0);
      expect(next.json?.Status, describeRun(next)).toBe('Success');
      expect(rsyncDiff(src, snapshotDir(dst, String(next.json!.Snapshot)))).toEqual([]);
      const v = verifyClean(dst);
      expect(v.ok, v.output).toBe(true);
    });
  }
});
