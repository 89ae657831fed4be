import fs from 'node:fs';
import { entryOf, sameInodeState, toMeta, unchanged, type Meta } from './change.js';
import type { BaseSnapshot } from './base-snapshot.js';
import type { DirXattrs, EntryWriter } from './entry-writer.js';
import { hashFile } from './digest.js';
import type { Excludes } from './excludes.js';
import { isSystemError } from './errors.js';
import { CHUNK, callsFor, readdirSync, type FsOps } from './fs-ops.js';
import { fsPath } from './names.js';
import type { InFlight, Job } from './inflight.js';
import { LinkGroups, type LinkGroup } from './link-groups.js';
import { ManifestIndex, type ManifestEntry } from './manifest.js';
import type { PartialSnapshot } from './partial.js';
import type { WalkControl } from './run-control.js';
import type { RunReport } from './run-report.js';
import type { Scanner } from './scan.js';
import type { Xattrs } from './xattrs.js';

const CHUNK_ENTRIES = 1000;

/** A directory being written; children are counted down before its metadata is applied. */
interface DirNode {
  rel: string;
  src: string;
  dst: string;
  meta: Meta;
  parent: DirNode | null;
  /** Child entry jobs not yet recorded, plus one for the listing. */
  waiting: number;
  /** Child entries and sub-trees not yet finished, plus one for the listing. */
  pending: number;
  records: ManifestEntry[];
  prev: Map<string, ManifestEntry> | null;
  resumed: Map<string, ManifestEntry> | null;
  /** The directory was already in the partial (a resumed run). */
  existed: boolean;
  /** Attributes written after the children (a default ACL). */
  later: Xattrs | null;
  /** Entries of it were left to the commit (a shared run's hard links): so is its metadata. */
  deferred: boolean;
}

/**
 * A shared run's unit (scale-out, `shared.ts`): the subtree the walk covers and what it leaves
 * to others. Absent: the walk covers the whole source, as a run of its own does.
 */
export interface UnitScope {
  /** The unit's root, relative to the source root ('' for the root itself). */
  root: string;
  /**
   * A sub-directory met (it exists in the partial once this returns true): a unit of its own,
   * which another lease covers (then the walk neither records nor enters it).
   */
  boundary(rel: string): boolean;
  /** An entry with several names, left to the commit, where every name of an inode is met. */
  deferLink(dir: string, name: string): void;
  /** A directory holding deferred entries: its metadata is applied at the commit, after them. */
  deferDir(rel: string, meta: Meta): void;
}

/** A directory whose names are only some of its entries (the commit's deferred hard links). */
export interface NamedDir {
  rel: string;
  meta: Meta;
  names: string[];
}

/** A directory about to be made, with its listing's count still to come. */
function dirNode(
  rel: string,
  src: string,
  dst: string,
  meta: Meta,
  parent: DirNode | null,
): DirNode {
  return {
    rel,
    src,
    dst,
    meta,
    parent,
    waiting: 1,
    pending: 1,
    records: [],
    prev: null,
    resumed: null,
    existed: false,
    later: null,
    deferred: false,
  };
}

/**
 * The walk of the source: each listing joined with the previous manifest and the journal (what
 * an interrupted run wrote), sub-directories first, other entries in lanes served in turn; per
 * entry the decision (resumed, a second name of an inode, unchanged and linked, or copied),
 * carried out by the entry writer; a directory's metadata once its children are written.
 */
export class Walk {
  /** The source's root was walked to the end and its metadata applied. */
  complete = false;
  rootRecord: ManifestEntry | null = null;
  /** A unit's root was no longer a directory of the source when the walk began. */
  vanished = false;
  private resumeIndex: ManifestIndex | null = null;
  private readonly groups = new LinkGroups();
  /** Directories with children still to record: a stop journals what they already hold. */
  private readonly openDirs = new Set<DirNode>();
  private onComplete: (() => void) | null = null;
  /** Given up (`stop`): `run()` resolves, and its control says stop to what is still in flight. */
  private stopped = false;

  constructor(
    private readonly sourceRoot: string,
    private readonly partial: PartialSnapshot,
    private readonly journalPath: string,
    private readonly base: BaseSnapshot | null,
    private readonly src: FsOps,
    private readonly dst: FsOps,
    private readonly pool: InFlight,
    private readonly writer: EntryWriter,
    private readonly report: RunReport,
    private readonly control: WalkControl,
    /** Hash unchanged files and compare with the previous digest (`checksum`). */
    private readonly checksum = false,
    /** Counts ahead (a first backup's estimate) and hands its listings over (scan.ts). */
    private readonly scanner: Scanner | null = null,
    /** What the run leaves out; null when nothing (then no matcher is called). */
    private readonly excludes: Excludes | null = null,
    /** A shared run's unit: the walk covers its subtree only. */
    private readonly unit: UnitScope | null = null,
  ) {}

