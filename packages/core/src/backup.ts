import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHUNK, copyFile, type CopyError } from './copy-file.js';
import { EfsBackupError } from './errors.js';
import { asyncOps, mkfifo, syncOps, timeArg, type FsOps, type TimeArg } from './fs-ops.js';
import { LinkThread } from './link-thread.js';
import { InFlight, type Job } from './inflight.js';
import { BackupSet, ensureDir } from './layout.js';
import { LabelLock } from './lock.js';
import {
  encodeEntry,
  JournalWriter,
  ManifestIndex,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  splitNs,
  writeManifest,
  type EntryKind,
  type EntryRecord,
  type ManifestHeader,
} from './manifest.js';
import { resolveBackupOptions, type BackupOptions, type ResolvedOptions } from './options.js';
import { prune, type PruneResult } from './prune.js';
import { removeAll } from './remove-tree.js';
import { uniqueStamp } from './stamp.js';

export type BackupStatus = 'Running' | 'Success' | 'SuccessWithWarnings' | 'Incomplete' | 'Failed';

/** The run's figures, named as the record's fields (DESIGN.md). */
export interface BackupFigures {
  BackupId: string;
  Label: string;
  Interval: string;
  Retain: number;
  Source: string;
  Prefix: string;
  Destination: string;
  WindowMinutes: number | null;
  Status: BackupStatus;
  Message: string;
  StartTime: string;
  StopTime: string;
  /** The committed snapshot's stamp; null when none was committed. */
  Snapshot: string | null;
  NumberOfFiles: number;
  NumberOfFilesTransferred: number;
  NumberOfFilesLinked: number;
  /**
   * Unchanged files that could not be linked to the previous snapshot (the file system's limit
   * of links per inode, such as EFS's 177, or the previous copy gone) and were copied instead.
   */
  NumberOfFilesCopiedForLinkLimit: number;
  TotalFileSize: number;
  TotalTransferredFileSize: number;
  NumberOfWarnings: number;
  CopyStartTime: string;
  CopyStopTime: string;
  PruneStartTime: string | null;
  PruneStopTime: string | null;
  SnapshotsPruned: number;
  Host: string;
}

export interface BackupWarning {
  /** Path relative to the source root ('' for the root itself). */
  path: string;
  message: string;
}

export interface BackupProgress {
  phase: 'copy' | 'prune';
  entries: number;
  bytes: number;
  /** From the previous snapshot's manifest; null on a first backup. */
  estimatedEntries: number | null;
  estimatedBytes: number | null;
}

export interface BackupResult extends BackupFigures {
  /** The first warnings (at most 1000); NumberOfWarnings counts them all. */
  warnings: BackupWarning[];
  /** Where the snapshot is, when one was committed. */
  snapshotPath: string | null;
}

export interface BackupRunOptions extends BackupOptions {
  /** The run's id (the record's key). @default a random UUID */
  backupId?: string;
  /** Stops the run gracefully; the partial is kept and the run is Incomplete. */
  signal?: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
  onWarning?: (w: BackupWarning) => void;
  /** @default 250 */
  progressIntervalMs?: number;
  /** @default () => new Date() */
  now?: () => Date;
  /**
   * How metadata calls are made: 'async' keeps many in flight (network file systems),
   * 'sync' makes them on the main thread (local disks, where that is cheaper).
   * @default for each side, from that side's file-system type
   */
  io?: IoMode | { source: IoMode; destination: IoMode };
}

type IoMode = 'sync' | 'async';

const MAX_WARNINGS_KEPT = 1000;
/** Destination errors that concern one entry, not the run (see `BackupRun.fail`). */
const PER_ENTRY_CODES = new Set(['ENAMETOOLONG', 'EILSEQ']);
const CHUNK_ENTRIES = 1000;
const euid = process.geteuid?.() ?? -1;
const egid = process.getegid?.() ?? -1;

/** Source metadata of one entry, taken from lstat. */
interface Meta {
  kind: EntryKind | null;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** utimes arguments (see `timeArg`). */
  atime: TimeArg;
  mtime: TimeArg;
  nlink: number;
  /** `dev:ino` of a file with more than one name; '' otherwise. */
  inode: string;
  /** ctime in ns of a file with more than one name (its names are compared); 0n otherwise. */
  change: bigint;
  sparse: boolean;
}

function toMeta(st: fs.BigIntStats): Meta {
  const mode = Number(st.mode);
  const [mtimeSec, mtimeNsec] = splitNs(st.mtimeNs);
  const [aSec, aNsec] = splitNs(st.atimeNs);
  const fmt = mode & 0o170000;
  const kind: EntryKind | null =
    fmt === 0o100000
      ? 'f'
      : fmt === 0o040000
        ? 'd'
        : fmt === 0o120000
          ? 'l'
          : fmt === 0o010000
            ? 'p'
            : null;
  const size = kind === 'f' || kind === 'l' ? Number(st.size) : 0;
  const nlink = Number(st.nlink);
  return {
    kind,
    mode,
    uid: Number(st.uid),
    gid: Number(st.gid),
    size,
    mtimeSec,
    mtimeNsec,
    atime: timeArg(aSec, aNsec),
    mtime: timeArg(mtimeSec, mtimeNsec),
    nlink,
    // Only hard-link groups are looked up by inode.
    inode: kind === 'd' || nlink < 2 ? '' : `${st.dev}:${st.ino}`,
    change: kind === 'd' || nlink < 2 ? 0n : st.ctimeNs,
    sparse: kind === 'f' && Number(st.blocks) * 512 < size,
  };
}

