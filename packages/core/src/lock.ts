import fs from 'node:fs';
import os from 'node:os';
import { EfsBackupError, isSystemError, RunOver } from './errors.js';

/** What a lock file holds. */
export interface LockInfo {
  owner: string;
  host: string;
  pid: number;
  startedAt: string;
  heartbeat: string;
  /** The host's boot id (Linux): a lock from before a reboot has no live owner. */
  boot?: string;
  /** The owner process's start time (clock ticks since boot): tells a reused pid apart. */
  pidStart?: string;
}

export interface LockOptions {
  /** A lock whose heartbeat is older than this is stale. @default 120000 */
  staleAfterMs?: number;
  /** How often the heartbeat is written. @default 10000 */
  heartbeatMs?: number;
  /**
   * Called when a heartbeat finds the lock is no longer this run's (another run took it over
   * while this one was paused past the stale limit). The run must stop writing and not commit.
   */
  onLost?: (why: string) => void;
  /**
   * A shared run's worker (scale-out): a lock naming the same owner (the run's id) is joined,
   * not refused; the joined handle keeps it fresh like its taker does.
   */
  join?: boolean;
  /** Only join: a lock that does not name the run means the run is over (RunOver is thrown). */
  joinOnly?: boolean;
}

/** One writer per label: a lock file with owner, host and heartbeat. */
export class LabelLock {
  private readonly file: string;
  private readonly info: LockInfo;
  private timer: NodeJS.Timeout | null = null;
  private onLost: ((why: string) => void) | null = null;
  private lost: string | null = null;
  private left = false;
  /** The lock was held by this run already (another worker of it took it): joined. */
  joined = false;

  private constructor(file: string, info: LockInfo) {
    this.file = file;
    this.info = info;
  }

  /** A shared run's lock, already held under its id by another worker of the run; else null. */
  private static joinHeld(file: string, info: LockInfo, options: LockOptions): LabelLock | null {
    if (!options.join) return null;
    const held = readLock(file);
    if (!held || held.owner !== info.owner) return null;
    const lock = new LabelLock(file, info);
    lock.joined = true;
    if (options.onLost) lock.whenLost(options.onLost);
    lock.startHeartbeat(options.heartbeatMs ?? 10_000);
    return lock;
  }

  /** Takes the lock, or takes over a stale one; refuses a live one with a clear message. */
  static acquire(file: string, owner: string, options: LockOptions = {}): LabelLock {
    const staleAfterMs = options.staleAfterMs ?? 120_000;
    const now = new Date().toISOString();
    const info: LockInfo = {
      owner,
      host: os.hostname(),
      pid: process.pid,
      startedAt: now,
      heartbeat: now,
      ...processIdentity(process.pid),
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      const joined = LabelLock.joinHeld(file, info, options);
      if (joined) return joined;
      if (options.joinOnly) throw new RunOver(owner);
      // A live lock is refused before anything is written.
      if (fs.existsSync(file)) refuseLive(file, readLock(file), staleAfterMs);
      // Written whole under a private name, then linked into place: link() fails when the lock
      // exists, and a reader never sees a lock half written.
      const tmp = `${file}.new.${process.pid}`;
      fs.writeFileSync(tmp, JSON.stringify(info) + '\n', { mode: 0o600 });
      try {
        fs.linkSync(tmp, file);
        const lock = new LabelLock(file, info);
        if (options.onLost) lock.whenLost(options.onLost);
        lock.startHeartbeat(options.heartbeatMs ?? 10_000);
        return lock;
      } catch (e) {
        if (!isSystemError(e, 'EEXIST')) throw e;
      } finally {
        fs.rmSync(tmp, { force: true });
      }
      const again = LabelLock.joinHeld(file, info, options);
      if (again) return again;
      const held = readLock(file);
      refuseLive(file, held, staleAfterMs);
      // Stale: move it aside atomically, then check that what was moved is what was judged stale.
      const aside = `${file}.stale.${process.pid}.${Date.now()}`;
      try {
        fs.renameSync(file, aside);
      } catch (e) {
        if (isSystemError(e, 'ENOENT')) continue;
        throw e;
      }
      const moved = readLock(aside);
      if (held && moved && (moved.owner !== held.owner || moved.heartbeat !== held.heartbeat)) {
        // Another process took over between our read and our rename: give its lock back.
        try {
          fs.linkSync(aside, file);
        } catch {
          /* a third process holds it now; either way it is not ours */
        }
        fs.rmSync(aside, { force: true });
        continue;
      }
      fs.rmSync(aside, { force: true });
    }
    throw new EfsBackupError(
      'LOCKED',
      `could not take the lock ${file}: other runs keep taking it`,
    );
  }

