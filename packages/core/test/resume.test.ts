/**
 * Resumable runs (DESIGN.md, "Resumable"; "A run's life"): a run killed with SIGKILL, stopped by
 * its window, by an AbortSignal or by SIGTERM leaves its `.partial`; the next run continues it,
 * ends with a snapshot equal to the source, leaves no partial and no journal behind, and never
 * touches the complete snapshots that were there before.
 *
 * Real directories and real processes: the command line runs as a child process and is killed
 * when its partial holds a given share of the tree's entries (counted on disk, which holds on a
 * slow machine as on a fast one, unlike a timer).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backup, BackupSet, type BackupFigures } from '../src/index.js';
import {
  copyableCount,
  countEntries,
  createBigTree,
  modifyBigTree,
  touchAll,
  type BigTreeInfo,
} from './fixtures/big-tree.js';
import { tmpDir } from './fixtures/tmp.js';
import {
  createTree,
  diffStates,
  diffTrees,
  dir,
  file,
  readTree,
  rsyncDifferences,
  type EntryState,
} from './fixtures/tree.js';

const BIN = fileURLToPath(new URL('../../cli/bin/efs-backup.cjs', import.meta.url));

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
let info: BigTreeInfo;

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-resume-'));
  src = path.join(base, 'src');
  info = createBigTree(src);
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

// ---- the command line as a child process --------------------------------------------------

interface CliExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface Cli {
  child: ChildProcess;
  done: Promise<CliExit>;
  exited: () => boolean;
}

function startCli(args: string[]): Cli {
  const child = spawn(process.execPath, [BIN, 'backup', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let exited = false;
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<CliExit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      exited = true;
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done, exited: () => exited || child.exitCode !== null };
}

function cliArgs(dst: string, label: string): string[] {
  return ['--source', src, '--destination', dst, '--label', label, '--json'];
}

/** Runs the command line to its end; its JSON record. */
async function runCli(args: string[]): Promise<{ exit: CliExit; record: BackupFigures }> {
  const exit = await startCli(args).done;
  let record: BackupFigures;
  try {
    record = JSON.parse(exit.stdout) as BackupFigures;
  } catch {
    throw new Error(
      `no JSON record (exit ${exit.code}, signal ${exit.signal}):\n${exit.stdout}\n${exit.stderr}`,
    );
  }
  return { exit, record };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function partialsIn(intervalDir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(intervalDir);
  } catch {
    return [];
  }
  return names.filter((n) => /^\..+\.partial$/.test(n)).sort();
}

/**
 * Sends `sig` to the child once its partial holds at least `entries` entries. Resolves with
 * how many it held, or null when the child ended first.
 */
async function signalWhen(
  cli: Cli,
  intervalDir: string,
  entries: number,
  sig: NodeJS.Signals,
): Promise<number | null> {
  while (!cli.exited()) {
    const partial = partialsIn(intervalDir).at(-1);
    if (partial) {
      const n = countEntries(path.join(intervalDir, partial));
      if (n >= entries && !cli.exited()) {
        cli.child.kill(sig);
        return n;
      }
    }
    await sleep(5);
  }
  return null;
}

// ---- what every finished run must leave ----------------------------------------------------

function journals(set: BackupSet): string[] {
  return fs.readdirSync(set.manifestsDir).filter((n) => n.endsWith('.journal'));
}

/** The snapshot equals the source; no partial, no journal; `latest` names it. */
function expectCleanSnapshot(set: BackupSet, interval: string, stamp: string | null): string {
  expect(stamp).not.toBeNull();
  const snap = set.snapshotDir(interval, stamp!);
  expect(rsyncDifferences(src, snap)).toEqual([]);
  expect(diffTrees(src, snap)).toEqual([]);
  expect(partialsIn(set.intervalDir(interval))).toEqual([]);
  expect(journals(set)).toEqual([]);
  expect(fs.readlinkSync(set.latestLink)).toBe(`${interval}/${stamp}`);
  return snap;
}

function latestOf(set: BackupSet): string | null {
  try {
    return fs.readlinkSync(set.latestLink);
  } catch {
    return null;
  }
}

/** The command line runs from its build; without one, say so instead of failing obscurely. */
function expectBuilt(): void {
  const r = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(`${BIN} does not run (${r.stderr.trim()}): run \`npm run build\` first`);
}

// ---- 1. crash: SIGKILL at several points ---------------------------------------------------

