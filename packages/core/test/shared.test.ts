/**
 * A shared run (scale-out): N workers, one partial, one snapshot. Here the workers share one
 * process and a lease store held in memory, so each case is quick and exact; the workers as
 * processes, killed and stopped, with the real stores, are in packages/cli/test/workers.test.ts
 * and the stores' own contract in packages/aws/test/lease-stores.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backup,
  BackupSet,
  RunOver,
  startBackup,
  verify,
  type BackupResult,
} from '../src/index.js';
import { createBigTree, modifyBigTree, type BigTreeInfo } from './fixtures/big-tree.js';
import { manifestEntries } from './fixtures/manifest-entries.js';
import type { LeaseRun, UnitDone, UnitLease } from '../src/leases.js';
import { FileLeaseStore } from '../src/file-lease-store.js';
import { MemoryLeaseStore } from './fixtures/memory-lease-store.js';
import { expectCleanSnapshot } from './fixtures/resume.js';

let base = '';
let src = '';
let info: BigTreeInfo;

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-shared-'));
  src = path.join(base, 'src');
  // 14 top-level directories of 3 × 48 files: what modifyBigTree changes.
  info = createBigTree(src, { top: 14, sub: 3, bigFiles: 2, bigSize: 256 * 1024 });
});
afterAll(() => {
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

let n = 0;
function destination(): string {
  const d = path.join(base, `dst-${++n}`);
  fs.mkdirSync(d);
  return d;
}

/** N workers of one run, started together in this process. */
async function sharedRun(
  dst: string,
  workers: number,
  store = new MemoryLeaseStore(),
  backupId = `run-${n}-${workers}`,
): Promise<BackupResult[]> {
  const results = await Promise.all(
    Array.from({ length: workers }, (_, i) =>
      backup({
        source: src,
        destination: dst,
        backupId,
        concurrency: 8,
        share: { store, worker: `w${i}`, workers, leaseMs: 10_000 },
      }).catch((e: unknown) => {
        // A worker whose first look at the store came after the others had committed (on a
        // small tree, with the event loop shared by all of them) takes no part, as the
        // `worker` command's does.
        if (e instanceof RunOver) return null;
        throw e;
      }),
    ),
  );
  const tookPart = results.filter((r): r is BackupResult => r !== null);
  expect(tookPart.length).toBeGreaterThan(0);
  return tookPart;
}

/** Every worker ends Success, one committed, and verify finds the snapshot whole. */
async function committedOne(results: BackupResult[]): Promise<BackupResult> {
  for (const r of results) expect(r.Status, r.Message).toBe('Success');
  const committed = results.filter((r) => r.share?.committed);
  expect(committed).toHaveLength(1);
  const c = committed[0]!;
  const [v] = await verify({ destination: c.Destination, snapshot: c.Snapshot! });
  expect(v!.problems).toEqual([]);
  expect(v!.entries).toBe(c.NumberOfFiles);
  return c;
}

/** The most units one worker held at once, from the store's calls. */
function mostHeldAtOnce(calls: readonly string[]): number {
  const held = new Map<string, number>();
  let most = 0;
  for (const c of calls) {
    const [what, worker] = c.split(' ');
    if (what !== 'acquire' && what !== 'complete') continue;
    const n = (held.get(worker!) ?? 0) + (what === 'acquire' ? 1 : -1);
    held.set(worker!, n);
    most = Math.max(most, n);
  }
  return most;
}