function record(name: string, m: Meta, data: string, link?: string): EntryRecord {
  const r: EntryRecord = {
    name,
    kind: m.kind!,
    mode: m.mode,
    uid: m.uid,
    gid: m.gid,
    size: m.size,
    mtimeSec: m.mtimeSec,
    mtimeNsec: m.mtimeNsec,
    data,
  };
  if (link !== undefined) r.link = link;
  return r;
}

/** Unchanged: same type, size, mtime, mode, uid and gid; a symlink also the same target. */
function unchanged(prev: EntryRecord | undefined, m: Meta, target: string): prev is EntryRecord {
  return (
    prev !== undefined &&
    prev.kind === m.kind &&
    prev.mode === m.mode &&
    prev.uid === m.uid &&
    prev.gid === m.gid &&
    prev.size === m.size &&
    prev.mtimeSec === m.mtimeSec &&
    prev.mtimeNsec === m.mtimeNsec &&
    (m.kind !== 'l' || prev.data === target)
  );
}

/**
 * One side's calls: direct on a local disk, where a call takes microseconds; many in flight
 * through the thread pool on NFS, EFS or FUSE, where each waits on the network. `forced`
 * (the run's `io` option) overrides the choice.
 */
function sideOps(forced: IoMode | undefined, remote: boolean): FsOps {
  return (forced ?? (remote ? 'async' : 'sync')) === 'sync' ? syncOps : asyncOps;
}

/** Two stats of one inode saw it in the same state (ctime catches what mtime may not). */
function sameInodeState(a: Meta, b: Meta): boolean {
  return (
    a.change === b.change &&
    a.size === b.size &&
    a.mtimeSec === b.mtimeSec &&
    a.mtimeNsec === b.mtimeNsec &&
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid
  );
}

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
  records: EntryRecord[];
  prev: Map<string, EntryRecord> | null;
  resumed: Map<string, EntryRecord> | null;
  /** The directory was already in the partial (a resumed run). */
  existed: boolean;
}

/** One inode seen under several names: the first name is written, the others link to it. */
interface LinkGroup {
  first: string;
  /** The first name's metadata: a later name that differs saw the inode change meanwhile. */
  meta: Meta;
  /** Names met so far; at st_nlink the group is dropped, so the map holds open groups only. */
  seen: number;
  record: EntryRecord | null;
  waiters: Array<() => void> | null;
}

/** Makes one snapshot. Never throws for a run that started: the result says how it ended. */
export async function backup(options: BackupRunOptions): Promise<BackupResult> {
  const resolved = resolveBackupOptions(options);
  return new BackupRun(resolved, options).run();
}

class BackupRun {
  private readonly o: ResolvedOptions;
  private readonly set: BackupSet;
  private readonly now: () => Date;
  private readonly backupId: string;
  private readonly startTime: Date;
  private readonly deadline: number | null;
  private readonly runOptions: BackupRunOptions;
  private readonly pool: InFlight;
  /** The calls of each side, chosen by that side's own file system (see `sideOps`). */
  private readonly src: FsOps;
  private readonly dst: FsOps;
  private readonly links: LinkThread | null = null;
  /** The partial is one an earlier run left. */
  private resuming = false;

  private prev: ManifestIndex | null = null;
  private prevPath = '';
  private resumeIndex: ManifestIndex | null = null;
  private journal: JournalWriter | null = null;
  private journalStart = 0;
  private partial = '';
  private partialStamp = '';
  private stopReason: 'window' | 'signal' | null = null;
  private lock: LabelLock | null = null;
  /** Why `latest` could not be pointed at the committed snapshot; null when it was. */
  private latestError: string | null = null;
  private fatal: Error | null = null;
  private rootDone = false;
  private rootRecord: EntryRecord | null = null;
  private readonly groups = new Map<string, LinkGroup>();
  /** Directories with children still to record: a stop journals what they already hold. */
  private readonly openDirs = new Set<DirNode>();
  private readonly warnings: BackupWarning[] = [];

  private files = 0;
  private totalBytes = 0;
  private transferred = 0;
  private transferredBytes = 0;
  private linked = 0;
  private copiedForLinkLimit = 0;
  private warningCount = 0;
  private estimate: { entries: number; bytes: number } | null = null;

