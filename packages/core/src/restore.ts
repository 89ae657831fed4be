import fs from 'node:fs';
import path from 'node:path';
import { copyFile, CHUNK } from './copy-file.js';
import { applyEntryMeta } from './entry-meta.js';
import { badInput, EfsBackupError, isSystemError } from './errors.js';
import { asyncOps, mkfifo, syncOps, timeArg, type FsOps } from './fs-ops.js';
import { InFlight, type Job } from './inflight.js';
import type { SnapshotRef } from './layout.js';
import { kindOfMode } from './change.js';
import type { ManifestEntry, ManifestIndex } from './manifest.js';
import { fsPath, shown } from './names.js';
import { isRemote, within } from './options.js';
import {
  badName,
  checkSnapshotPath,
  entryAt,
  isGone,
  openSnapshot,
  prunedError,
} from './selectors.js';

export interface RestoreOptions {
  destination: string;
  /** @default 'efs-backup' */
  label?: string;
  /** `latest`, `daily.0`, a stamp or a BackupId. */
  snapshot: string;
  /** Where to restore to; created when missing. May be the live source. */
  target: string;
  /** A directory or a single file inside the snapshot. @default the whole snapshot */
  subdir?: string;
  /** Remove from the target what the snapshot does not hold (a mirror). @default false */
  delete?: boolean;
  /** List what would change; write nothing. @default false */
  dryRun?: boolean;
  /** @default from the target's file-system type */
  concurrency?: number;
  /** @default from the target's file-system type */
  io?: 'sync' | 'async';
  onChange?: (change: RestoreChange) => void;
}

export type RestoreAction = 'create' | 'update' | 'delete' | 'link';

export interface RestoreChange {
  action: RestoreAction;
  /** Relative to the target. */
  path: string;
  /** What differs, for an update: content, mode, owner, mtime, type, target. */
  reasons: string[];
}

export interface RestoreResult {
  snapshot: SnapshotRef;
  created: number;
  updated: number;
  deleted: number;
  linked: number;
  unchanged: number;
  bytes: number;
  warnings: string[];
}

/** What differs between a manifest entry and what the target holds. */
export function differences(
  e: ManifestEntry,
  st: fs.BigIntStats,
  linkTarget: string | null,
): string[] {
  const mode = Number(st.mode);
  const kind = kindOfMode(mode) ?? '?';
  if (kind !== e.kind) return ['type'];
  const out: string[] = [];
  if (e.kind === 'f' && Number(st.size) !== e.size) out.push('size');
  if (e.kind === 'l' && linkTarget !== e.data) out.push('target');
  if (e.kind !== 'l' && (mode & 0o7777) !== (e.mode & 0o7777)) out.push('mode');
  if (Number(st.uid) !== e.uid || Number(st.gid) !== e.gid) out.push('owner');
  const ns = BigInt(e.mtimeSec) * 1_000_000_000n + BigInt(e.mtimeNsec);
  if (st.mtimeNs / 1000n !== ns / 1000n) out.push('mtime');
  return out;
}

/**
 * Restores a snapshot, a sub-directory or one file into a target. Only what differs is written,
 * each file into a new inode renamed over the old name, so a symlink planted in the target is
 * replaced, never followed, and other names of a target file are left alone.
 */
