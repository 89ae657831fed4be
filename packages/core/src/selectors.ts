import fs from 'node:fs';
import path from 'node:path';
import { badInput } from './errors.js';
import { BackupSet, type SnapshotRef } from './layout.js';
import { decodeEntry, ManifestIndex, type EntryRecord, type ManifestHeader } from './manifest.js';

/**
 * Resolves a selector: `latest`, `daily.0` (newest daily), `daily.3`, a stamp, or the
 * BackupId of the run that made the snapshot.
 */
export function resolveSnapshot(set: BackupSet, selector: string): SnapshotRef {
  try {
    return set.resolve(selector);
  } catch (e) {
    const byId = set.snapshots().find((s) => readHeader(s.manifest)?.BackupId === selector);
    if (byId) return byId;
    throw e;
  }
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
    const buf = Buffer.alloc(64 * 1024);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const nl = buf.subarray(0, n).indexOf(10);
    if (nl < 0) return null;
    return JSON.parse(buf.subarray(0, nl).toString('utf8')) as ManifestHeader;
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
  if (p.includes('\0')) throw badInput(`${what} must not contain NUL`);
  if (path.isAbsolute(p)) {
    throw badInput(`${what} "${p}" must be relative to the snapshot, not absolute`);
  }
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.includes('..')) throw badInput(`${what} "${p}" must not contain ".."`);
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

/** The manifest entry of a snapshot-relative path ('' is the root). */
export function entryAt(index: ManifestIndex, rel: string): EntryRecord | null {
  if (rel === '') return rootEntry(index);
  const slash = rel.lastIndexOf('/');
  const dir = slash < 0 ? '' : rel.slice(0, slash);
  return index.readDirSync(dir)?.get(rel.slice(slash + 1)) ?? null;
}

export function rootEntry(index: ManifestIndex): EntryRecord {
  return { ...decodeEntry(index.header!.root), name: '' };
}

export async function openSnapshot(
  destination: string,
  label: string,
  selector: string,
): Promise<{ set: BackupSet; snapshot: SnapshotRef; index: ManifestIndex }> {
  const set = new BackupSet(destination, label);
  if (!fs.existsSync(set.dir)) throw badInput(`no backup set ${label} on ${destination}`);
  const snapshot = resolveSnapshot(set, selector);
  let index: ManifestIndex;
  try {
    index = await ManifestIndex.openManifest(snapshot.manifest);
  } catch (e) {
    throw badInput(
      `snapshot ${snapshot.interval}/${snapshot.stamp} has no usable manifest: ${(e as Error).message}`,
    );
  }
  return { set, snapshot, index };
}
