import type fs from 'node:fs';
import { timeArg, type TimeArg } from './fs-ops.js';
import { splitNs, type EntryKind, type ManifestEntry } from './manifest.js';
import type { Xattrs } from './xattrs.js';

/**
 * What a backup decides about one entry, from its lstat and the manifests: pure functions,
 * no calls. The walk asks them once per entry.
 */

/**
 * Source metadata of one entry, taken from lstat: the fields its manifest entry records, the
 * source identity always there ('' and 0 for a directory, or where not the source's), and what
 * writing it needs.
 */
export interface Meta
  extends
    Pick<ManifestEntry, 'mode' | 'uid' | 'gid' | 'size' | 'mtimeSec' | 'mtimeNsec'>,
    Required<Pick<ManifestEntry, 'ino' | 'ctimeSec' | 'ctimeNsec'>> {
  kind: EntryKind | null;
  /** utimes arguments (see `timeArg`). */
  atime: TimeArg;
  mtime: TimeArg;
  nlink: number;
  /** `dev:ino` of a file with more than one name; '' otherwise. */
  inode: string;
  sparse: boolean;
}

/** The manifest kind of a file type (st_mode); null for what is not backed up (devices, sockets). */
export function kindOfMode(mode: number): EntryKind | null {
  const fmt = mode & 0o170000;
  return fmt === 0o100000
    ? 'f'
    : fmt === 0o040000
      ? 'd'
      : fmt === 0o120000
        ? 'l'
        : fmt === 0o010000
          ? 'p'
          : null;
}

export function toMeta(st: fs.BigIntStats): Meta {
  const mode = Number(st.mode);
  const [mtimeSec, mtimeNsec] = splitNs(st.mtimeNs);
  const [aSec, aNsec] = splitNs(st.atimeNs);
  const kind = kindOfMode(mode);
  const size = kind === 'f' || kind === 'l' ? Number(st.size) : 0;
  const nlink = Number(st.nlink);
  const [ctimeSec, ctimeNsec] = kind === 'd' ? [0, 0] : splitNs(st.ctimeNs);
  return {
    kind,
    mode,
    uid: Number(st.uid),
    gid: Number(st.gid),
    size,
    mtimeSec,
    mtimeNsec,
    ino: kind === 'd' ? '' : String(st.ino),
    ctimeSec,
    ctimeNsec,
    atime: timeArg(aSec, aNsec),
    mtime: timeArg(mtimeSec, mtimeNsec),
    nlink,
    // Only hard-link groups are looked up by inode.
    inode: kind === 'd' || nlink < 2 ? '' : `${st.dev}:${st.ino}`,
    sparse: kind === 'f' && Number(st.blocks) * 512 < size,
  };
}

/** The manifest entry of an entry written with metadata `m` (with its source identity, if any). */
export function entryOf(
  name: string,
  m: Meta,
  data: string,
  link?: string,
  xattrs?: Xattrs | null,
): ManifestEntry {
  const r: ManifestEntry = {
    name,
    kind: m.kind!,
    mode: m.mode,
    uid: m.uid,
    gid: m.gid,
    size: m.size,
    mtimeSec: m.mtimeSec,
    mtimeNsec: m.mtimeNsec,
    data,
  };
  if (link !== undefined) r.link = link;
  if (m.ino !== '') {
    r.ino = m.ino;
    r.ctimeSec = m.ctimeSec;
    r.ctimeNsec = m.ctimeNsec;
  }
  if (xattrs) r.xattrs = xattrs;
  return r;
}

/**
 * Unchanged: same type, size, mtime, mode, uid and gid; a symlink also the same target; and,
 * where the manifest knows them, the same inode and ctime: a file rewritten in place with its
 * mtime set back, or replaced by a rename of another with the same size and mtime, is changed.
 * An entry without them (adopted sets, version 1 manifests) is judged without, this once.
 */
export function unchanged(
  prev: ManifestEntry | undefined,
  m: Meta,
  target: string,
): prev is ManifestEntry {
  return (
    prev !== undefined &&
    prev.kind === m.kind &&
    prev.mode === m.mode &&
    prev.uid === m.uid &&
    prev.gid === m.gid &&
    prev.size === m.size &&
    prev.mtimeSec === m.mtimeSec &&
    prev.mtimeNsec === m.mtimeNsec &&
    (m.kind !== 'l' || prev.data === target) &&
    (prev.ino === undefined ||
      (prev.ino === m.ino && prev.ctimeNsec === m.ctimeNsec && prev.ctimeSec === m.ctimeSec))
  );
}

/** Two stats of one inode saw it in the same state (ctime catches what mtime may not). */
export function sameInodeState(a: Meta, b: Meta): boolean {
  return (
    a.ctimeSec === b.ctimeSec &&
    a.ctimeNsec === b.ctimeNsec &&
    a.size === b.size &&
    a.mtimeSec === b.mtimeSec &&
    a.mtimeNsec === b.mtimeNsec &&
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid
  );
}
