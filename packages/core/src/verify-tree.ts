import type fs from 'node:fs';
import { hashFile } from './digest.js';
import type { Excludes } from './excludes.js';
import { asyncOps, type FsOps } from './fs-ops.js';
import { InFlight } from './inflight.js';
import type { ManifestEntry, ManifestIndex } from './manifest.js';
import { differences } from './restore-differences.js';
import { rootEntry } from './selectors.js';
import {
  isUnsupported,
  libraryProblem,
  readXattrs,
  sameXattrs,
  unreachable,
  xattrErrno,
  xattrLibrary,
  type Xattrs,
} from './xattrs.js';

/** One line of a check, with the entry it is about ('' is the root). */
export interface Problem {
  rel: string;
  line: string;
  /**
   * About the entry itself (its metadata, attributes, content): gone once the entry is
   * repaired. A missing or extra name, or a broken hard link, is not.
   */
  entry: boolean;
}

/** A damaged entry of a snapshot, as the check found it. */
export interface FoundDamage {
  rel: string;
  entry: ManifestEntry;
  st: fs.BigIntStats;
  what: 'content' | 'metadata';
}

/** The differences a damage record is made of: what `--repair` can put back in place. */
const METADATA = new Set(['mode', 'owner', 'mtime', 'extended attributes']);

/**
 * The extended-attribute check of one verify run: an entry holds exactly the attributes its
 * manifest lists (none when it lists none). A file system without them (ENOTSUP) holds none,
 * and is not asked again; without the library nothing is checked, told once (`note`).
 */
export class XattrCheck {
  private readonly lib = xattrLibrary();
  private supported = true;
  private told = false;

  constructor(private readonly note: (message: string) => void) {}

  /** Whether `p` holds other attributes than `e` lists; null when that cannot be asked. */
  differs(p: string, e: ManifestEntry, unreadable: (why: string) => void): boolean | null {
    if (!this.lib) {
      if (e.xattrs && !this.told) {
        this.told = true;
        this.note(
          `extended attributes not checked: @napi-rs/xattr cannot be loaded (${libraryProblem})`,
        );
      }
      return null;
    }
    if (unreachable(p)) return null;
    let found: Xattrs | null = null;
    if (this.supported) {
      try {
        found = readXattrs(this.lib, p);
      } catch (err) {
        const code = xattrErrno(err);
        if (isUnsupported(code)) this.supported = false;
        else if (code === 'ENOENT') return null;
        else {
          unreadable((err as Error).message);
          return null;
        }
      }
    }
    return !sameXattrs(found, e.xattrs);
  }
}

export interface TreeCheck {
  index: ManifestIndex;
  root: string;
  concurrency: number;
  /** `snapshot`: damage, files re-read and hashed; `source`: how a live source changed. */
  side: 'snapshot' | 'source';
  /** Source side: files of the manifest's size are hashed and compared too. */
  checksum?: boolean;
  /** Source side: what the snapshot left out, which the source holds and is no difference. */
  excludes?: Excludes | null;
  /** Snapshot side: the attribute check (null: not checked). */
  xattrs?: XattrCheck | null;
  report(p: Problem): void;
  /** Snapshot side: entries seen and bytes re-read. */
  counts?: { entries: number; bytes: number };
  /** Snapshot side: each entry found damaged in a way `--repair` can put back. */
  onDamage?(d: FoundDamage): void;
}

/**
 * Walks `root` against the manifest. On the snapshot side files are re-read and hashed and
 * problems are damage; on the source side differences are reported as the source's changes.
 */