export async function restore(o: RestoreOptions): Promise<RestoreResult> {
  const label = o.label ?? 'efs-backup';
  if (!o.target) throw badInput('target is required');
  const { set, snapshot, index } = await openSnapshot(
    path.resolve(o.destination),
    label,
    o.snapshot,
    'being restored',
  );
  try {
    const sub = checkSnapshotPath(index, o.subdir ?? '', 'subdir');
    // The target as given is followed (like cp); nothing inside it ever is.
    const target = resolveThroughExisting(path.resolve(o.target));
    const setDir = resolveThroughExisting(set.dir);
    if (within(target, setDir))
      throw badInput(`target ${o.target} is inside the backup set ${set.dir}`);
    if (within(setDir, target)) {
      throw badInput(
        `target ${o.target} holds the backup set ${set.dir}: restore into a directory beside it`,
      );
    }
    const root = entryAt(index, sub)!;
    if (fs.existsSync(target) && !fs.statSync(target).isDirectory()) {
      throw badInput(`target ${o.target} is not a directory`);
    }
    const concurrency = o.concurrency ?? 32;
    const parent = fs.existsSync(target) ? target : nearestExisting(target);
    // Each side's calls by its own file system: the snapshot's (read) and the target's (written).
    const side = (remote: boolean): FsOps =>
      (o.io ?? (remote ? 'async' : 'sync')) === 'sync' ? syncOps : asyncOps;
    const io = side(isRemote(parent));
    const run = new RestoreRun(index, snapshot, sub, o, io, side(isRemote(set.dir)), concurrency);
    // A file is restored into the target directory under its own name.
    const dst = root.kind === 'd' ? target : path.join(target, path.basename(sub));
    try {
      if (!o.dryRun)
        fs.mkdirSync(root.kind === 'd' ? path.dirname(target) : target, { recursive: true });
      return await run.run(root, dst);
    } catch (e) {
      // The snapshot went away under the restore: say why, not which file was missing.
      if (isGone(snapshot)) throw prunedError(snapshot, 'being restored', e);
      throw e;
    }
  } finally {
    index.close();
  }
}

/** The real path of the nearest existing ancestor, with the rest of `p` appended. */
function resolveThroughExisting(p: string): string {
  const existing = nearestExisting(p);
  let real = existing;
  try {
    real = fs.realpathSync(existing);
  } catch {
    /* keep the path as given */
  }
  return path.join(real, path.relative(existing, p));
}

function nearestExisting(p: string): string {
  let cur = p;
  while (!fs.existsSync(cur) && path.dirname(cur) !== cur) cur = path.dirname(cur);
  return cur;
}

/** Temporary names of a restore: `.efs-restore-<pid>-<n>`. */
const TMP_PREFIX = '.efs-restore-';
const TMP_NAME = /^\.efs-restore-(\d+)-(\d+)$/;

/**
 * A temporary file that a killed restore left behind (its process is gone), or one of a
 * restore still running into the same target: never content of the target either way.
 */
export function restoreTemporary(name: string): 'mine' | 'live' | 'leftover' | null {
  const m = TMP_NAME.exec(name);
  if (!m) return null;
  const pid = Number(m[1]);
  if (pid === process.pid) return 'mine';
  if (pid <= 0 || !Number.isSafeInteger(pid)) return 'leftover';
  try {
    process.kill(pid, 0);
    return 'live';
  } catch (e) {
    return isSystemError(e, 'EPERM') ? 'live' : 'leftover';
  }
}

interface DirJob {
  /** Snapshot-relative path. */
  rel: string;
  /** Target path. */
  dst: string;
  entry: ManifestEntry;
  parent: DirJob | null;
  pending: number;
  /** The directory is new in the target (dry run: nothing below it exists). */
  fresh: boolean;
  /** What the target's directory was when entered (when it existed). */
  before?: fs.BigIntStats;
  /** Leftovers of a killed restore were removed from it (its mtime moved). */
  cleaned?: boolean;
}

class RestoreRun {
  private readonly pool: InFlight;
  private readonly result: RestoreResult;
  private readonly links: Array<{ dst: string; first: string; rel: string }> = [];
  private readonly standIns = new Map<string, string>();
  private fatal: Error | null = null;
  private tmpCounter = 0;
  private rootDst = '';

  constructor(
    private readonly index: ManifestIndex,
    snapshot: SnapshotRef,
    private readonly sub: string,
    private readonly o: RestoreOptions,
    private readonly io: FsOps,
    /** The snapshot side's calls (manifest and file reads). */
    private readonly snapIo: FsOps,
    concurrency: number,
  ) {
    this.pool = new InFlight(concurrency);
    this.result = {
      snapshot,
      created: 0,
      updated: 0,
      deleted: 0,
      linked: 0,
      unchanged: 0,
      bytes: 0,
      warnings: [],
    };
  }

  private snapPath(rel: string): string {
    return rel === '' ? this.result.snapshot.path : `${this.result.snapshot.path}/${rel}`;
  }

  /** Target-relative name of a snapshot-relative path, for messages. */
  private shown(dst: string): string {
    return path.relative(this.rootDst, dst) || '.';
  }

