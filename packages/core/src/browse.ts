import { badInput } from './errors.js';
import type { BackupSet, SnapshotRef } from './layout.js';
import type { ManifestIndex, ManifestEntry } from './manifest.js';
import { checkSnapshotPath, entryAt, openManifest, snapshotPathParts } from './selectors.js';
import { sameXattrs } from './xattrs.js';

/** Browsing from manifests alone: nothing here reads a snapshot's tree. */

export interface ListedEntry extends ManifestEntry {
  /** Snapshot-relative path. */
  path: string;
}

/** The entries of a directory of a snapshot (or the one entry, for a file), sorted by name. */
export function listPath(index: ManifestIndex, p: string): ListedEntry[] {
  const rel = checkSnapshotPath(index, p);
  const entry = entryAt(index, rel)!;
  if (entry.kind !== 'd') return [{ ...entry, path: rel }];
  const children = [...(index.readDirSync(rel)?.values() ?? [])];
  return children
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((e) => ({ ...e, path: rel === '' ? e.name : `${rel}/${e.name}` }));
}

export interface DiffLine {
  change: 'added' | 'removed' | 'changed';
  path: string;
  kind: ManifestEntry['kind'];
  /** Bytes in the first snapshot (removed, changed). */
  sizeBefore: number | null;
  /** Bytes in the second snapshot (added, changed). */
  sizeAfter: number | null;
  /** For a change: content, size, mode, owner, mtime, type, target, xattrs. */
  what: string[];
}

/** What differs between the same path of two manifests. */
export function entryChanges(a: ManifestEntry, b: ManifestEntry): string[] {
  if (a.kind !== b.kind) return ['type'];
  const out: string[] = [];
  if (a.kind === 'f' && a.data !== b.data) out.push('content');
  if (a.kind === 'l' && a.data !== b.data) out.push('target');
  if (a.size !== b.size && a.kind === 'f') out.push('size');
  if ((a.mode & 0o7777) !== (b.mode & 0o7777)) out.push('mode');
  if (a.uid !== b.uid || a.gid !== b.gid) out.push('owner');
  if (a.kind !== 'd' && (a.mtimeSec !== b.mtimeSec || a.mtimeNsec !== b.mtimeNsec))
    out.push('mtime');
  // Extended attributes and ACLs, as each snapshot holds them.
  if (!sameXattrs(a.xattrs, b.xattrs)) out.push('xattrs');
  return out;
}

/** Added, removed and changed entries from snapshot `a` to snapshot `b`, sorted by path. */
export function diffManifests(a: ManifestIndex, b: ManifestIndex): DiffLine[] {
  const out: DiffLine[] = [];
  const all = (index: ManifestIndex, rel: string, change: 'added' | 'removed'): void => {
    for (const e of index.readDirSync(rel)?.values() ?? []) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      const size = e.kind === 'f' ? e.size : 0;
      out.push({
        change,
        path: p,
        kind: e.kind,
        sizeBefore: change === 'removed' ? size : null,
        sizeAfter: change === 'added' ? size : null,
        what: [],
      });
      if (e.kind === 'd') all(index, p, change);
    }
  };
  const walk = (rel: string): void => {
    const before = a.readDirSync(rel) ?? new Map<string, ManifestEntry>();
    const after = b.readDirSync(rel) ?? new Map<string, ManifestEntry>();
    for (const [name, ea] of before) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const eb = after.get(name);
      if (!eb) {
        out.push({
          change: 'removed',
          path: p,
          kind: ea.kind,
          sizeBefore: ea.kind === 'f' ? ea.size : 0,
          sizeAfter: null,
          what: [],
        });
        if (ea.kind === 'd') all(a, p, 'removed');
        continue;
      }
      const what = entryChanges(ea, eb);
      if (what.length > 0) {
        out.push({
          change: 'changed',
          path: p,
          kind: eb.kind,
          sizeBefore: ea.kind === 'f' ? ea.size : 0,
          sizeAfter: eb.kind === 'f' ? eb.size : 0,
          what,
        });
      }
      if (ea.kind === 'd' && eb.kind === 'd') walk(p);
      else if (ea.kind === 'd') all(a, p, 'removed');
      else if (eb.kind === 'd') all(b, p, 'added');
    }
    for (const [name, eb] of after) {
      if (before.has(name)) continue;
      const p = rel === '' ? name : `${rel}/${name}`;
      out.push({
        change: 'added',
        path: p,
        kind: eb.kind,
        sizeBefore: null,
        sizeAfter: eb.kind === 'f' ? eb.size : 0,
        what: [],
      });
      if (eb.kind === 'd') all(b, p, 'added');
    }
  };
  walk('');
  return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}

export interface PathVersion {
  /** The entry as the first snapshot holding this version recorded it. */
  entry: ManifestEntry;
  /** Snapshots holding this version, oldest first. */
  snapshots: SnapshotRef[];
}

/** Every distinct version of a path across the set's snapshots, oldest first. */
export async function pathHistory(set: BackupSet, p: string): Promise<PathVersion[]> {
  const rel = snapshotPathParts(p).join('/');
  const versions: PathVersion[] = [];
  const snapshots = set.snapshots().reverse();
  if (snapshots.length === 0) throw badInput(`no complete snapshot in ${set.dir}`);
  for (const s of snapshots) {
    let index: ManifestIndex;
    try {
      index = await openManifest(s);
    } catch {
      continue;
    }
    try {
      const e = entryAt(index, rel);
      if (!e) continue;
      const last = versions[versions.length - 1];
      if (last && entryChanges(last.entry, e).length === 0) last.snapshots.push(s);
      else versions.push({ entry: e, snapshots: [s] });
    } finally {
      index.close();
    }
  }
  return versions;
}