  /** Walks the whole source into the partial; resolves once nothing is left in flight. */
  async run(): Promise<void> {
    const { partial } = this;
    const rel = this.unit?.root ?? '';
    const src = rel === '' ? this.sourceRoot : `${this.sourceRoot}/${rel}`;
    const dst = rel === '' ? partial.dir : `${partial.dir}/${rel}`;
    let rootStat: fs.BigIntStats | null = null;
    try {
      rootStat = fs.lstatSync(fsPath(src), { bigint: true });
    } catch (e) {
      if (rel === '' || !(isSystemError(e, 'ENOENT') || isSystemError(e, 'ENOTDIR'))) throw e;
    }
    if (!rootStat || !rootStat.isDirectory()) {
      // A unit's root gone from the source (or no longer a directory) since its parent met it.
      this.vanished = true;
      this.complete = true;
      return;
    }
    // A partial made by this run is empty; one resumed may hold names without a journal. A
    // unit's root was made by its parent's walk, and may hold what an earlier attempt wrote.
    if (rel !== '') {
      // Made by its parent's walk; made here when that walk has not reached it yet (a resumed run).
      try {
        fs.mkdirSync(fsPath(dst), { mode: 0o700 });
      } catch (e) {
        if (!isSystemError(e, 'EEXIST')) throw e;
      }
    }
    const existed =
      rel !== '' ||
      partial.journalStart > 0 ||
      (partial.resumed && readdirSync(partial.dir).length > 0);
    if (partial.journalStart > 0)
      this.resumeIndex = await ManifestIndex.openJournal(this.journalPath);
    const root = dirNode(rel, src, dst, toMeta(rootStat), null);
    root.existed = existed;
    const x = await new Promise<DirXattrs | Error>((r) =>
      this.writer.dirXattrs(rel, root.src, root.dst, r),
    );
    if (x instanceof Error) throw x;
    root.later = x.later;
    if (rel === '') this.rootRecord = entryOf('', root.meta, '', undefined, x.recorded);
    else {
      // A unit's root is recorded by the unit (its parent's walk only made it), with the
      // metadata its walk applies after its children.
      const cut = rel.lastIndexOf('/');
      const name = rel.slice(cut + 1);
      partial.journal.add(cut < 0 ? '' : rel.slice(0, cut), [
        entryOf(name, root.meta, '', undefined, x.recorded),
      ]);
      this.report.countDir();
    }
    try {
      await new Promise<void>((resolve) => {
        // Done when its root's metadata is applied: the pool may be walking other units too.
        // A stop or a failure halts the pool, and then it is idle.
        this.onComplete = resolve;
        if (this.stopped) return resolve();
        this.pool.push((done) => this.listDir(root, done));
        this.pool.onIdle(resolve);
      });
    } finally {
      this.resumeIndex?.close();
    }
  }

  /**
   * The commit's part of a shared run: the entries left to it (every name of an inode with
   * several names, met by whichever unit), written as a run of its own writes them (the first
   * name copied or linked, the others linked to it), then their directories' metadata.
   */
  async runNamed(dirs: readonly NamedDir[]): Promise<void> {
    await new Promise<void>((resolve) => {
      for (const d of dirs) {
        const src = d.rel === '' ? this.sourceRoot : `${this.sourceRoot}/${d.rel}`;
        const dst = d.rel === '' ? this.partial.dir : `${this.partial.dir}/${d.rel}`;
        const node = dirNode(d.rel, src, dst, d.meta, null);
        const listing = d.names.map(namedEntry);
        this.pool.push((done) =>
          this.writer.dirXattrs(d.rel, src, dst, (x) => {
            if (x instanceof Error) {
              this.control.fail(x);
              return done();
            }
            node.later = x.later;
            if (!this.base) return this.dispatch(node, listing, done);
            this.base.index.readDir(this.dst, d.rel, (err, map) => {
              if (err)
                this.report.warn(
                  d.rel,
                  `previous manifest unreadable here (${err.message}); copying`,
                );
              node.prev = map;
              this.dispatch(node, listing, done);
            });
          }),
        );
      }
      this.pool.onIdle(resolve);
    });
  }

