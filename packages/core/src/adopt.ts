import fs from 'node:fs';
import path from 'node:path';
import { pointLatest } from './backup.js';
import { hashFileSync } from './digest.js';
import { badInput } from './errors.js';
import { existingSet, isIntervalName, readdirOrEmpty } from './layout.js';
import { LabelLock } from './lock.js';
import { entryOf, toMeta } from './change.js';
import { readXattrs, unreachable, xattrLibrary, type Xattrs } from './xattrs.js';
import { readdirSync, readlinkSync } from './fs-ops.js';
import {
  blockLine,
  encodeEntry,
  MANIFEST_FORMAT,
  manifestVersion,
  writeManifest,
  type ManifestEntry,
} from './manifest.js';
import { fsPath } from './names.js';
import { toStamp } from './stamp.js';

export interface AdoptOptions {
  destination: string;
  label: string;
}

export interface AdoptedSnapshot {
  from: string;
  interval: string;
  stamp: string;
  entries: number;
}

/**
 * Turns a backup set of the original AWS solution (`<label>/daily.0` … `daily.N`, newest
 * first, hard-linked by rsync) into snapshots of this layout, in place: each `<interval>.<n>`
 * gets a manifest (each inode is read once for its digest, shared inodes across days are not
 * read again) and is renamed `<interval>/<stamp>`, oldest first; no file data is copied.
 * The stamp is the directory's mtime (when rsync finished it), kept increasing.
 */
export function adopt(o: AdoptOptions): AdoptedSnapshot[] {
  const set = existingSet(o.destination, o.label);
  const old = readdirOrEmpty(set.dir)
    .map((name) => /^([A-Za-z][\w-]*)\.(\d+)$/.exec(name))
    .filter((m): m is RegExpExecArray => m !== null && isIntervalName(m[1]!))
    .filter((m) => fs.lstatSync(path.join(set.dir, m[0])).isDirectory())
    .map((m) => ({ name: m[0], interval: m[1]!, n: Number(m[2]) }));
  if (old.length === 0)
    throw badInput(`no <interval>.<n> directories (such as daily.0) in ${set.dir}`);
  fs.chmodSync(set.dir, 0o700);
  fs.mkdirSync(set.manifestsDir, { recursive: true, mode: 0o700 });
  const lock = LabelLock.acquire(set.lockFile, `adopt-${process.pid}`);
  try {
    const digests = new Map<string, string>();
    const used = set.stampsInUse();
    const done: AdoptedSnapshot[] = [];
    let last = '';
    // Oldest first: the highest number of each interval, and across intervals by mtime.
    const ordered = old
      .map((d) => ({ ...d, mtime: fs.lstatSync(path.join(set.dir, d.name)).mtimeMs }))
      .sort((a, b) => (a.interval === b.interval ? b.n - a.n : a.mtime - b.mtime));
    for (const d of ordered) {
      let t = Math.floor(d.mtime / 1000) * 1000;
      let stamp = toStamp(new Date(t));
      while (used.has(stamp) || stamp <= last) {
        t += 1000;
        stamp = toStamp(new Date(t));
      }
      used.add(stamp);
      last = stamp;
      const src = path.join(set.dir, d.name);
      const journal = set.journalPath(stamp);
      fs.rmSync(journal, { force: true });
      const fd = fs.openSync(journal, 'w', 0o600);
      let manifest: { root: ManifestEntry; files: number; bytes: number };
      try {
        manifest = manifestOf(
          src,
          (dir, records) => {
            if (records.length > 0) fs.writeSync(fd, blockLine(dir, records));
          },
          digests,
        );
      } finally {
        fs.closeSync(fd);
      }
      const { root, files, bytes } = manifest;
      const when = new Date(t).toISOString();
      writeManifest(
        set.manifestPath(stamp),
        {
          format: MANIFEST_FORMAT,
          version: manifestVersion(false),
          BackupId: `adopted-${d.name}-${stamp}`,
          Label: o.label,
          Interval: d.interval,
          Snapshot: stamp,
          Source: 'adopted',
          Prefix: '/',
          StartTime: when,
          StopTime: when,
          NumberOfFiles: files,
          TotalFileSize: bytes,
          root: encodeEntry(root),
        },
        journal,
        0,
      );
      fs.mkdirSync(set.intervalDir(d.interval), { recursive: true, mode: 0o700 });
      fs.renameSync(src, set.snapshotDir(d.interval, stamp));
      fs.rmSync(journal, { force: true });
      done.push({ from: d.name, interval: d.interval, stamp, entries: files });
    }
    const newest = set.snapshots()[0];
    if (newest) pointLatest(set, newest.interval, newest.stamp);
    return done;
  } finally {
    lock.release();
  }
}

/** Walks one old snapshot and journals its manifest blocks. */
function manifestOf(
  root: string,
  write: (dir: string, records: ManifestEntry[]) => void,
  digests: Map<string, string>,
): { root: ManifestEntry; files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const firstName = new Map<string, string>();
  const walk = (rel: string): void => {
    const dir = rel === '' ? root : path.join(root, rel);
    const records: ManifestEntry[] = [];
    const subdirs: string[] = [];
    for (const name of readdirSync(dir)) {
      const p = path.join(dir, name);
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const st = fs.lstatSync(fsPath(p), { bigint: true });
      // The snapshot's inode, not the source's: an adopted entry has no source identity.
      const m = { ...toMeta(st), ino: '' };
      const kind = m.kind;
      if (kind === null) continue;
      files++;
      let data = '';
      let link: string | undefined;
      if (kind === 'f') {
        bytes += Number(st.size);
        const key = `${st.dev}:${st.ino}`;
        data = digests.get(key) ?? hashFileSync(p).digest;
        digests.set(key, data);
        if (st.nlink > 1n) {
          const first = firstName.get(key);
          if (first === undefined) firstName.set(key, childRel);
          else link = first;
        }
      } else if (kind === 'l') {
        data = readlinkSync(p);
      } else if (kind === 'd') {
        subdirs.push(childRel);
      }
      records.push(entryOf(name, m, data, link, attributesOf(p)));
    }
    write(rel, records);
    for (const s of subdirs) walk(s);
  };
  walk('');
  const rootMeta = toMeta(fs.lstatSync(root, { bigint: true }));
  return { root: entryOf('', rootMeta, '', undefined, attributesOf(root)), files, bytes };
}

/** The attributes an adopted snapshot's entry holds (the manifest says what verify finds). */
function attributesOf(p: string): Xattrs | null {
  const lib = xattrLibrary();
  if (!lib || unreachable(p)) return null;
  try {
    return readXattrs(lib, p);
  } catch {
    return null; // ENOTSUP: none
  }
}
