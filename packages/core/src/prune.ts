import fs from 'node:fs';
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
 * manifests without a snapshot). The newest snapshot is never touched.
 */
export async function prune(
  set: BackupSet,
  interval: string,
  retain: number,
  o: PruneOptions,
): Promise<PruneResult> {
  const keep = Math.max(1, retain);
  const doomed = set.snapshots(interval).slice(keep);
  const result: PruneResult = { pruned: 0, stamps: [], warnings: [] };
  for (const s of doomed) {
    try {
      fs.renameSync(s.path, set.deletingDir(interval, s.stamp));
      fs.rmSync(s.manifest, { force: true });
      result.pruned++;
      result.stamps.push(s.stamp);
    } catch (e) {
      result.warnings.push(`cannot prune ${interval}/${s.stamp}: ${(e as Error).message}`);
    }
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
      removeTree(pool, t, (err) => {
        if (err) result.warnings.push(`cannot delete ${t}: ${err.message}`);
      });
    }
    await new Promise<void>((resolve) => pool.onIdle(resolve));
  } finally {
    if (timer) clearInterval(timer);
    o.signal?.removeEventListener('abort', stopNow);
    if (trees.length > 0) set.forget();
  }
  removeOrphanData(set);
  return result;
}

/** Manifests whose snapshot is gone, journals whose partial is gone. */
function removeOrphanData(set: BackupSet): void {
  const live = new Set<string>();
  const partials = new Set<string>();
  for (const iv of set.intervals()) {
    for (const n of set.names(set.intervalDir(iv))) {
      if (isStamp(n)) live.add(n);
    }
    for (const p of set.hidden(iv, 'partial')) partials.add(p);
  }
  for (const n of set.names(set.manifestsDir)) {
    const m = /^(\d{8}T\d{6}Z)\.(manifest|journal)(\.tmp)?$/.exec(n);
    if (!m) continue;
    const keep = m[2] === 'manifest' ? live.has(m[1]!) && !m[3] : partials.has(m[1]!);
    if (!keep) fs.rmSync(`${set.manifestsDir}/${n}`, { force: true });
  }
  set.forget();
}
