import fs from 'node:fs';
import path from 'node:path';
import { badInput, OptionError } from './errors.js';
import { isStamp } from './stamp.js';

/**
 * Where a backup set keeps things on the destination:
 *   <destination>/<label>/<interval>/<stamp>/            a complete snapshot
 *   <destination>/<label>/<interval>/.<stamp>.partial/   a snapshot being written
 *   <destination>/<label>/<interval>/.<stamp>.deleting/  a snapshot being pruned
 *   <destination>/<label>/latest -> <interval>/<stamp>
 *   <destination>/<label>/.efs-backup/                    lock, manifests, logs
 */
export const DATA_DIR = '.efs-backup';
export const LATEST = 'latest';

export class BackupSet {
  readonly destination: string;
  readonly label: string;
  readonly dir: string;
  private listings: Map<string, fs.Dirent[]> | null = null;

  constructor(destination: string, label: string) {
    this.destination = destination;
    this.label = label;
    this.dir = path.join(destination, label);
  }

  get dataDir(): string {
    return path.join(this.dir, DATA_DIR);
  }
  get manifestsDir(): string {
    return path.join(this.dataDir, 'manifests');
  }
  get lockFile(): string {
    return path.join(this.dataDir, 'lock');
  }
  get latestLink(): string {
    return path.join(this.dir, LATEST);
  }
  intervalDir(interval: string): string {
    return path.join(this.dir, interval);
  }
  snapshotDir(interval: string, stamp: string): string {
    return path.join(this.dir, interval, stamp);
  }
  partialDir(interval: string, stamp: string): string {
    return path.join(this.dir, interval, `.${stamp}.partial`);
  }
  deletingDir(interval: string, stamp: string): string {
    return path.join(this.dir, interval, `.${stamp}.deleting`);
  }
  manifestPath(stamp: string): string {
    return path.join(this.manifestsDir, `${stamp}.manifest`);
  }
  journalPath(stamp: string): string {
    return path.join(this.manifestsDir, `${stamp}.journal`);
  }

  /**
   * Keeps directory listings of the set until `forget()`. Only for the holder of the set's
   * lock, which calls `forget()` after each change it makes: then nothing else changes the
   * set, and a run lists each directory once instead of once per question (on EFS each
   * listing is several round trips).
   */
  remember(): void {
    this.listings = new Map();
  }

  forget(): void {
    this.listings?.clear();
  }

  /** A directory's entries; none when it cannot be read. */
  list(dir: string): fs.Dirent[] {
    const known = this.listings?.get(dir);
    if (known) return known;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return []; // not remembered: the next question asks the file system again
    }
    this.listings?.set(dir, entries);
    return entries;
  }

  /** Names in a directory of the set; none when it cannot be read. */
  names(dir: string): string[] {
    return this.list(dir).map((d) => d.name);
  }

  /** Interval directories present, by name. */
  intervals(): string[] {
    return this.list(this.dir)
      .filter((d) => d.isDirectory() && isIntervalName(d.name))
      .map((d) => d.name);
  }

  /** Complete snapshots, newest first (optionally of one interval). */
  snapshots(interval?: string): SnapshotRef[] {
    const out: SnapshotRef[] = [];
    for (const iv of interval ? [interval] : this.intervals()) {
      for (const name of this.names(this.intervalDir(iv))) {
        if (isStamp(name)) {
          out.push({
            interval: iv,
            stamp: name,
            path: this.snapshotDir(iv, name),
            manifest: this.manifestPath(name),
          });
        }
      }
    }
    return out.sort((a, b) => (a.stamp < b.stamp ? 1 : a.stamp > b.stamp ? -1 : 0));
  }

  /** Directories named `.<stamp>.<suffix>` in an interval, oldest first. */
  hidden(interval: string, suffix: 'partial' | 'deleting'): string[] {
    const re = new RegExp(`^\\.(\\d{8}T\\d{6}Z)\\.${suffix}$`);
    return this.names(this.intervalDir(interval))
      .map((n) => re.exec(n)?.[1])
      .filter((s): s is string => s !== undefined)
      .sort();
  }

  /** Every stamp in use in the set, complete or not (stamps are unique within a label). */
  stampsInUse(): Set<string> {
    const used = new Set<string>();
    for (const iv of this.intervals()) {
      for (const name of this.names(this.intervalDir(iv))) {
        const m = /^\.?(\d{8}T\d{6}Z)(\.\w+)?$/.exec(name);
        if (m) used.add(m[1]!);
      }
    }
    return used;
  }
}

