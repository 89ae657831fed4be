import fs from 'node:fs';
import path from 'node:path';
import { badInput, EfsBackupError, isSystemError } from './errors.js';
import { existingSet, LATEST, type BackupSet, type SnapshotRef } from './layout.js';
import { decodeEntry, ManifestIndex, type ManifestEntry, type ManifestHeader } from './manifest.js';
import { isStamp } from './stamp.js';

/**
 * Resolves a selector: `latest`, `daily.0` (newest daily), `daily.3`, a stamp, or the
 * BackupId of the run that made the snapshot (looked for when nothing else matches).
 */
export function resolveSnapshot(set: BackupSet, selector: string): SnapshotRef {
  const all = set.snapshots();
  if (all.length === 0) throw badInput(`no complete snapshot in ${set.dir}`);
  if (selector === LATEST) return all[0]!;
  const byId = (): SnapshotRef | undefined =>
    all.find((s) => readHeader(s.manifest)?.BackupId === selector);
  if (isStamp(selector)) {
    const found = all.find((s) => s.stamp === selector) ?? byId();
    if (!found) throw badInput(`no snapshot ${selector} in ${set.dir}`);
    return found;
  }
  const m = /^([A-Za-z][\w-]*)\.(\d+)$/.exec(selector);
  if (m) {
    const list = all.filter((s) => s.interval === m[1]);
    const found = list[Number(m[2])] ?? byId();
    if (!found)
      throw badInput(`no snapshot ${selector}: ${m[1]} has ${list.length} complete snapshot(s)`);
    return found;
  }
  const found = byId();
  if (found) return found;
  throw badInput(
    `snapshot selector "${selector}" is not latest, <interval>.<n> or a stamp such as 20261126T020000Z`,
  );
}

/** The first line of a manifest, without reading the rest. */
export function readHeader(manifest: string): ManifestHeader | null {
  let fd: number;
  try {
    fd = fs.openSync(manifest, 'r');
  } catch {
    return null;
  }
  try {
    // 64 KiB holds any header but one with thousands of exclude patterns: then more is read.
    let buf = Buffer.alloc(64 * 1024);
    let n = 0;
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, n);
      n += got;
      const nl = buf.subarray(0, n).indexOf(10);
      if (nl >= 0) return JSON.parse(buf.subarray(0, nl).toString('utf8')) as ManifestHeader;
      if (got === 0 || buf.length >= 64 << 20) return null;
      if (n === buf.length) buf = Buffer.concat([buf, Buffer.alloc(buf.length)]);
    }
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A path inside a snapshot, checked against its manifest: relative, no `..`, and no symlink on
 * the way (a symlink in a snapshot could point anywhere). Returns '' for the snapshot's root.
 */
export function checkSnapshotPath(index: ManifestIndex, p: string, what = 'path'): string {
  const parts = snapshotPathParts(p, what);
  let dir = '';
  for (let i = 0; i < parts.length; i++) {
    const name = parts[i]!;
    const entry = index.readDirSync(dir)?.get(name);
    const rel = dir === '' ? name : `${dir}/${name}`;
    if (!entry) throw badInput(`${what} "${p}": ${rel} is not in the snapshot`);
    if (entry.kind === 'l') {
      throw badInput(
        `${what} "${p}": ${rel} is a symlink in the snapshot; name what it points to instead`,
      );
    }
    if (i < parts.length - 1 && entry.kind !== 'd') {
      throw badInput(`${what} "${p}": ${rel} is not a directory`);
    }
    dir = rel;
  }
  return dir;
}

/** The parts of a path inside a snapshot, as given: relative, without NUL or `..`. */
export function snapshotPathParts(p: string, what = 'path'): string[] {
  if (p.includes('\0')) throw badInput(`${what} must not contain NUL`);
  if (path.isAbsolute(p)) {
    throw badInput(`${what} "${p}" must be relative to the snapshot, not absolute`);
  }
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.includes('..')) throw badInput(`${what} "${p}" must not contain ".."`);
  return parts;
}

/** The manifest entry of a snapshot-relative path ('' is the root). */
export function entryAt(index: ManifestIndex, rel: string): ManifestEntry | null {
  if (rel === '') return rootEntry(index);
  const slash = rel.lastIndexOf('/');
  const dir = slash < 0 ? '' : rel.slice(0, slash);
  return index.readDirSync(dir)?.get(rel.slice(slash + 1)) ?? null;
}