export function compareTree(c: TreeCheck): Promise<void> {
  const io: FsOps = asyncOps;
  const { index, root, report } = c;
  const snapshot = c.side === 'snapshot';
  const pool = new InFlight(c.concurrency);
  const inodes = new Map<string, bigint>();
  const linkChecks: Array<{ rel: string; first: string }> = [];
  const [missing, extra, changed] = snapshot
    ? ['missing', 'extra', 'changed']
    : ['removed', 'added', 'changed'];
  const shownRel = (rel: string): string => rel || '.';

  const checkEntry = (rel: string, e: ManifestEntry, done: () => void): void => {
    const p = rel === '' ? root : `${root}/${rel}`;
    io.lstat(p, (err, st) => {
      if (err) {
        report({ rel, line: `${missing}: ${shownRel(rel)}`, entry: false });
        return done();
      }
      if (c.counts && rel !== '') c.counts.entries++;
      const finish = (linkTarget: string | null): void => {
        const diff = differences(e, st, linkTarget);
        // A directory's mtime in a live source moves with every change inside it.
        const shown = snapshot ? diff : diff.filter((d) => !(e.kind === 'd' && d === 'mtime'));
        const typeChanged = shown.includes('type');
        if (snapshot && !typeChanged && c.xattrs) {
          const unreadable = (why: string): void =>
            report({
              rel,
              line: `unreadable: ${shownRel(rel)}: extended attributes: ${why}`,
              entry: true,
            });
          if (c.xattrs.differs(p, e, unreadable)) shown.push('extended attributes');
        }
        const line = (what: string[]): void => {
          if (what.length > 0)
            report({ rel, line: `${changed}: ${shownRel(rel)}: ${what.join(', ')}`, entry: true });
        };
        const damaged = (content: boolean): void => {
          if (!snapshot || typeChanged || !c.onDamage) return;
          if (content) c.onDamage({ rel, entry: e, st, what: 'content' });
          else if (shown.some((d) => METADATA.has(d)))
            c.onDamage({ rel, entry: e, st, what: 'metadata' });
        };
        if (e.kind === 'd') {
          line(shown);
          damaged(false);
          // A snapshot's directory replaced by a symlink is not followed out of the snapshot.
          if (!(snapshot && typeChanged)) pool.push((d) => listDir(rel, p, d));
          return done();
        }
        if (e.link !== undefined) linkChecks.push({ rel, first: e.link });
        if (e.kind === 'f') inodes.set(rel, st.ino);
        if (e.kind !== 'f' || typeChanged) {
          line(shown);
          damaged(false);
          return done();
        }
        if (!snapshot) {
          if (!c.checksum || shown.includes('size')) {
            line(shown);
            return done();
          }
          // Every stat field may agree while the bytes do not: the digest says.
          return hashFile(io, p, (herr, digest) => {
            if (herr)
              report({ rel, line: `unreadable: ${shownRel(rel)}: ${herr.message}`, entry: true });
            else if (digest !== e.data) shown.push('content');
            line(shown);
            done();
          });
        }
        line(shown);
        hashFile(io, p, (herr, digest, bytes) => {
          let content = false;
          if (herr) {
            report({ rel, line: `unreadable: ${shownRel(rel)}: ${herr.message}`, entry: true });
            // A read error is damage; being refused (not root) is not.
            content = herr.code !== 'EACCES' && herr.code !== 'EPERM' && herr.code !== 'ENOENT';
          } else if (digest !== e.data) {
            report({
              rel,
              line: `${changed}: ${shownRel(rel)}: content (digest ${digest} != manifest ${e.data})`,
              entry: true,
            });
            content = true;
          }
          damaged(content);
          if (c.counts) c.counts.bytes += bytes;
          done();
        });
      };
      if (e.kind === 'l' && st.isSymbolicLink())
        return io.readlink(p, (e2, t) => finish(e2 ? null : t));
      finish(null);
    });
  };

  const listDir = (rel: string, p: string, done: () => void): void => {
    index.readDir(io, rel, (err, entries) => {
      if (err) {
        report({ rel, line: `manifest: ${rel}: ${err.message}`, entry: false });
        return done();
      }
      const list = entries ?? new Map<string, ManifestEntry>();
      const excludes = c.excludes ?? null;
      const extras = (names: readonly (string | fs.Dirent)[]): void => {
        // A directory the snapshot's `excludeIfPresent` emptied holds nothing to compare.
        if (excludes?.tagged(names as fs.Dirent[])) return;
        for (const item of names) {
          const n = typeof item === 'string' ? item : item.name;
          if (list.has(n)) continue;
          if (excludes?.excludesEntry(rel, item as fs.Dirent)) continue;
          const childRel = rel === '' ? n : `${rel}/${n}`;
          report({ rel: childRel, line: `${extra}: ${childRel}`, entry: false });
        }
      };
      const read = (cb: (e: NodeJS.ErrnoException | null, n: (string | fs.Dirent)[]) => void) =>
        excludes ? io.readdirTypes(p, cb) : io.readdir(p, cb);
      read((e2, names) => {
        if (!e2) extras(names);
        for (const e of list.values()) {
          const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
          pool.push((d) => checkEntry(childRel, e, d));
        }
        done();
      });
    });
  };

  return new Promise<void>((resolve) => {
    pool.push((d) => checkEntry('', rootEntry(index), d));
    pool.onIdle(() => {
      if (snapshot) {
        for (const l of linkChecks) {
          const a = inodes.get(l.rel);
          const b = inodes.get(l.first);
          if (a !== undefined && b !== undefined && a !== b)
            report({
              rel: l.rel,
              line: `changed: ${l.rel}: no longer a hard link to ${l.first}`,
              entry: false,
            });
        }
      }
      resolve();
    });
  });
}
