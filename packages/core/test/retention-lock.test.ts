/**
 * Retention (only after a commit, per interval, never the label's last snapshot) and the
 * label's lock, through the engine API on real directories.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  backup,
  BackupSet,
  EfsBackupError,
  LabelLock,
  prune,
  readLock,
  type BackupResult,
  type BackupRunOptions,
} from '../src/index.js';
import { tmpDir } from './fixtures/tmp.js';
import { createTree, diffTrees, dir, file, sourceAndDestination } from './fixtures/tree.js';

function setup(): { src: string; dst: string; set: BackupSet } {
  const { src, dst } = sourceAndDestination(
    {
      'version.txt': file('v0'),
      docs: dir({
        'readme.md': file('# docs\n'),
        'ro-dir': dir({ x: file('x') }, { mode: 0o555 }),
      }),
    },
    'efs-backup-retention-',
  );
  return { src, dst, set: new BackupSet(dst, 'efs-backup') };
}

const HOUR = 3_600_000;
const T0 = Date.parse('2026-03-01T02:00:00Z');

/** One run starting at `T0 + hours`, after writing `version` into the source. */
async function runAt(
  ctx: { src: string; dst: string },
  hours: number,
  o: Partial<BackupRunOptions> & { version?: string } = {},
): Promise<BackupResult> {
  const { version, ...rest } = o;
  if (version !== undefined) fs.writeFileSync(path.join(ctx.src, 'version.txt'), version);
  const start = new Date(T0 + hours * HOUR);
  return backup({ source: ctx.src, destination: ctx.dst, now: () => start, ...rest });
}

const toStampOf = (d: Date): string =>
  d
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
const stampAt = (hours: number): string => toStampOf(new Date(T0 + hours * HOUR));

const stamps = (set: BackupSet, interval?: string): string[] =>
  set.snapshots(interval).map((s) => s.stamp);

const manifests = (set: BackupSet): string[] =>
  fs
    .readdirSync(set.manifestsDir)
    .filter((n) => n.endsWith('.manifest'))
    .sort();

/** Names in the interval directory that are not complete snapshots (partials, deletions). */
const hiddenIn = (set: BackupSet, interval: string): string[] =>
  fs.readdirSync(set.intervalDir(interval)).filter((n) => n.startsWith('.'));

/** `latest` resolves, and to this snapshot. */
function expectLatest(set: BackupSet, interval: string, stamp: string): void {
  expect(fs.readlinkSync(set.latestLink)).toBe(`${interval}/${stamp}`);
  expect(fs.statSync(set.latestLink).isDirectory()).toBe(true);
}

const versionIn = (set: BackupSet, interval: string, stamp: string): string =>
  fs.readFileSync(path.join(set.snapshotDir(interval, stamp), 'version.txt'), 'utf8');

/**
 * Runs `f` with setInterval faked and advanced by a second on every turn of the event loop, so
 * the engine's once-a-second looks at the clock come at once. Bounded by the real time (`ms`),
 * not by a number of turns: how many turns a run takes depends on how loaded the machine is.
 */
async function withHandDrivenIntervals<T>(f: () => Promise<T>, ms = 30_000): Promise<T> {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  try {
    let settled = false;
    const p = f().finally(() => (settled = true));
    const until = Date.now() + ms;
    while (!settled && Date.now() < until) {
      await new Promise((resolve) => setImmediate(resolve));
      vi.advanceTimersByTime(1000);
    }
    if (!settled) throw new Error(`still running after ${ms / 1000} s`);
    return await p;
  } finally {
    vi.useRealTimers();
  }
}

