import fs from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { asyncOps, syncOps, type FsOps } from '../src/fs-ops.js';
import { backup, type BackupProgress } from '../src/index.js';
import { Scanner } from '../src/scan.js';
import {
  createTree,
  dir,
  fifo,
  file,
  hardlink,
  sourceAndDestination,
  symlink,
} from './fixtures/tree.js';

/** A source with every entry kind, nested five deep, 25 directories in all. */
function sourceTree(root: string): void {
  const leaf = (n: number) =>
    dir(Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, file(`${n}:${i}`)])));
  createTree(root, {
    'a.txt': file('a'),
    link: symlink('a.txt'),
    pipe: fifo(),
    hard: hardlink('a.txt'),
    empty: dir(),
    deep: dir({ d1: dir({ d2: dir({ d3: dir({ d4: leaf(3) }) }) }) }),
    ...Object.fromEntries(Array.from({ length: 18 }, (_, i) => [`wide${i}`, leaf(i)])),
  });
}

/** Every entry and directory under `root` (the root itself not an entry), as the walk sees them. */
function countTree(root: string): { entries: number; dirs: number } {
  let entries = 0;
  let dirs = 1;
  for (const d of fs.readdirSync(root, { withFileTypes: true, recursive: true })) {
    entries++;
    if (d.isDirectory()) dirs++;
  }
  return { entries, dirs };
}

/** Listings of directories under `root` made through `ops`, by path. */
function countingOps(ops: FsOps, root: string): { ops: FsOps; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  return {
    calls,
    ops: {
      ...ops,
      readdirTypes: (p, cb) => {
        if (p === root || p.startsWith(`${root}/`)) calls.set(p, (calls.get(p) ?? 0) + 1);
        ops.readdirTypes(p, cb);
      },
    },
  };
}

const total = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

/** Runs the scanner to its end. */
function scanned(s: Scanner): Promise<void> {
  s.start();
  return vi.waitUntil(() => s.done, { timeout: 10_000, interval: 1 }).then(() => {});
}

describe('the count ahead of the walk (a first backup has no manifest to estimate from)', () => {
  it.each(['sync', 'async'] as const)(
    'counts every entry and directory of the tree, one listing per directory (%s calls)',
    async (mode) => {
      const { src } = sourceAndDestination();
      sourceTree(src);
      const { ops, calls } = countingOps(mode === 'sync' ? syncOps : asyncOps, src);
      const s = new Scanner(src, ops, 4);
      await scanned(s);
      const want = countTree(src);
      expect({ entries: s.entries, dirs: s.dirs }).toEqual(want);
      expect(calls.size).toBe(want.dirs);
      expect(total(calls)).toBe(want.dirs);
    },
  );

  it("counts only what the walk's filter keeps, and enters no directory it leaves out", async () => {
    const { src } = sourceAndDestination();
    sourceTree(src);
    const { ops, calls } = countingOps(syncOps, src);
    // As excludes would: `deep` and every `f1` left out.
    const keep = (rel: string, list: fs.Dirent[]): fs.Dirent[] =>
      list.filter((d) => !(rel === '' && d.name === 'deep') && d.name !== 'f1');
    const s = new Scanner(src, ops, 4, undefined, keep);
    await scanned(s);
    const all = countTree(src);
    const deep = countTree(`${src}/deep`);
    // wide2..wide17 each hold an f1; deep's own f1 is inside deep.
    expect(s.entries).toBe(all.entries - (deep.entries + 1) - 16);
    expect(s.dirs).toBe(all.dirs - deep.dirs);
    expect([...calls.keys()].filter((p) => p.startsWith(`${src}/deep`))).toEqual([]);
  });

  it('hands each listing it read to the walk, which then makes no call of its own', async () => {
    const { src } = sourceAndDestination();
    sourceTree(src);
    const { ops, calls } = countingOps(syncOps, src);
    const s = new Scanner(src, ops, 4);
    await scanned(s);
    const given: string[] = [];
    const takeAll = (p: string): void => {
      const ok = s.take(p, (err, list) => {
        expect(err).toBeNull();
        given.push(p);
        for (const d of list) if (d.isDirectory()) takeAll(`${p}/${d.name}`);
      });
      expect(ok).toBe(true);
    };
    takeAll(src);
    expect(given).toHaveLength(countTree(src).dirs);
    expect(total(calls)).toBe(countTree(src).dirs); // none read twice
  });

  it('reads a directory the walk asks for before the scanner got to it once, for both', async () => {
    const { src } = sourceAndDestination();
    sourceTree(src);
    const { ops, calls } = countingOps(asyncOps, src);
    const s = new Scanner(src, ops, 1);
    // The walk asks for the root before the scanner started: one read, counted and handed over.
    const names = await new Promise<string[]>((resolve) =>
      s.take(src, (_e, list) => resolve(list.map((d) => d.name))),
    );
    expect(names).toContain('deep');
    await scanned(s);
    expect(s.entries).toBe(countTree(src).entries);
    expect(calls.get(src)).toBe(1);
  });

  it('past its bound of listings held, goes on counting and lets the walk read those again', async () => {
    const { src } = sourceAndDestination();
    sourceTree(src);
    const { ops, calls } = countingOps(syncOps, src);
    const s = new Scanner(src, ops, 4, 20);
    await scanned(s);
    const want = countTree(src);
    expect(s.entries).toBe(want.entries); // the estimate is whole all the same
    expect(s.dropped).toBeGreaterThan(0);
    let readAgain = 0;
    const walk = (p: string): void => {
      const listed = (_e: unknown, list: fs.Dirent[]): void => {
        for (const d of list) if (d.isDirectory()) walk(`${p}/${d.name}`);
      };
      if (!s.take(p, listed)) {
        readAgain++;
        ops.readdirTypes(p, listed);
      }
    };
    walk(src);
    expect(readAgain).toBe(s.dropped);
    expect(total(calls)).toBe(want.dirs + s.dropped);
  });
});