describe('N workers build one snapshot, the same as one run of its own', () => {
  let plain: Map<string, string>;
  let plainRun: BackupResult;

  beforeAll(async () => {
    const dst = destination();
    const r = await backup({ source: src, destination: dst });
    expect(r.Status).toBe('Success');
    plainRun = r;
    plain = await manifestEntries(new BackupSet(dst, 'efs-backup').manifestPath(r.Snapshot!));
  });

  for (const workers of [1, 2, 4]) {
    it(`${workers} worker(s): one commit, the snapshot equal to the source, the manifest entry for entry`, async () => {
      const dst = destination();
      const store = new MemoryLeaseStore();
      const results = await sharedRun(dst, workers, store);
      const c = await committedOne(results);
      const set = new BackupSet(dst, 'efs-backup');
      expectCleanSnapshot(src, set, 'daily', c.Snapshot);
      expect(await manifestEntries(set.manifestPath(c.Snapshot!))).toEqual(plain);
      expect(c.NumberOfFiles).toBe(plain.size);
      // The run's figures are its units' (each counted by its own walk, though a worker walks
      // several at once), and the commit's: the same as the run of its own.
      for (const k of [
        'NumberOfFiles',
        'TotalFileSize',
        'NumberOfFilesTransferred',
        'TotalTransferredFileSize',
        'NumberOfFilesLinked',
        'NumberOfWarnings',
      ] as const) {
        expect(c[k], k).toBe(plainRun[k]);
      }
      expect(c.share!.workers.reduce((s, w) => s + w.units, 0)).toBe(
        store.calls.filter((x) => x.startsWith('complete ')).length,
      );
      // Every name of a hard-linked inode is one inode in the snapshot too (they sit in different units).
      const snap = set.snapshotDir('daily', c.Snapshot!);
      expect(fs.statSync(path.join(snap, 't00/hard-f001')).ino).toBe(
        fs.statSync(path.join(snap, 't00/s0/f001')).ino,
      );
      // With workers waiting for work, the walk published sub-trees as units of their own
      // (which worker took which depends on timing: the benchmark shows the spread).
      const published = store.calls.filter((x) => x.startsWith('publish ')).length;
      if (workers > 1) expect(published).toBeGreaterThan(1);
      else expect(published).toBe(0);
      expect(c.share!.workers.reduce((s, w) => s + w.entries, 0)).toBeLessThanOrEqual(plain.size);
      // Nothing of the run's bookkeeping is left.
      expect(fs.readdirSync(set.manifestsDir).filter((f) => !f.endsWith('.manifest'))).toEqual([]);
    });
  }

  it('a worker alone in a run planned for 4 walks several units at once, and commits the snapshot of a run of its own', async () => {
    const dst = destination();
    const first = await backup({ source: src, destination: dst });
    expect(first.Status).toBe('Success');
    const store = new RecordingFileStore(path.join(dst, 'leases'));
    const [r] = await Promise.all([
      backup({
        source: src,
        destination: dst,
        backupId: `alone-${n}`,
        concurrency: 8,
        // Paced like a network file system (each unit lasts long enough to be walked beside
        // another; on a local disk a small unit is done before the next is asked for).
        io: 'async',
        maxOps: 4000,
        share: { store, worker: 'w0', workers: 4, leaseMs: 10_000 },
      }),
    ]);
    const c = await committedOne([r!]);
    expectCleanSnapshot(src, new BackupSet(dst, 'efs-backup'), 'daily', c.Snapshot);
    // The plan cut the tree for 4; the one worker there took every unit, several in hand at
    // once while its walks held fewer directories than its 8 calls in flight (one at a time,
    // each unit's tail left calls idle).
    expect(store.calls.filter((x) => x.startsWith('acquire w0 ')).length).toBeGreaterThan(3);
    expect(mostHeldAtOnce(store.calls)).toBeGreaterThan(1);
  });

  it('an incremental run of 4 workers is cut by the plan from the previous manifest, and links what did not change', async () => {
    const dst = destination();
    const first = await backup({ source: src, destination: dst });
    expect(first.Status).toBe('Success');
    const store = new MemoryLeaseStore();
    try {
      modifyBigTree(src, info, 1);
      const results = await sharedRun(dst, 4, store);
      const c = await committedOne(results);
      const set = new BackupSet(dst, 'efs-backup');
      expectCleanSnapshot(src, set, 'daily', c.Snapshot);
      // The plan published planned directories as the walk reached them: more units than the root.
      expect(store.calls.filter((x) => x.startsWith('publish ')).length).toBeGreaterThan(3);
      // Most files did not change: linked to the previous snapshot, not copied.
      expect(c.NumberOfFilesLinked).toBeGreaterThan(info.files / 2);
      expect(c.NumberOfFilesTransferred).toBeLessThan(info.files / 4);
    } finally {
      /* the source stays changed: the cases after this one back it up as it is */
    }
  });

  it('a worker that died holding a lease: its unit is taken over once the lease expires', async () => {
    const dst = destination();
    // The first lease of the run goes to a worker that dies at once: its lease expires in 300 ms.
    const store = new DyingFirst();
    const runId = `dead-${n}`;
    const results = await Promise.all(
      [0, 1].map((i) =>
        backup({
          source: src,
          destination: dst,
          backupId: runId,
          concurrency: 8,
          share: { store, worker: `w${i}`, workers: 2, leaseMs: 10_000 },
        }),
      ),
    );
    const c = await committedOne(results);
    expectCleanSnapshot(src, new BackupSet(dst, 'efs-backup'), 'daily', c.Snapshot);
    expect(store.calls).toContain('acquire dead "" 1');
    expect(store.calls.filter((x) => /^acquire w[01] "" 2$/.test(x))).toHaveLength(1);
    // The run says so: the worker that took the root over counts it in its figures.
    const taker = store.calls.find((x) => /^acquire w[01] "" 2$/.test(x))!.split(' ')[1];
    const figures = c.share!.workers;
    expect(figures.find((w) => w.worker === taker)?.takenOver).toBe(1);
    expect(figures.reduce((t, w) => t + w.takenOver, 0)).toBe(1);
  });
});