  /**
   * Whatever the manifest says, nothing is written outside the target: `p` must be the
   * target's root or a path of plain names below it.
   */
  private inside(p: string): boolean {
    if (p === this.rootDst) return true;
    if (!p.startsWith(`${this.rootDst}/`)) return false;
    return p
      .slice(this.rootDst.length + 1)
      .split('/')
      .every((n) => badName(n) === null);
  }

  /** Fails the run when `p` is not inside the target; true when it is. */
  private guard(p: string): boolean {
    if (this.inside(p)) return true;
    this.fail(
      new EfsBackupError(
        'FAILED',
        `refusing to write ${shown(p)}: it is not inside the target ${shown(this.rootDst)} (the snapshot's manifest is damaged: run verify)`,
      ),
    );
    return false;
  }

  private change(action: RestoreAction, dst: string, reasons: string[] = []): void {
    if (action === 'create') this.result.created++;
    else if (action === 'update') this.result.updated++;
    else if (action === 'delete') this.result.deleted++;
    else this.result.linked++;
    this.o.onChange?.({ action, path: this.shown(dst), reasons });
  }

  private fail(err: Error): void {
    this.fatal ??= err;
    this.pool.halt();
  }

  async run(root: ManifestEntry, dst: string): Promise<RestoreResult> {
    this.rootDst = root.kind === 'd' ? dst : path.dirname(dst);
    await new Promise<void>((resolve) => {
      this.pool.push((done) => {
        if (root.kind === 'd') {
          const job: DirJob = {
            rel: this.sub,
            dst,
            entry: root,
            parent: null,
            pending: 1,
            fresh: false,
          };
          this.enterDir(job, done);
        } else {
          this.leaf(this.sub, dst, root, done);
        }
      });
      this.pool.onIdle(resolve);
    });
    if (!this.fatal) await this.relink();
    if (this.fatal) {
      throw new EfsBackupError('FAILED', `restore stopped: ${this.fatal.message}`, {
        cause: this.fatal,
      });
    }
    return this.result;
  }

  /** Makes sure the target directory exists (and is a real directory), then lists it. */
  private enterDir(job: DirJob, done: () => void): void {
    if (!this.guard(job.dst)) return done();
    this.io.lstat(job.dst, (err, st) => {
      if (err && err.code !== 'ENOENT') {
        this.fail(err);
        return done();
      }
      const list = (): void => this.listDir(job, done);
      if (!err && st.isDirectory()) {
        job.before = st;
        return list();
      }
      job.fresh = true;
      this.change('create', job.dst);
      if (this.o.dryRun) return list();
      const make = (): void =>
        this.io.mkdir(job.dst, 0o700, (e) => (e ? (this.fail(e), done()) : list()));
      if (err) return make();
      // A file or a symlink stands where the directory goes: replace it, never follow it.
      this.io.unlink(job.dst, (e) => (e ? (this.fail(e), done()) : make()));
    });
  }

  private listDir(job: DirJob, done: () => void): void {
    this.index.readDir(this.snapIo, job.rel, (err, entries) => {
      if (err) {
        this.fail(err);
        return done();
      }
      const list = entries ?? new Map<string, ManifestEntry>();
      const dispatch = (): void => {
        job.pending += list.size;
        const lane: Job[] = [];
        for (const e of list.values()) {
          const rel = job.rel === '' ? e.name : `${job.rel}/${e.name}`;
          const dst = `${job.dst}/${e.name}`;
          if (e.kind === 'd') {
            const child: DirJob = { rel, dst, entry: e, parent: job, pending: 1, fresh: false };
            this.pool.push((d) => this.enterDir(child, d));
          } else {
            lane.push((d) => this.leaf(rel, dst, e, d, job));
          }
        }
        // As in a backup: directories first, files in a lane per directory, served in turn.
        this.pool.pushLane(lane);
        this.finished(job);
        done();
      };
      // Nothing below a new directory to look at; a dry run only looks when asked to delete.
      if (job.fresh || (this.o.dryRun && !this.o.delete)) return dispatch();
      this.removeExtras(job, list, dispatch);
    });
  }