describe('a first backup counts ahead and reads each directory once', () => {
  afterEach(() => vi.restoreAllMocks());

  it.each(['sync', 'async'] as const)(
    'estimates the entries of the tree, stable once counted, with one listing per directory (%s)',
    async (io) => {
      const { src, dst } = sourceAndDestination();
      sourceTree(src);
      const calls = new Map<string, number>();
      for (const ops of [syncOps, asyncOps]) {
        const real = ops.readdirTypes.bind(ops);
        vi.spyOn(ops, 'readdirTypes').mockImplementation((p, cb) => {
          if (p === src || p.startsWith(`${src}/`)) calls.set(p, (calls.get(p) ?? 0) + 1);
          real(p, cb);
        });
      }
      const seen: BackupProgress[] = [];
      const r = await backup({
        source: src,
        destination: dst,
        io,
        concurrency: 8,
        onProgress: (p) => seen.push(p),
      });
      expect(r.Status).toBe('Success');
      const want = countTree(src);
      expect(r.NumberOfFiles).toBe(want.entries);
      const last = seen.at(-1)!;
      expect(last).toMatchObject({
        counting: false,
        estimatedEntries: want.entries,
        estimatedBytes: null,
      });
      // The scanner's listings are the walk's: no directory listed twice.
      expect(calls.size).toBe(want.dirs);
      expect(total(calls)).toBe(want.dirs);

      // An incremental goes by the manifest from its start, and counts nothing ahead.
      calls.clear();
      const first: BackupProgress[] = [];
      const again = await backup({
        source: src,
        destination: dst,
        io,
        progressIntervalMs: 1,
        onProgress: (p) => first.push(p),
      });
      expect(again.Status).toBe('Success');
      expect(first[0]).toMatchObject({
        counting: false,
        estimatedEntries: r.NumberOfFiles,
        estimatedBytes: r.TotalFileSize,
      });
      expect(total(calls)).toBe(want.dirs);
    },
  );

  it('counts nothing ahead when no one watches the progress', async () => {
    const { src, dst } = sourceAndDestination();
    sourceTree(src);
    const spy = vi.spyOn(syncOps, 'readdirTypes');
    const r = await backup({ source: src, destination: dst, io: 'sync' });
    expect(r.Status).toBe('Success');
    const ofSource = spy.mock.calls.filter(([p]) => p === src || p.startsWith(`${src}/`));
    expect(ofSource).toHaveLength(countTree(src).dirs);
  });
});
