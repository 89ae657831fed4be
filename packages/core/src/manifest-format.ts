/**
 * A snapshot's manifest: every entry with its source metadata and a content digest.
 *
 * File layout (UTF-8 lines):
 *   {header JSON}                       the snapshot's identity, figures and root directory
 *   "dir/path"\t[[entry], [entry], ...]  one or more blocks per directory, children only
 *   #sha256 <hex>                       checksum of every byte before this line
 *
 * A run's journal holds block lines only, appended as entries are written, so an interrupted
 * run knows what its partial already holds. The manifest is the header, the blocks this run
 * wrote, and the checksum. Blocks are looked up by directory, so a run reads the previous
 * manifest one directory at a time instead of holding it in memory.
 */
export type EntryKind = 'f' | 'd' | 'l' | 'p';

export interface ManifestEntry {
  name: string;
  kind: EntryKind;
  /** st_mode, type bits included. */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes for a file; 0 for anything else. */
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Content digest of a file (sha256, base64), or a symlink's target; '' otherwise. */
  data: string;
  /** For the second and later names of one inode: the snapshot-relative path of the first. */
  link?: string;
  /**
   * The source's inode number (decimal: 64-bit numbers do not fit a double) and ctime, which no
   * program can set back: a change that keeps size and mtime still changes them. Files,
   * symlinks and FIFOs written by a backup; absent in adopted sets and older manifests.
   */
  ino?: string;
  ctimeSec?: number;
  ctimeNsec?: number;
  /** Extended attributes (POSIX ACLs included) as the snapshot holds them: name → base64 value. */
  xattrs?: Record<string, string>;
}

const NS = 1_000_000_000n;

/** Whole seconds and nanoseconds of a BigInt nanosecond time (floored, for times before 1970). */
export function splitNs(ns: bigint): [number, number] {
  let s = ns / NS;
  let n = ns % NS;
  if (n < 0n) {
    n += NS;
    s -= 1n;
  }
  return [Number(s), Number(n)];
}

/**
 * An entry on disk: `[name, kind, mode, uid, gid, size, mtimeSec, mtimeNsec, data, link,
 * ino, ctimeSec, ctimeNsec, xattrs]`, trailing fields left out when absent and `null` where a
 * later one is present (version 1 manifests end at `link`).
 */
type EncodedEntry = [
  string,
  EntryKind,
  number,
  number,
  number,
  number,
  number,
  number,
  string,
  (string | null)?,
  (string | null)?,
  (number | null)?,
  (number | null)?,
  Record<string, string>?,
];

export function encodeEntry(e: ManifestEntry): EncodedEntry {
  const out: EncodedEntry = [
    e.name,
    e.kind,
    e.mode,
    e.uid,
    e.gid,
    e.size,
    e.mtimeSec,
    e.mtimeNsec,
    e.data,
  ];
  const hasSource = e.ino !== undefined;
  if (e.link !== undefined || hasSource || e.xattrs) out.push(e.link ?? null);
  if (hasSource || e.xattrs) out.push(e.ino ?? null, e.ctimeSec ?? null, e.ctimeNsec ?? null);
  if (e.xattrs) out.push(e.xattrs);
  return out;
}

export function decodeEntry(a: unknown): ManifestEntry {
  if (!Array.isArray(a) || a.length < 9) throw new Error('malformed manifest entry');
  const e: ManifestEntry = {
    name: a[0] as string,
    kind: a[1] as EntryKind,
    mode: a[2] as number,
    uid: a[3] as number,
    gid: a[4] as number,
    size: a[5] as number,
    mtimeSec: a[6] as number,
    mtimeNsec: a[7] as number,
    data: a[8] as string,
  };
  if (a.length > 9 && a[9] !== null) e.link = a[9] as string;
  if (a.length > 12 && a[10] !== null) {
    e.ino = a[10] as string;
    e.ctimeSec = a[11] as number;
    e.ctimeNsec = a[12] as number;
  }
  if (a.length > 13) e.xattrs = a[13] as Record<string, string>;
  return e;
}

export function blockLine(dir: string, entries: ManifestEntry[]): string {
  return JSON.stringify(dir) + '\t' + JSON.stringify(entries.map(encodeEntry)) + '\n';
}

export const MANIFEST_FORMAT = 'efs-backup-manifest';
/**
 * The newest version read. 2: entries carry the source's inode and ctime, and extended
 * attributes (version 1 is read). 3: the header carries what the snapshot left out (`Exclude`,
 * `ExcludeIfPresent`); only a manifest that does is written as 3, so an older efs-backup, which
 * would take what was left out for what is gone (`restore --delete` would delete it), refuses
 * it, and reads every other manifest as before.
 */
export const MANIFEST_VERSION = 3;

/** The version a new manifest is written as: 3 only when its header records excludes. */
export function manifestVersion(excludes: boolean): number {
  return excludes ? 3 : 2;
}

export interface ManifestHeader {
  format: typeof MANIFEST_FORMAT;
  version: number;
  BackupId: string;
  Label: string;
  Interval: string;
  Snapshot: string;
  Source: string;
  Prefix: string;
  StartTime: string;
  StopTime: string;
  NumberOfFiles: number;
  TotalFileSize: number;
  /** The patterns the snapshot left out (version 3; absent: none). */
  Exclude?: string[];
  /** The names whose directories' content the snapshot left out (version 3; absent: none). */
  ExcludeIfPresent?: string[];
  root: unknown[];
}
export const CHECKSUM_PREFIX = '#sha256 ';
export const CHECKSUM_LINE_LENGTH = CHECKSUM_PREFIX.length + 64 + 1;