  constructor(o: ResolvedOptions, runOptions: BackupRunOptions) {
    this.o = o;
    this.runOptions = runOptions;
    this.set = new BackupSet(o.destination, o.label);
    this.now = runOptions.now ?? (() => new Date());
    this.backupId = runOptions.backupId ?? randomUUID();
    this.startTime = this.now();
    this.deadline =
      o.windowMinutes === null
        ? null
        : this.startTime.getTime() +
          o.windowMinutes * 60_000 -
          Math.min(60_000, o.windowMinutes * 6_000);
    this.pool = new InFlight(o.concurrency);
    const io = runOptions.io;
    this.src = sideOps(typeof io === 'object' ? io.source : io, o.sourceRemote);
    this.dst = sideOps(typeof io === 'object' ? io.destination : io, o.destinationRemote);
    // Direct calls on a local disk: the links go to a thread of their own (see LinkThread).
    if (this.dst.mode === 'sync') {
      const links = new LinkThread(this.pool);
      this.links = links;
      this.pool.onStarve = () => links.flush();
    }
  }

  async run(): Promise<BackupResult> {
    const { set, o } = this;
    let lock: LabelLock | null = null;
    let copyStop = this.startTime;
    let pruned: PruneResult | null = null;
    let pruneStart: Date | null = null;
    let pruneStop: Date | null = null;
    let snapshot: string | null = null;
    let status: BackupStatus;
    let message: string;
    let refused: EfsBackupError | null = null;
    try {
      // Only what the lock needs is made before it is held (nothing, for an existing set).
      ensureDir(set.dataDir);
      lock = LabelLock.acquire(set.lockFile, this.backupId, {
        // Found at a heartbeat: another run took the lock (this one was paused past the
        // stale limit). Stop writing at once; nothing is committed.
        onLost: (why) => this.lostLock(why),
      });
      this.lock = lock;
      set.remember(); // the lock is held: only this run changes the set now
      this.prepareDirs();
      await this.openBase();
      if (this.prev) this.links?.start();
      const { stamp, resumedFrom } = this.openPartial();
      const onAbort = (): void => this.stop('signal');
      this.runOptions.signal?.addEventListener('abort', onAbort);
      if (this.runOptions.signal?.aborted) this.stop('signal');
      const progress = this.startProgress('copy');
      const timer = this.deadline === null ? null : setInterval(() => this.checkDeadline(), 1000);
      this.checkDeadline();
      try {
        await this.walk();
      } finally {
        await this.links?.close();
        clearInterval(progress);
        if (timer) clearInterval(timer);
        this.runOptions.signal?.removeEventListener('abort', onAbort);
        this.emitProgress('copy');
      }
      // Stopped early: what unfinished directories already hold is kept for the next run.
      for (const d of this.openDirs) this.journal!.add(d.rel, d.records);
      const journalError = await new Promise<Error | null>((resolve) =>
        this.journal!.flush(resolve),
      );
      if (journalError) this.journalFailed(journalError);
      copyStop = this.now();
      if (this.fatal) throw this.fatal;
      if (this.stopReason || !this.rootDone) {
        this.journal!.close();
        status = 'Incomplete';
        message =
          this.stopReason === 'signal'
            ? 'the run was stopped before the backup completed; the next run continues from where this one stopped'
            : this.stopReason === 'window'
              ? 'the backup window ended before the backup completed; the next run continues from where this one stopped'
              : 'the walk ended before every entry was written (an engine error); the next run continues from where this one stopped';
      } else {
        snapshot = await this.commit(stamp, resumedFrom, copyStop);
        pruneStart = this.now();
        pruned = await prune(set, o.interval, o.retain, {
          concurrency: o.concurrency,
          deadline: this.deadline,
          now: () => this.now().getTime(),
          ...(this.runOptions.signal ? { signal: this.runOptions.signal } : {}),
        });
        pruneStop = this.now();
        for (const w of pruned.warnings) this.warn('', w);
        status = this.warningCount > 0 ? 'SuccessWithWarnings' : 'Success';
        message = this.successMessage(`${o.interval}/${snapshot}`);
      }
    } catch (e) {
      status = 'Failed';
      message = e instanceof Error ? e.message : String(e);
      if (e instanceof EfsBackupError && e.code !== 'FAILED') refused = e;
    } finally {
      // Every way out ends what the run started, so the process can exit.
      await this.links?.close();
      this.journal?.close();
      this.prev?.close();
      this.resumeIndex?.close();
      lock?.release();
    }
    if (refused) throw refused;
    const stop = this.now();
    return {
      BackupId: this.backupId,
      Label: o.label,
      Interval: o.interval,
      Retain: o.retain,
      Source: o.source,
      Prefix: o.prefix,
      Destination: o.destination,
      WindowMinutes: o.windowMinutes,
      Status: status,
      Message: message,
      StartTime: this.startTime.toISOString(),
      StopTime: stop.toISOString(),
      Snapshot: snapshot,
      NumberOfFiles: this.files,
      NumberOfFilesTransferred: this.transferred,
      NumberOfFilesLinked: this.linked,
      NumberOfFilesCopiedForLinkLimit: this.copiedForLinkLimit,
      TotalFileSize: this.totalBytes,
      TotalTransferredFileSize: this.transferredBytes,
      NumberOfWarnings: this.warningCount,
      CopyStartTime: this.startTime.toISOString(),
      CopyStopTime: copyStop.toISOString(),
      PruneStartTime: pruneStart?.toISOString() ?? null,
      PruneStopTime: pruneStop?.toISOString() ?? null,
      SnapshotsPruned: pruned?.pruned ?? 0,
      Host: os.hostname(),
      warnings: this.warnings,
      snapshotPath: snapshot ? set.snapshotDir(o.interval, snapshot) : null,
    };
  }

