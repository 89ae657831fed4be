/**
 * Scale-out on the command line (`backup --workers N`): N worker processes on this host build
 * one snapshot through the set's lease store (SQLite, the destination being a local disk).
 * Real processes, killed with SIGKILL and stopped with SIGTERM; every snapshot judged by rsync
 * (`-aHcn --numeric-ids`), by the tree's own comparison and by `efs-backup verify`.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackupSet, DATA_DIR } from '@efs-backup/core';
import type { RunRecord } from '@efs-backup/service';
import { countEntries, createBigTree } from '../../core/test/fixtures/big-tree.js';
import { manifestEntries } from '../../core/test/fixtures/manifest-entries.js';
import { expectCleanSnapshot, partialsIn } from '../../core/test/fixtures/resume.js';
import { skipReason } from './faults/harness.js';
import { BIN, cli, requireBuild } from './helpers.js';

let base = '';
let src = '';

beforeAll(() => {
  requireBuild();
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-workers-'));
  src = path.join(base, 'src');
  createBigTree(src, { top: 16, sub: 4, bigFiles: 2, bigSize: 512 * 1024 });
});
afterAll(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

let n = 0;
function destination(): string {
  const d = path.join(base, `dst-${++n}`);
  fs.mkdirSync(d);
  return d;
}

interface Run {
  child: ChildProcess;
  done: Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>;
}

/** `efs-backup backup` as a child process; leases live 1.5 s, so a killed worker's expire soon. */
function start(dst: string, ...extra: string[]): Run {
  return startWith({}, dst, ...extra);
}

/** `efs-backup backup` of the test tree into `dst`, as Node's arguments. */
function backupArgs(dst: string, ...extra: string[]): string[] {
  return [
    BIN,
    'backup',
    '--source',
    src,
    '--destination',
    dst,
    '--concurrency',
    '4',
    '--json',
    ...extra,
  ];
}