describe('retention', () => {
  it('--retain 2: after 4 runs the 2 newest snapshots remain, with their manifests', async () => {
    const ctx = setup();
    const { set } = ctx;
    const results: BackupResult[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await runAt(ctx, 24 * i, { retain: 2, version: `v${i}` });
      expect(r.Status, r.Message).toBe('Success');
      expect(r.Snapshot).toBe(stampAt(24 * i));
      results.push(r);
    }
    expect(results.map((r) => r.SnapshotsPruned)).toEqual([0, 0, 1, 1]);
    expect(stamps(set, 'daily')).toEqual([stampAt(72), stampAt(48)]);
    expect(versionIn(set, 'daily', stampAt(72))).toBe('v3');
    expect(versionIn(set, 'daily', stampAt(48))).toBe('v2');
    expectLatest(set, 'daily', stampAt(72));
    expect(diffTrees(ctx.src, set.latestLink + '/')).toEqual([]);
    // The pruned snapshots' manifests went with them; nothing half-deleted is left.
    expect(manifests(set)).toEqual([`${stampAt(48)}.manifest`, `${stampAt(72)}.manifest`]);
    expect(hiddenIn(set, 'daily')).toEqual([]);
    // Retention ran after the commit, and the record says when.
    expect(results[3]!.PruneStartTime).not.toBeNull();
    expect(results[3]!.PruneStopTime).not.toBeNull();
  });

  it('daily runs never prune the weekly snapshots of the same label', async () => {
    const ctx = setup();
    const { set } = ctx;
    const w1 = await runAt(ctx, 0, { interval: 'weekly', retain: 1, version: 'w1' });
    const w2 = await runAt(ctx, 1, { interval: 'weekly', retain: 5, version: 'w2' });
    for (let i = 0; i < 4; i++) {
      const r = await runAt(ctx, 24 * (i + 1), { retain: 1, version: `d${i}` });
      expect(r.Status, r.Message).toBe('Success');
    }
    expect(stamps(set, 'weekly')).toEqual([w2.Snapshot, w1.Snapshot]);
    expect(stamps(set, 'daily')).toEqual([stampAt(96)]);
    expect(versionIn(set, 'weekly', w1.Snapshot!)).toBe('w1');
    expect(manifests(set)).toEqual(
      [w1.Snapshot, w2.Snapshot, stampAt(96)].map((s) => `${s}.manifest`).sort(),
    );
    expectLatest(set, 'daily', stampAt(96));
    // A weekly run with retain 1 prunes the older weeklies and no daily.
    const w3 = await runAt(ctx, 200, { interval: 'weekly', retain: 1, version: 'w3' });
    expect(w3.SnapshotsPruned).toBe(2);
    expect(stamps(set, 'weekly')).toEqual([w3.Snapshot]);
    expect(stamps(set, 'daily')).toEqual([stampAt(96)]);
    expect(manifests(set)).toEqual([`${stampAt(96)}.manifest`, `${w3.Snapshot}.manifest`]);
  });

  it('an Incomplete run prunes nothing; the next complete run does', async () => {
    const ctx = setup();
    const { set } = ctx;
    for (let i = 0; i < 3; i++) await runAt(ctx, i, { version: `v${i}` });
    const before = stamps(set, 'daily');
    expect(before).toHaveLength(3);
    const manifestsBefore = manifests(set);

    const stopped = new AbortController();
    stopped.abort();
    const r = await runAt(ctx, 10, { retain: 1, version: 'v10', signal: stopped.signal });
    expect(r.Status).toBe('Incomplete');
    expect(r.Snapshot).toBeNull();
    expect(r.SnapshotsPruned).toBe(0);
    expect(r.PruneStartTime).toBeNull();
    expect(stamps(set, 'daily')).toEqual(before);
    expect(manifests(set)).toEqual(manifestsBefore);
    expectLatest(set, 'daily', before[0]!);
    expect(hiddenIn(set, 'daily')).toEqual([`.${stampAt(10)}.partial`]);

    const done = await runAt(ctx, 11, { retain: 1 });
    expect(done.Status, done.Message).toBe('Success');
    expect(done.SnapshotsPruned).toBe(3);
    expect(stamps(set, 'daily')).toEqual([done.Snapshot]);
    expect(versionIn(set, 'daily', done.Snapshot!)).toBe('v10');
    expect(hiddenIn(set, 'daily')).toEqual([]);
    expect(manifests(set)).toEqual([`${done.Snapshot}.manifest`]);
    expectLatest(set, 'daily', done.Snapshot!);
  });

  it('an Incomplete run at the end of its window prunes nothing', async () => {
    const ctx = setup();
    const { set } = ctx;
    // A source big enough that the walk outlives the first deadline check (once a second).
    createTree(ctx.src, {
      many: dir(
        Object.fromEntries(
          Array.from({ length: 10 }, (_, i) => [
            `d${i}`,
            dir(Object.fromEntries(Array.from({ length: 50 }, (_, j) => [`f${j}`, file('x')]))),
          ]),
        ),
      ),
    });
    for (let i = 0; i < 2; i++) await runAt(ctx, i, { version: `v${i}` });
    const before = stamps(set, 'daily');
    // Started 58 s ago with a 1-minute window: the deadline has passed. The engine looks at
    // the clock on a one-second interval; that interval is driven by hand here, once per turn
    // of the event loop, so the look comes while the walk (one call at a time, each through
    // libuv's pool) has only begun.
    const started = new Date(Date.now() - 58_000);
    const r = await withHandDrivenIntervals(() =>
      backup({
        source: ctx.src,
        destination: ctx.dst,
        retain: 1,
        windowMinutes: 1,
        concurrency: 1,
        io: 'async',
        // The run started 58 s ago by its own clock, which then reads the real time: its
        // deadline (start + 54 s) has already passed.
        now: (() => {
          let first = true;
          return () => (first ? ((first = false), started) : new Date());
        })(),
      }),
    );
    expect(r.Status, r.Message).toBe('Incomplete');
    expect(r.Message).toMatch(/window/);
    expect(r.Snapshot).toBeNull();
    expect(r.SnapshotsPruned).toBe(0);
    expect(stamps(set, 'daily')).toEqual(before);
    expect(hiddenIn(set, 'daily')).toHaveLength(1);
    expect(hiddenIn(set, 'daily')[0]).toMatch(/^\.\d{8}T\d{6}Z\.partial$/);
    expect(Math.abs(Date.parse(r.StartTime) - started.getTime())).toBeLessThan(5_000);
    expectLatest(set, 'daily', before[0]!);
  });

  // Regression: prune() once waited for every removeTree callback, which a halted pool never
  // delivers, so a run whose window ended while pruning never ended (and kept its lock).
  it('a prune whose deadline passes mid-deletion returns; the rest waits for the next run', async () => {
    const ctx = setup();
    const { set } = ctx;
    await runAt(ctx, 0);
    await runAt(ctx, 1, { version: 'v1' });
    const result = await withHandDrivenIntervals(() =>
      prune(set, 'daily', 1, { concurrency: 1, deadline: Date.now() - 1000 }),
    );
    expect(result.pruned).toBe(1);
    expect(stamps(set, 'daily')).toEqual([stampAt(1)]);
  });

  it('a run whose window ends while it prunes still ends, and releases the lock', async () => {
    const ctx = setup();
    const { set } = ctx;
    await runAt(ctx, 0);
    // The copy finishes before the first look at the clock (direct calls, a small tree);
    // the window has ended by the time old snapshots are deleted.
    const started = new Date(Date.now() - 58_000);
    const r = await withHandDrivenIntervals(() =>
      backup({
        source: ctx.src,
        destination: ctx.dst,
        retain: 1,
        windowMinutes: 1,
        io: 'sync',
        now: () => started,
      }),
    );
    expect(r.Status, r.Message).toBe('Success');
    expect(stamps(set, 'daily')).toEqual([r.Snapshot]);
    expect(fs.existsSync(set.lockFile)).toBe(false);
  });

  it('leftover .<stamp>.deleting trees and orphan manifests are removed by the next run', async () => {
    const ctx = setup();
    const { set } = ctx;
    const first = await runAt(ctx, 0);
    // A prune that was interrupted: a half-deleted snapshot with read-only parts, its manifest.
    const old = '20250101T000000Z';
    const deleting = set.deletingDir('daily', old);
    createTree(deleting, {
      a: dir({ b: dir({ c: file('c', { mode: 0o000 }) }, { mode: 0o555 }) }, { mode: 0o500 }),
      d: file('d'),
    });
    fs.writeFileSync(set.manifestPath(old), 'left over');
    fs.writeFileSync(set.manifestPath('20250102T000000Z') + '.tmp', 'left over');

    const r = await runAt(ctx, 1, { version: 'v1' });
    expect(r.Status, r.Message).toBe('Success');
    expect(r.NumberOfWarnings).toBe(0);
    expect(fs.existsSync(deleting)).toBe(false);
    expect(hiddenIn(set, 'daily')).toEqual([]);
    expect(fs.readdirSync(set.manifestsDir).sort()).toEqual(
      [first.Snapshot, r.Snapshot].map((s) => `${s}.manifest`).sort(),
    );
    expect(stamps(set, 'daily')).toEqual([r.Snapshot, first.Snapshot]);
  });

  it('with retain 1 the label always keeps its newest complete snapshot', async () => {
    const ctx = setup();
    const { set } = ctx;
    for (let i = 0; i < 4; i++) {
      const r = await runAt(ctx, i, { retain: 1, version: `v${i}` });
      expect(r.Status, r.Message).toBe('Success');
      expect(r.SnapshotsPruned).toBe(i === 0 ? 0 : 1);
      expect(stamps(set)).toEqual([r.Snapshot]);
      expectLatest(set, 'daily', r.Snapshot!);
      expect(diffTrees(ctx.src, r.snapshotPath!)).toEqual([]);
    }
    // A run that cannot complete leaves that snapshot alone.
    const stopped = new AbortController();
    stopped.abort();
    const newest = stamps(set)[0]!;
    const r = await runAt(ctx, 9, { retain: 1, version: 'v9', signal: stopped.signal });
    expect(r.Status).toBe('Incomplete');
    expect(stamps(set)).toEqual([newest]);
    expectLatest(set, 'daily', newest);
    expect(versionIn(set, 'daily', newest)).toBe('v3');
  });
});

