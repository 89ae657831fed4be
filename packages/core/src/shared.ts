import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openBase, type BaseSnapshot } from './base-snapshot.js';
import type { Meta } from './change.js';
import { EntryWriter } from './entry-writer.js';
import { EfsBackupError, RunOver } from './errors.js';
import { readLock } from './lock.js';
import { Excludes } from './excludes.js';
import { LeaseFence } from './lease-fence.js';
import { timeArg } from './fs-ops.js';
import { ensureDir } from './layout.js';
import { removedAll } from './remove-tree.js';
import {
  clockSkewLimitMs,
  type LeaseRun,
  type LeaseStore,
  type UnitCounts,
  type UnitDone,
  type UnitLease,
  type UnitState,
} from './leases.js';
import {
  decodeEntry,
  encodeEntry,
  JournalWriter,
  splitNs,
  type JournalSegment,
} from './manifest.js';
import { bytesOfName, fsPath, nameFromBytes } from './names.js';
import { commitPartial, openPartial, prepareSet, type PartialSnapshot } from './partial.js';
import { patientStore, StoreWaitStopped } from './patient-store.js';
import { parentOf, planUnits } from './plan.js';
import type { PruneResult } from './prune.js';
import {
  UnitReport,
  type RunReport,
  type BackupResult,
  type BackupStatus,
  type WorkerFigures,
} from './run-report.js';
import {
  journalFailure,
  openRun,
  pruneAfterCommit,
  runResult,
  stoppedMessage,
  type RunParts,
} from './run-parts.js';
import type { WalkControl } from './run-control.js';
import type { BackupRunOptions, ShareOptions } from './start.js';
import { Walk, type NamedDir, type UnitScope } from './walk.js';
import { XattrCopy } from './xattrs.js';

/**
 * One worker of a shared run (scale-out): the run's units leased one at a time from the lease
 * store and walked into the one partial every worker writes; once every unit is done, the
 * commit claim decides which worker commits: it writes what was left to the commit (every name
 * of an inode with several names), merges the units' journals into the manifest and commits.
 *
 * On the destination, beside the partial's journal:
 *   manifests/<partialStamp>.units/plan.json           the units planned from the previous manifest
 *   manifests/<partialStamp>.units/<unit>.<attempt>     one journal per attempt at a unit
 *   manifests/<partialStamp>.units/<unit>.<attempt>.links   the entries it left to the commit
 *   manifests/<partialStamp>.units/links.<worker>.<n>   the commit's own journal
 * where <unit> is the first 32 hex digits of the sha256 of the unit's path (its bytes). An
 * attempt's journal begins as a copy of the previous attempt's, so a unit taken over from a
 * worker that died resumes exactly what that worker had written.
 */

const DEFAULT_LEASE_MS = 60_000;
/** How often an idle worker asks for work, and a busy one refreshes the store's counts. */
const POLL_MS = 200;
/**
 * How often a worker looks while the run is about to move on without it: a joined worker
 * waiting for the run to be begun, and a worker with nothing to walk while the last leased
 * units end (the commit waits for the committer to notice). These waits are short and on the
 * run's path, so they are watched closely: each look is one listing of the store.
 */
const SOON_MS = 40;
/**
 * A worker walks several units at once while its walks hold fewer directories than it has
 * calls in flight: creating names in one directory is serial on a network file system (the
 * client holds the directory's lock through each round trip), so a worker needs many
 * directories open to keep its calls busy, and one unit of a few directories cannot give
 * that. How often a busy worker looks again, and how many units it holds at most.
 */
const MORE_MS = 25;
const MAX_UNITS_AT_ONCE = 8;
/** New directories become units of their own while fewer than this many per worker are open. */
const SPLIT_AHEAD = 16;

export async function sharedBackup(
  options: BackupRunOptions,
  share: ShareOptions,
): Promise<BackupResult> {
  const parts = openRun(options);
  const run = new SharedRun(parts, share, options);
  return run.go();
}

/** Where an attempt at a unit leaves what it left to the commit (rare: beside the journals' folders). */
function linksOf(unitsDir: string, unit: string, attempt: number): string {
  return path.join(unitsDir, `${unitKey(unit)}.${attempt}.links`);
}

/** A unit's file name stem: fixed length, whatever bytes its path holds. */
export function unitKey(unit: string): string {
  return createHash('sha256').update(bytesOfName(unit)).digest('hex').slice(0, 32);
}

interface Totals {
  files: number;
  bytes: number;
  transferred: number;
  transferredBytes: number;
  linked: number;
  warnings: number;
}