  /**
   * Removes what a killed restore left in the directory (its temporary files), and with
   * --delete what the target holds and the snapshot does not. Temporary files of restores are
   * never content: they are neither kept nor reported as deleted.
   */
  private removeExtras(job: DirJob, keep: Map<string, ManifestEntry>, next: () => void): void {
    this.io.readdir(job.dst, (err, names) => {
      if (err) {
        this.fail(err);
        return next();
      }
      const doomed: string[] = [];
      for (const n of names) {
        if (keep.has(n)) continue;
        const tmp = n.startsWith(TMP_PREFIX) ? restoreTemporary(n) : null;
        if (tmp === 'leftover') {
          if (!this.o.dryRun) doomed.push(n);
          job.cleaned = true;
        } else if (tmp === null && this.o.delete) {
          this.change('delete', `${job.dst}/${n}`);
          if (!this.o.dryRun) doomed.push(n);
        }
      }
      let left = doomed.length;
      if (left === 0) return next();
      for (const n of doomed) {
        const p = `${job.dst}/${n}`;
        if (!this.guard(p)) {
          if (--left === 0) next();
          continue;
        }
        fs.rm(fsPath(p), { recursive: true, force: true }, (e) => {
          if (e) this.fail(e);
          if (--left === 0) next();
        });
      }
    });
  }

  private finished(job: DirJob): void {
    if (--job.pending > 0) return;
    this.pool.push((done) => {
      const after = (): void => {
        if (job.parent) this.finished(job.parent);
        done();
      };
      if (this.o.dryRun && job.fresh) return after();
      this.io.lstat(job.dst, (err, st) => {
        if (err) {
          if (!this.o.dryRun) this.fail(err);
          return after();
        }
        const diff = differences(job.entry, st, null);
        if (diff.length === 0) return after();
        // Removing leftovers moved the mtime: not a change of content worth reporting.
        const moved =
          job.cleaned && job.before && !differences(job.entry, job.before, null).includes('mtime');
        const reasons = moved ? diff.filter((d) => d !== 'mtime') : diff;
        if (!job.fresh && reasons.length > 0) this.change('update', job.dst, reasons);
        if (this.o.dryRun) return after();
        this.applyMeta(job.dst, job.entry, false, (e) => {
          if (e) this.fail(e);
          after();
        });
      });
    });
  }

  private leaf(
    rel: string,
    dst: string,
    e: ManifestEntry,
    done: () => void,
    parent?: DirJob,
  ): void {
    const end = (): void => {
      if (parent) this.finished(parent);
      done();
    };
    if (!this.guard(dst)) return end();
    // A second name of one inode: linked to the first after the walk, if the first is restored.
    if (e.link !== undefined) {
      // The group's first name may lie outside a --subdir: then the first name met inside
      // it is written, and the others are linked to that one.
      const first = this.inScope(e.link) ? e.link : this.standIns.get(e.link);
      if (first !== undefined) {
        this.links.push({ dst, first, rel });
        return end();
      }
      this.standIns.set(e.link, rel);
    }
    if (parent?.fresh && this.o.dryRun) {
      this.change('create', dst);
      return end();
    }
    this.io.lstat(dst, (err, st) => {
      if (err && err.code !== 'ENOENT') {
        this.fail(err);
        return end();
      }
      const check = (linkTarget: string | null): void => {
        const diff = err ? null : differences(e, st, linkTarget);
        if (diff && diff.length === 0) {
          this.result.unchanged++;
          return end();
        }
        this.change(diff ? 'update' : 'create', dst, diff ?? []);
        if (this.o.dryRun) return end();
        this.write(rel, dst, e, (werr) => {
          if (werr) this.fail(werr);
          end();
        });
      };
      if (!err && st.isSymbolicLink() && e.kind === 'l') {
        return this.io.readlink(dst, (e2, t) => check(e2 ? null : t));
      }
      check(null);
    });
  }

  private inScope(rel: string): boolean {
    return this.sub === '' || rel === this.sub || rel.startsWith(`${this.sub}/`);
  }

  private tmpName(dst: string): string {
    return `${path.dirname(dst)}/${TMP_PREFIX}${process.pid}-${++this.tmpCounter}`;
  }