  /** Directories being walked now (listed, with entries still to record). */
  get openDirCount(): number {
    return this.openDirs.size;
  }

  /**
   * What a walk that went idle before its root was finished left undone, for the run's message:
   * an engine error, which this names so that it can be found. Empty once the walk is complete.
   */
  unfinished(): string {
    if (this.complete) return '';
    const open = [...this.openDirs];
    const named = open
      .slice(0, 3)
      .map((d) => `${d.rel === '' ? '.' : d.rel} (${d.waiting} to record, ${d.pending} to finish)`);
    return open.length === 0
      ? 'every directory listed was recorded, but one was never finished'
      : `${open.length} directories not fully recorded: ${named.join(', ')}${open.length > 3 ? ', …' : ''}`;
  }

  /**
   * Gives the walk up at once, unfinished (a unit whose lease is lost): `run()` resolves. Its
   * control already says stop, so what is in flight starts nothing more on the destination.
   */
  stop(): void {
    this.stopped = true;
    this.onComplete?.();
  }

  private markComplete(): void {
    this.complete = true;
    this.onComplete?.();
  }

  /** Stopped early: what unfinished directories already hold is journaled for the next run. */
  journalOpenDirs(): void {
    for (const d of this.openDirs) this.partial.journal.add(d.rel, d.records);
  }

  private listDir(dir: DirNode, done: () => void): void {
    if (this.control.stopping()) return done();
    let outstanding = 1 + (this.base ? 1 : 0) + (this.resumeIndex ? 1 : 0);
    let names: fs.Dirent[] = [];
    const joined = (): void => {
      if (--outstanding > 0) return;
      if (this.control.stopping()) return done();
      if (dir.existed) {
        const keep = names.map((d) => d.name);
        this.writer.removeExtras(dir.dst, keep, () => this.dispatch(dir, names, done));
      } else this.dispatch(dir, names, done);
    };
    const listed = (err: NodeJS.ErrnoException | null, list: fs.Dirent[]): void => {
      if (err) this.report.warn(dir.rel, `cannot read directory: ${err.message}`);
      // What is left out is decided from the listing's types: never listed, never stat'ed (Node
      // types an entry the file system left untyped, DT_UNKNOWN, with an lstat of its own). In
      // a resumed directory, `removeExtras` then removes what an earlier run wrote and is now
      // left out.
      else names = this.excludes ? this.excludes.filter(dir.rel, list) : list;
      joined();
    };
    if (!this.scanner?.take(dir.src, listed)) this.src.readdirTypes(dir.src, listed);
    this.base?.index.readDir(this.dst, dir.rel, (err, map) => {
      if (err)
        this.report.warn(dir.rel, `previous manifest unreadable here (${err.message}); copying`);
      dir.prev = map;
      joined();
    });
    this.resumeIndex?.readDir(this.dst, dir.rel, (err, map) => {
      dir.resumed = err ? null : map;
      joined();
    });
  }

  /**
   * Sub-directories are looked at first, so many directories are open at once; the other
   * entries go in this directory's lane, served in turn with other directories' lanes.
   */
  private dispatch(dir: DirNode, names: fs.Dirent[], done: () => void): void {
    this.openDirs.add(dir);
    dir.waiting += names.length;
    dir.pending += names.length;
    const lane: Job[] = [];
    for (const d of names) {
      const name = d.name;
      if (d.isDirectory()) this.pool.push((j) => this.entry(dir, name, j));
      else lane.push((j) => this.entry(dir, name, j));
    }
    this.pool.pushLane(lane);
    this.recorded(dir);
    this.finished(dir);
    done();
  }

  /** One child entry was recorded (or given up). */
  private recorded(dir: DirNode): void {
    if (--dir.waiting === 0 || dir.records.length >= CHUNK_ENTRIES) {
      this.partial.journal.add(dir.rel, dir.records);
      dir.records = [];
    }
    if (dir.waiting === 0) {
      // Every child is looked up: the directory's manifest entries are no longer needed.
      dir.prev = null;
      dir.resumed = null;
      this.openDirs.delete(dir);
    }
  }

