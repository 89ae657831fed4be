/**
 * Resumable runs (DESIGN.md, "Resumable"; "A run's life"): a run stopped by its window or by an
 * AbortSignal leaves its `.partial`; the next run continues it, ends with a snapshot equal to
 * the source, leaves no partial and no journal behind, and never touches the complete
 * snapshots that were there before. (Runs killed with SIGKILL or stopped by SIGTERM, which need
 * the command line as a process, are in packages/cli/test/resume-cli.test.ts.)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backup, BackupSet } from '../src/index.js';
import { copyableCount, createBigTree, touchAll } from './fixtures/big-tree.js';
import { tmpDir } from './fixtures/tmp.js';
import { createTree, diffStates, diffTrees, dir, file, readTree } from './fixtures/tree.js';
import { expectCleanSnapshot, latestOf, partialsIn } from './fixtures/resume.js';

/*
 * One source tree for the whole file, and every destination kept until the end. Removing
 * tens of thousands of inodes between tests (what tmpDir() does after each test) makes the
 * next test's file creation crawl on ext4 without a journal: for 30 seconds after a delete,
 * every new inode makes the kernel skip the recently deleted ones one by one
 * (ext4 recently_deleted()); a 20 000-file tree then takes 10 s instead of 1 s to write.
 * So the tree is made once, before anything is removed, and removed after the last test.
 * Tests run in order; the incremental test changes the source, which the later tests accept
 * (each compares a snapshot with the source as it is then).
 */
let base = '';
let src = '';

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-resume-'));
  src = path.join(base, 'src');
  createBigTree(src);
});