describe('stamps', () => {
  it('two runs in the same second get distinct snapshot names (real clock)', async () => {
    const { src, dst, set } = setup();
    const a = await backup({ source: src, destination: dst });
    const b = await backup({ source: src, destination: dst });
    expect(a.Status).toBe('Success');
    expect(b.Status).toBe('Success');
    expect(a.Snapshot).not.toBe(b.Snapshot);
    expect(stamps(set).sort()).toEqual([a.Snapshot, b.Snapshot].sort());
    expect(fs.readlinkSync(set.latestLink)).toBe(`daily/${b.Snapshot}`);
  });

  it('runs starting in the same instant get distinct, increasing stamps', async () => {
    const ctx = setup();
    const { set } = ctx;
    const got: string[] = [];
    for (let i = 0; i < 3; i++) got.push((await runAt(ctx, 0, { version: `v${i}` })).Snapshot!);
    expect(new Set(got).size).toBe(3);
    expect([...got].sort()).toEqual(got);
    expect(stamps(set)).toEqual([...got].reverse());
    expectLatest(set, 'daily', got[2]!);
  });

  // Regression: a stamp freed by pruning was once reused, so the new snapshot sorted oldest
  // and was pruned at once, leaving `latest` dangling.
  it('retain 2: the newest of 4 runs in one second is kept and latest resolves', async () => {
    const ctx = setup();
    const { set } = ctx;
    let last: BackupResult | null = null;
    for (let i = 0; i < 4; i++) {
      last = await runAt(ctx, 0, { retain: 2, version: `v${i}` });
      expect(last.Status, last.Message).toBe('Success');
    }
    expect(stamps(set)).toContain(last!.Snapshot);
    expectLatest(set, 'daily', last!.Snapshot!);
    expect(fs.readFileSync(path.join(set.latestLink, 'version.txt'), 'utf8')).toBe('v3');
  });

  it('retain 1: the 3rd run in one second keeps its snapshot', async () => {
    const ctx = setup();
    const { set } = ctx;
    let last: BackupResult | null = null;
    for (let i = 0; i < 3; i++) last = await runAt(ctx, 0, { retain: 1, version: `v${i}` });
    expect(stamps(set)).toEqual([last!.Snapshot]);
    expect(versionIn(set, 'daily', last!.Snapshot!)).toBe('v2');
  });
});