  private successMessage(name: string): string {
    const n = this.warningCount - (this.latestError ? 1 : 0);
    const parts: string[] = [];
    if (this.latestError) parts.push(`latest could not be pointed at it (${this.latestError})`);
    if (n > 0)
      parts.push(`${n} entr${n === 1 ? 'y' : 'ies'} could not be backed up (see the warnings)`);
    return parts.length === 0
      ? `snapshot ${name} is complete`
      : `snapshot ${name} is complete, but ${parts.join('; and ')}`;
  }

  private prepareDirs(): void {
    const { set, o } = this;
    if ((fs.statSync(set.dir).mode & 0o7777) !== 0o700) fs.chmodSync(set.dir, 0o700);
    ensureDir(set.manifestsDir);
    ensureDir(set.intervalDir(o.interval));
  }

  /** The newest complete snapshot of the label (any interval) and its manifest. */
  private async openBase(): Promise<void> {
    const newest = this.set.snapshots()[0];
    if (!newest) return;
    try {
      this.prev = await ManifestIndex.openManifest(newest.manifest);
      this.prevPath = newest.path;
      const h = this.prev.header!;
      this.estimate = { entries: h.NumberOfFiles, bytes: h.TotalFileSize };
    } catch (e) {
      this.warn(
        '',
        `the previous snapshot ${newest.interval}/${newest.stamp} has no usable manifest (${(e as Error).message}); every file is copied`,
      );
      this.prev = null;
    }
  }

  /** Resumes this interval's newest partial, or starts a new one. */
  private openPartial(): { stamp: string; resumedFrom: string | null } {
    const { set, o } = this;
    const used = set.stampsInUse();
    // Past every stamp in use, so a new snapshot always sorts newest (even when the clock
    // stepped back, or a stamp freed by pruning would fit).
    const newest = [...used].sort().pop();
    const stamp = uniqueStamp(this.startTime, (s) => used.has(s), newest);
    const partials = set.hidden(o.interval, 'partial');
    const resumedFrom = partials[partials.length - 1] ?? null;
    const partialStamp = resumedFrom ?? stamp;
    this.partialStamp = partialStamp;
    this.partial = set.partialDir(o.interval, partialStamp);
    if (resumedFrom === null) fs.mkdirSync(this.partial, { mode: 0o700 });
    else fs.chmodSync(this.partial, 0o700);
    this.resuming = resumedFrom !== null;
    const journalPath = set.journalPath(partialStamp);
    this.journal = JournalWriter.open(journalPath, (err) => this.journalFailed(err));
    this.journalStart = this.journal.offset;
    set.forget();
    return { stamp, resumedFrom };
  }

  private stop(reason: 'window' | 'signal'): void {
    if (this.stopReason) return;
    this.stopReason = reason;
    this.pool.halt();
  }

  private checkDeadline(): void {
    // The run's own clock (`now`), so a run started at a given time ends by that time's window.
    if (this.deadline !== null && this.now().getTime() >= this.deadline) this.stop('window');
  }

  private readonly stopping = (): boolean => this.stopReason !== null || this.fatal !== null;

  /**
   * The one place that decides what a destination error does. Most end the run (nothing is
   * committed; the partial is kept); a few concern one entry only (`rel`): a path too long for
   * the destination, or a name it does not take. Those are a warning for that entry, which is
   * left out, so one deep path cannot stop every backup. Returns true when the run goes on.
   */
  private fail(err: NodeJS.ErrnoException, rel?: string): boolean {
    if (rel !== undefined && err.code !== undefined && PER_ENTRY_CODES.has(err.code)) {
      this.warn(rel, `cannot be created on the destination (${err.code}): ${err.message}`);
      return true;
    }
    this.fatal ??= new EfsBackupError('FAILED', `cannot write the backup: ${err.message}`, {
      cause: err,
    });
    this.pool.halt();
    return false;
  }

  private journalFailed(err: Error): void {
    this.fatal ??= new EfsBackupError(
      'FAILED',
      `cannot write the journal ${this.set.journalPath(this.partialStamp)}: ${err.message}`,
      { cause: err },
    );
    this.pool.halt();
  }

  private lostLock(why: string): void {
    this.fatal ??= new EfsBackupError(
      'FAILED',
      `this run lost its lock and stopped without committing: ${why}`,
    );
    this.pool.halt();
  }

  private warn(rel: string, message: string): void {
    this.warningCount++;
    const w = { path: rel, message };
    if (this.warnings.length < MAX_WARNINGS_KEPT) this.warnings.push(w);
    this.runOptions.onWarning?.(w);
  }

  private startProgress(phase: 'copy' | 'prune'): NodeJS.Timeout {
    const t = setInterval(
      () => this.emitProgress(phase),
      this.runOptions.progressIntervalMs ?? 250,
    );
    t.unref();
    return t;
  }