  /** Writes a new inode at a temporary name, then renames it over `dst`. */
  private write(rel: string, dst: string, e: ManifestEntry, cb: (err: Error | null) => void): void {
    const tmp = this.tmpName(dst);
    const commit = (err: Error | null): void => {
      if (err) return fs.rm(fsPath(tmp), { force: true }, () => cb(err));
      fs.rename(fsPath(tmp), fsPath(dst), (re) => {
        if (!re) return cb(null);
        if (re.code !== 'EISDIR' && re.code !== 'ENOTEMPTY' && re.code !== 'EEXIST') return cb(re);
        // A directory stands where a file goes.
        fs.rm(fsPath(dst), { recursive: true, force: true }, (rme) =>
          rme ? cb(rme) : fs.rename(fsPath(tmp), fsPath(dst), (re2) => cb(re2)),
        );
      });
    };
    if (e.kind === 'f') {
      const meta = {
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        atime: timeArg(e.mtimeSec, e.mtimeNsec),
        mtime: timeArg(e.mtimeSec, e.mtimeNsec),
        sparse: true,
      };
      const small = e.size < CHUNK;
      return copyFile(
        small && this.snapIo.mode === 'sync' ? syncOps : asyncOps,
        small && this.io.mode === 'sync' ? syncOps : asyncOps,
        this.snapPath(rel),
        tmp,
        e.size,
        meta,
        () => this.fatal !== null,
        (err, res) => {
          if (err) return commit(err);
          this.result.bytes += res!.bytes;
          if (res!.digest !== e.data) {
            this.result.warnings.push(
              `${shown(rel)}: the snapshot's data does not match its manifest (run verify)`,
            );
          }
          commit(null);
        },
      );
    }
    if (e.kind === 'l') {
      return fs.symlink(fsPath(e.data), fsPath(tmp), (err) => {
        if (err) return cb(err);
        this.applyMeta(tmp, e, true, commit);
      });
    }
    // A path that is not UTF-8 is made in the target's root (same file system), then linked.
    mkfifo(tmp, this.rootDst, (err) => (err ? cb(err) : this.applyMeta(tmp, e, false, commit)));
  }

  private applyMeta(
    p: string,
    e: ManifestEntry,
    isLink: boolean,
    cb: (err: Error | null) => void,
  ): void {
    const t = timeArg(e.mtimeSec, e.mtimeNsec);
    const meta = { mode: e.mode, uid: e.uid, gid: e.gid, atime: t, mtime: t };
    const denied = (): void => {
      this.result.warnings.push(`${shown(this.shown(p))}: owner not restored (needs root)`);
    };
    applyEntryMeta(this.io, p, meta, isLink, denied, cb);
  }

  /** Second names of inodes, linked to the first name once everything is written. */
  private async relink(): Promise<void> {
    const firstDst = (first: string): string => {
      const rel =
        this.sub === '' ? first : first === this.sub ? '' : first.slice(this.sub.length + 1);
      return rel === '' ? this.rootDst : `${this.rootDst}/${rel}`;
    };
    const touched = new Map<string, string>();
    for (const l of this.links) {
      const from = firstDst(l.first);
      if (!this.guard(from) || !this.guard(l.dst)) return;
      let same = false;
      try {
        same = fs.lstatSync(fsPath(from)).ino === fs.lstatSync(fsPath(l.dst)).ino;
      } catch {
        same = false;
      }
      if (same) {
        this.result.unchanged++;
        continue;
      }
      this.change('link', l.dst);
      if (this.o.dryRun) continue;
      const tmp = this.tmpName(l.dst);
      try {
        fs.linkSync(fsPath(from), fsPath(tmp));
        try {
          fs.renameSync(fsPath(tmp), fsPath(l.dst));
        } catch (re) {
          if (!isSystemError(re) || !['EISDIR', 'ENOTEMPTY', 'EEXIST'].includes(re.code)) throw re;
          // A directory stands where this name goes.
          fs.rmSync(fsPath(l.dst), { recursive: true, force: true });
          fs.renameSync(fsPath(tmp), fsPath(l.dst));
        }
      } catch (err) {
        fs.rmSync(fsPath(tmp), { force: true });
        this.fail(err as Error);
        return;
      }
      touched.set(path.posix.dirname(l.rel), path.dirname(l.dst));
    }
    // Linking changed those directories' mtimes after they were set.
    for (const [rel, dst] of touched) {
      const e = entryAt(this.index, rel === '.' ? '' : rel);
      if (e)
        fs.utimesSync(
          fsPath(dst),
          timeArg(e.mtimeSec, e.mtimeNsec),
          timeArg(e.mtimeSec, e.mtimeNsec),
        );
    }
  }
}
