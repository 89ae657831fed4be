import { damagedPaths, readDamage } from './damage.js';
import type { BackupSet } from './layout.js';
import { ManifestIndex } from './manifest.js';
import type { RunReport } from './run-report.js';

/** The snapshot a backup links its unchanged entries to, and the manifest that says what it holds. */
export interface BaseSnapshot {
  path: string;
  index: ManifestIndex;
  /** Its entries whose inode `verify` found damaged: copied from the source, never linked. */
  damaged: Set<string>;
}

/**
 * The newest complete snapshot of the label (any interval), with its manifest; null on a first
 * backup, or (with a warning: every file is then copied) when its manifest is unusable. Sets
 * the report's estimate from the manifest's figures.
 */
export async function openBase(set: BackupSet, report: RunReport): Promise<BaseSnapshot | null> {
  const newest = set.snapshots()[0];
  if (!newest) return null;
  try {
    const index = await ManifestIndex.openManifest(newest.manifest);
    const h = index.header!;
    report.estimate = { entries: h.NumberOfFiles, bytes: h.TotalFileSize };
    return { path: newest.path, index, damaged: damagedPaths(newest.path, readDamage(set)) };
  } catch (e) {
    report.warn(
      '',
      `the previous snapshot ${newest.interval}/${newest.stamp} has no usable manifest (${(e as Error).message}); every file is copied`,
    );
    return null;
  }
}
