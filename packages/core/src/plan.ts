import type { ManifestIndex } from './manifest.js';

/**
 * A shared run's plan (scale-out): which directories are units of their own, chosen from the
 * previous snapshot's manifest before the first call on the source. The manifest knows every
 * directory's entries and bytes, so the tree is split the way fpart splits it, by entry count
 * and size, with no crawl: a subtree much larger than a worker's share is cut at its
 * sub-directories, and the cut goes on inside the ones still too large.
 *
 * The plan is a hint: a planned directory becomes a unit only when the walk of its parent's
 * unit reaches it (so it exists, is a directory and is not left out), and a directory that is
 * new since the previous snapshot is split as it is met, while workers wait for work.
 */

/** What one entry costs, in the plan's units: a call or two on the source and the destination. */
const ENTRY_COST = 1;
/** Bytes that cost as much as one entry: at 1 ms a call and ~32 MiB/s, about 32 KiB. */
const BYTES_PER_ENTRY = 32 * 1024;
/** Units per worker aimed at: enough that workers finishing early find more. */
const UNITS_PER_WORKER = 6;
const MAX_UNITS = 4096;

export interface PlanFigures {
  /** The directories chosen as units (never '', the root, which always is one). */
  units: string[];
  /** The whole tree's cost, and the share each unit was cut toward. */
  total: number;
  target: number;
}

/** The plan for `workers` workers, from a snapshot's manifest. */
export async function planUnits(index: ManifestIndex, workers: number): Promise<PlanFigures> {
  const own = new Map<string, number>();
  const children = new Map<string, string[]>();
  await index.eachBlock((dir, entries) => {
    let cost = 0;
    const subdirs = children.get(dir) ?? [];
    for (const [name, e] of entries) {
      cost += ENTRY_COST + (e.kind === 'f' ? e.size / BYTES_PER_ENTRY : 0);
      if (e.kind === 'd') subdirs.push(dir === '' ? name : `${dir}/${name}`);
    }
    own.set(dir, (own.get(dir) ?? 0) + cost);
    children.set(dir, subdirs);
  });
  // Each subtree's cost: deepest first, each added to its parent.
  const sub = new Map(own);
  const byDepth = [...own.keys()].sort((a, b) => depth(b) - depth(a));
  for (const d of byDepth) {
    if (d === '') continue;
    const parent = parentOf(d);
    sub.set(parent, (sub.get(parent) ?? 0) + (sub.get(d) ?? 0));
  }
  const total = sub.get('') ?? 0;
  const target = total / Math.max(1, workers * UNITS_PER_WORKER);
  const units: string[] = [];
  if (workers <= 1 || total === 0) return { units, total, target };
  // Top down: a directory whose subtree exceeds the share is cut at each sub-directory that is
  // worth a lease (a quarter of the share or more); those still too large are cut again.
  const cut = (d: string): void => {
    for (const c of children.get(d) ?? []) {
      if (units.length >= MAX_UNITS) return;
      const cost = sub.get(c) ?? 0;
      if (cost < target / 4) continue;
      units.push(c);
      if (cost > target) cut(c);
    }
  };
  cut('');
  return { units, total, target };
}

function depth(rel: string): number {
  if (rel === '') return 0;
  let n = 1;
  for (let i = 0; i < rel.length; i++) if (rel.charCodeAt(i) === 47) n++;
  return n;
}

export function parentOf(rel: string): string {
  const cut = rel.lastIndexOf('/');
  return cut < 0 ? '' : rel.slice(0, cut);
}
