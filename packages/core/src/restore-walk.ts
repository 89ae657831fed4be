import fs from 'node:fs';
import type { Excludes } from './excludes.js';
import type { FsOps } from './fs-ops.js';
import type { InFlight, Job } from './inflight.js';
import type { ManifestEntry, ManifestIndex } from './manifest.js';
import { removeTree } from './remove-tree.js';
import { differences } from './restore-differences.js';
import type { RestoreLinks } from './restore-links.js';
import type { RestoreReport } from './restore-report.js';
import { restoreTemporary, type RestoreTarget } from './restore-target.js';
import type { RestoreWriter } from './restore-writer.js';

/** A directory being restored; its children are counted down before its metadata is set. */
interface DirJob {
  /** Snapshot-relative path. */
  rel: string;
  /** Target path. */
  dst: string;
  entry: ManifestEntry;
  parent: DirJob | null;
  /** Child entries and sub-trees not yet finished, plus one for the listing. */
  pending: number;
  /** The directory is new in the target (dry run: nothing below it exists). */
  fresh: boolean;
  /** What the target's directory was when entered (when it existed). */
  before?: fs.BigIntStats;
  /** Leftovers of a killed restore were removed from it (its mtime moved). */
  cleaned?: boolean;
}

/**
 * The walk of the snapshot into the target: each directory made sure of in the target and its
 * manifest listing read (sub-directories first, the other entries in a lane per directory, as
 * in a backup); what the target holds and the snapshot does not removed (a mirror) along with
 * leftovers of a killed restore; for each entry the decision (unchanged, written, or a second
 * name linked after the walk); a directory's metadata set once all its children are done.
 */
export class RestoreWalk {
  constructor(
    private readonly index: ManifestIndex,
    /** The snapshot side's calls (manifest reads). */
    private readonly snapIo: FsOps,
    /** The target side's calls. */
    private readonly io: FsOps,
    private readonly pool: InFlight,
    private readonly target: RestoreTarget,
    private readonly writer: RestoreWriter,
    private readonly links: RestoreLinks,
    private readonly report: RestoreReport,
    private readonly dryRun: boolean,
    /** Remove from the target what the snapshot does not hold. */
    private readonly mirror: boolean,
    /**
     * What the snapshot left out (its manifest's header): a mirror leaves in the target what
     * these leave out of a backup of it. Null: nothing was left out.
     */
    private readonly excludes: Excludes | null = null,
  ) {}

  /** Restores `root` (snapshot path `rel`) at `dst`; resolves once nothing is left in flight. */
  run(rel: string, root: ManifestEntry, dst: string): Promise<void> {
    return new Promise<void>((resolve) => {
      this.pool.push((done) => {
        if (root.kind === 'd') {
          const job: DirJob = { rel, dst, entry: root, parent: null, pending: 1, fresh: false };
          this.enterDir(job, done);
        } else {
          this.leaf(rel, dst, root, done);
        }
      });
      this.pool.onIdle(resolve);
    });
  }

  /** Makes sure the target directory exists (and is a real directory), then lists it. */
  private enterDir(job: DirJob, done: () => void): void {
    if (!this.target.guard(job.dst)) return done();
    this.io.lstat(job.dst, (err, st) => {
      if (err && err.code !== 'ENOENT') {
        this.report.fail(err);
        return done();
      }
      const list = (): void => this.listDir(job, done);
      if (!err && st.isDirectory()) {
        job.before = st;
        return list();
      }
      job.fresh = true;
      this.report.change('create', job.dst);
      if (this.dryRun) return list();
      const make = (): void =>
        this.io.mkdir(job.dst, 0o700, (e) => (e ? (this.report.fail(e), done()) : list()));
      if (err) return make();
      // A file or a symlink stands where the directory goes: replace it, never follow it.
      this.io.unlink(job.dst, (e) => (e ? (this.report.fail(e), done()) : make()));
    });
  }

  private listDir(job: DirJob, done: () => void): void {
    this.index.readDir(this.snapIo, job.rel, (err, entries) => {
      if (err) {
        this.report.fail(err);
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
      };
      // Nothing below a new directory to look at; a dry run only looks when asked to delete.
      if (job.fresh || (this.dryRun && !this.mirror)) {
        dispatch();
        return done();
      }
      this.removeExtras(job, list, dispatch, done);
    });
  }