describe('a shared run stopped by its window keeps its units; the next run, of other workers, finishes them', () => {
  it('4 workers stopped by the window once 3 units are done; 2 workers then commit one correct snapshot', async () => {
    const dst = destination();
    const store = new MemoryLeaseStore();
    // The window's clock: an hour and more on, once three units are done. Each worker makes at
    // most 400 calls a second, so the run is still going when the window's check comes.
    let jumped = false;
    const now = (): Date => new Date(Date.now() + (jumped ? 61 * 60_000 : 0));
    const watch = setInterval(() => {
      void store.counts(Date.now()).then((c) => {
        if (c.done >= 3) jumped = true;
      });
    }, 5);
    let stopped: BackupResult[];
    try {
      stopped = await Promise.all(
        [0, 1, 2, 3].map((i) =>
          backup({
            source: src,
            destination: dst,
            backupId: 'windowed',
            concurrency: 2,
            maxOps: 400,
            windowMinutes: 60,
            now,
            share: { store, worker: `w${i}`, workers: 4, leaseMs: 10_000 },
          }),
        ),
      );
    } finally {
      clearInterval(watch);
    }
    for (const r of stopped) expect(r.Status, r.Message).toBe('Incomplete');
    const set = new BackupSet(dst, 'efs-backup');
    expect(set.snapshots()).toEqual([]);
    const before = await store.units();
    expect(before.filter((u) => u.status === 'done').length).toBeGreaterThanOrEqual(3);
    expect(before.some((u) => u.status !== 'done')).toBe(true);

    const results = await Promise.all(
      [0, 1].map((i) =>
        backup({
          source: src,
          destination: dst,
          backupId: 'resumed',
          concurrency: 8,
          share: { store, worker: `r${i}`, workers: 2, leaseMs: 10_000 },
        }),
      ),
    );
    const c = await committedOne(results);
    expectCleanSnapshot(src, set, 'daily', c.Snapshot);
    // The stopped run's units were continued (each one's attempt counter went on), not begun anew.
    expect(
      store.calls.filter((x) => /^acquire r[01] /.test(x)).some((x) => !x.endsWith(' 1')),
    ).toBe(true);
  });
});

describe('a lease store that fails while units are being walked', () => {
  it('the run ends Failed naming the store, with nothing committed; the next run commits one correct snapshot', async () => {
    const dst = destination();
    const first = await backup({ source: src, destination: dst });
    expect(first.Status).toBe('Success');
    const store = new FailingComplete(path.join(dst, 'leases'));
    // One worker of a run planned for 4, paced: several units are walked at once when the
    // store fails, and the failure comes while the worker waits on something else.
    const backupId = `failing-${n}`;
    const started = startBackup({ source: src, destination: dst, backupId });
    let r: BackupResult;
    try {
      r = await backup({
        source: src,
        destination: dst,
        backupId,
        started,
        concurrency: 8,
        io: 'async',
        maxOps: 4000,
        share: { store, worker: 'w0', workers: 4, leaseMs: 10_000 },
      });
    } finally {
      // A failed worker leaves the lock to the run's others; with none, its host lets it go
      // (the CLI does this once every worker it started has ended).
      started.lock.releaseShared();
    }
    expect(store.failed).toBe(true);
    expect(r.Status, r.Message).toBe('Failed');
    expect(r.Message).toMatch(/the lease store is unreachable/);
    const set = new BackupSet(dst, 'efs-backup');
    expect(set.snapshots().map((s) => s.stamp)).toEqual([first.Snapshot]);
    const again = await committedOne(await sharedRun(dst, 1, new MemoryLeaseStore()));
    expectCleanSnapshot(src, set, 'daily', again.Snapshot);
  });
});