export interface SnapshotRef {
  interval: string;
  stamp: string;
  path: string;
  manifest: string;
}

/**
 * Makes a folder (and its parents, mode 0700) unless it is one already. Looked at first: on
 * NFS and FUSE a mkdir of an existing name is a round trip to the server every time, while a
 * stat is answered from the client's attribute cache.
 */
export function ensureDir(dir: string): void {
  try {
    if (fs.statSync(dir).isDirectory()) return;
  } catch {
    /* missing: made below */
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
}

export function readdirOrEmpty(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * A directory that must already be there (never made: a file system should be mounted there),
 * as its real path; bad input naming `what` otherwise.
 */
export function existingDirectory(p: string, what: string): string {
  let real: string;
  try {
    real = fs.realpathSync(path.resolve(p));
  } catch {
    throw new OptionError(
      what,
      p,
      `does not exist${what === 'destination' ? ' (is it mounted?)' : ''}`,
    );
  }
  if (!fs.statSync(real).isDirectory()) throw new OptionError(what, p, 'is not a directory');
  return real;
}

/** Folders named when a label is not found: enough to spot a typo. */
const FOLDERS_SHOWN = 20;

/**
 * The backup set a command reads, and every command's one answer to a wrong one: the label
 * checked, the destination there (is it mounted?), the set's folder in it (else the folders
 * there, from one directory read). Bad input otherwise; nothing is made.
 */
export function existingSet(destination: string, label: string): BackupSet {
  checkLabel(label);
  existingDirectory(destination, 'destination');
  const set = new BackupSet(path.resolve(destination), label);
  let isSet = false;
  try {
    isSet = fs.statSync(set.dir).isDirectory();
  } catch {
    /* said below */
  }
  if (isSet) return set;
  let folders: string[] = [];
  try {
    folders = fs
      .readdirSync(set.destination, { withFileTypes: true })
      .filter((d) => (d.isDirectory() || d.isSymbolicLink()) && !d.name.startsWith('.'))
      .map((d) => d.name)
      .filter((n) => n !== 'lost+found')
      .sort();
  } catch {
    /* an unreadable destination: nothing to name */
  }
  const there =
    folders.length === 0
      ? 'it holds no folder'
      : `the folders there: ${folders.slice(0, FOLDERS_SHOWN).join(', ')}${folders.length > FOLDERS_SHOWN ? ', ...' : ''}`;
  throw badInput(`no backup set ${label} on ${destination} (${there})`);
}

/** A plain word: letters, digits, `-` and `_`, starting with a letter; never `latest`. */
export function isIntervalName(name: string): boolean {
  return /^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(name) && name !== LATEST;
}

export function checkLabel(label: string): void {
  if (label.length === 0) throw badInput('label must not be empty');
  if (label.includes('/') || label.includes('\0'))
    throw badInput(`label "${label}" must not contain "/"`);
  if (label === '.')
    throw badInput('label "." is the destination itself: name a folder in it, such as efs-backup');
  if (label.includes('..')) throw badInput(`label "${label}" must not contain ".."`);
  if (label.startsWith('.')) throw badInput(`label "${label}" must not start with "."`);
  if (Buffer.byteLength(label) > 255) throw badInput('label is longer than 255 bytes');
}

export function checkInterval(interval: string): void {
  if (!isIntervalName(interval)) {
    throw badInput(
      `interval "${interval}" is not a plain word (letters, digits, "-" and "_", starting with a letter, not "latest"), such as daily or weekly`,
    );
  }
}
