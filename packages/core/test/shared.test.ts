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
import { backup, BackupSet, ManifestIndex, verify, type BackupResult } from '../src/index.js';
import { syncOps } from '../src/fs-ops.js';
import { createBigTree, modifyBigTree, type BigTreeInfo } from './fixtures/big-tree.js';
import { MemoryLeaseStore } from './fixtures/memory-lease-store.js';
import { expectCleanSnapshot } from './fixtures/resume.js';
import { sharedInodes } from './fixtures/tree.js';

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
  return Promise.all(
    Array.from({ length: workers }, (_, i) =>
      backup({
        source: src,
        destination: dst,
        backupId,
        concurrency: 8,
        share: { store, worker: `w${i}`, workers, leaseMs: 10_000 },
      }),
    ),
  );
}

/** Every entry of a manifest, by path, as its line encodes it. */
async function manifestEntries(manifest: string): Promise<Map<string, string>> {
  const index = await ManifestIndex.openManifest(manifest);
  const out = new Map<string, string>();
  try {
    for (const dir of [...index.dirs()]) {
      const entries = await new Promise<Map<string, unknown>>((resolve, reject) =>
        index.readDir(syncOps, dir, (err, map) => (err ? reject(err) : resolve(map ?? new Map()))),
      );
      // Which name of a hard-linked inode is written first (the others record `link` to it)
      // depends on the order names are met, in one run as in several: the group is compared by
      // its inode, which every name records, and rsync -H judges the links themselves.
      for (const [name, e] of entries) {
        const { link: _first, ...rest } = e as { link?: string };
        out.set(dir === '' ? name : `${dir}/${name}`, JSON.stringify(rest));
      }
    }
  } finally {
    index.close();
  }
  return out;
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

describe('N workers build one snapshot, the same as one run of its own', () => {
  let plain: Map<string, string>;

  beforeAll(async () => {
    const dst = destination();
    const r = await backup({ source: src, destination: dst });
    expect(r.Status).toBe('Success');
    plain = await manifestEntries(new BackupSet(dst, 'efs-backup').manifestPath(r.Snapshot!));
  });

  for (const workers of [1, 2, 4]) {
    it(`${workers} worker(s): one commit, the snapshot equal to the source, the manifest entry for entry`, async () => {
      const dst = destination();
      const results = await sharedRun(dst, workers);
      const c = await committedOne(results);
      const set = new BackupSet(dst, 'efs-backup');
      expectCleanSnapshot(src, set, 'daily', c.Snapshot);
      expect(await manifestEntries(set.manifestPath(c.Snapshot!))).toEqual(plain);
      expect(c.NumberOfFiles).toBe(plain.size);
      // Every name of a hard-linked inode is one inode in the snapshot too (they sit in different units).
      const snap = set.snapshotDir('daily', c.Snapshot!);
      expect(fs.statSync(path.join(snap, 't00/hard-f001')).ino).toBe(
        fs.statSync(path.join(snap, 't00/s0/f001')).ino,
      );
      const busy = c.share!.workers.filter((w) => w.units > 0);
      if (workers > 1) expect(busy.length).toBeGreaterThan(1);
      expect(busy.reduce((s, w) => s + w.entries, 0)).toBeLessThanOrEqual(plain.size);
      // Nothing of the run's bookkeeping is left.
      expect(fs.readdirSync(set.manifestsDir).filter((f) => !f.endsWith('.manifest'))).toEqual([]);
    });
  }

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
    expect(store.calls).toContain('acquire dead  1');
    expect(store.calls.filter((x) => /^acquire w[01]  2$/.test(x))).toHaveLength(1);
  });
});

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