  /**
   * Who is told when a heartbeat finds the lock is no longer this run's; a loss found before
   * anyone listened is told at once. The holder may change (the service takes the lock, the
   * engine then listens).
   */
  whenLost(cb: (why: string) => void): void {
    this.onLost = cb;
    if (this.lost !== null) cb(this.lost);
  }

  private startHeartbeat(ms: number): void {
    this.timer = setInterval(() => {
      const held = readLock(this.file);
      if (!held || held.owner !== this.info.owner) {
        clearInterval(this.timer!);
        this.timer = null;
        this.lost = lostReason(this.file, held);
        this.onLost?.(this.lost);
        return;
      }
      this.info.heartbeat = new Date().toISOString();
      try {
        const tmp = `${this.file}.beat.${process.pid}`;
        fs.writeFileSync(tmp, JSON.stringify(this.info) + '\n', { mode: 0o600 });
        fs.renameSync(tmp, this.file);
      } catch {
        /* the next beat tries again */
      }
    }, ms);
    this.timer.unref();
  }

  /** Throws unless the lock file still names this run (checked right before a commit). */
  check(): void {
    const held = readLock(this.file);
    if (held && held.owner === this.info.owner) return;
    throw new EfsBackupError(
      'FAILED',
      `this run lost its lock and stopped without committing: ${lostReason(this.file, held)}`,
    );
  }

  /**
   * A shared run's worker that leaves before the run ends: its heartbeat stops, and the lock
   * stays for the run's other workers (whoever commits releases it). `release()` is then a no-op.
   */
  leave(): void {
    this.left = true;
    this.onLost = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * A shared run's workers on this host are all done (their first worker waited for the
   * others): the lock goes if it still names the run, left or not.
   */
  releaseShared(): void {
    this.left = false;
    this.release();
  }

  /** Gives the lock up (again is harmless: only a lock that still names this run is removed). */
  release(): void {
    if (this.left) return;
    this.onLost = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const held = readLock(this.file);
    if (held && held.owner === this.info.owner) fs.rmSync(this.file, { force: true });
  }
}

export function readLock(file: string): LockInfo | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
  } catch {
    return null;
  }
}

/** Throws LOCKED when `held` (or an unreadable lock written recently) belongs to a live run. */
function refuseLive(file: string, held: LockInfo | null, staleAfterMs: number): void {
  if (held === null && recentlyWritten(file, staleAfterMs)) {
    throw new EfsBackupError(
      'LOCKED',
      `another run is writing this backup set: its lock ${file} is unreadable but was written less than ${Math.round(staleAfterMs / 1000)} s ago`,
    );
  }
  if (held && !isStale(held, staleAfterMs)) {
    throw new EfsBackupError(
      'LOCKED',
      `another run (${held.owner}, pid ${held.pid} on ${held.host}, started ${held.startedAt}) is writing this backup set; ` +
        `its lock ${file} was refreshed ${held.heartbeat}. Wait for it to finish, or remove the lock if that run is gone.`,
    );
  }
}

function recentlyWritten(file: string, staleAfterMs: number): boolean {
  try {
    return Date.now() - fs.statSync(file).mtimeMs < staleAfterMs;
  } catch {
    return false;
  }
}

/**
 * A lock of this host is judged by its owner's liveness, whatever its heartbeat says: a live
 * process may be paused (SIGSTOP, a suspended VM, an NFS stall) far longer than the stale limit,
 * and taking its lock would put two writers in one partial. Only a lock of another host, whose
 * process cannot be asked, is judged by the age of its heartbeat.
 */
function isStale(held: LockInfo, staleAfterMs: number): boolean {
  if (held.host === os.hostname()) return !ownerAlive(held);
  return Date.now() - Date.parse(held.heartbeat) > staleAfterMs;
}

function ownerAlive(held: LockInfo): boolean {
  const me = processIdentity(process.pid);
  if (held.boot && me.boot && held.boot !== me.boot) return false; // the host rebooted since
  try {
    process.kill(held.pid, 0);
  } catch (e) {
    if (isSystemError(e, 'ESRCH')) return false;
  }
  if (held.pidStart) {
    const start = processIdentity(held.pid).pidStart;
    if (start !== undefined && start !== held.pidStart) return false; // the pid was reused
  }
  return true;
}

/** The boot id and a process's start time, where /proc tells them. */
function processIdentity(pid: number): { boot?: string; pidStart?: string } {
  const out: { boot?: string; pidStart?: string } = {};
  try {
    out.boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    /* not Linux */
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22, counted after the command name, which may hold spaces and parentheses.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    if (start) out.pidStart = start;
  } catch {
    /* gone, or no /proc */
  }
  return out;
}

function lostReason(file: string, held: LockInfo | null): string {
  return held
    ? `its lock ${file} is now held by ${held.owner} (pid ${held.pid} on ${held.host}, since ${held.startedAt})`
    : `its lock ${file} is gone or unreadable`;
}
