import { timeArg, type FsOps } from './fs-ops.js';
import type { InFlight } from './inflight.js';
import type { ManifestEntry } from './manifest.js';
import type { RestoreReport } from './restore-report.js';
import type { RestoreTarget } from './restore-target.js';
import type { RestoreWriter } from './restore-writer.js';

/** A second name of an inode, to be linked to its first name after the walk. */
interface Link {
  /** Target path of the name. */
  dst: string;
  /** Snapshot-relative path of the first name. */
  first: string;
  /** The directory holding the name (target path, manifest entry): its mtime is put back. */
  dirDst: string;
  dir: ManifestEntry;
}

/**
 * Hard links of a restore. The walk writes the first name of each inode it meets and leaves
 * the others here; once everything is written, each is linked to its first name (replacing
 * what stands there), and the directories the links changed get their mtimes back.
 */
export class RestoreLinks {
  private readonly links: Link[] = [];
  /** The first name met inside a --subdir, for groups whose first name lies outside it. */
  private readonly standIns = new Map<string, string>();

  constructor(
    /** The snapshot-relative path restored ('' for the whole snapshot). */
    private readonly sub: string,
    /** The target side's calls. */
    private readonly io: FsOps,
    private readonly target: RestoreTarget,
    private readonly writer: RestoreWriter,
    private readonly report: RestoreReport,
    private readonly dryRun: boolean,
  ) {}

  /**
   * `rel` (at `dst`, in the directory `dir` at `dirDst`) is a name of the inode whose first
   * name is `first`: true when it is to be linked after the walk, false when it is the first
   * name met and is written.
   */
  later(rel: string, dst: string, first: string, dirDst: string, dir: ManifestEntry): boolean {
    // The group's first name may lie outside a --subdir: then the first name met inside
    // it is written, and the others are linked to that one.
    const to = this.inScope(first) ? first : this.standIns.get(first);
    if (to !== undefined) {
      this.links.push({ dst, first: to, dirDst, dir });
      return true;
    }
    this.standIns.set(first, rel);
    return false;
  }

  private inScope(rel: string): boolean {
    return this.sub === '' || rel === this.sub || rel.startsWith(`${this.sub}/`);
  }

  private firstDst(first: string): string {
    const { sub } = this;
    const rel = sub === '' ? first : first === sub ? '' : first.slice(sub.length + 1);
    return rel === '' ? this.target.root : `${this.target.root}/${rel}`;
  }

  /**
   * Links the second names of inodes to their first names, once everything is written, with
   * the walk's pool (idle, as the walk is done); then puts back the mtimes of the directories
   * the links changed. Resolves when both are done or the run has failed (the report says).
   */
  relink(pool: InFlight): Promise<void> {
    const touched = new Map<string, ManifestEntry>();
    pool.pushLane(this.links.map((l) => (done) => this.relinkOne(l, touched, done)));
    return new Promise<void>((resolve) => {
      pool.onIdle(() => {
        // Linking changed those directories' mtimes after they were set (a failed run halted
        // the pool: nothing more starts).
        const jobs = [...touched].map(([dst, e]) => (done: () => void) => {
          const t = timeArg(e.mtimeSec, e.mtimeNsec);
          this.io.utimes(dst, t, t, (err) => {
            if (err) this.report.fail(err);
            done();
          });
        });
        pool.pushLane(jobs);
        pool.onIdle(resolve);
      });
    });
  }

  private relinkOne(l: Link, touched: Map<string, ManifestEntry>, done: () => void): void {
    const { report, io } = this;
    const from = this.firstDst(l.first);
    if (!this.target.guard(from) || !this.target.guard(l.dst)) return done();
    // Either name missing (a dry run writes no first names) or unreadable: not the same
    // inode; the link then fails with the real error, if there is one.
    io.lstat(from, (e1, a) => {
      io.lstat(l.dst, (e2, b) => {
        if (!e1 && !e2 && a.ino === b.ino && a.dev === b.dev) {
          report.result.unchanged++;
          return done();
        }
        report.change('link', l.dst);
        if (this.dryRun) return done();
        const tmp = this.target.temporary(l.dst);
        io.link(from, tmp, (le) => {
          if (le) {
            report.fail(le);
            return done();
          }
          this.writer.putInPlace(tmp, l.dst, (err) => {
            if (err) report.fail(err);
            else touched.set(l.dirDst, l.dir);
            done();
          });
        });
      });
    });
  }
}