class SharedRun {
  private readonly me: string;
  private readonly store: LeaseStore;
  private readonly workers: number;
  private readonly leaseMs: number;
  private base: BaseSnapshot | null = null;
  private run: LeaseRun | null = null;
  private partial: PartialSnapshot | null = null;
  private unitsDir = '';
  /** This worker began the run on a partial of its own making (nothing of an earlier run in it). */
  private fresh = false;
  /** The journals' folders this worker has made sure of (`journalOf`). */
  private readonly folders = new Set<string>();
  private planned = new Set<string>();
  /** Every unit known to exist: a walk never enters one of these. */
  private readonly known = new Set<string>();
  private xattrs: XattrCopy | null = null;
  private excludes: Excludes | null = null;
  /** Until when a busy worker does not ask for another unit (the store had none open). */
  private dryUntil = 0;
  /** The units this worker is walking now, each with its fence and its walk. */
  private readonly held = new Map<UnitLease, { fence: LeaseFence; walk: Walk | null }>();
  /** The commit claim, once this worker holds it: the control of what it writes for the commit. */
  private claim: LeaseFence | null = null;
  private open = 0;
  private publishedSince = 0;
  private readonly mine: WorkerFigures;
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly parts: RunParts,
    private readonly share: ShareOptions,
    private readonly options: BackupRunOptions,
  ) {
    this.me = share.worker;
    // Its busy answers waited out while the run goes on; a stop (or the signal, before the
    // run's control watches it) ends the wait.
    this.store = patientStore(share.store, {
      stopping: () => parts.control.stopping() || options.signal?.aborted === true,
      ...(share.notice ? { notice: share.notice } : {}),
    });
    this.workers = Math.max(1, share.workers ?? 1);
    this.leaseMs = share.leaseMs ?? DEFAULT_LEASE_MS;
    this.mine = noFigures(this.me);
  }

  async go(): Promise<BackupResult> {
    const { o, lock, now, start, set, report, control, links, src } = this.parts;
    let status: BackupStatus = 'Failed';
    let message = '';
    let snapshot: string | null = null;
    let committed = false;
    let copyStop = start;
    let prune: { pruneStart: Date; pruned: PruneResult; pruneStop: Date } | null = null;
    let totals: Totals | null = null;
    let everyone: WorkerFigures[] = [];
    let over: RunOver | null = null;
    try {
      lock.whenLost((why) =>
        control.failWith(
          new EfsBackupError(
            'FAILED',
            `this run lost its lock and stopped without committing: ${why}`,
          ),
        ),
      );
      set.remember();
      prepareSet(set, o.interval);
      // The clock is asked while the base is read (each a round trip or more on NFS); the
      // answer is waited for before anything is written.
      const clock = this.checkClock();
      clock.catch(() => {});
      this.base = await openBase(set, report);
      if (this.base) links?.start();
      await this.begin(clock);
      const xattrs = XattrCopy.open(o.xattrs, report, src.mode === 'async');
      this.xattrs = xattrs;
      this.excludes = Excludes.of(o);
      control.begin(this.options.signal);
      const endProgress = report.startProgress(this.options.progressIntervalMs ?? 250);
      this.timers.push(setInterval(() => void this.renew(), Math.max(50, this.leaseMs / 3)));
      // The counts only say when to split (splitNow): a worker alone never splits.
      if (this.workers > 1) this.timers.push(setInterval(() => void this.refreshCounts(), POLL_MS));
      for (const t of this.timers) t.unref();
      let outcome: 'committed' | 'elsewhere' | 'left' | 'handed' | 'stopped';
      try {
        for (;;) {
          const allDone = await this.workUnits();
          copyStop = now();
          const next = !allDone
            ? 'stopped'
            : this.share.commit === false
              ? 'left'
              : await this.commitOrWait();
          // 'again': a unit is still open after all (a listing that lagged): back to work.
          if (next !== 'again') {
            outcome = next;
            break;
          }
        }
        xattrs?.finish();
      } finally {
        control.end();
        endProgress();
      }
      if (control.fatal) throw control.fatal;
      if (outcome === 'stopped') {
        status = 'Incomplete';
        message = stoppedMessage(control);
      } else if (outcome === 'left') {
        status = 'Incomplete';
        message = `this worker's part of the run is done; another worker of the run commits it`;
      } else if (outcome === 'handed') {
        status = 'Incomplete';
        message = `this worker's commit claim was not renewed in time, and it committed nothing: the worker of the run that holds the claim now commits it, or the next run continues it`;
      } else {
        const r = this.run!;
        snapshot = r.stamp;
        const units = this.doneUnits ?? [];
        everyone = workerFigures(units);
        if (outcome === 'committed') {
          committed = true;
          totals = this.totals;
          if (this.latestError !== undefined) {
            [prune] = await Promise.all([
              pruneAfterCommit(this.parts, this.options.signal),
              this.clearing,
            ]);
          }
          const warnings = (totals?.warnings ?? 0) + report.warningCount - this.warningsInUnits;
          status = warnings > 0 ? 'SuccessWithWarnings' : 'Success';
          message = report.successMessage(`${o.interval}/${snapshot}`, this.latestError ?? null);
        } else {
          status = 'Success';
          message = `snapshot ${o.interval}/${snapshot} is complete (committed by another worker of the run)`;
        }
      }
    } catch (e) {
      if (e instanceof RunOver) over = e;
      if ((e instanceof StoreWaitStopped || e instanceof JoinStopped) && !control.fatal) {
        // Stopped while the store did not answer, or before the run was begun: stopped, as
        // any other stop (the signal may have come before the control watched it).
        if (control.stopReason === null) control.stop('signal');
        status = 'Incomplete';
        message = stoppedMessage(control);
      } else {
        status = 'Failed';
        message = e instanceof Error ? e.message : String(e);
      }
    } finally {
      for (const t of this.timers) clearInterval(t);
      this.timers = [];
      await links?.close();
      for (const lease of this.held.keys())
        await this.store.release(this.me, lease).catch(() => {});
      this.held.clear();
      this.base?.index.close();
      // Whoever committed lets the lock go, and so does the last worker of a stopped run (no
      // lease is held any more: each gives its own back before it looks); a worker whose part
      // is done, or that failed, leaves it to the others.
      const stopped = control.stopReason !== null && !committed;
      const leased = stopped
        ? await this.store.counts(Date.now()).then(
            (c) => c.leased,
            () => 1,
          )
        : 1;
      if (committed || leased === 0) lock.release();
      else lock.leave();
    }
    // Came after the run ended: no part in it, said as such to the caller (not a failure).
    if (over) throw over;
    const result = runResult(this.parts, { status, message, copyStop, snapshot, prune });
    if (totals) {
      result.NumberOfFiles = totals.files;
      result.TotalFileSize = totals.bytes;
      result.NumberOfFilesTransferred = totals.transferred;
      result.TotalTransferredFileSize = totals.transferredBytes;
      result.NumberOfFilesLinked = totals.linked;
      result.NumberOfWarnings = totals.warnings + report.warningCount - this.warningsInUnits;
    }
    if (!everyone.some((w) => w.worker === this.me)) everyone.push(this.mine);
    result.share = { worker: this.me, committed, workers: everyone };
    return result;
  }

  /**
   * The run's partial and its store's run: the worker that took the lock opens (or resumes) the
   * partial and begins the run; a worker that joined the lock waits for that.
   */
  private async begin(clockChecked: Promise<void>): Promise<void> {
    const { backupId, o, set, start, lock, now } = this.parts;
    await clockChecked;
    if (!lock.joined) {
      const p = openPartial(set, o.interval, start, () => {});
      p.journal.close();
      this.unitsDir = path.join(set.manifestsDir, `${p.partialStamp}.units`);
      ensureDir(this.unitsDir);
      const plan =
        this.base && this.workers > 1 ? await planUnits(this.base.index, this.workers) : null;
      // A new partial has nothing of earlier runs: no journal to seed a unit's from, no unit
      // but the root, no plan of another run's to replace (each a round trip on NFS).
      this.fresh = !p.resumed;
      if (plan || !this.fresh) {
        writeJson(path.join(this.unitsDir, 'plan.json'), plan?.units.map(encodeName) ?? []);
      }
      this.planned = new Set(plan?.units ?? []);
      const run = await this.store.begin({
        runId: backupId,
        partialStamp: p.partialStamp,
        stamp: p.stamp,
        startedAt: start.toISOString(),
        workers: this.workers,
      });
      if (run.runId !== backupId || run.partialStamp !== p.partialStamp) {
        throw new EfsBackupError(
          'FAILED',
          `the lease store holds another run (${run.runId}) of this backup set's ${o.interval} partial`,
        );
      }
      this.run = run;
    } else {
      // Joined: the worker that took the lock begins the run; its partial is this worker's.
      const until = now().getTime() + this.leaseMs;
      for (;;) {
        const run = await this.store.run();
        if (run && run.runId === backupId) {
          this.run = run;
          break;
        }
        // The run ended (committed, or stopped) before this worker came: nothing to join.
        if (readLock(set.lockFile)?.owner !== backupId) throw new RunOver(backupId);
        // Stopped while waiting (the worker that was to begin it failed, and stops the others).
        if (this.options.signal?.aborted) throw new JoinStopped();
        if (now().getTime() > until) {
          throw new EfsBackupError(
            'FAILED',
            `the run ${backupId} was not begun in its lease store`,
          );
        }
        await sleep(SOON_MS);
      }
      this.unitsDir = path.join(set.manifestsDir, `${this.run.partialStamp}.units`);
    }
    const r = this.run!;
    const dir = set.partialDir(o.interval, r.partialStamp);
    if (!fs.existsSync(dir)) {
      throw new EfsBackupError('FAILED', `the run's partial ${dir} is gone`);
    }
    this.partial = {
      stamp: r.stamp,
      partialStamp: r.partialStamp,
      resumed: true,
      dir,
      journal: null as unknown as JournalWriter,
      journalStart: 0,
    };
    if (lock.joined) {
      this.planned = new Set(readJson(path.join(this.unitsDir, 'plan.json')).map(decodeName));
    }
    if (this.fresh) this.known.add('');
    else for (const u of await this.store.units()) this.known.add(u.unit);
  }

  /**
   * Refuses a host whose clock is too far off its store's (hosts that share a store of their
   * own clocks), before anything is written: an expiry one host writes is judged by another's
   * clock, so a host ahead takes units before their holders stop, one behind holds them on.
   */
  private async checkClock(): Promise<void> {
    if (!this.store.clockSkew) return;
    const { ms: skew, against } = await this.store.clockSkew();
    const limit = clockSkewLimitMs(this.leaseMs);
    if (Math.abs(skew) <= limit) return;
    const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    throw new EfsBackupError(
      'FAILED',
      `this host's clock is ${s(Math.abs(skew))} ${skew > 0 ? 'ahead of' : 'behind'} the lease store's (${against}): ` +
        `the workers of a run share leases by their clocks, and more than ${s(limit)} apart a unit could be written by two of them; ` +
        `set this host's clock (chrony or NTP) and run again`,
    );
  }

  /**
   * Leases and walks units until none is left (true) or the run stops (false): another unit
   * while its walks keep fewer directories open than it has calls in flight (`wantsMore`).
   */
  private async workUnits(): Promise<boolean> {
    const { control } = this.parts;
    const walks = new Set<Promise<void>>();
    let stopped = false;
    for (;;) {
      // How long an idle worker waits: less while the run's last leased units are ending.
      let idle = POLL_MS;
      if (control.stopping()) stopped = true;
      if (!stopped && (walks.size === 0 || this.wantsMore())) {
        const asked = performance.now();
        let lease: UnitLease | null = null;
        let fence: LeaseFence | null = null;
        let counts: UnitCounts | null = null;
        try {
          lease = await this.store.acquire(this.me, Date.now(), this.leaseMs);
          if (lease) {
            fence = new LeaseFence(control, asked, this.leaseMs);
            this.held.set(lease, { fence, walk: null });
            // Taken over, or left by an earlier run: whoever walked it before may have published units in it.
            if (lease.attempt > 1) for (const u of await this.store.units()) this.known.add(u.unit);
          } else if (walks.size === 0) counts = await this.store.counts(Date.now());
        } catch (e) {
          // Stopped while the store did not answer: the walks going on end as at any stop (a
          // lease taken is given back at the run's end).
          if (!(e instanceof StoreWaitStopped)) throw e;
          stopped = true;
          continue;
        }
        if (lease && fence) {
          const leased = lease;
          // A walk that throws (a store call, a journal) ends the run, as its failure: never
          // an unhandled rejection, which would end the process while another walk is awaited.
          // Its lease stays held for the run's end to give back.
          const walking: Promise<void> = this.walkUnit(leased, fence).then(
            (done) => {
              walks.delete(walking);
              if (!done) stopped = true;
            },
            (e: unknown) => {
              walks.delete(walking);
              stopped = true;
              if (!(e instanceof StoreWaitStopped)) control.failWith(unitFailure(leased, e));
            },
          );
          walks.add(walking);
          continue;
        }
        if (counts) {
          this.open = counts.open;
          if (counts.open === 0 && counts.leased === 0) return true;
          if (counts.open === 0) idle = SOON_MS;
        } else {
          // None open now: asked again no sooner than an idle worker asks (each ask lists the
          // store, a few round trips on a network file system).
          this.dryUntil = Date.now() + POLL_MS;
        }
      }
      if (walks.size === 0) {
        if (stopped) return false;
        await sleep(idle);
      } else await Promise.race([...walks, sleep(MORE_MS)]);
    }
  }

  /** Room for another unit: fewer directories open in this worker's walks than calls in flight. */
  private wantsMore(): boolean {
    if (this.held.size >= MAX_UNITS_AT_ONCE || Date.now() < this.dryUntil) return false;
    let open = 0;
    for (const { walk } of this.held.values()) open += walk?.openDirCount ?? 1;
    return open < this.parts.pool.limit;
  }

  /** The warnings the units this worker finished took (every warning is the run's report's). */
  private warningsInUnits = 0;

  /**
   * One unit walked into the partial, its journal closed, then marked done. False when the run
   * stops; true when the unit is done, or given up (`fence`: its lease lost), and the worker
   * goes on with others.
   */
  private async walkUnit(lease: UnitLease, fence: LeaseFence): Promise<boolean> {
    const { control } = this.parts;
    const began = Date.now();
    const file = this.journalOf(lease.unit, lease.attempt, true);
    this.seedJournal(file, lease);
    const journal = JournalWriter.open(file, (err) => control.failWith(journalFailure(file, err)));
    const unitPartial: PartialSnapshot = {
      ...this.partial!,
      journal,
      journalStart: journal.offset,
    };
    const deferredNames: Array<[string, string]> = [];
    const deferredDirs: Array<[string, Meta]> = [];
    const publishing: Array<Promise<void>> = [];
    const children: string[] = [];
    const scope: UnitScope = {
      root: lease.unit,
      boundary: (rel) => {
        if (this.known.has(rel)) {
          children.push(rel);
          return true;
        }
        if (!this.planned.has(rel) && !this.splitNow(rel)) return false;
        children.push(rel);
        this.known.add(rel);
        this.publishedSince++;
        // Awaited once the walk ends; handled now, so a failure meanwhile is no unhandled rejection.
        const published = this.store.publish([rel]);
        published.catch(() => {});
        publishing.push(published);
        return true;
      },
      deferLink: (dir, name) => deferredNames.push([dir, name]),
      deferDir: (rel, meta) => deferredDirs.push([rel, meta]),
    };
    const tally = new UnitReport(this.parts.report);
    const walk = this.walkInto(unitPartial, file, scope, tally, fence);
    this.held.set(lease, { fence, walk });
    fence.whenGivenUp(() => walk.stop());
    try {
      await walk.run();
      if (walk.vanished && !fence.givenUp) this.removeVanished(lease.unit);
    } catch (e) {
      control.failWith(unitFailure(lease, e));
    }
    // What is journaled was written by this attempt: the next one (this run's or the next
    // run's) resumes from it, after the lease expires when it was given up.
    if (control.stopping() || fence.givenUp) walk.journalOpenDirs();
    const journalError = await new Promise<Error | null>((r) => journal.flush(r));
    journal.close();
    if (fence.givenUp) return this.gaveUp(lease);
    if (journalError) control.failWith(journalFailure(file, journalError));
    try {
      await Promise.all(publishing);
    } catch (e) {
      if (!(e instanceof StoreWaitStopped))
        control.failWith(
          new EfsBackupError(
            'FAILED',
            `cannot publish a unit in the lease store: ${(e as Error).message}`,
            {
              cause: e,
            },
          ),
        );
    }
    if (control.stopping() || !walk.complete) {
      if (!control.stopping())
        this.parts.report.warn(
          lease.unit,
          `the unit's walk ended before every entry was written (an engine error: ${walk.unfinished()}); the unit is given back and walked again`,
        );
      // Given back at once: another worker (or the next run) continues from this attempt's journal.
      await this.store.release(this.me, lease).catch(() => {});
      this.held.delete(lease);
      return false;
    }
    if (deferredNames.length > 0 || deferredDirs.length > 0) {
      const lines = [
        ...deferredDirs.map(([rel, meta]) => JSON.stringify({ dir: rel, meta })),
        ...deferredNames.map(([dir, name]) => JSON.stringify({ in: dir, name })),
      ];
      fs.writeFileSync(linksOf(this.unitsDir, lease.unit, lease.attempt), lines.join('\n') + '\n', {
        mode: 0o600,
      });
    }
    const t = counters(tally);
    const done: UnitDone = {
      journalStart: unitPartial.journalStart,
      entries: t.files,
      files: t.files,
      bytes: t.bytes,
      transferred: t.transferred,
      transferredBytes: t.transferredBytes,
      linked: t.linked,
      // Every warning this worker has told and no finished unit has taken yet (its units are
      // walked at once, so which one met it is not kept): the run's total stays exact.
      warnings: this.parts.report.warningCount - this.warningsInUnits,
      ms: Date.now() - began,
      ...(lease.takenFrom !== undefined ? { takenFrom: lease.takenFrom } : {}),
      ...(children.length > 0 ? { children } : {}),
      ...(lease.unit === '' && walk.rootRecord
        ? { root: JSON.stringify(encodeEntry(walk.rootRecord)) }
        : {}),
    };
    this.warningsInUnits += done.warnings ?? 0;
    // No longer renewed: a beat racing the completion would find it done and call it lost.
    this.held.delete(lease);
    if (fence.givenUp || !(await this.store.complete(this.me, lease, done))) {
      fence.giveUp();
      return this.gaveUp(lease);
    }
    addDone(this.mine, done);
    return true;
  }

  /**
   * A walk into the partial with this journal: of a unit (`scope`, counted in its own `tally`
   * too), or of the commit's part.
   */
  private walkInto(
    p: PartialSnapshot,
    journal: string,
    scope: UnitScope | null,
    tally: RunReport = this.parts.report,
    control: WalkControl = this.parts.control,
  ): Walk {
    const { o, pool, src, dst, links } = this.parts;
    const writer = new EntryWriter(src, dst, links, tally, control, p.dir, this.xattrs);
    return new Walk(
      o.sourceRoot,
      p,
      journal,
      this.base,
      src,
      dst,
      pool,
      writer,
      tally,
      control,
      o.checksum,
      null,
      this.excludes,
      scope,
    );
  }

  /**
   * A directory met that the plan did not choose: a unit of its own while few units are open,
   * when it is new since the previous snapshot (the plan judged the others). A first backup
   * has no plan: its balance comes from here, so it splits ahead of need, into units small
   * enough that the last ones end together (measured on a first backup, 839 MB: with 2 open
   * units per worker, one of 2 workers copied 695 MB and the other 185; with 16, 426 and 454,
   * and 4 workers 202 to 246 MB each).
   */
  private splitNow(rel: string): boolean {
    if (this.workers <= 1) return false;
    if (this.base?.index.hasDir(rel)) return false;
    return this.open + this.publishedSince < this.workers * SPLIT_AHEAD;
  }

  /**
   * An attempt's journal: in one of 16 folders by its unit's key, since creating, opening and
   * removing names is serial within a folder on a network file system, and a run of many
   * units has hundreds of journals. `make`: its folder made first (once per worker).
   */
  private journalOf(unit: string, attempt: number, make = false): string {
    const key = unitKey(unit);
    const folder = path.join(this.unitsDir, key.slice(0, 1));
    if (make && !this.folders.has(folder)) {
      ensureDir(folder);
      this.folders.add(folder);
    }
    return path.join(folder, `${key}.${attempt}`);
  }

  /** The attempt's journal begins as the previous attempt's (or, for the root, a run of its own's). */
  private seedJournal(file: string, lease: UnitLease): void {
    // A first attempt has nothing before it (a unit's attempts are numbered by the store, and
    // only the holder of one writes its journal), but the root's of a resumed partial, which
    // begins as a run of its own's journal.
    if (lease.attempt === 1 && (this.fresh || lease.unit !== '')) return;
    if (fs.existsSync(file)) return;
    for (let a = lease.attempt - 1; a >= 1; a--) {
      const prev = this.journalOf(lease.unit, a);
      if (fs.existsSync(prev)) return fs.copyFileSync(prev, file);
    }
    if (lease.unit === '') {
      const plain = this.parts.set.journalPath(this.partial!.partialStamp);
      if (fs.existsSync(plain) && fs.statSync(plain).size > 0) fs.copyFileSync(plain, file);
    }
  }

  /** A unit's root gone from the source: gone from the partial too, its parent's times kept. */
  private removeVanished(unit: string): void {
    const dir = this.partial!.dir;
    const parent = parentOf(unit) === '' ? dir : `${dir}/${parentOf(unit)}`;
    const st = fs.lstatSync(fsPath(parent), { bigint: true });
    fs.rmSync(fsPath(`${dir}/${unit}`), { recursive: true, force: true });
    const [aSec, aNsec] = splitNs(st.atimeNs);
    const [mSec, mNsec] = splitNs(st.mtimeNs);
    fs.utimesSync(fsPath(parent), timeArg(aSec, aNsec), timeArg(mSec, mNsec));
    this.parts.report.warn(unit, 'vanished during the backup');
  }

  /**
   * A unit given up (its lease lost, or not renewed in time): left to expire in the store, not
   * given back, so what its walk still has in flight ends before another worker takes it. Its
   * work is that attempt's journal; the worker goes on with other units.
   */
  private gaveUp(lease: UnitLease): boolean {
    this.held.delete(lease);
    return true;
  }

  /** A heartbeat, or a count, is on its way: the next one waits for it (a store may be slow to answer). */
  private beating = false;
  private counting = false;

  private async renew(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    try {
      const held = [...this.held].filter(([, h]) => !h.fence.givenUp);
      if (held.length > 0) {
        const sent = performance.now();
        const leases = held.map(([lease]) => lease);
        const lost = new Set(await this.store.renew(this.me, leases, Date.now(), this.leaseMs));
        for (const [lease, { fence }] of held) {
          if (lost.has(lease.unit)) fence.giveUp();
          else fence.renewed(sent);
        }
      }
      if (this.claim && !this.claim.givenUp) await this.askClaim();
    } catch {
      /* the next beat tries again; a lease not renewed in time is lost, and said so then */
    } finally {
      this.beating = false;
    }
  }

  private async refreshCounts(): Promise<void> {
    if (this.counting) return;
    this.counting = true;
    try {
      this.open = (await this.store.counts(Date.now())).open;
      this.publishedSince = 0;
    } catch {
      /* kept from the last time */
    } finally {
      this.counting = false;
    }
  }

  private doneUnits: UnitState[] | null = null;
  private totals: Totals | null = null;
  private latestError: string | null | undefined = undefined;
  private clearing: Promise<void> = Promise.resolve();

  /** Every unit is done: this worker commits (the claim is its), or waits for the one that does. */
  private async commitOrWait(): Promise<
    'committed' | 'elsewhere' | 'handed' | 'stopped' | 'again'
  > {
    const { control, set, o } = this.parts;
    for (;;) {
      if (control.stopping()) return 'stopped';
      // Both read at once: a run cleared in between is seen after the claim (`still`).
      const [counts, run] = await Promise.all([this.store.counts(Date.now()), this.store.run()]);
      if (counts.open > 0) return 'again';
      if (!run || run.runId !== this.run!.runId) {
        // Cleared: committed by another worker (its snapshot is there).
        return fs.existsSync(set.snapshotDir(o.interval, this.run!.stamp))
          ? 'elsewhere'
          : 'stopped';
      }
      if (await this.askClaim()) {
        // The units the commit reads are read with the run: every unit is done, so none
        // changes now but by a clear, which the run read says.
        const units = this.store.units();
        units.catch(() => {});
        // The claim may be won just after the committer cleared the store: the run is over.
        const still = await this.store.run();
        if (!still || still.runId !== this.run!.runId) return 'elsewhere';
        return this.commit(await units);
      }
      await sleep(POLL_MS * 5);
    }
  }

  /**
   * The commit claim asked again (before the manifest, and before the rename): this worker
   * commits only while the claim is surely its own, so two workers never both rename.
   */
  private async holdClaim(): Promise<void> {
    const claim = this.claim!;
    try {
      if (!claim.givenUp) await this.askClaim();
    } catch {
      // The store did not answer: the claim holds as long as its last renewal says.
    }
    if (claim.lapsed()) throw new ClaimPassed();
  }

  /**
   * The commit claim taken, or renewed, through the store; its fence (`claim`) follows the
   * answer: made when taken anew, renewed from when the call was made, given up when lost.
   */
  private async askClaim(): Promise<boolean> {
    const sent = performance.now();
    const held = await this.store.claimCommit(this.me, Date.now(), this.leaseMs);
    if (!held) this.claim?.giveUp();
    else if (this.claim && !this.claim.givenUp) this.claim.renewed(sent);
    else this.claim = new LeaseFence(this.parts.control, sent, this.leaseMs);
    return held;
  }

  private async commit(
    units: UnitState[],
  ): Promise<'committed' | 'elsewhere' | 'handed' | 'stopped' | 'again'> {
    const { control, set, o, report, lock } = this.parts;
    const r = this.run!;
    this.doneUnits = units;
    if (
      fs.existsSync(set.snapshotDir(o.interval, r.stamp)) &&
      fs.existsSync(set.manifestPath(r.stamp))
    ) {
      // A committer that died after its rename: committed already, only the store is left.
      // (With no unit left, another committer cleared it too: that one reports the run.)
      if (units.length === 0) return 'elsewhere';
      this.afterCommit();
      await this.clearing;
      this.totals = sumUnits(units);
      return 'committed';
    }
    // Every unit done, and every unit a walk met inside its own (a store's listing may lag):
    // the root first, which every other unit is met from. A listing made before the root was
    // (on another host, or kept by its NFS client) holds no unit at all.
    const byId = new Map(units.map((u) => [u.unit, u]));
    const waiting =
      byId.get('')?.status !== 'done' ||
      units.some(
        (u) =>
          u.status !== 'done' ||
          (u.done?.children ?? []).some((c) => byId.get(c)?.status !== 'done'),
      );
    if (waiting) {
      await sleep(POLL_MS);
      return 'again';
    }
    const before = counters(this.parts.report);
    const named = readDeferred(this.unitsDir, units);
    const linksFile = path.join(this.unitsDir, `links.${unitKey(this.me)}.${Date.now()}`);
    const journal = JournalWriter.open(linksFile, (err) =>
      control.failWith(journalFailure(linksFile, err)),
    );
    const p: PartialSnapshot = { ...this.partial!, journal, journalStart: 0 };
    // Written under the claim: a worker that stalls past it stops writing once it wakes.
    const claim = this.claim!;
    if (named.length > 0) {
      await this.walkInto(p, linksFile, null, this.parts.report, claim).runNamed(named);
    }
    const journalError = await new Promise<Error | null>((res) => journal.flush(res));
    if (claim.lapsed()) {
      journal.close();
      return 'handed';
    }
    if (journalError) control.failWith(journalFailure(linksFile, journalError));
    if (control.fatal) throw control.fatal;
    if (control.stopping()) return 'stopped';
    const after = counters(this.parts.report);
    const sum = sumUnits(units);
    sum.files += after.files - before.files;
    sum.bytes += after.bytes - before.bytes;
    sum.transferred += after.transferred - before.transferred;
    sum.transferredBytes += after.transferredBytes - before.transferredBytes;
    sum.linked += after.linked - before.linked;
    this.totals = sum;
    const rootUnit = units.find((u) => u.unit === '');
    if (!rootUnit?.done?.root)
      throw new EfsBackupError('FAILED', 'the root unit recorded no root entry');
    const segments: JournalSegment[] = [...units]
      .sort((a, b) => (a.unit < b.unit ? -1 : a.unit > b.unit ? 1 : 0))
      .map((u) => ({
        path: this.journalOf(u.unit, u.attempt),
        from: u.done!.journalStart,
      }));
    segments.push({ path: linksFile, from: 0 });
    let latestError: string | null;
    try {
      ({ latestError } = await commitPartial(
        set,
        p,
        {
          backupId: r.runId,
          label: o.label,
          interval: o.interval,
          source: o.source,
          prefix: o.prefix,
          start: new Date(r.startedAt),
          stop: new Date(),
          files: sum.files,
          bytes: sum.bytes,
          root: decodeEntry(JSON.parse(rootUnit.done.root)),
          exclude: o.exclude,
          excludeIfPresent: o.excludeIfPresent,
        },
        lock,
        report,
        segments,
        () => this.holdClaim(),
      ));
    } catch (e) {
      if (e instanceof ClaimPassed) return 'handed';
      throw e;
    }
    this.latestError = latestError;
    this.afterCommit();
    return 'committed';
  }
  /**
   * Committed: the store is cleared and the units' journals removed while retention runs
   * (each is a few hundred calls on a network file system); the run's end waits for all.
   */
  private afterCommit(): void {
    const { report } = this.parts;
    this.clearing = Promise.all([
      this.store
        .clear()
        .catch((e: unknown) =>
          report.warn('', `the lease store could not be cleared: ${(e as Error).message}`),
        ),
      removedAll(this.parts.dst, this.unitsDir).catch((e: unknown) =>
        report.warn('', `the units' journals could not be removed: ${(e as Error).message}`),
      ),
    ]).then(() => {});
  }
}