describe('the commit claim passes to another worker while its holder commits (a holder paused past its lease)', () => {
  for (const [takenAt, when] of [
    [2, 'before the manifest is written'],
    [3, 'after the manifest, before the rename'],
  ] as const) {
    it(`${when}: the holder renames nothing and says it committed nothing; the other commits one correct snapshot`, async () => {
      const dst = destination();
      const store = new ClaimTaken(path.join(dst, 'leases'), takenAt);
      const results = await Promise.all(
        [0, 1].map((i) =>
          backup({
            source: src,
            destination: dst,
            backupId: `claim-${takenAt}`,
            concurrency: 8,
            // A lease of 3 s: the claim taken from its holder expires soon.
            share: { store, worker: `w${i}`, workers: 2, leaseMs: 3000 },
          }),
        ),
      );
      expect(store.holder).not.toBeNull();
      const [handed, other] =
        results[0]!.share!.worker === store.holder ? results : [...results].reverse();
      expect(handed!.Status, handed!.Message).toBe('Incomplete');
      expect(handed!.Message).toMatch(
        /commit claim was not renewed in time, and it committed nothing/,
      );
      expect(handed!.share?.committed).toBe(false);
      expect(handed!.Snapshot).toBeNull();
      expect(other!.Status, other!.Message).toBe('Success');
      expect(other!.share?.committed).toBe(true);
      const set = new BackupSet(dst, 'efs-backup');
      expect(set.snapshots().map((s) => s.stamp)).toEqual([other!.Snapshot]);
      expectCleanSnapshot(src, set, 'daily', other!.Snapshot);
      const [v] = await verify({ destination: dst, snapshot: other!.Snapshot! });
      expect(v!.problems).toEqual([]);
    });
  }
});

describe('the store does not answer when the committer asks for its claim again', () => {
  it('the claim holds as long as its last renewal says: the run commits, once', async () => {
    const dst = destination();
    const store = new ClaimUnanswered(path.join(dst, 'leases'));
    const results = await sharedRun(dst, 2, store);
    expect(store.unanswered).toBe(2);
    const c = await committedOne(results);
    expectCleanSnapshot(src, new BackupSet(dst, 'efs-backup'), 'daily', c.Snapshot);
  });
});

describe("a store whose listing lags (an NFS client caching another host's directory)", () => {
  it('the commit waits for every unit a walk met, however late the store lists it', async () => {
    const dst = destination();
    const store = new LaggingStore(2000);
    const results = await sharedRun(dst, 3, store);
    const c = await committedOne(results);
    expectCleanSnapshot(src, new BackupSet(dst, 'efs-backup'), 'daily', c.Snapshot);
    expect(store.hidden).toBeGreaterThan(0);
  });

  it('a worker that lists the run before its root unit commits nothing until the root is done', async () => {
    // The root is the run's first unit, made as the run begins: a host that lists the units
    // folder before it is there (or keeps an older listing) finds no unit at all, which must
    // not read as "every unit done".
    const dst = destination();
    const store = new LaggingStore(800, { root: true });
    const results = await sharedRun(dst, 3, store);
    const c = await committedOne(results);
    expectCleanSnapshot(src, new BackupSet(dst, 'efs-backup'), 'daily', c.Snapshot);
    expect(store.hidden).toBeGreaterThan(0);
  });
});

/** The real lease store of files (a folder on this disk), with its acquires and completes logged. */
class RecordingFileStore extends FileLeaseStore {
  readonly calls: string[] = [];
  override async acquire(worker: string, now: number, ttlMs: number) {
    const lease = await super.acquire(worker, now, ttlMs);
    if (lease) this.calls.push(`acquire ${worker} ${JSON.stringify(lease.unit)} ${lease.attempt}`);
    return lease;
  }
  override async complete(worker: string, lease: UnitLease, done: UnitDone): Promise<boolean> {
    const ok = await super.complete(worker, lease, done);
    if (ok) this.calls.push(`complete ${worker} ${lease.unit}`);
    return ok;
  }
}