  /**
   * Removes what a killed restore left in the directory (its temporary files), and with
   * --delete what the target holds and the snapshot does not; then `next`. Temporary files of
   * restores are never content: they are neither kept nor reported as deleted. The trees go
   * with the walk's pool, so `done` (the listing's job) is called once they are queued.
   */
  private removeExtras(
    job: DirJob,
    keep: Map<string, ManifestEntry>,
    next: () => void,
    done: () => void,
  ): void {
    // The snapshot left things out: the listing's types say what of the target they are.
    const spare = this.mirror ? this.excludes : null;
    const read = (
      cb: (err: NodeJS.ErrnoException | null, names: fs.Dirent[] | string[]) => void,
    ) => (spare ? this.io.readdirTypes(job.dst, cb) : this.io.readdir(job.dst, cb));
    read((err, list) => {
      if (err) {
        this.report.fail(err);
        return done();
      }
      // A directory the snapshot's `excludeIfPresent` emptied: its content is the user's.
      const tagged = spare !== null && spare.tagged(list as fs.Dirent[]);
      const doomed: string[] = [];
      const mirrored: string[] = [];
      for (const item of list) {
        const n = typeof item === 'string' ? item : item.name;
        if (keep.has(n)) continue;
        const tmp = restoreTemporary(n);
        if (tmp === 'leftover') {
          if (!this.dryRun) doomed.push(n);
          job.cleaned = true;
        } else if (tmp === null && this.mirror) {
          if (spare) {
            if (!tagged && !spare.excludesEntry(job.rel, item as fs.Dirent)) mirrored.push(n);
            continue;
          }
          this.report.change('delete', `${job.dst}/${n}`);
          if (!this.dryRun) doomed.push(n);
        }
      }
      let left = doomed.length + mirrored.length + 1;
      const removed = (e: NodeJS.ErrnoException | null): void => {
        if (e) this.report.fail(e);
        if (--left === 0) next();
      };
      for (const n of doomed) {
        const p = `${job.dst}/${n}`;
        if (this.target.guard(p)) removeTree(this.io, this.pool, p, removed);
        else removed(null);
      }
      // Inside what goes too, what the excludes leave out stays, with the directories holding
      // it; each path is told as it goes (a dry run looks through the trees and only tells).
      for (const n of mirrored) {
        const p = `${job.dst}/${n}`;
        if (!this.target.guard(p)) {
          removed(null);
          continue;
        }
        removeTree(this.io, this.pool, p, removed, {
          excludes: spare!,
          rel: job.rel === '' ? n : `${job.rel}/${n}`,
          dryRun: this.dryRun,
          removed: (q) => this.report.change('delete', q),
        });
      }
      removed(null);
      done();
    });
  }

  /** One child entry or sub-tree is finished; the last one sets the directory's metadata. */
  private finished(job: DirJob): void {
    if (--job.pending > 0) return;
    this.pool.push((done) => {
      const after = (): void => {
        if (job.parent) this.finished(job.parent);
        done();
      };
      if (this.dryRun && job.fresh) return after();
      this.io.lstat(job.dst, (err, st) => {
        if (err) {
          if (!this.dryRun) this.report.fail(err);
          return after();
        }
        const diff = differences(job.entry, st, null);
        if (diff.length === 0) return after();
        // Removing leftovers moved the mtime: not a change of content worth reporting.
        const moved =
          job.cleaned && job.before && !differences(job.entry, job.before, null).includes('mtime');
        const reasons = moved ? diff.filter((d) => d !== 'mtime') : diff;
        if (!job.fresh && reasons.length > 0) this.report.change('update', job.dst, reasons);
        if (this.dryRun) return after();
        this.writer.meta(job.dst, job.entry, false, (e) => {
          // A directory's attributes (its default ACL among them) after its children.
          const x =
            !e && job.entry.xattrs
              ? this.writer.writeXattrs(job.dst, job.dst, job.entry.xattrs)
              : null;
          if (e || x) this.report.fail((e ?? x)!);
          after();
        });
      });
    });
  }

  /** A file, symlink or FIFO: unchanged, written anew, or a second name linked after the walk. */
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
    if (!this.target.guard(dst)) return end();
    if (
      e.link !== undefined &&
      parent &&
      this.links.later(rel, dst, e.link, parent.dst, parent.entry)
    ) {
      return end();
    }
    if (parent?.fresh && this.dryRun) {
      this.report.change('create', dst);
      return end();
    }
    this.io.lstat(dst, (err, st) => {
      if (err && err.code !== 'ENOENT') {
        this.report.fail(err);
        return end();
      }
      const check = (linkTarget: string | null): void => {
        const diff = err ? null : differences(e, st, linkTarget);
        if (diff && diff.length === 0) {
          this.report.result.unchanged++;
          return end();
        }
        this.report.change(diff ? 'update' : 'create', dst, diff ?? []);
        if (this.dryRun) return end();
        this.writer.write(rel, dst, e, (werr) => {
          if (werr) this.report.fail(werr);
          end();
        });
      };
      if (!err && st.isSymbolicLink() && e.kind === 'l') {
        return this.io.readlink(dst, (e2, t) => check(e2 ? null : t));
      }
      check(null);
    });
  }
}