function counters(r: RunReport): Totals {
  return {
    files: r.files,
    bytes: r.totalBytes,
    transferred: r.transferred,
    transferredBytes: r.transferredBytes,
    linked: r.linked,
    warnings: r.warningCount,
  };
}

function sumUnits(units: readonly UnitState[]): Totals {
  const t: Totals = {
    files: 0,
    bytes: 0,
    transferred: 0,
    transferredBytes: 0,
    linked: 0,
    warnings: 0,
  };
  for (const u of units) {
    const d = u.done;
    if (!d) continue;
    t.files += d.files;
    t.bytes += d.bytes;
    t.transferred += d.transferred ?? 0;
    t.transferredBytes += d.transferredBytes ?? 0;
    t.linked += d.linked ?? 0;
    t.warnings += d.warnings ?? 0;
  }
  return t;
}

function noFigures(worker: string): WorkerFigures {
  return { worker, units: 0, takenOver: 0, entries: 0, bytes: 0, ms: 0 };
}

/** A unit the worker finished, counted in its figures. */
function addDone(w: WorkerFigures, done: UnitDone): void {
  w.units++;
  if (done.takenFrom !== undefined) w.takenOver++;
  w.entries += done.entries;
  w.bytes += done.bytes;
  w.ms += done.ms;
}