  /** One child entry or sub-tree is finished; the last one applies the directory's metadata. */
  private finished(dir: DirNode): void {
    if (--dir.pending > 0 || this.control.stopping()) return;
    if (dir.deferred) {
      // Entries of it are written at the commit: so is its metadata (its mtime after them).
      this.unit!.deferDir(dir.rel, dir.meta);
      if (dir.parent) this.finished(dir.parent);
      else this.markComplete();
      return;
    }
    this.pool.push((done) => {
      this.writer.dirMeta(dir.rel, dir.dst, dir.meta, dir.later, (err) => {
        if (err) {
          this.control.fail(err);
          return done();
        }
        if (dir.parent) this.finished(dir.parent);
        else this.markComplete();
        done();
      });
    });
  }

  private entry(dir: DirNode, name: string, done: () => void): void {
    if (this.control.stopping()) return done();
    const src = `${dir.src}/${name}`;
    const rel = dir.rel === '' ? name : `${dir.rel}/${name}`;
    this.src.lstat(src, (err, st) => {
      if (err) {
        this.report.warn(
          rel,
          err.code === 'ENOENT' ? 'vanished during the backup' : `cannot read: ${err.message}`,
        );
        return this.entryDone(dir, done);
      }
      const m = toMeta(st);
      if (m.kind === null) {
        this.report.warn(rel, `skipped: ${st.isSocket() ? 'socket' : 'device'} (not backed up)`);
        return this.entryDone(dir, done);
      }
      const dst = `${dir.dst}/${name}`;
      if (m.kind === 'd') return this.enterDir(dir, name, rel, src, dst, m, done);
      if (m.kind === 'l') {
        return this.src.readlink(src, (e, target) => {
          if (e) {
            this.report.warn(rel, `cannot read link: ${e.message}`);
            return this.entryDone(dir, done);
          }
          this.leaf(dir, name, rel, src, dst, m, target, done);
        });
      }
      this.leaf(dir, name, rel, src, dst, m, '', done);
    });
  }

  private enterDir(
    dir: DirNode,
    name: string,
    rel: string,
    src: string,
    dst: string,
    m: Meta,
    done: () => void,
  ): void {
    if (this.control.stopping()) return done();
    if (this.unit?.boundary(rel)) {
      // A unit of its own: made here (so its parent's metadata follows it), walked by its
      // lease. One already there is left as it is: its unit may be done, its metadata applied.
      return this.writer.ensureDir(dst, (err) => {
        if (err) return this.failed(err, rel, dir, done);
        this.entryDone(dir, done);
      });
    }
    const child = dirNode(rel, src, dst, m, dir);
    this.writer.makeDir(dst, (err, existed) => {
      if (err) return this.failed(err, rel, dir, done);
      child.existed = existed;
      this.writer.dirXattrs(rel, src, dst, (x) => {
        if (x instanceof Error) return this.failed(x, rel, dir, done);
        child.later = x.later;
        dir.records.push(entryOf(name, m, '', undefined, x.recorded));
        this.report.countDir();
        this.recorded(dir);
        this.pool.defer((d) => this.listDir(child, d));
        done();
      });
    });
  }

