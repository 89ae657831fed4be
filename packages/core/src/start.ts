import { randomUUID } from 'node:crypto';
import { EfsBackupError } from './errors.js';
import { asyncOps, syncOps, type FsOps } from './fs-ops.js';
import { BackupSet, ensureDir } from './layout.js';
import { LabelLock } from './lock.js';
import { resolveBackupOptions, type BackupOptions, type ResolvedOptions } from './options.js';
import type { BackupProgress, BackupWarning } from './run-report.js';
import type { LeaseStore } from './leases.js';
import { Throttle } from './throttle.js';

/** What a backup is given, and how it starts: its refusals made once, before anything is written. */

export type IoMode = 'sync' | 'async';

export interface BackupRunOptions extends BackupOptions {
  /** The run's id (the record's key). @default a random UUID */
  backupId?: string;
  /** Stops the run gracefully; the partial is kept and the run is Incomplete. */
  signal?: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
  onWarning?: (w: BackupWarning) => void;
  /** @default 250 */
  progressIntervalMs?: number;
  /** @default () => new Date() */
  now?: () => Date;
  /**
   * How metadata calls are made: 'async' keeps many in flight (network file systems),
   * 'sync' makes them on the main thread (local disks, where that is cheaper).
   * @default for each side, from that side's file-system type
   */
  io?: IoMode | { source: IoMode; destination: IoMode };
  /**
   * The source's budget, for a caller that changes it while the run goes (the AWS worker
   * slows down while the source's burst credits are low). @default from maxMiBps and maxOps
   */
  throttle?: Throttle;
  /** The run as `startBackup` began it (its options win over the ones above). */
  started?: StartedBackup;
  /**
   * This process is one worker of a run shared by several (scale-out): every worker is given
   * the same `backupId` and the same options, and a lease store they all reach. Absent: a run
   * of its own, as always.
   */
  share?: ShareOptions;
}

/** One worker's place in a shared run. */
export interface ShareOptions {
  store: LeaseStore;
  /** This worker's id, unique in the run (the AWS worker: its instance id). */
  worker: string;
  /** How many workers the run is started with: when to split the work further. @default 1 */
  workers?: number;
  /**
   * May this worker commit (the commit claim decides which one does)? A worker that may not
   * returns once no unit is left for it, without waiting for the commit. @default true
   */
  commit?: boolean;
  /** A lease's life; renewed every third of it. @default 60000 */
  leaseMs?: number;
  /**
   * Only join a run another worker began: when its lock no longer names the run, it is over,
   * and `backup()` throws RunOver at once (a worker started late, after a quick run ended).
   * @default false
   */
  join?: boolean;
  /**
   * Told what the worker's operator should know that is no warning of the backup: a lease
   * store that has not answered for a while (another process holds its lock), waited for.
   */
  notice?: (message: string) => void;
}

/** A run whose options are resolved and whose set's lock is held: nothing is written yet. */
export interface StartedBackup {
  readonly options: ResolvedOptions;
  readonly lock: LabelLock;
}

/**
 * The refusals, once: bad input (BAD_INPUT) and a live lock (LOCKED) throw before anything
 * is written. A caller that records runs (the service) starts a run with this, records it, and
 * hands it to `backup()` as `started`, so the options are resolved and the lock taken once.
 * The caller releases the lock if it never calls `backup()`.
 */
export function startBackup(
  options: BackupOptions & { backupId?: string; share?: { join?: boolean } },
): StartedBackup {
  const o = resolveBackupOptions(options);
  const set = new BackupSet(o.destination, o.label);
  try {
    // Only what the lock needs is made before it is held (nothing, for an existing set).
    ensureDir(set.dataDir);
    // A shared run's workers hold one lock, under the run's id (the first takes it, the others join).
    const lock = LabelLock.acquire(set.lockFile, options.backupId ?? randomUUID(), {
      join: options.share !== undefined,
      joinOnly: options.share?.join === true,
    });
    return { options: o, lock };
  } catch (e) {
    if (e instanceof EfsBackupError) throw e;
    throw new EfsBackupError(
      'FAILED',
      `cannot lock the backup set ${set.dir}: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
}

/**
 * One side's calls: direct on a local disk, where a call takes microseconds; many in flight
 * through the thread pool on NFS, EFS or FUSE, where each waits on the network. `forced`
 * (the run's `io` option) overrides the choice.
 */
export function sideOps(forced: IoMode | undefined, remote: boolean): FsOps {
  return (forced ?? (remote ? 'async' : 'sync')) === 'sync' ? syncOps : asyncOps;
}

/** The source's budget from the run's options: none where no limit is set. */
export function sourceThrottle(o: ResolvedOptions): Throttle | null {
  if (o.maxMiBps === null && o.maxOps === null) return null;
  return new Throttle({
    ...(o.maxMiBps !== null ? { bytesPerSecond: o.maxMiBps * 2 ** 20 } : {}),
    ...(o.maxOps !== null ? { callsPerSecond: o.maxOps } : {}),
  });
}