describe('a run killed with SIGKILL is resumed by the next run', () => {
  beforeAll(expectBuilt);

  it('first backup: killed at about 5%, 30% and 70% of its entries', async () => {
    const dst = newDestination();
    const total = countEntries(src);
    for (const share of [0.05, 0.3, 0.7]) {
      const label = `killed-at-${share * 100}`;
      const set = new BackupSet(dst, label);
      const daily = set.intervalDir('daily');
      const cli = startCli(cliArgs(dst, label));
      const held = await signalWhen(cli, daily, Math.round(total * share), 'SIGKILL');
      const killed = await cli.done;
      expect(held, `${label}: the run ended before it was killed`).not.toBeNull();
      expect(killed.signal).toBe('SIGKILL');
      // Killed: nothing committed, the partial kept for the next run.
      expect(set.snapshots()).toEqual([]);
      expect(latestOf(set)).toBeNull();
      expect(partialsIn(daily)).toHaveLength(1);

      const { exit, record } = await runCli(cliArgs(dst, label));
      expect(exit.code, exit.stderr).toBe(0);
      expect(record.Status).toBe('Success');
      expect(record.NumberOfFiles).toBe(total);
      expect(set.snapshots()).toHaveLength(1);
      expectCleanSnapshot(set, 'daily', record.Snapshot);
      // The stale lock of the killed run was taken over and released.
      expect(fs.existsSync(set.lockFile)).toBe(false);
    }
  });

  it('incremental backups: killed at 5%, at 30%, and at 30% then 70% while resuming; the complete snapshots stay as they were', async () => {
    const dst = newDestination();
    const label = 'incremental';
    const set = new BackupSet(dst, label);
    const daily = set.intervalDir('daily');
    const first = await runCli(cliArgs(dst, label));
    expect(first.exit.code, first.exit.stderr).toBe(0);
    const kept = new Map<string, Map<string, EntryState>>();
    kept.set(
      first.record.Snapshot!,
      readTree(expectCleanSnapshot(set, 'daily', first.record.Snapshot)),
    );

    // Each round changes the source, then kills runs at these shares of the entries (the
    // second kill of the last round hits the run resuming the first one's partial).
    const rounds = [[0.05], [0.3], [0.3, 0.7]];
    for (const [round, kills] of rounds.entries()) {
      const changed = modifyBigTree(src, info, round);
      const total = countEntries(src);
      const latestBefore = latestOf(set);
      for (const share of kills) {
        const cli = startCli(cliArgs(dst, label));
        const held = await signalWhen(cli, daily, Math.round(total * share), 'SIGKILL');
        const killed = await cli.done;
        expect(
          held,
          `round ${round}: the run ended before it was killed at ${share}`,
        ).not.toBeNull();
        expect(killed.signal).toBe('SIGKILL');
        expect(
          set
            .snapshots()
            .map((s) => s.stamp)
            .sort(),
        ).toEqual([...kept.keys()].sort());
        expect(latestOf(set)).toBe(latestBefore);
        expect(partialsIn(daily)).toHaveLength(1);
      }

      if (round === 1) {
        // The source moves on between the crash and the next run: the partial may hold names
        // that are gone now, and must not keep them.
        fs.rmSync(path.join(src, 't20/s4'), { recursive: true });
        fs.rmSync(path.join(src, 't21/top-3.txt'));
        fs.rmSync(path.join(src, 'root-5.dat'));
        fs.writeFileSync(path.join(src, 't22/s5/f010'), 'rewritten after the crash');
        fs.mkdirSync(path.join(src, 't23/s5/new-dir'));
        fs.writeFileSync(path.join(src, 't23/s5/new-dir/new-file'), 'new after the crash');
      }

      const { exit, record } = await runCli(cliArgs(dst, label));
      expect(exit.code, exit.stderr).toBe(0);
      expect(record.Status).toBe('Success');
      expect(record.NumberOfFiles).toBe(countEntries(src));
      // Only what changed is copied (two more files changed after the crash in round 1);
      // whatever the killed run had linked or not, the rest is linked to the last snapshot.
      expect(record.NumberOfFilesTransferred).toBeLessThanOrEqual(changed + 2);
      const snap = expectCleanSnapshot(set, 'daily', record.Snapshot);
      // Every complete snapshot made before is exactly what it was.
      for (const [stamp, state] of kept) {
        expect(diffStates(state, readTree(set.snapshotDir('daily', stamp))), stamp).toEqual([]);
      }
      kept.set(record.Snapshot!, readTree(snap));
      expect(set.snapshots()).toHaveLength(kept.size);
    }
  });
});

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
    expect(resumed.Status).toBe('Success');
    expectCleanSnapshot(set, 'daily', resumed.Snapshot);
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
    expect(resumed.Status).toBe('Success');
    expectCleanSnapshot(set, 'daily', resumed.Snapshot);
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
      signal: controller.signal,
      progressIntervalMs: 5,
      onProgress: (p) => {
        if (p.entries > 100) controller.abort();
      },
    });
    expect(stopped.Status).toBe('Incomplete');
    expect(stopped.NumberOfFilesTransferred).toBeGreaterThan(50);
    const resumed = await backup({ source: src2, destination: dst2 });
    expect(resumed.Status).toBe('Success');
    expect(diffTrees(src2, resumed.snapshotPath!)).toEqual([]);
    // The copy given up when the run stopped (one slot) is the only one done twice.
    expect(resumed.NumberOfFilesTransferred).toBeLessThanOrEqual(
      count - stopped.NumberOfFilesTransferred + 1,
    );
  });

  it('command line: SIGTERM stops the run gracefully (exit 1, Incomplete); the next run completes it', async () => {
    expectBuilt();
    const dst = newDestination();
    const label = 'sigterm';
    const set = new BackupSet(dst, label);
    const total = countEntries(src);
    const cli = startCli(cliArgs(dst, label));
    const held = await signalWhen(
      cli,
      set.intervalDir('daily'),
      Math.round(total * 0.3),
      'SIGTERM',
    );
    const exit = await cli.done;
    expect(held, 'the run ended before SIGTERM was sent').not.toBeNull();
    expect(exit.signal).toBeNull();
    expect(exit.code, exit.stderr).toBe(1);
    const record = JSON.parse(exit.stdout) as BackupFigures;
    expect(record.Status).toBe('Incomplete');
    expect(record.Snapshot).toBeNull();
    expect(partialsIn(set.intervalDir('daily'))).toHaveLength(1);
    expect(set.snapshots()).toEqual([]);
    expect(fs.existsSync(set.lockFile)).toBe(false);

    const again = await runCli(cliArgs(dst, label));
    expect(again.exit.code, again.exit.stderr).toBe(0);
    expect(again.record.Status).toBe('Success');
    expect(again.record.NumberOfFilesTransferred).toBeLessThan(copyableCount(src));
    expectCleanSnapshot(set, 'daily', again.record.Snapshot);
  });
});