  private emitProgress(phase: 'copy' | 'prune'): void {
    this.runOptions.onProgress?.({
      phase,
      entries: this.files,
      bytes: this.totalBytes,
      estimatedEntries: this.estimate?.entries ?? null,
      estimatedBytes: this.estimate?.bytes ?? null,
    });
  }

  // ---- the walk -------------------------------------------------------------------------

  private async walk(): Promise<void> {
    const { o } = this;
    // A partial made by this run is empty; one resumed may hold names without a journal.
    const resuming =
      this.journalStart > 0 || (this.resuming && fs.readdirSync(this.partial).length > 0);
    if (this.journalStart > 0)
      this.resumeIndex = await ManifestIndex.openJournal(this.set.journalPath(this.partialStamp));
    const rootStat = fs.lstatSync(o.sourceRoot, { bigint: true });
    const root: DirNode = {
      rel: '',
      src: o.sourceRoot,
      dst: this.partial,
      meta: toMeta(rootStat),
      parent: null,
      waiting: 1,
      pending: 1,
      records: [],
      prev: null,
      resumed: null,
      existed: resuming,
    };
    this.rootRecord = record('', root.meta, '');
    await new Promise<void>((resolve) => {
      this.pool.push((done) => this.listDir(root, done));
      this.pool.onIdle(resolve);
    });
  }

