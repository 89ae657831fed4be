/**
 * Resumable runs of the command line: a run killed with SIGKILL at several points, or stopped
 * by SIGTERM, leaves its `.partial`; the next run continues it and ends with a snapshot equal to
 * the source, no partial and no journal, the complete snapshots before it untouched.
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
import { BackupSet, type BackupFigures } from '@efs-backup/core';
import {
  copyableCount,
  countEntries,
  createBigTree,
  modifyBigTree,
  type BigTreeInfo,
} from '../../core/test/fixtures/big-tree.js';
import { diffStates, readTree, type EntryState } from '../../core/test/fixtures/tree.js';
import { expectCleanSnapshot, latestOf, partialsIn } from '../../core/test/fixtures/resume.js';

const BIN = fileURLToPath(new URL('../bin/efs-backup.cjs', import.meta.url));

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
      expectCleanSnapshot(src, set, 'daily', record.Snapshot);
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
      readTree(expectCleanSnapshot(src, set, 'daily', first.record.Snapshot)),
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
      const snap = expectCleanSnapshot(src, set, 'daily', record.Snapshot);
      // Every complete snapshot made before is exactly what it was.
      for (const [stamp, state] of kept) {
        expect(diffStates(state, readTree(set.snapshotDir('daily', stamp))), stamp).toEqual([]);
      }
      kept.set(record.Snapshot!, readTree(snap));
      expect(set.snapshots()).toHaveLength(kept.size);
    }
  });
});

describe('a run stopped by SIGTERM keeps its partial, and the next run resumes it', () => {
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
    expectCleanSnapshot(src, set, 'daily', again.record.Snapshot);
  });
});
