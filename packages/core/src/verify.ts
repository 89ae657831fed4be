import fs from 'node:fs';
import path from 'node:path';
import { hashFile } from './digest.js';
import { badInput } from './errors.js';
import { asyncOps, type FsOps } from './fs-ops.js';
import { InFlight } from './inflight.js';
import { BackupSet, type SnapshotRef } from './layout.js';
import type { ManifestIndex, ManifestEntry } from './manifest.js';
import { differences } from './restore.js';
import { isGone, openManifest, resolveSnapshot, rootEntry } from './selectors.js';

export interface VerifyOptions {
  destination: string;
  /** @default 'efs-backup' */
  label?: string;
  /** A selector. @default 'latest' */
  snapshot?: string;
  /** Every complete snapshot of the set. */
  all?: boolean;
  /** Also report how this live source differs from the snapshot (metadata). */
  source?: string;
  /** @default 32 */
  concurrency?: number;
  /** Called as the check of each snapshot begins, its manifest read (awaited). */
  onSnapshot?: (s: SnapshotRef) => void | Promise<void>;
}

export interface SnapshotVerification {
  snapshot: SnapshotRef;
  entries: number;
  bytes: number;
  /** One line per problem: `<kind>: <path>[: detail]`. */
  problems: string[];
  /** With --source: `added|removed|changed: <path>`. */
  sourceDifferences: string[] | null;
  /**
   * Why the snapshot was not checked: it was deleted (by a prune) while verify ran. Not damage:
   * its problems are dropped.
   */
  skipped?: string;
}

/**
 * Re-reads a snapshot and checks every entry against its manifest: type, mode, owner, size,
 * mtime, symlink target, content digest, hard links, and names the manifest does not list.
 */
export async function verify(o: VerifyOptions): Promise<SnapshotVerification[]> {
  const set = new BackupSet(path.resolve(o.destination), o.label ?? 'efs-backup');
  if (!fs.existsSync(set.dir)) throw badInput(`no backup set ${set.label} on ${o.destination}`);
  const snapshots = o.all ? set.snapshots() : [resolveSnapshot(set, o.snapshot ?? 'latest')];
  if (snapshots.length === 0) throw badInput(`no complete snapshot in ${set.dir}`);
  const out: SnapshotVerification[] = [];
  for (const s of snapshots) {
    const v: SnapshotVerification = {
      snapshot: s,
      entries: 0,
      bytes: 0,
      problems: [],
      sourceDifferences: null,
    };
    // A prune renames a doomed snapshot `.<stamp>.deleting` and removes its manifest, then
    // deletes the tree: a snapshot listed when verify began may go at any point of its check.
    const skipIfGone = (): boolean => {
      if (!isGone(s)) return false;
      v.skipped = `${s.interval}/${s.stamp} was deleted by a prune while being verified`;
      v.problems = [];
      v.entries = 0;
      v.bytes = 0;
      v.sourceDifferences = null;
      out.push(v);
      return true;
    };
    let index: ManifestIndex;
    try {
      index = await openManifest(s);
    } catch (e) {
      if (skipIfGone()) continue;
      v.problems.push(`manifest: ${(e as Error).message}`);
      out.push(v);
      continue;
    }
    try {
      await o.onSnapshot?.(s);
      await compareTree(
        index,
        s.path,
        o.concurrency ?? 32,
        true,
        (line) => v.problems.push(line),
        v,
      );
      if (o.source) {
        const src = path.join(path.resolve(o.source), index.header!.Prefix);
        v.sourceDifferences = [];
        await compareTree(
          index,
          src,
          o.concurrency ?? 32,
          false,
          (line) => v.sourceDifferences!.push(line),
          null,
        );
      }
    } finally {
      index.close();
    }
    if (skipIfGone()) continue;
    out.push(v);
  }
  return out;
}

/**
 * Walks `root` against the manifest. With `content`, files are re-read and hashed and problems
 * are reported as damage; without, differences are reported as a source's changes.
 */
function compareTree(
  index: ManifestIndex,
  root: string,
  concurrency: number,
  content: boolean,
  report: (line: string) => void,
  counts: { entries: number; bytes: number } | null,
): Promise<void> {
  const io: FsOps = asyncOps;
  const pool = new InFlight(concurrency);
  const inodes = new Map<string, bigint>();
  const linkChecks: Array<{ rel: string; first: string }> = [];
  const [missing, extra, changed] = content
    ? ['missing', 'extra', 'changed']
    : ['removed', 'added', 'changed'];

  const checkEntry = (rel: string, e: ManifestEntry, done: () => void): void => {
    const p = rel === '' ? root : `${root}/${rel}`;
    io.lstat(p, (err, st) => {
      if (err) {
        report(`${missing}: ${rel}`);
        return done();
      }
      if (counts) counts.entries += rel === '' ? 0 : 1;
      const finish = (linkTarget: string | null): void => {
        const diff = differences(e, st, linkTarget);
        // A directory's mtime in a live source moves with every change inside it.
        const shown = content ? diff : diff.filter((d) => !(e.kind === 'd' && d === 'mtime'));
        if (shown.length > 0) report(`${changed}: ${rel || '.'}: ${shown.join(', ')}`);
        if (e.kind === 'd') {
          pool.push((d) => listDir(rel, p, d));
          return done();
        }
        if (e.link !== undefined) linkChecks.push({ rel, first: e.link });
        if (e.kind === 'f') inodes.set(rel, st.ino);
        if (!content || e.kind !== 'f' || shown.includes('type')) return done();
        hashFile(io, p, (herr, digest, bytes) => {
          if (herr) report(`unreadable: ${rel}: ${herr.message}`);
          else if (digest !== e.data)
            report(`${changed}: ${rel}: content (digest ${digest} != manifest ${e.data})`);
          if (counts) counts.bytes += bytes;
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
        report(`manifest: ${rel}: ${err.message}`);
        return done();
      }
      const list = entries ?? new Map<string, ManifestEntry>();
      io.readdir(p, (e2, names) => {
        if (!e2) {
          for (const n of names)
            if (!list.has(n)) report(`${extra}: ${rel === '' ? n : `${rel}/${n}`}`);
        }
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
      if (content) {
        for (const l of linkChecks) {
          const a = inodes.get(l.rel);
          const b = inodes.get(l.first);
          if (a !== undefined && b !== undefined && a !== b)
            report(`changed: ${l.rel}: no longer a hard link to ${l.first}`);
        }
      }
      resolve();
    });
  });
}