  private listDir(dir: DirNode, done: () => void): void {
    let outstanding = 1 + (this.prev ? 1 : 0) + (this.resumeIndex ? 1 : 0);
    let names: fs.Dirent[] = [];
    const joined = (): void => {
      if (--outstanding > 0) return;
      if (dir.existed) {
        const keep = names.map((d) => d.name);
        this.removeExtras(dir, keep, () => this.dispatch(dir, names, done));
      } else this.dispatch(dir, names, done);
    };
    this.src.readdirTypes(dir.src, (err, list) => {
      if (err) this.warn(dir.rel, `cannot read directory: ${err.message}`);
      else names = list;
      joined();
    });
    this.prev?.readDir(this.dst, dir.rel, (err, map) => {
      if (err) this.warn(dir.rel, `previous manifest unreadable here (${err.message}); copying`);
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

  /** A resumed partial may hold names the source no longer has. */
  private removeExtras(dir: DirNode, names: string[], next: () => void): void {
    this.dst.readdir(dir.dst, (err, existing) => {
      if (err) return next();
      const keep = new Set(names);
      const extras = existing.filter((n) => !keep.has(n));
      let left = extras.length;
      if (left === 0) return next();
      for (const n of extras) {
        removeAll(`${dir.dst}/${n}`, (e) => {
          if (e) this.fail(e);
          if (--left === 0) next();
        });
      }
    });
  }

  /** One child entry was recorded (or given up). */
  private recorded(dir: DirNode): void {
    if (--dir.waiting === 0 || dir.records.length >= CHUNK_ENTRIES) {
      this.journal!.add(dir.rel, dir.records);
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
    if (--dir.pending > 0) return;
    this.pool.push((done) => {
      this.applyDirMeta(dir, (err) => {
        if (err) {
          this.fail(err);
          return done();
        }
        if (dir.parent) this.finished(dir.parent);
        else this.rootDone = true;
        done();
      });
    });
  }

  private applyDirMeta(dir: DirNode, cb: (err: NodeJS.ErrnoException | null) => void): void {
    const m = dir.meta;
    const chmod = (): void => {
      this.dst.chmod(dir.dst, m.mode & 0o7777, (err) => {
        if (err) return cb(err);
        this.dst.utimes(dir.dst, m.atime, m.mtime, cb);
      });
    };
    if (m.uid === euid && m.gid === egid) return chmod();
    this.dst.chown(dir.dst, m.uid, m.gid, (err) =>
      err ? this.ownerWarning(dir.rel, err, chmod, cb) : chmod(),
    );
  }

  /** Without root, foreign owners cannot be kept: a warning, not a failure. */
  private ownerWarning(
    rel: string,
    err: NodeJS.ErrnoException,
    next: () => void,
    cb: (err: NodeJS.ErrnoException | null) => void,
  ): void {
    if (err.code !== 'EPERM') return cb(err);
    this.warn(rel, 'owner not kept: changing owners needs root');
    next();
  }

  private entry(dir: DirNode, name: string, done: () => void): void {
    const src = `${dir.src}/${name}`;
    const rel = dir.rel === '' ? name : `${dir.rel}/${name}`;
    this.src.lstat(src, (err, st) => {
      if (err) {
        this.warn(
          rel,
          err.code === 'ENOENT' ? 'vanished during the backup' : `cannot read: ${err.message}`,
        );
        return this.entryDone(dir, done);
      }
      const m = toMeta(st);
      if (m.kind === null) {
        this.warn(rel, `skipped: ${st.isSocket() ? 'socket' : 'device'} (not backed up)`);
        return this.entryDone(dir, done);
      }
      const dst = `${dir.dst}/${name}`;
      if (m.kind === 'd') return this.enterDir(dir, name, rel, src, dst, m, done);
      if (m.kind === 'l') {
        return this.src.readlink(src, (e, target) => {
          if (e) {
            this.warn(rel, `cannot read link: ${e.message}`);
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
    const child: DirNode = {
      rel,
      src,
      dst,
      meta: m,
      parent: dir,
      waiting: 1,
      pending: 1,
      records: [],
      prev: null,
      resumed: null,
      existed: false,
    };
    const created = (): void => {
      dir.records.push(record(name, m, ''));
      this.files++;
      this.recorded(dir);
      this.pool.defer((d) => this.listDir(child, d));
      done();
    };
    this.dst.mkdir(dst, 0o700, (err) => {
      if (!err) return created();
      if (err.code !== 'EEXIST') return this.failed(err, rel, dir, done);
      // Resuming: keep the directory if it is one, make it writable again.
      this.dst.lstat(dst, (e, st) => {
        if (!e && st.isDirectory()) {
          child.existed = true;
          return this.dst.chmod(dst, 0o700, (e2) => (e2 ? (this.fail(e2), done()) : created()));
        }
        this.replace(dst, (e3) => {
          if (e3) {
            this.fail(e3);
            return done();
          }
          this.dst.mkdir(dst, 0o700, (e4) => (e4 ? this.failed(e4, rel, dir, done) : created()));
        });
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
    // Already written by an interrupted run of this partial (single-name entries only).
    const resumed = dir.resumed?.get(name);
    if (m.nlink === 1 && unchanged(resumed, m, target)) {
      this.count(m, resumed.data, 'resumed');
      dir.records.push(resumed);
      return this.entryDone(dir, done);
    }
    if (m.nlink > 1) {
      const group = this.groups.get(m.inode);
      if (group) {
        if (++group.seen >= m.nlink) this.groups.delete(m.inode);
        if (group.record) return this.linkMember(dir, name, dst, m, group, done);
        group.waiters!.push(() =>
          this.pool.push((d) => this.linkMember(dir, name, dst, m, group, d)),
        );
        return done(); // the slot is free while waiting for the first name to be written
      }
      this.groups.set(m.inode, { first: rel, meta: m, seen: 1, record: null, waiters: [] });
    }
    const ownGroup = m.nlink > 1 ? this.groups.get(m.inode) : undefined;
    const prev = dir.prev?.get(name);
    let slot = done;
    const written = (rec: EntryRecord | null): void => {
      if (m.nlink > 1) {
        const group = this.groups.get(m.inode) ?? ownGroup!;
        const waiters = group.waiters!;
        if (rec) {
          group.record = rec;
          group.waiters = null;
        } else if (this.groups.get(m.inode) === group) {
          this.groups.delete(m.inode); // the first name failed: the next one becomes first
        }
        for (const w of waiters) w();
      }
      if (rec) dir.records.push(rec);
      this.entryDone(dir, slot);
    };
    if (unchanged(prev, m, target)) {
      const from =
        dir.rel === '' ? `${this.prevPath}/${name}` : `${this.prevPath}/${dir.rel}/${name}`;
      slot = this.freeSlot(done);
      return this.link(from, dst, (err) => {
        if (!err) {
          this.count(m, prev.data, 'linked');
          return written(record(name, m, prev.data));
        }
        // The previous snapshot lost this entry, or its inode has as many links as the file
        // system allows (EFS: 177): write it anew, whatever its size. A link queued on the link
        // thread freed its slot; the copy takes one of its own, so the walk waits for it.
        const copy = (d: () => void): void => {
          slot = d;
          this.create(rel, src, dst, m, target, (rec) => {
            if (rec) this.copiedForLinkLimit++;
            written(rec);
          });
        };
        if (slot === noop) this.pool.push(copy);
        else copy(slot);
      });
    }
    this.create(rel, src, dst, m, target, written);
  }

  private linkMember(
    dir: DirNode,
    name: string,
    dst: string,
    m: Meta,
    group: LinkGroup,
    done: () => void,
  ): void {
    if (!group.record) {
      // The first name vanished; this name takes its place, from a fresh lstat.
      return this.entry(dir, name, done);
    }
    const rel = dir.rel === '' ? name : `${dir.rel}/${name}`;
    if (!sameInodeState(group.meta, m)) {
      // The inode changed between the visits to its names: linking would give this name the
      // first name's content under its own (newer) metadata. This name gets a copy of its
      // own, consistent with what it says; the next run joins the names again.
      this.warn(
        rel,
        `changed while its names were being backed up: copied on its own, not as a hard link to ${group.first}`,
      );
      // (A symlink's target cannot change in place: only its owner can, so the target stands.)
      const target = m.kind === 'l' ? group.record.data : '';
      return this.create(rel, `${dir.src}/${name}`, dst, m, target, (rec) => {
        if (rec) dir.records.push(rec);
        this.entryDone(dir, done);
      });
    }
    const from = `${this.partial}/${group.first}`;
    const slot = this.freeSlot(done);
    this.link(from, dst, (err) => {
      if (err) {
        if (this.fail(err, rel)) this.entryDone(dir, slot);
        else slot();
        return;
      }
      const rec = record(name, m, group.record!.data, group.first);
      this.count(m, rec.data, 'linked');
      dir.records.push(rec);
      this.entryDone(dir, slot);
    });
  }

  /** Writes a new copy of a file, symlink or FIFO; `cb(null)` when it was given up with a warning. */
  private create(
    rel: string,
    src: string,
    dst: string,
    m: Meta,
    target: string,
    cb: (rec: EntryRecord | null) => void,
  ): void {
    const name = path.basename(dst);
    const retryOnExists = (attempt: (again: () => void) => void): void => {
      attempt(() =>
        this.replace(dst, (e) => (e ? (this.fail(e), cb(null)) : attempt(() => cb(null)))),
      );
    };
    if (m.kind === 'f') {
      return retryOnExists((again) => {
        // Files of one chunk are copied with direct calls when the walk makes them (local
        // disk); larger ones always go through the pool, so the event loop keeps turning.
        const small = m.size < CHUNK;
        const read = small && this.src.mode === 'sync' ? syncOps : asyncOps;
        const write = small && this.dst.mode === 'sync' ? syncOps : asyncOps;
        copyFile(read, write, src, dst, m.size, m, this.stopping, (err: CopyError | null, res) => {
          if (err) {
            if (err.code === 'ESTOPPED') return cb(null);
            if (err.side === 'destination' && err.code === 'EEXIST') return again();
            if (err.side === 'source') {
              this.warn(
                rel,
                err.code === 'ENOENT'
                  ? 'vanished during the backup'
                  : `cannot read: ${err.message}`,
              );
              return this.dst.unlink(dst, () => cb(null));
            }
            if (err.code === 'EPERM' && err.syscall === 'fchown')
              return this.ownerLost(rel, dst, src, m, target, cb);
            this.fail(err, rel);
            return cb(null);
          }
          this.count(m, res!.digest, 'copied', res!.bytes);
          cb(record(name, { ...m, size: res!.bytes }, res!.digest));
        });
      });
    }
    if (m.kind === 'l') {
      return retryOnExists((again) => {
        this.dst.symlink(target, dst, (err) => {
          if (err) return err.code === 'EEXIST' ? again() : (this.fail(err, rel), cb(null));
          this.setMeta(rel, dst, m, true, (e) => {
            if (e) return (this.fail(e), cb(null));
            this.count(m, target, 'copied');
            cb(record(name, m, target));
          });
        });
      });
    }
    retryOnExists((again) => {
      mkfifo(dst, this.partial, (err) => {
        if (err) {
          if (err.code === 'EEXIST') return again();
          this.fail(err, rel);
          return cb(null);
        }
        this.setMeta(rel, dst, m, false, (e) => {
          if (e) return (this.fail(e), cb(null));
          this.count(m, '', 'copied');
          cb(record(name, m, ''));
        });
      });
    });
  }

  /** Not root and the file belongs to someone else: keep it, owned by us, with a warning. */
  private ownerLost(
    rel: string,
    dst: string,
    src: string,
    m: Meta,
    target: string,
    cb: (rec: EntryRecord | null) => void,
  ): void {
    this.warn(rel, 'owner not kept: changing owners needs root');
    this.dst.unlink(dst, () =>
      this.create(rel, src, dst, { ...m, uid: euid, gid: egid }, target, cb),
    );
  }

  /** Owner, mode and times of a new symlink or FIFO (never following a symlink). */
  private setMeta(
    rel: string,
    dst: string,
    m: Meta,
    isLink: boolean,
    cb: (err: NodeJS.ErrnoException | null) => void,
  ): void {
    const times = (): void =>
      isLink
        ? this.dst.lutimes(dst, m.atime, m.mtime, cb)
        : this.dst.utimes(dst, m.atime, m.mtime, cb);
    const mode = (): void =>
      isLink ? times() : this.dst.chmod(dst, m.mode & 0o7777, (e) => (e ? cb(e) : times()));
    if (m.uid === euid && m.gid === egid) return mode();
    this.dst.lchown(dst, m.uid, m.gid, (e) => (e ? this.ownerWarning(rel, e, mode, cb) : mode()));
  }

  /** Hard-links `from` to `dst`, replacing what a resumed partial left at `dst`. */
  private link(from: string, dst: string, cb: (err: NodeJS.ErrnoException | null) => void): void {
    const again = (err: NodeJS.ErrnoException | null): void => {
      if (!err || err.code !== 'EEXIST') return cb(err);
      this.replace(dst, (e) => (e ? cb(e) : this.linkOnce(from, dst, cb)));
    };
    this.linkOnce(from, dst, again);
  }

  private linkOnce(
    from: string,
    dst: string,
    cb: (err: NodeJS.ErrnoException | null) => void,
  ): void {
    if (this.links) this.links.link(from, dst, cb);
    else this.dst.link(from, dst, cb);
  }

  /**
   * A link queued for the link thread holds no slot of the walk (the batch it goes in holds
   * one), so the walk goes on filling batches: the job is done now, and the entry's own
   * completion later gets a no-op in its place.
   */
  private freeSlot(done: () => void): () => void {
    if (!this.links) return done;
    done();
    return noop;
  }

  /** Removes a name from the partial; only ever a name this run is about to write. */
  private replace(dst: string, cb: (err: NodeJS.ErrnoException | null) => void): void {
    this.dst.unlink(dst, (err) => {
      if (!err || err.code === 'ENOENT') return cb(null);
      if (err.code === 'EISDIR' || err.code === 'EPERM') return removeAll(dst, cb);
      cb(err);
    });
  }

  private count(m: Meta, _data: string, how: 'linked' | 'copied' | 'resumed', bytes = 0): void {
    this.files++;
    if (m.kind === 'f') this.totalBytes += m.size;
    if (how === 'linked') this.linked++;
    else if (how === 'copied') {
      this.transferred++;
      this.transferredBytes += bytes;
    }
  }

  /** A destination error for one entry: a warning and the entry left out, or the run's end. */
  private failed(err: NodeJS.ErrnoException, rel: string, dir: DirNode, done: () => void): void {
    if (this.fail(err, rel)) this.entryDone(dir, done);
    else done();
  }

  private entryDone(dir: DirNode, done: () => void): void {
    this.recorded(dir);
    this.finished(dir);
    done();
  }

  // ---- commit ---------------------------------------------------------------------------

  /**
   * Data first, then the manifest, then the rename that makes the snapshot appear, then
   * `latest`; each step durable before the next (see `syncFileSystem`), so after a power loss
   * a snapshot under its final name holds every byte its manifest promises.
   */
  private async commit(stamp: string, resumedFrom: string | null, stopTime: Date): Promise<string> {
    const { set, o } = this;
    this.journal!.close();
    const partialStamp = resumedFrom ?? stamp;
    const header: ManifestHeader = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      BackupId: this.backupId,
      Label: o.label,
      Interval: o.interval,
      Snapshot: stamp,
      Source: o.source,
      Prefix: o.prefix,
      StartTime: this.startTime.toISOString(),
      StopTime: stopTime.toISOString(),
      NumberOfFiles: this.files,
      TotalFileSize: this.totalBytes,
      root: encodeEntry(this.rootRecord!),
    };
    const failed = (what: string, e: unknown): EfsBackupError =>
      new EfsBackupError('FAILED', `cannot commit the snapshot: ${what}: ${(e as Error).message}`, {
        cause: e,
      });
    try {
      await syncFileSystem(this.partial);
    } catch (e) {
      throw failed('its data could not be made durable', e);
    }
    // A run paused past the stale limit may have lost its lock: it never commits then.
    this.lock!.check();
    const manifest = set.manifestPath(stamp);
    try {
      writeManifest(manifest, header, set.journalPath(partialStamp), this.journalStart);
    } catch (e) {
      throw failed('its manifest could not be written', e);
    }
    const final = set.snapshotDir(o.interval, stamp);
    set.forget();
    try {
      fs.renameSync(this.partial, final);
      fsyncDir(set.intervalDir(o.interval));
    } catch (e) {
      if (!fs.existsSync(final)) {
        fs.rmSync(manifest, { force: true });
        throw failed(`the rename into ${o.interval}/${stamp}`, e);
      }
      // Renamed, but the rename could not be made durable: committed, with a warning.
      this.warn(
        '',
        `the commit of ${o.interval}/${stamp} may not be durable yet: ${(e as Error).message}`,
      );
    }
    // The snapshot is committed: what follows cannot make the run fail.
    try {
      pointLatest(set, o.interval, stamp);
    } catch (e) {
      this.latestError = (e as Error).message;
      this.warn('', `latest could not be pointed at ${o.interval}/${stamp}: ${this.latestError}`);
    }
    fs.rmSync(set.journalPath(partialStamp), { force: true });
    set.forget();
    return stamp;
  }
}

/** `latest` is replaced atomically: a new symlink renamed over the old one. */
export function pointLatest(set: BackupSet, interval: string, stamp: string): void {
  const tmp = `${set.latestLink}.${process.pid}.tmp`;
  try {
    fs.rmSync(tmp, { force: true });
    fs.symlinkSync(`${interval}/${stamp}`, tmp);
    fs.renameSync(tmp, set.latestLink);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(set.dir);
}

/**
 * Makes everything written to the file system holding `dir` durable: one syncfs(2), through
 * coreutils' `sync -f` (Node has no syncfs; one process per run). Chosen over an fsync per
 * copied file, measured on a local ext4 disk: a full backup of 20 000 small files took 1.20 s
 * with syncfs and 3.44 s with an fsync per file (1.15 s with neither, the data then still
 * unwritten); a no-change backup pays a few milliseconds. On NFS and EFS, where close already
 * flushes, it is one more round trip. Where `sync -f` is missing, a plain `sync`.
 */
export function syncFileSystem(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('sync', ['-f', dir], (err, _out, stderr) => {
      if (!err) return resolve();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return execFile('/bin/sync', [], (e2) => (e2 ? reject(e2) : resolve()));
      }
      reject(new Error(stderr.trim() || err.message));
    });
  });
}

/** fsync of a directory: the names it holds (a rename into it) are durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function noop(): void {}