export function rootEntry(index: ManifestIndex): ManifestEntry {
  return { ...decodeEntry(index.header!.root), name: '' };
}

export async function openSnapshot(
  destination: string,
  label: string,
  selector: string,
  doing = 'being read',
): Promise<{ set: BackupSet; snapshot: SnapshotRef; index: ManifestIndex }> {
  const set = existingSet(destination, label);
  const snapshot = resolveSnapshot(set, selector);
  let index: ManifestIndex;
  try {
    index = await openManifest(snapshot);
  } catch (e) {
    if (isSystemError(e, 'ENOENT') && isGone(snapshot)) throw prunedError(snapshot, doing, e);
    throw badInput(
      `snapshot ${snapshot.interval}/${snapshot.stamp} has no usable manifest: ${(e as Error).message}`,
    );
  }
  return { set, snapshot, index };
}

/** The snapshot's directory is gone: a prune renamed it `.<stamp>.deleting` (or finished). */
export function isGone(s: SnapshotRef): boolean {
  try {
    fs.lstatSync(s.path);
    return false;
  } catch (e) {
    return isSystemError(e, 'ENOENT');
  }
}

export function prunedError(s: SnapshotRef, doing: string, cause?: unknown): EfsBackupError {
  return new EfsBackupError(
    'FAILED',
    `snapshot ${s.interval}/${s.stamp} was deleted by a prune while ${doing}`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Opens a snapshot's manifest for reading (restore, verify, browse). Its checksum only says the
 * file is whole, not that whoever wrote it can be trusted: every directory read from it is
 * checked, and a name that could lead out of the directory holding it (empty, `.`, `..`, with
 * `/` or NUL) or a hard link whose first name is not a plain path inside the snapshot is
 * refused as damage of the manifest, never followed.
 */
export async function openManifest(s: SnapshotRef): Promise<ManifestIndex> {
  return guardNames(await ManifestIndex.openManifest(s.manifest), s);
}

/** Wraps the index's directory reads with the name checks of `openManifest`. */
export function guardNames(index: ManifestIndex, s: SnapshotRef): ManifestIndex {
  const readDir = index.readDir.bind(index);
  const readDirSync = index.readDirSync.bind(index);
  index.readDir = (io, dir, cb) =>
    readDir(io, dir, (err, entries) => {
      if (err || !entries) return cb(err, entries);
      const bad = badEntry(dir, entries, s);
      if (bad) return cb(bad, null);
      cb(null, entries);
    });
  index.readDirSync = (dir) => {
    const entries = readDirSync(dir);
    const bad = entries && badEntry(dir, entries, s);
    if (bad) throw bad;
    return entries;
  };
  return index;
}

/** Why a manifest name is not one name of a directory entry, or null when it is. */
export function badName(name: unknown): string | null {
  if (typeof name !== 'string') return 'is not a string';
  if (name === '') return 'is empty';
  if (name === '.' || name === '..') return `is "${name}"`;
  if (name.includes('/')) return 'holds "/"';
  if (name.includes('\0')) return 'holds NUL';
  return null;
}

/** Why a snapshot-relative path is not a plain path inside the snapshot, or null. */
export function badRelativePath(p: unknown): string | null {
  if (typeof p !== 'string') return 'is not a string';
  if (p === '') return 'is empty';
  if (p.startsWith('/')) return 'is absolute';
  for (const part of p.split('/')) {
    const why = badName(part);
    if (why) return `has a part that ${why}`;
  }
  return null;
}

const KINDS = new Set(['f', 'd', 'l', 'p']);

function badEntry(
  dir: string,
  entries: Map<string, ManifestEntry>,
  s: SnapshotRef,
): EfsBackupError | null {
  for (const e of entries.values()) {
    let why = badName(e.name);
    if (why) why = `an entry whose name ${why}`;
    else if (!KINDS.has(e.kind)) why = `an entry of unknown kind ${JSON.stringify(e.kind)}`;
    else if (e.link !== undefined) {
      const l = badRelativePath(e.link);
      if (l) why = `an entry whose hard link's first name ${JSON.stringify(e.link)} ${l}`;
    }
    if (why) {
      return new EfsBackupError(
        'FAILED',
        `the manifest of snapshot ${s.interval}/${s.stamp} is damaged: directory ` +
          `${JSON.stringify(dir === '' ? '.' : dir)} lists ${JSON.stringify(e.name)}, ${why}; ` +
          `nothing is read through it (run verify on the snapshot)`,
      );
    }
  }
  return null;
}