/** Each worker's share, from the units it finished. */
function workerFigures(units: readonly UnitState[]): WorkerFigures[] {
  const by = new Map<string, WorkerFigures>();
  for (const u of units) {
    if (!u.done) continue;
    const w = by.get(u.owner) ?? noFigures(u.owner);
    addDone(w, u.done);
    by.set(u.owner, w);
  }
  return [...by.values()].sort((a, b) => (a.worker < b.worker ? -1 : 1));
}

/** The entries every unit left to the commit, by directory. */
function readDeferred(unitsDir: string, units: readonly UnitState[]): NamedDir[] {
  const dirs = new Map<string, { meta: Meta | null; names: string[] }>();
  const at = (rel: string): { meta: Meta | null; names: string[] } => {
    let d = dirs.get(rel);
    if (!d) dirs.set(rel, (d = { meta: null, names: [] }));
    return d;
  };
  // One listing, not a look per unit (each a round trip on a network file system).
  const present = new Set(fs.readdirSync(unitsDir));
  for (const u of units) {
    const file = linksOf(unitsDir, u.unit, u.attempt);
    if (!present.has(path.basename(file))) continue;
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (line === '') continue;
      const x = JSON.parse(line) as { dir?: string; meta?: Meta; in?: string; name?: string };
      if (x.dir !== undefined) at(x.dir).meta = x.meta!;
      else at(x.in!).names.push(x.name!);
    }
  }
  const out: NamedDir[] = [];
  for (const [rel, d] of dirs) {
    if (!d.meta) throw new EfsBackupError('FAILED', `the commit has no metadata for ${rel || '/'}`);
    out.push({ rel, meta: d.meta, names: d.names });
  }
  return out;
}

function unitFailure(lease: UnitLease, e: unknown): EfsBackupError {
  return new EfsBackupError(
    'FAILED',
    `cannot back up ${lease.unit || 'the source root'}: ${(e as Error).message}`,
    { cause: e },
  );
}

/** A joining worker stopped before the run it waited for was begun. */
class JoinStopped extends Error {}

/** The commit claim is no longer surely this worker's: another one commits the run. */
class ClaimPassed extends Error {}

/** Unit paths in a JSON file: their bytes, base64 (a name need not be UTF-8). */
function encodeName(s: string): string {
  return bytesOfName(s).toString('base64');
}

function decodeName(s: string): string {
  return nameFromBytes(Buffer.from(s, 'base64'));
}

function writeJson(file: string, value: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(value) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function readJson(file: string): string[] {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as string[];
  } catch {
    return [];
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
