import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { asyncOps, syncOps, type FsOps } from '../src/fs-ops.js';
import { InFlight } from '../src/inflight.js';
import { BackupSet } from '../src/layout.js';
import { bytesOfName, fsPath, nameFromBytes } from '../src/names.js';
import { prune } from '../src/prune.js';
import { removeTree } from '../src/remove-tree.js';
import { tmpDir } from './fixtures/tmp.js';

const STAMPS = ['20260101T000000Z', '20260102T000000Z', '20260103T000000Z'];
/** A name that is not UTF-8: it must reach the system calls as bytes. */
const BYTE_NAME = nameFromBytes(Buffer.from([0x6e, 0xff]));

/** A small tree: files, a sub-directory, a name of bytes, a symlink. */
function tree(dir: string): void {
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'a'), 'a');
  fs.writeFileSync(path.join(dir, 'sub', 'b'), 'b');
  fs.writeFileSync(fsPath(path.join(dir, BYTE_NAME)), 'c');
  fs.mkdirSync(fsPath(path.join(dir, 'sub', BYTE_NAME)));
  fs.symlinkSync('/nowhere', path.join(dir, 'sub', 'l'));
}

/** Three complete daily snapshots, an abandoned partial, a half-deleted one, stray manifests. */
function aSet(): BackupSet {
  const set = new BackupSet(tmpDir('efs-prune-'), 'efs-backup');
  fs.mkdirSync(set.manifestsDir, { recursive: true });
  for (const s of STAMPS) {
    tree(set.snapshotDir('daily', s));
    fs.writeFileSync(set.manifestPath(s), 'm');
  }
  tree(set.partialDir('daily', '20251231T000000Z'));
  fs.writeFileSync(set.journalPath('20251231T000000Z'), 'j');
  tree(set.deletingDir('daily', '20251230T000000Z'));
  fs.writeFileSync(set.manifestPath('20251229T000000Z'), 'orphan');
  fs.writeFileSync(set.journalPath('20251229T000000Z'), 'orphan');
  return set;
}

/** `io`, counting its calls, and failing if a path it is given is not byte-safe. */
function counted(io: FsOps): { io: FsOps; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const wrapped = { ...io } as Record<string, unknown>;
  for (const [name, f] of Object.entries(io)) {
    if (typeof f !== 'function') continue;
    wrapped[name] = (...args: unknown[]) => {
      calls.set(name, (calls.get(name) ?? 0) + 1);
      for (const a of args) if (typeof a === 'string') bytesOfName(a);
      return (f as (...a: unknown[]) => unknown)(...args);
    };
  }
  return { io: wrapped as unknown as FsOps, calls };
}

describe('prune through the destination’s calls', () => {
  it.each([
    ['direct', syncOps],
    ['through the pool', asyncOps],
  ])('%s: keeps the newest, deletes the rest and the leftovers', async (_how, ops) => {
    const set = aSet();
    const { io, calls } = counted(ops);
    const r = await prune(set, 'daily', 1, { concurrency: 4, deadline: null, io });
    expect(r).toEqual({ pruned: 2, stamps: [STAMPS[1], STAMPS[0]], warnings: [] });
    expect(fs.readdirSync(set.intervalDir('daily'))).toEqual([STAMPS[2]]);
    expect(fs.readdirSync(set.manifestsDir)).toEqual([`${STAMPS[2]}.manifest`]);
    // Renamed: the 2 doomed snapshots. Removed: 4 trees (those 2, the partial, the half-deleted
    // one) of 3 directories each.
    expect(calls.get('rename')).toBe(2);
    expect(calls.get('rmdir')).toBe(4 * 3);
    expect(calls.get('readdirTypes')).toBe(4 * 3);
    // 3 files and a symlink a tree, 2 doomed manifests, 3 orphans (the partial's journal too).
    expect(calls.get('unlink')).toBe(4 * 4 + 2 + 3);
  });

  it('a name prune cannot change is a warning, not a throw', async () => {
    const set = aSet();
    const failing: FsOps = {
      ...syncOps,
      rename: (_from, _to, cb) =>
        cb(Object.assign(new Error('EROFS: read-only'), { code: 'EROFS' })),
    };
    const r = await prune(set, 'daily', 1, { concurrency: 4, deadline: null, io: failing });
    expect(r.pruned).toBe(0);
    expect(r.warnings).toEqual([
      `cannot prune daily/${STAMPS[1]}: EROFS: read-only`,
      `cannot prune daily/${STAMPS[0]}: EROFS: read-only`,
    ]);
    expect(fs.readdirSync(set.intervalDir('daily')).sort()).toEqual(STAMPS);
  });
});

describe('removeTree', () => {
  it('with direct calls, calls back once the tree is gone', async () => {
    const root = path.join(tmpDir('efs-rmtree-'), 't');
    tree(root);
    const pool = new InFlight(4);
    const err = await new Promise((resolve) => removeTree(syncOps, pool, root, resolve));
    expect(err).toBeNull();
    expect(fs.existsSync(root)).toBe(false);
  });
});