// ---- the lock -------------------------------------------------------------------------------

describe('LabelLock', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  const lockFile = (): string => path.join(tmpDir('efs-backup-lock-'), 'lock');

  function plant(
    file: string,
    o: { pid: number; host?: string; agoMs?: number; pidStart?: string },
  ): void {
    const t = new Date(Date.now() - (o.agoMs ?? 0)).toISOString();
    fs.writeFileSync(
      file,
      JSON.stringify({
        owner: 'someone-else',
        host: o.host ?? os.hostname(),
        pid: o.pid,
        startedAt: t,
        heartbeat: t,
        ...(o.pidStart ? { pidStart: o.pidStart } : {}),
      }),
    );
  }

  function lockedError(f: () => LabelLock): EfsBackupError {
    try {
      f().release();
    } catch (e) {
      expect(e).toBeInstanceOf(EfsBackupError);
      expect((e as EfsBackupError).code).toBe('LOCKED');
      return e as EfsBackupError;
    }
    throw new Error('expected LOCKED, but the lock was taken');
  }

  it('acquired twice in one process: the second throws LOCKED; after release it is free', () => {
    const file = lockFile();
    const first = LabelLock.acquire(file, 'run-1');
    const held = readLock(file)!;
    expect(held).toMatchObject({ owner: 'run-1', host: os.hostname(), pid: process.pid });
    expect(Date.parse(held.heartbeat)).not.toBeNaN();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);

    const err = lockedError(() => LabelLock.acquire(file, 'run-2'));
    expect(err.message).toContain('run-1');
    expect(err.message).toContain(`pid ${process.pid}`);
    expect(readLock(file)!.owner).toBe('run-1');

    first.release();
    expect(fs.existsSync(file)).toBe(false);
    const second = LabelLock.acquire(file, 'run-2');
    expect(readLock(file)!.owner).toBe('run-2');
    second.release();
    expect(fs.readdirSync(path.dirname(file))).toEqual([]);
  });

  it('a live process of this host with a fresh heartbeat holds the lock', () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    const file = lockFile();
    plant(file, { pid: child.pid! });
    const before = fs.readFileSync(file, 'utf8');
    lockedError(() => LabelLock.acquire(file, 'me'));
    expect(fs.readFileSync(file, 'utf8')).toBe(before);
  });

  it('a live process of this host keeps its lock, however old its heartbeat (it may be paused)', () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    const file = lockFile();
    plant(file, { pid: child.pid!, agoMs: 10 * 60_000 });
    const err = lockedError(() => LabelLock.acquire(file, 'me'));
    expect(err.message).toContain(`pid ${child.pid}`);
    expect(readLock(file)!.owner).toBe('someone-else');
  });

  it('a lock whose pid now belongs to another process (pid reused) is taken over', () => {
    const file = lockFile();
    plant(file, { pid: process.pid, pidStart: '1' });
    const lock = LabelLock.acquire(file, 'me');
    expect(readLock(file)).toMatchObject({ owner: 'me', pid: process.pid });
    lock.release();
  });

  it('the holder finds out at its heartbeat, and before a commit, that its lock was taken', async () => {
    const file = lockFile();
    let lost = '';
    const lock = LabelLock.acquire(file, 'me', { heartbeatMs: 20, onLost: (why) => (lost = why) });
    plant(file, { pid: 1, host: 'another-host' });
    await new Promise((r) => setTimeout(r, 100));
    expect(lost).toMatch(/someone-else.*another-host/);
    expect(() => lock.check()).toThrow(/lost its lock/);
    lock.release();
    expect(readLock(file)!.owner).toBe('someone-else'); // not ours to remove
  });

  it('a loss found before anyone listened is told to whoever listens next (service takes the lock, engine listens)', async () => {
    const file = lockFile();
    const lock = LabelLock.acquire(file, 'me', { heartbeatMs: 20 });
    plant(file, { pid: 1, host: 'another-host' });
    await new Promise((r) => setTimeout(r, 100));
    let lost = '';
    lock.whenLost((why) => (lost = why));
    expect(lost).toMatch(/someone-else.*another-host/);
    lock.release();
    lock.release(); // twice is harmless
    expect(readLock(file)!.owner).toBe('someone-else');
  });

  it('a dead pid on this host, or an old heartbeat of another host, is taken over', () => {
    const dead = spawnSync('true').pid;
    for (const o of [{ pid: dead }, { pid: 1, host: 'another-host', agoMs: 10 * 60_000 }]) {
      const file = lockFile();
      plant(file, o);
      const lock = LabelLock.acquire(file, 'me');
      expect(readLock(file)).toMatchObject({ owner: 'me', pid: process.pid });
      lock.release();
      expect(fs.readdirSync(path.dirname(file))).toEqual([]);
    }
  });

  it('staleAfterMs decides how old a heartbeat may be', () => {
    const file = lockFile();
    plant(file, { pid: 1, host: 'another-host', agoMs: 5_000 });
    lockedError(() => LabelLock.acquire(file, 'me', { staleAfterMs: 60_000 }));
    const lock = LabelLock.acquire(file, 'me', { staleAfterMs: 1_000 });
    expect(readLock(file)!.owner).toBe('me');
    lock.release();
  });

  it('the heartbeat is refreshed while the lock is held', async () => {
    const file = lockFile();
    const lock = LabelLock.acquire(file, 'me', { heartbeatMs: 20 });
    const first = readLock(file)!.heartbeat;
    await vi.waitFor(() => expect(readLock(file)!.heartbeat).not.toBe(first), {
      timeout: 5_000,
      interval: 20,
    });
    expect(readLock(file)).toMatchObject({ owner: 'me', pid: process.pid });
    lock.release();
    expect(fs.existsSync(file)).toBe(false);
  });

  it('release leaves alone a lock that another run has taken over', () => {
    const file = lockFile();
    const lock = LabelLock.acquire(file, 'me');
    plant(file, { pid: 1, host: 'another-host' });
    lock.release();
    expect(readLock(file)!.owner).toBe('someone-else');
  });

  it('a backup refused by a live lock throws LOCKED and leaves the snapshots alone', async () => {
    const ctx = setup();
    const { set } = ctx;
    const first = await runAt(ctx, 0);
    plant(set.lockFile, { pid: 1, host: 'another-host' });
    await expect(runAt(ctx, 1, { retain: 1, version: 'v1' })).rejects.toMatchObject({
      code: 'LOCKED',
    });
    expect(stamps(set)).toEqual([first.Snapshot]);
    expect(hiddenIn(set, 'daily')).toEqual([]);
    expect(readLock(set.lockFile)!.owner).toBe('someone-else');
  });

  // Regression: a lock file created but not yet written (empty) was once judged stale.
  it('a lock file just created by a concurrent acquirer (still empty) is not taken', () => {
    const file = lockFile();
    fs.writeFileSync(file, ''); // the other run is between open(O_EXCL) and write()
    lockedError(() => LabelLock.acquire(file, 'me'));
  });
});
