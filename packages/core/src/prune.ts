import { asyncOps, type FsOps } from './fs-ops.js';
import { InFlight } from './inflight.js';
import { BackupSet } from './layout.js';
import { isStamp } from './stamp.js';
import { removeTree } from './remove-tree.js';

export interface PruneOptions {
  /** File-system calls in flight. */
  concurrency: number;
  /** Epoch ms after which no more deletions start; what is left goes next run. */
  deadline: number | null;
  /** The clock the deadline is read against. @default Date.now */
  now?: () => number;
  /** Stops deleting (what is left goes next run). */
  signal?: AbortSignal;
  /** The destination's calls (direct on a local disk, many in flight on EFS). @default asyncOps */
  io?: FsOps;
}

export interface PruneResult {
  /** Complete snapshots removed. */
  pruned: number;
  /** Stamps of the snapshots removed (or started and left for the next run). */
  stamps: string[];
  warnings: string[];
}

/**
 * Retention, run only after a commit: the complete snapshots of `interval` beyond `retain` are
 * renamed `.<stamp>.deleting` (so they stop counting as complete at once) and deleted in
 * parallel, along with leftovers of earlier runs (abandoned partials, half-deleted snapshots,
 * manifests without a snapshot). The newest snapshot is never touched. Every change goes
 * through the destination's calls (`o.io`); a change that fails is a warning.
 */
export async function prune(
  set: BackupSet,
  interval: string,
  retain: number,
  o: PruneOptions,
): Promise<PruneResult> {
  const io = o.io ?? asyncOps;
  const keep = Math.max(1, retain);
  const doomed = set.snapshots(interval).slice(keep);
  const result: PruneResult = { pruned: 0, stamps: [], warnings: [] };
  for (const s of doomed) {
    const err =
      (await outcome((cb) => io.rename(s.path, set.deletingDir(interval, s.stamp), cb))) ??
      (await outcome((cb) => unlinkIfThere(io, s.manifest, cb)));
    if (err) {
      result.warnings.push(`cannot prune ${interval}/${s.stamp}: ${err.message}`);
      continue;
    }
    result.pruned++;
    result.stamps.push(s.stamp);
  }
  if (doomed.length > 0) set.forget();
  // After the commit no partial of this interval is in use.
  const trees = [
    ...set.hidden(interval, 'deleting').map((st) => set.deletingDir(interval, st)),
    ...set.hidden(interval, 'partial').map((st) => set.partialDir(interval, st)),
  ];
  const pool = new InFlight(o.concurrency);
  const now = o.now ?? Date.now;
  const stopNow = (): void => pool.halt();
  o.signal?.addEventListener('abort', stopNow);
  if (o.signal?.aborted) pool.halt();
  const timer =
    o.deadline === null
      ? null
      : setInterval(() => {
          if (now() >= o.deadline!) pool.halt();
        }, 1000);
  try {
    // Waiting for the pool, not for each tree: at the deadline the pool is halted, trees
    // still being deleted never call back, and they are finished by the next run.
    for (const t of trees) {
      removeTree(io, pool, t, (err) => {
        if (err) result.warnings.push(`cannot delete ${t}: ${err.message}`);
      });
    }
    await new Promise<void>((resolve) => pool.onIdle(resolve));
  } finally {
    if (timer) clearInterval(timer);
    o.signal?.removeEventListener('abort', stopNow);
    if (trees.length > 0) set.forget();
  }
  await removeOrphanData(set, io, result.warnings);
  return result;
}

type Done = (err: NodeJS.ErrnoException | null) => void;

/** One call's outcome, awaited (a few calls per prune: not the hot path). */
function outcome(call: (cb: Done) => void): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => call(resolve));
}

function unlinkIfThere(io: FsOps, p: string, cb: Done): void {
  io.unlink(p, (e) => cb(e && e.code !== 'ENOENT' ? e : null));
}

/** Manifests whose snapshot is gone, journals whose partial is gone. */
async function removeOrphanData(set: BackupSet, io: FsOps, warnings: string[]): Promise<void> {
  const live = new Set<string>();
  const partials = new Set<string>();
  for (const iv of set.intervals()) {
    for (const n of set.names(set.intervalDir(iv))) {
      if (isStamp(n)) live.add(n);
    }
    for (const p of set.hidden(iv, 'partial')) partials.add(p);
  }
  const orphans = set.names(set.manifestsDir).filter((n) => {
    const m = /^(\d{8}T\d{6}Z)\.(manifest|journal)(\.tmp)?$/.exec(n);
    if (!m) return false;
    return !(m[2] === 'manifest' ? live.has(m[1]!) && !m[3] : partials.has(m[1]!));
  });
  await Promise.all(
    orphans.map(async (n) => {
      const p = `${set.manifestsDir}/${n}`;
      const err = await outcome((cb) => unlinkIfThere(io, p, cb));
      if (err) warnings.push(`cannot delete ${p}: ${err.message}`);
    }),
  );
  set.forget();
}