/**
 * A store whose first `complete` fails, as a store call on a network can; its acquire takes a
 * while (a round trip), so the failure can come while the worker waits for a unit.
 */
class FailingComplete extends FileLeaseStore {
  failed = false;
  override async acquire(worker: string, now: number, ttlMs: number) {
    await new Promise((r) => setTimeout(r, 20));
    return super.acquire(worker, now, ttlMs);
  }
  override async complete(worker: string, lease: UnitLease, done: UnitDone): Promise<boolean> {
    if (!this.failed) {
      this.failed = true;
      throw new Error('the lease store is unreachable');
    }
    return super.complete(worker, lease, done);
  }
}

/**
 * The real lease store of files, which tells the commit claim's first holder it is not its own
 * from that holder's `takenAt`-th call on (2: its first look before the manifest; 3: before the
 * rename), as a worker paused past the claim's lease is told once another took it. The claim is
 * then no longer renewed, so it expires in the store and the other worker takes it.
 */
class ClaimTaken extends FileLeaseStore {
  holder: string | null = null;
  private asked = 0;
  constructor(
    dir: string,
    private readonly takenAt: number,
  ) {
    super(dir);
  }
  override async claimCommit(worker: string, now: number, ttlMs: number): Promise<boolean> {
    if (this.holder === null) {
      const won = await super.claimCommit(worker, now, ttlMs);
      if (won) {
        this.holder = worker;
        this.asked = 1;
      }
      return won;
    }
    if (worker === this.holder && ++this.asked >= this.takenAt) return false;
    return super.claimCommit(worker, now, ttlMs);
  }
}

/** The real lease store of files, which does not answer the claim's holder when it asks again (its 2nd and 3rd calls). */
class ClaimUnanswered extends FileLeaseStore {
  private holder: string | null = null;
  private asked = 0;
  unanswered = 0;
  override async claimCommit(worker: string, now: number, ttlMs: number): Promise<boolean> {
    if (this.holder !== null && worker === this.holder && ++this.asked <= 2) {
      this.unanswered++;
      throw new Error('the lease store is unreachable');
    }
    const won = await super.claimCommit(worker, now, ttlMs);
    if (won && this.holder === null) this.holder = worker;
    return won;
  }
}

/**
 * A store that lists a unit only some time after it was published (acquire, counts and units
 * all go by the listing), as a file store on NFS may when another host published it; with
 * `root`, the root unit too, from when the run was begun.
 */
class LaggingStore extends MemoryLeaseStore {
  private readonly since = new Map<string, number>();
  hidden = 0;
  constructor(
    private readonly lagMs: number,
    private readonly lags: { root?: boolean } = {},
  ) {
    super();
  }
  override async begin(run: LeaseRun): Promise<LeaseRun> {
    if (this.lags.root && !this.since.has('')) this.since.set('', Date.now());
    return super.begin(run);
  }
  override async publish(units: readonly string[]): Promise<void> {
    for (const u of units) if (!this.since.has(u)) this.since.set(u, Date.now());
    return super.publish(units);
  }
  private listed(unit: string): boolean {
    const t = this.since.get(unit);
    const ok = t === undefined || Date.now() - t >= this.lagMs;
    if (!ok) this.hidden++;
    return ok;
  }
  override async acquire(worker: string, now: number, ttlMs: number) {
    return this.acquireListed(worker, now, ttlMs, (u) => this.listed(u));
  }
  override async counts(now: number) {
    const all = await super.units();
    const c = { open: 0, leased: 0, done: 0 };
    for (const u of all) {
      if (!this.listed(u.unit)) continue;
      if (u.status === 'done') c.done++;
      else if (u.status === 'open' || u.expires <= now) c.open++;
      else c.leased++;
    }
    return c;
  }
  override async units() {
    return (await super.units()).filter((u) => this.listed(u.unit));
  }
}

/** A store whose first lease goes to a worker that never renews it (it died). */
class DyingFirst extends MemoryLeaseStore {
  private first = true;
  override async acquire(worker: string, now: number, ttlMs: number) {
    if (!this.first) return super.acquire(worker, now, ttlMs);
    this.first = false;
    await super.acquire('dead', now, 300);
    return null;
  }
}