  /** A file, symlink or FIFO. */
  private leaf(
    dir: DirNode,
    name: string,
    rel: string,
    src: string,
    dst: string,
    m: Meta,
    target: string,
    done: () => void,
  ): void {
    // Looked up before a stop: nothing more is written.
    if (this.control.stopping()) return done();
    if (m.nlink > 1 && this.unit) {
      // Its other names may be in other units: every name is written at the commit.
      this.unit.deferLink(dir.rel, name);
      dir.deferred = true;
      return this.entryDone(dir, done);
    }
    // Already written by an interrupted run of this partial (single-name entries only).
    const resumed = dir.resumed?.get(name);
    if (m.nlink === 1 && unchanged(resumed, m, target)) {
      this.report.count(m.kind!, m.size, 'resumed');
      dir.records.push(resumed);
      return this.entryDone(dir, done);
    }
    let ownGroup: LinkGroup | null = null;
    if (m.nlink > 1) {
      const group = this.groups.meet(m, rel);
      if (group.first !== rel) {
        if (group.record) return this.linkMember(dir, name, dst, m, group, done);
        group.waiters!.push(() =>
          this.pool.push((d) => this.linkMember(dir, name, dst, m, group, d)),
        );
        return done(); // the slot is free while waiting for the first name to be written
      }
      ownGroup = group;
    }
    const prev = dir.prev?.get(name);
    let slot = done;
    const written = (rec: ManifestEntry | null): void => {
      if (ownGroup) this.groups.firstWritten(m, ownGroup, rec);
      if (rec) dir.records.push(rec);
      this.entryDone(dir, slot);
    };
    const same = unchanged(prev, m, target);
    // verify found its inode damaged: linking would carry the damage on; a new copy heals.
    const repair = same && this.base!.damaged.has(rel);
    if (same && !repair) {
      const link = (): void => {
        const from =
          dir.rel === '' ? `${this.base!.path}/${name}` : `${this.base!.path}/${dir.rel}/${name}`;
        this.writer.linkQueued(from, dst, done, (err, linkSlot) => {
          slot = linkSlot;
          if (!err) {
            this.report.count(m.kind!, m.size, 'linked');
            return written(entryOf(name, m, prev.data, undefined, prev.xattrs));
          }
          // The previous snapshot lost this entry, or its inode has as many links as the file
          // system allows (EFS: 177): write it anew, whatever its size. A link queued on the
          // link thread freed its slot; the copy takes one of its own, so the walk waits for it.
          const copy = (d: () => void): void => {
            slot = d;
            this.writer.create(rel, src, dst, m, target, (rec) => {
              if (rec) this.report.countCopiedBecause('copiedForLinkLimit');
              written(rec);
            });
          };
          if (slot === done) copy(done);
          else this.pool.push(copy);
        });
      };
      if (!this.checksum || m.kind !== 'f') return link();
      // Every stat field says unchanged; the content is asked too (rsync's -c).
      // Large files through the pool, as copies are, so the event loop keeps turning.
      return hashFile(callsFor(this.src, m.size), src, (err, digest) => {
        if (err) {
          this.report.warn(
            rel,
            err.code === 'ENOENT' ? 'vanished during the backup' : `cannot read: ${err.message}`,
          );
          return written(null);
        }
        if (digest === prev.data) return link();
        this.report.countCopiedBecause('changedByChecksum');
        this.writer.create(rel, src, dst, m, target, written);
      });
    }
    if (repair) this.report.countCopiedBecause('repaired');
    if (m.kind !== 'f' || m.size < CHUNK)
      return this.writer.create(rel, src, dst, m, target, written);
    // A large file's copy is a heavy job: a few at once, waiting with no slot held, so the
    // walk goes on finding work while they copy (at a byte budget, each may take seconds).
    this.pool.heavy((d) => {
      slot = d;
      this.writer.create(rel, src, dst, m, target, written);
    }, slot);
  }

  private linkMember(
    dir: DirNode,
    name: string,
    dst: string,
    m: Meta,
    group: LinkGroup,
    done: () => void,
  ): void {
    if (this.control.stopping()) return done();
    if (!group.record) {
      // The first name vanished; this name takes its place, from a fresh lstat.
      return this.entry(dir, name, done);
    }
    const rel = dir.rel === '' ? name : `${dir.rel}/${name}`;
    if (!sameInodeState(group.meta, m)) {
      // The inode changed between the visits to its names: linking would give this name the
      // first name's content under its own (newer) metadata. This name gets a copy of its
      // own, consistent with what it says; the next run joins the names again.
      this.report.warn(
        rel,
        `changed while its names were being backed up: copied on its own, not as a hard link to ${group.first}`,
      );
      // (A symlink's target cannot change in place: only its owner can, so the target stands.)
      const target = m.kind === 'l' ? group.record.data : '';
      return this.writer.create(rel, `${dir.src}/${name}`, dst, m, target, (rec) => {
        if (rec) dir.records.push(rec);
        this.entryDone(dir, done);
      });
    }
    const from = `${this.partial.dir}/${group.first}`;
    this.writer.linkQueued(from, dst, done, (err, slot) => {
      if (err) {
        if (this.control.fail(err, rel)) this.entryDone(dir, slot);
        else slot();
        return;
      }
      const rec = entryOf(name, m, group.record!.data, group.first, group.record!.xattrs);
      this.report.count(m.kind!, m.size, 'linked');
      dir.records.push(rec);
      this.entryDone(dir, slot);
    });
  }

  /** A destination error for one entry: a warning and the entry left out, or the run's end. */
  private failed(err: NodeJS.ErrnoException, rel: string, dir: DirNode, done: () => void): void {
    if (this.control.fail(err, rel)) this.entryDone(dir, done);
    else done();
  }

  private entryDone(dir: DirNode, done: () => void): void {
    this.recorded(dir);
    this.finished(dir);
    done();
  }
}

/** A listing entry for a name known not to be a directory (the commit's deferred entries). */
function namedEntry(name: string): fs.Dirent {
  return { name, isDirectory: () => false } as fs.Dirent;
}
