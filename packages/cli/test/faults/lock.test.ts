/**
 * The label lock against a run that is paused, not dead. A SIGSTOP-ped run (a suspended VM, a
 * long GC, a frozen NFS client) stops refreshing its heartbeat; its lock then looks stale by age,
 * but while its pid lives on this host it is not, and a run whose lock was taken over by
 * another owner must not commit when it wakes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  backup,
  cleanup,
  describeRun,
  latestDir,
  rsyncDiff,
  skipReason,
  snapshots,
  sourceAndDestination,
  startCli,
  stateDir,
  type RunningCli,
  verifyClean,
} from './harness.js';

const skip = skipReason('faultfs', 'rsync');
let base = '';
let running: RunningCli | null = null;
afterEach(() => {
  if (running && running.child.exitCode === null && running.child.signalCode === null) {
    running.child.kill('SIGCONT');
    running.child.kill('SIGKILL');
  }
  running = null;
  cleanup(base);
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Lock {
  owner: string;
  host: string;
  pid: number;
  startedAt: string;
  heartbeat: string;
}

/**
 * Starts backup A of a fresh tree, slowed down (every open below the source waits 150 ms, one
 * call in flight) so it lasts seconds, and stops it (SIGSTOP) as soon as it holds the lock.
 */
async function startAndStopA(): Promise<{
  src: string;
  dst: string;
  lockFile: string;
  a: RunningCli;
}> {
  let src: string, dst: string;
  ({ base, src, dst } = sourceAndDestination('efs-faults-lock-', 24));
  const lockFile = path.join(stateDir(dst), 'lock');
  const a = startCli(
    ['backup', '--source', src, '--destination', dst, '--concurrency', '1', '--json'],
    { faults: `open:${src}/:delay=150`, timeoutMs: 90_000 },
  );
  running = a;
  await waitFor('A to take the lock', () => {
    if (a.child.exitCode !== null) throw new Error('A ended before it could be stopped');
    return fs.existsSync(lockFile);
  });
  a.child.kill('SIGSTOP');
  await sleep(100);
  return { src, dst, lockFile, a };
}

function readLock(file: string): Lock {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Lock;
}

describe.skipIf(skip)('a paused run keeps its lock', () => {
  it('B refuses while A (alive on this host) is stopped with a 10-minute-old heartbeat; A then completes', async () => {
    const { src, dst, lockFile, a } = await startAndStopA();
    const held = readLock(lockFile);
    expect(held.pid).toBe(a.child.pid);
    // As if A had been paused for 10 minutes: its heartbeat is far past the 120 s stale limit.
    const old = new Date(Date.now() - 10 * 60_000).toISOString();
    fs.writeFileSync(lockFile, JSON.stringify({ ...held, heartbeat: old }) + '\n');

    const b = backup(src, dst, { timeoutMs: 60_000 });
    expect(b.status, `B must refuse: ${describeRun(b)}`).toBe(3);
    expect(String(b.json?.Message ?? b.stderr), describeRun(b)).toMatch(/another run|lock/i);
    expect(snapshots(dst), 'B committed a snapshot').toEqual([]);

    a.child.kill('SIGCONT');
    const ra = await a.done;
    expect(ra.status, describeRun(ra)).toBe(0);
    expect(ra.json?.Status).toBe('Success');
    expect(snapshots(dst)).toHaveLength(1);
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    const v = verifyClean(dst);
    expect(v.ok, v.output).toBe(true);
  }, 90_000);

  it('A does not commit when, while it was stopped, another host took its lock', async () => {
    const { dst, lockFile, a } = await startAndStopA();
    const held = readLock(lockFile);
    const now = new Date().toISOString();
    const other: Lock = {
      owner: 'someone-else-0000',
      host: 'elsewhere',
      pid: 4242,
      startedAt: now,
      heartbeat: now,
    };
    expect(other.owner).not.toBe(held.owner);
    expect(os.hostname()).not.toBe('elsewhere');
    fs.writeFileSync(lockFile, JSON.stringify(other) + '\n');

    a.child.kill('SIGCONT');
    const ra = await a.done;
    expect(ra.status, `A must not succeed: ${describeRun(ra)}`).not.toBe(0);
    expect(ra.json?.Status, describeRun(ra)).not.toBe('Success');
    expect(String(ra.json?.Message ?? ra.stderr), describeRun(ra)).toMatch(
      /lost .*lock|lock .*(lost|taken)/i,
    );
    expect(snapshots(dst), 'A committed a snapshot without its lock').toEqual([]);
    // The other owner's lock is left alone.
    expect(readLock(lockFile)).toEqual(other);
  }, 90_000);
});