function startWith(env: NodeJS.ProcessEnv, dst: string, ...extra: string[]): Run {
  const child = spawn(process.execPath, backupArgs(dst, ...extra), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, EFS_BACKUP_LEASE_MS: '1500', ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<Awaited<Run['done']>>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

async function finished(run: Run): Promise<RunRecord> {
  const r = await run.done;
  expect(r.code, `${r.stderr}\n${r.stdout}`).toBe(0);
  return JSON.parse(r.stdout) as RunRecord;
}

/**
 * Each worker at most 2 000 calls a second: a run that is killed or stopped partway lasts a few
 * seconds however fast the machine, so "partway" comes before its end.
 */
const PACED = ['--max-ops', '2000'];

/** The worker processes a run started (children of its first worker). */
function workerPids(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until the run's partial holds `entries` entries; false when the run ended first. */
async function partialHolds(run: Run, dst: string, entries: number): Promise<boolean> {
  const daily = new BackupSet(dst, 'efs-backup').intervalDir('daily');
  while (run.child.exitCode === null) {
    const p = partialsIn(daily).at(-1);
    if (p && countEntries(path.join(daily, p)) >= entries) return true;
    await sleep(5);
  }
  return false;
}

/** The snapshot is the source's, and verify finds it whole. */
function expectGood(dst: string, r: RunRecord): void {
  expect(r.Status, r.Message).toBe('Success');
  const set = new BackupSet(dst, 'efs-backup');
  expectCleanSnapshot(src, set, 'daily', r.Snapshot);
  const v = cli(['verify', '--destination', dst]);
  expect(v.status, v.stdout + v.stderr).toBe(0);
}

/** A stopped run: Incomplete, nothing committed, its partial kept; then 2 workers commit one correct snapshot. */
async function expectStoppedThenCommitted(
  dst: string,
  stopped: Awaited<Run['done']>,
): Promise<void> {
  expect(stopped.code, stopped.stderr).toBe(1);
  expect((JSON.parse(stopped.stdout) as RunRecord).Status).toBe('Incomplete');
  const set = new BackupSet(dst, 'efs-backup');
  expect(set.snapshots()).toEqual([]);
  expect(partialsIn(set.intervalDir('daily'))).toHaveLength(1);
  expectGood(dst, await finished(start(dst, '--workers', '2')));
}

/** The run's SQLite lease store (a destination on a local disk). */
function leaseFile(dst: string): string {
  return path.join(new BackupSet(dst, 'efs-backup').dir, DATA_DIR, 'leases.sqlite');
}

describe('backup --workers N', () => {
  let plain: Map<string, string>;
  beforeAll(async () => {
    const dst = destination();
    const r = await finished(start(dst));
    plain = await manifestEntries(new BackupSet(dst, 'efs-backup').manifestPath(r.Snapshot!));
  });

  for (const workers of [1, 2, 4]) {
    it(`${workers} worker process(es) make the snapshot one run makes, entry for entry`, async () => {
      const dst = destination();
      const r = await finished(start(dst, '--workers', String(workers)));
      expectGood(dst, r);
      expect(r.NumberOfFiles).toBe(plain.size);
      expect(
        await manifestEntries(new BackupSet(dst, 'efs-backup').manifestPath(r.Snapshot!)),
      ).toEqual(plain);
    });
  }

  it('lease files (the store of workers on several hosts) instead of SQLite: 3 workers, one worker killed, one correct snapshot', async () => {
    const dst = destination();
    const run = startWith({ EFS_BACKUP_LEASES: 'files' }, dst, '--workers', '3', ...PACED);
    expect(await partialHolds(run, dst, Math.round(countEntries(src) * 0.2))).toBe(true);
    const [victim] = workerPids(run.child.pid!);
    expect(victim).toBeDefined();
    process.kill(victim!, 'SIGKILL');
    const r = await finished(run);
    expectGood(dst, r);
    // The run went through lease files on the destination, not the SQLite file.
    const data = path.join(dst, 'efs-backup', '.efs-backup');
    expect(fs.existsSync(path.join(data, 'leases', 'daily'))).toBe(true);
    expect(fs.existsSync(path.join(data, 'leases.sqlite'))).toBe(false);
  });

  it('hard links across units: 1 000 inodes with a second name in another directory stay one inode each', async () => {
    const linked = path.join(base, 'linked');
    for (let d = 0; d < 40; d++) {
      fs.mkdirSync(path.join(linked, `d${d}`), { recursive: true });
      for (let f = 0; f < 100; f++)
        fs.writeFileSync(path.join(linked, `d${d}`, `f${f}`), 'x'.repeat(100 + f));
    }
    fs.mkdirSync(path.join(linked, 'links'));
    for (let d = 0; d < 40; d++)
      for (let f = 0; f < 25; f++)
        fs.linkSync(path.join(linked, `d${d}`, `f${f}`), path.join(linked, 'links', `l${d}-${f}`));
    const dst = destination();
    const run = spawn(
      process.execPath,
      [BIN, 'backup', '--source', linked, '--destination', dst, '--workers', '2', '--json'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    run.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    run.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const code = await new Promise<number | null>((r) => run.on('close', r));
    expect(code, err + out).toBe(0);
    const r = JSON.parse(out) as RunRecord;
    expect(r.Status, r.Message).toBe('Success');
    const set = new BackupSet(dst, 'efs-backup');
    const snap = expectCleanSnapshot(linked, set, 'daily', r.Snapshot);
    expect(fs.statSync(path.join(snap, 'links', 'l7-3')).ino).toBe(
      fs.statSync(path.join(snap, 'd7', 'f3')).ino,
    );
    expect(fs.statSync(path.join(snap, 'd7', 'f3')).nlink).toBe(2);
    const v = cli(['verify', '--destination', dst]);
    expect(v.status, v.stdout + v.stderr).toBe(0);
  });

  it('a worker killed with SIGKILL mid-run: its units are taken over and the run commits', async () => {
    const dst = destination();
    const run = start(dst, '--workers', '3', ...PACED);
    expect(await partialHolds(run, dst, Math.round(countEntries(src) * 0.2))).toBe(true);
    const [victim] = workerPids(run.child.pid!);
    expect(victim, 'the run started no worker process').toBeDefined();
    process.kill(victim!, 'SIGKILL');
    const r = await finished(run);
    expectGood(dst, r);
    // Its units were finished by others, and the run's figures say they were taken over.
    expect(r.WorkerFigures!.reduce((t, w) => t + (w.TakenOver ?? 0), 0)).toBeGreaterThan(0);
  });

  it('the committing worker paused (SIGSTOP) past its leases: its units are taken over, it gives them up when it wakes, and the run commits', async () => {
    const dst = destination();
    const run = start(dst, '--workers', '3', ...PACED);
    expect(await partialHolds(run, dst, Math.round(countEntries(src) * 0.2))).toBe(true);
    await pauseHoldingUnits(run.child, dst);
    // Paused until another worker has begun a second attempt at one of its units (a journal
    // `<unit>.2`): its leases (1.5 s) expired meanwhile.
    const units = new BackupSet(dst, 'efs-backup').manifestsDir;
    const retaken = (): boolean =>
      fs.existsSync(units) &&
      fs
        .readdirSync(units, { recursive: true, encoding: 'utf8' })
        .some((f) => /\.units\/[0-9a-f]\/[0-9a-f]{32}\.[2-9]$/.test(f));
    let taken = false;
    try {
      for (let i = 0; i < 400 && !(taken = retaken()); i++) await sleep(50);
    } finally {
      run.child.kill('SIGCONT');
    }
    expect(taken, 'no unit of the paused worker was taken over in 20 s').toBe(true);
    expectGood(dst, await finished(run));
  });

  it('the first worker killed with SIGKILL: the others finish their part, and the next run (2 workers) commits', async () => {
    const dst = destination();
    const run = start(dst, '--workers', '3', ...PACED);
    expect(await partialHolds(run, dst, Math.round(countEntries(src) * 0.2))).toBe(true);
    const others = workerPids(run.child.pid!);
    run.child.kill('SIGKILL');
    expect((await run.done).signal).toBe('SIGKILL');
    // The started workers notice on their own and end; nothing is committed without the first.
    for (let i = 0; i < 400 && others.some(alive); i++) await sleep(50);
    expect(others.filter(alive)).toEqual([]);
    const set = new BackupSet(dst, 'efs-backup');
    expect(set.snapshots()).toEqual([]);
    expectGood(dst, await finished(start(dst, '--workers', '2')));
  });

  it('4 workers stopped (SIGTERM) keep the partial; 2 workers then commit one correct snapshot', async () => {
    const dst = destination();
    const run = start(dst, '--workers', '4', ...PACED);
    expect(await partialHolds(run, dst, Math.round(countEntries(src) * 0.3))).toBe(true);
    run.child.kill('SIGTERM');
    const stopped = await run.done;
    await expectStoppedThenCommitted(dst, stopped);
  });

  it.skipIf(skipReason('faketime'))(
    "a host whose clock is 30 s off the file server's (lease files): refused (Failed, its record says why) before it writes any of the backup, the snapshots there intact, the next run commits",
    async () => {
      const dst = destination();
      const files = { EFS_BACKUP_LEASES: 'files' };
      const good = await finished(startWith(files, dst, '--workers', '2'));
      const snapshots = () => fs.readdirSync(new BackupSet(dst, 'efs-backup').intervalDir('daily'));
      const before = snapshots();
      for (const offset of ['+30s', '-30s']) {
        const r = spawnSync(
          'faketime',
          ['-f', offset, process.execPath, ...backupArgs(dst, '--workers', '2')],
          { encoding: 'utf8', env: { ...process.env, ...files }, timeout: 60_000 },
        );
        expect(r.status, r.stderr + r.stdout).toBe(3);
        const out = JSON.parse(r.stdout) as RunRecord;
        expect(out.Status).toBe('Failed');
        expect(out.Message).toMatch(
          new RegExp(
            `this host's clock is 3\\d\\.\\d s ${offset.startsWith('+') ? 'ahead of' : 'behind'} the lease store's .*set this host's clock`,
          ),
        );
        expect(snapshots()).toEqual(before);
      }
      expectGood(dst, good);
      const next = await finished(startWith(files, dst, '--workers', '2'));
      expect(next.Snapshot).not.toBe(good.Snapshot);
      expectGood(dst, next);
    },
  );

  it("the SQLite lease store locked by another process for 20 s (longer than SQLite's 15 s busy wait): the workers wait, say so, and the run commits one correct snapshot", async () => {
    const dst = destination();
    const run = start(dst, '--workers', '3', ...PACED);
    // Locked as the units are first shared out: every worker has store calls to make.
    expect(await unitsPublished(run, dst)).toBe(true);
    const unlock = lockLeaseStore(dst);
    try {
      // As a worker stopped inside one of the store's transactions holds it (see pauseHoldingUnits).
      for (let i = 0; i < 400 && run.child.exitCode === null; i++) await sleep(50);
      expect(run.child.exitCode, 'the run ended while its lease store was locked').toBe(null);
    } finally {
      unlock();
    }
    const r = await finished(run);
    expectGood(dst, r);
    expect((await run.done).stderr).toMatch(
      /the lease store .*leases\.sqlite has been locked by another process for \d+ s; waiting/,
    );
  });

  it('stopped (SIGTERM) while its SQLite lease store is locked by another process: the run ends at once, Incomplete, the partial kept; the next run commits', async () => {
    const dst = destination();
    const run = start(dst, '--workers', '3', ...PACED);
    expect(await partialHolds(run, dst, Math.round(countEntries(src) * 0.2))).toBe(true);
    const unlock = lockLeaseStore(dst);
    let stopped: Awaited<Run['done']>;
    try {
      await sleep(2000);
      run.child.kill('SIGTERM');
      // Still locked: the run must end without the store.
      stopped = await Promise.race([
        run.done,
        sleep(10_000).then(() => {
          throw new Error('the run did not end within 10 s of SIGTERM');
        }),
      ]);
    } finally {
      unlock();
    }
    await expectStoppedThenCommitted(dst, stopped);
  });

  it('a directory that keeps growing during the run: the run commits a snapshot true to its manifest, with every file that was there before', async () => {
    const grow = path.join(src, 'growing');
    fs.mkdirSync(grow);
    for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(grow, `before-${i}`), `b${i}`);
    const dst = destination();
    const run = start(dst, '--workers', '3', ...PACED);
    // About 1 000 new files a second, 4 000 at most: growth the run meets while it walks, but
    // bounded. Unbounded (20 every 2 ms) it held the test's own loop in writes: the run's end
    // was seen 20 s late here, 130 000 files on, and on a busy machine not within the timeout.
    let added = 0;
    const writer = setInterval(() => {
      for (let i = 0; i < 5 && added < 4000; i++)
        fs.writeFileSync(path.join(grow, `during-${added++}`), 'd');
      if (added >= 4000) clearInterval(writer);
    }, 5);
    let r: RunRecord;
    try {
      r = await finished(run);
    } finally {
      clearInterval(writer);
    }
    expect(r.Status, r.Message).toBe('Success');
    const snap = new BackupSet(dst, 'efs-backup').snapshotDir('daily', r.Snapshot!);
    for (let i = 0; i < 200; i++)
      expect(fs.existsSync(path.join(snap, 'growing', `before-${i}`))).toBe(true);
    // The run met the growth: files made after it started are in the snapshot.
    expect(fs.readdirSync(path.join(snap, 'growing')).some((f) => f.startsWith('during-'))).toBe(
      true,
    );
    const v = cli(['verify', '--destination', dst]);
    expect(v.status, v.stdout + v.stderr).toBe(0);
    fs.rmSync(grow, { recursive: true, force: true });
  });
});

describe('efs-backup worker --job: joining a run from another host', () => {
  /**
   * A configuration of one job of 2 workers backing up the test tree into `dst`, each making at
   * most 1 000 calls a second: the run lasts seconds, so a worker started once it is under way
   * finds it going on, however fast the machine.
   */
  function config(dst: string): string {
    const file = path.join(base, `workers-${++n}.yaml`);
    fs.writeFileSync(
      file,
      `jobs:\n  - name: shared\n    source: ${src}\n    destination: ${dst}\n    schedule: "0 2 * * *"\n    workers: 2\n    concurrency: 2\n    maxOps: 1000\n`,
    );
    return file;
  }

  it("a worker joins the job's run; the run commits one correct snapshot, whichever worker commits it", async () => {
    const dst = destination();
    const file = config(dst);
    const run = spawn(
      process.execPath,
      [BIN, 'backup', '--job', 'shared', '--config', file, '--json'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    run.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const first: Run = {
      child: run,
      done: new Promise((resolve) =>
        run.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: '' })),
      ),
    };
    expect(await partialHolds(first, dst, 50)).toBe(true);
    const joined = cli(['worker', '--job', 'shared', '--config', file, '--json'], {
      timeout: 120_000,
    });
    expect(joined.status, joined.stderr).toBe(0);
    const mine = JSON.parse(joined.stdout) as { Status: string; share: { worker: string } };
    expect(mine.Status).toBe('Success');
    const r = await finished(first);
    expectGood(dst, r);
  });

  it('with no run going on there is nothing to join: it says so, exit 1, nothing written', () => {
    const dst = destination();
    const file = config(dst);
    const r = cli(['worker', '--job', 'shared', '--config', file]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no run of job shared is going on in .*: nothing to join/);
    expect(fs.readdirSync(dst)).toEqual([]);
  });
});

/**
 * Stops `child` (SIGSTOP) at a moment it holds units of the run's SQLite lease store and none of
 * its locks. A process stopped inside one of the store's transactions holds its write lock, and
 * every other worker of the host waits for it until it wakes (seen here: one pause in five or
 * so); that is SQLite's. One stopped between units holds nothing to take over. What the test is
 * for is a worker that stalls with units leased, outside the store.
 */
async function pauseHoldingUnits(child: ChildProcess, dst: string): Promise<void> {
  const file = leaseFile(dst);
  const owner = `${os.hostname()}:${child.pid}`;
  for (let tries = 0; tries < 50; tries++) {
    child.kill('SIGSTOP');
    // The other workers' transactions last milliseconds: a lock still held after a second is the
    // stopped one's.
    const db = new Database(file, { timeout: 1000 });
    try {
      db.exec('BEGIN IMMEDIATE');
      const held = db
        .prepare("SELECT count(*) AS n FROM lease_units WHERE owner = ? AND status = 'leased'")
        .get(owner) as { n: number };
      db.exec('ROLLBACK');
      if (held.n > 0) return;
    } catch (e) {
      if ((e as { code?: string }).code !== 'SQLITE_BUSY') throw e;
    } finally {
      db.close();
    }
    child.kill('SIGCONT');
    await sleep(10 + tries);
  }
  throw new Error('the run held its lease store, or no unit, at every one of 50 tries to pause it');
}

/** Waits until the run's SQLite lease store holds more units than the root; false when the run ended first. */
async function unitsPublished(run: Run, dst: string): Promise<boolean> {
  const file = leaseFile(dst);
  while (run.child.exitCode === null) {
    if (fs.existsSync(file)) {
      const db = new Database(file, { readonly: true, timeout: 1000 });
      try {
        const { n } = db.prepare('SELECT count(*) AS n FROM lease_units').get() as { n: number };
        if (n > 1) return true;
      } catch (e) {
        // Not made yet (no table), or locked for a moment: looked at again.
        if (!/SQLITE_BUSY|SQLITE_ERROR/.test((e as { code?: string }).code ?? '')) throw e;
      } finally {
        db.close();
      }
    }
    await sleep(5);
  }
  return false;
}

/** Takes the write lock of `dst`'s SQLite lease store (`BEGIN IMMEDIATE`) until the returned function is called. */
function lockLeaseStore(dst: string): () => void {
  const file = leaseFile(dst);
  const db = new Database(file, { timeout: 5000 });
  db.exec('BEGIN IMMEDIATE');
  return () => {
    db.exec('ROLLBACK');
    db.close();
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