afterAll(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

let destinations = 0;
/** A fresh destination under the shared base (removed with it, after the last test). */
function newDestination(): string {
  const d = path.join(base, `dst-${++destinations}`);
  fs.mkdirSync(d);
  return d;
}

// ---- 2. window and signal -----------------------------------------------------------------

/**
 * How many files a stopped run and its resumption may both copy. Copies given up when the run
 * stopped are not counted by it; but the files of hard-linked inodes are never resumed (by
 * design: only single-name entries are taken from the journal) — 40 in the big tree — plus the
 * few files in flight when the run stopped.
 */
const SLACK = 40 + 20;

describe('a run stopped by its window or a signal keeps its partial, and the next run resumes it', () => {
  it('engine: a window over at the start, then one that ends partway, each end Incomplete; the next run copies only the rest', async () => {
    const dst = newDestination();
    const set = new BackupSet(dst, 'efs-backup');
    const daily = set.intervalDir('daily');
    const before = await backup({ source: src, destination: dst });
    expect(before.Status).toBe('Success');
    const beforeState = readTree(before.snapshotPath!);
    const latestBefore = latestOf(set);
    // Every file changed since: all of them are copied again.
    touchAll(src, new Date(Date.now() - 3_600_000));
    const total = copyableCount(src);
    const untouched = (): void => {
      expect(latestOf(set)).toBe(latestBefore);
      expect(set.snapshots().map((s) => s.stamp)).toEqual([before.Snapshot]);
    };

    // 1. The run's clock says it started 58 s ago: with a 1-minute window (ending 6 s early),
    // its deadline is past from the first look. (The engine reads the window on the run's own
    // clock, `now`; a clock merely shifted back would give the run its whole window.)
    const startedAgo = Date.now() - 58_000;
    let clockCalls = 0;
    const late = await backup({
      source: src,
      destination: dst,
      windowMinutes: 1,
      now: () => (clockCalls++ === 0 ? new Date(startedAgo) : new Date()),
    });
    expect(late.Status).toBe('Incomplete');
    expect(late.Snapshot).toBeNull();
    expect(late.snapshotPath).toBeNull();
    expect(late.Message).toMatch(/window/);
    expect(late.NumberOfFilesTransferred).toBe(0);
    const partial = partialsIn(daily);
    expect(partial).toHaveLength(1);
    expect(fs.statSync(path.join(daily, partial[0]!)).isDirectory()).toBe(true);
    untouched();

    // 2. A run (resuming that partial) whose window ends a third of the way through: its clock
    // jumps past the deadline then. The engine checks the deadline once a second, and the rest
    // could take less than that, so the run also stalls for just over a second right there (as
    // on a stalled file system): the next check comes before the end.
    let offset = 0;
    const stopped = await backup({
      source: src,
      destination: dst,
      windowMinutes: 1,
      now: () => new Date(Date.now() + offset),
      progressIntervalMs: 10,
      onProgress: (p) => {
        if (offset === 0 && p.entries > total / 3) {
          offset = 60_000;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1100);
        }
      },
    });
    expect(stopped.Status).toBe('Incomplete');
    expect(stopped.Snapshot).toBeNull();
    expect(stopped.Message).toMatch(/window/);
    expect(partialsIn(daily)).toEqual(partial);
    untouched();
    expect(stopped.NumberOfFilesTransferred).toBeGreaterThan(total / 4);
    expect(stopped.NumberOfFilesTransferred).toBeLessThan(total);

    // 3. No window: the run completes the partial, copying only what is not there yet.
    const resumed = await backup({ source: src, destination: dst });
    expect(resumed.Status, resumed.Message).toBe('Success');
    expectCleanSnapshot(src, set, 'daily', resumed.Snapshot);
    expect(resumed.NumberOfFilesTransferred).toBeLessThan(total);
    expect(stopped.NumberOfFilesTransferred + resumed.NumberOfFilesTransferred).toBeLessThanOrEqual(
      total + SLACK,
    );
    expect(diffStates(beforeState, readTree(before.snapshotPath!))).toEqual([]);
  });

  it('engine: an AbortSignal stops a first backup partway; the next run copies only the rest', async () => {
    const dst = newDestination();
    const set = new BackupSet(dst, 'efs-backup');
    const total = copyableCount(src);
    const controller = new AbortController();
    const stopped = await backup({
      source: src,
      destination: dst,
      signal: controller.signal,
      progressIntervalMs: 10,
      onProgress: (p) => {
        if (p.entries > total / 4) controller.abort();
      },
    });
    expect(controller.signal.aborted).toBe(true);
    expect(stopped.Status).toBe('Incomplete');
    expect(stopped.Snapshot).toBeNull();
    expect(stopped.Message).toMatch(/stopped/);
    expect(partialsIn(set.intervalDir('daily'))).toHaveLength(1);
    expect(set.snapshots()).toEqual([]);
    expect(latestOf(set)).toBeNull();
    expect(stopped.NumberOfFilesTransferred).toBeGreaterThan(total / 5);

    const resumed = await backup({ source: src, destination: dst });
    expect(resumed.Status, resumed.Message).toBe('Success');
    expectCleanSnapshot(src, set, 'daily', resumed.Snapshot);
    expect(resumed.NumberOfFilesTransferred).toBeLessThan(total);
    expect(stopped.NumberOfFilesTransferred + resumed.NumberOfFilesTransferred).toBeLessThanOrEqual(
      total + SLACK,
    );
  });

  // Regression: a stop once dropped the records of every unfinished directory, so a directory
  // whose files took longer than one window to copy never completed.
  it('engine: a stopped run journals the files it finished; the next run does not copy them again', async () => {
    const base2 = tmpDir();
    const src2 = path.join(base2, 'src');
    const dst2 = path.join(base2, 'dst');
    const count = 900; // one directory, fewer files than one journal block (1000 entries)
    createTree(src2, {
      flat: dir(
        Object.fromEntries(
          Array.from({ length: count }, (_, i) => [`f${i}`, file(Buffer.alloc(16_384, i))]),
        ),
      ),
    });
    fs.mkdirSync(dst2);
    const controller = new AbortController();
    const stopped = await backup({
      source: src2,
      destination: dst2,
      concurrency: 1,
      // Slow enough (14 MiB at 5 MiB/s) that the run is surely going when it is stopped: at
      // full speed the whole tree was sometimes copied before a progress report came.
      maxMiBps: 5,
      signal: controller.signal,
      progressIntervalMs: 5,
      onProgress: (p) => {
        if (p.entries > 100) controller.abort();
      },
    });
    expect(stopped.Status).toBe('Incomplete');
    expect(stopped.NumberOfFilesTransferred).toBeGreaterThan(50);
    const resumed = await backup({ source: src2, destination: dst2 });
    expect(resumed.Status, resumed.Message).toBe('Success');
    expect(diffTrees(src2, resumed.snapshotPath!)).toEqual([]);
    // The copy given up when the run stopped (one slot) is the only one done twice.
    expect(resumed.NumberOfFilesTransferred).toBeLessThanOrEqual(
      count - stopped.NumberOfFilesTransferred + 1,
    );
  });
});
