import fs from 'node:fs';
import path from 'node:path';
import { isSystemError } from './errors.js';
import { timeArg } from './fs-ops.js';
import type { ManifestIndex } from './manifest.js';
import { fsPath } from './names.js';
import type { RestoreReport } from './restore-report.js';
import type { RestoreTarget } from './restore-target.js';
import { entryAt } from './selectors.js';

/**
 * Hard links of a restore. The walk writes the first name of each inode it meets and leaves
 * the others here; once everything is written, each is linked to its first name (replacing
 * what stands there), and the directories the links changed get their mtimes back.
 */
export class RestoreLinks {
  private readonly links: Array<{ dst: string; first: string; rel: string }> = [];
  /** The first name met inside a --subdir, for groups whose first name lies outside it. */
  private readonly standIns = new Map<string, string>();

  constructor(
    private readonly index: ManifestIndex,
    /** The snapshot-relative path restored ('' for the whole snapshot). */
    private readonly sub: string,
    private readonly target: RestoreTarget,
    private readonly report: RestoreReport,
    private readonly dryRun: boolean,
  ) {}

  /**
   * `rel` (at `dst`) is a name of the inode whose first name is `first`: true when it is to be
   * linked after the walk, false when it is the first name met and is written.
   */
  later(rel: string, dst: string, first: string): boolean {
    // The group's first name may lie outside a --subdir: then the first name met inside
    // it is written, and the others are linked to that one.
    const to = this.inScope(first) ? first : this.standIns.get(first);
    if (to !== undefined) {
      this.links.push({ dst, first: to, rel });
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

  /** Links the second names of inodes to their first names, once everything is written. */
  relink(): void {
    const { report } = this;
    const touched = new Map<string, string>();
    for (const l of this.links) {
      const from = this.firstDst(l.first);
      if (!this.target.guard(from) || !this.target.guard(l.dst)) return;
      let same = false;
      try {
        same = fs.lstatSync(fsPath(from)).ino === fs.lstatSync(fsPath(l.dst)).ino;
      } catch {
        same = false;
      }
      if (same) {
        report.result.unchanged++;
        continue;
      }
      report.change('link', l.dst);
      if (this.dryRun) continue;
      const tmp = this.target.temporary(l.dst);
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
        report.fail(err as Error);
        return;
      }
      touched.set(path.posix.dirname(l.rel), path.dirname(l.dst));
    }
    // Linking changed those directories' mtimes after they were set.
    for (const [rel, dst] of touched) {
      const e = entryAt(this.index, rel === '.' ? '' : rel);
      if (e) {
        const t = timeArg(e.mtimeSec, e.mtimeNsec);
        fs.utimesSync(fsPath(dst), t, t);
      }
    }
  }
}
