import fs from 'node:fs';
import os from 'node:os';
import { EfsBackupError, isSystemError } from './errors.js';

/** What a lock file holds. */
export interface LockInfo {
  owner: string;
  host: string;
  pid: number;
  startedAt: string;
  heartbeat: string;
}

export interface LockOptions {
  /** A lock whose heartbeat is older than this is stale. @default 120000 */
  staleAfterMs?: number;
  /** How often the heartbeat is written. @default 10000 */
  heartbeatMs?: number;
}

/** One writer per label: a lock file with owner, host and heartbeat. */
export class LabelLock {
  private readonly file: string;
  private readonly info: LockInfo;
  private timer: NodeJS.Timeout | null = null;

  private constructor(file: string, info: LockInfo) {
    this.file = file;
    this.info = info;
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
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      // A live lock is refused before anything is written.
      if (fs.existsSync(file)) refuseLive(file, readLock(file), staleAfterMs);
      // Written whole under a private name, then linked into place: link() fails when the lock
      // exists, and a reader never sees a lock half written.
      const tmp = `${file}.new.${process.pid}`;
      fs.writeFileSync(tmp, JSON.stringify(info) + '\n', { mode: 0o600 });
      try {
        fs.linkSync(tmp, file);
        const lock = new LabelLock(file, info);
        lock.startHeartbeat(options.heartbeatMs ?? 10_000);
        return lock;
      } catch (e) {
        if (!isSystemError(e, 'EEXIST')) throw e;
      } finally {
        fs.rmSync(tmp, { force: true });
      }
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

  private startHeartbeat(ms: number): void {
    this.timer = setInterval(() => {
      const held = readLock(this.file);
      if (!held || held.owner !== this.info.owner) return;
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

  release(): void {
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

function isStale(held: LockInfo, staleAfterMs: number): boolean {
  if (Date.now() - Date.parse(held.heartbeat) > staleAfterMs) return true;
  if (held.host === os.hostname() && held.pid !== process.pid) {
    try {
      process.kill(held.pid, 0);
    } catch (e) {
      return isSystemError(e, 'ESRCH');
    }
  }
  return false;
}
