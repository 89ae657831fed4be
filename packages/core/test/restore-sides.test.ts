/**
 * Restore's sides: each side's calls chosen by its own file system (or forced per side), the
 * calls in flight sized as a backup's, no blocking call on a network target, every error of
 * the relink in the outcome, and warnings that name the entry as the target holds it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { asyncOps, syncOps } from '../src/fs-ops.js';
import { backup, EfsBackupError, NETWORK_CONCURRENCY, restore } from '../src/index.js';
import { restoreSides } from '../src/restore.js';
import {
  diffTrees,
  dir,
  file,
  hardlink,
  sourceAndDestination,
  symlink,
  type TestEntries,
} from './fixtures/tree.js';

async function backedUp(
  entries: TestEntries,
): Promise<{ base: string; src: string; dst: string; snap: string }> {
  const s = sourceAndDestination(entries, 'efs-restore-sides-');
  const r = await backup({ source: s.src, destination: s.dst });
  expect(r.Status, r.Message).toBe('Success');
  return { ...s, snap: r.snapshotPath! };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("each side's calls and the calls in flight", () => {
  const local = os.tmpdir();
  // statfs cannot tell this one's file system: it is taken as a network one.
  const unknown = path.join(local, 'efs-restore-sides-no-such-dir', 'x');
  const localFigure = Math.max(4, os.availableParallelism());

  it('local disks: direct calls on both sides, about the core count in flight', () => {
    const s = restoreSides({}, { snapshot: local, target: local });
    expect(s.snapshot).toBe(syncOps);
    expect(s.target).toBe(syncOps);
    expect(s.concurrency).toBe(localFigure);
  });

  it('a network target: its calls through the pool, the network figure in flight', () => {
    const s = restoreSides({}, { snapshot: local, target: unknown });
    expect(s.snapshot).toBe(syncOps);
    expect(s.target).toBe(asyncOps);
    expect(s.concurrency).toBe(NETWORK_CONCURRENCY);
  });

  it('a backup set on a network file system: the same figure, sized for the slower side', () => {
    const s = restoreSides({}, { snapshot: unknown, target: local });
    expect([s.snapshot, s.target]).toEqual([asyncOps, syncOps]);
    expect(s.concurrency).toBe(NETWORK_CONCURRENCY);
  });

  it('io forces both sides, or each side on its own; concurrency as given', () => {
    const both = restoreSides({ io: 'async', concurrency: 3 }, { snapshot: local, target: local });
    expect([both.snapshot, both.target, both.concurrency]).toEqual([asyncOps, asyncOps, 3]);
    const each = restoreSides(
      { io: { snapshot: 'async', target: 'sync' } },
      { snapshot: local, target: unknown },
    );
    expect([each.snapshot, each.target]).toEqual([asyncOps, syncOps]);
  });

  it('a restore with io per side round-trips', async () => {
    const { base, src, dst } = await backedUp({
      d: dir({ a: file('a\n'), b: hardlink('d/a'), l: symlink('a') }),
    });
    for (const io of [
      { snapshot: 'async', target: 'sync' },
      { snapshot: 'sync', target: 'async' },
    ] as const) {
      const t = path.join(base, `target-${io.target}`);
      const r = await restore({ destination: dst, snapshot: 'latest', target: t, io });
      expect(r.warnings).toEqual([]);
      expect(diffTrees(src, t)).toEqual([]);
    }
  });

  it.each([0, 1.5, 2000])('concurrency %s is bad input, nothing written', async (n) => {
    const { base, dst } = await backedUp({ a: file('a\n') });
    const t = path.join(base, 'target');
    const err = await restore({ destination: dst, snapshot: 'latest', target: t, concurrency: n })
      .then(() => null)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EfsBackupError);
    expect((err as EfsBackupError).code).toBe('BAD_INPUT');
    expect((err as Error).message).toMatch(/concurrency must be an integer from 1 to 1024/);
    expect(fs.existsSync(t)).toBe(false);
  });
});

describe('on a network target no call on the target blocks the event loop', () => {
  it('writing, replacing a directory, removing extras and relinking go through the pool', async () => {
    const { base, src, dst } = await backedUp({
      d: dir({ a: file('one inode\n'), b: hardlink('d/a'), l: symlink('a'), f: file('f\n') }),
    });
    const t = path.join(base, 'target');
    fs.mkdirSync(path.join(t, 'd', 'f', 'inner'), { recursive: true });
    fs.mkdirSync(path.join(t, 'd', 'extra', 'deeper'), { recursive: true });
    fs.writeFileSync(path.join(t, 'd', 'extra', 'deeper', 'x'), 'x');
    const blocking: string[] = [];
    const inTarget = (p: unknown): boolean => String(p).startsWith(`${t}/`) || String(p) === t;
    for (const name of [
      'lstatSync',
      'linkSync',
      'renameSync',
      'rmSync',
      'symlinkSync',
      'unlinkSync',
      'utimesSync',
      'lutimesSync',
      'mkdirSync',
      'openSync',
    ] as const) {
      const real = fs[name] as (...a: unknown[]) => unknown;
      vi.spyOn(fs, name).mockImplementation(((...a: unknown[]) => {
        if (inTarget(a[0])) blocking.push(`${name} ${path.relative(t, String(a[0]))}`);
        return real(...a);
      }) as never);
    }
    const r = await restore({
      destination: dst,
      snapshot: 'latest',
      target: t,
      delete: true,
      io: { snapshot: 'sync', target: 'async' },
    });
    vi.restoreAllMocks();
    expect(r.linked).toBe(1);
    expect(r.deleted).toBe(1);
    expect(blocking).toEqual([]);
    expect(diffTrees(src, t)).toEqual([]);
  });
});

describe('the relink reports its errors as the restore', () => {
  it("a directory's mtime that cannot be put back after linking: restore stopped: …", async () => {
    const { base, dst } = await backedUp({
      d: dir({ a: file('one inode\n'), b: hardlink('d/a') }),
    });
    const t = path.join(base, 'target');
    const d = path.join(t, 'd');
    let relinked = false;
    const realLink = fs.linkSync;
    vi.spyOn(fs, 'linkSync').mockImplementation((a, b) => {
      relinked = true;
      realLink(a, b);
    });
    const realUtimes = fs.utimesSync;
    vi.spyOn(fs, 'utimesSync').mockImplementation((p, at, mt) => {
      if (relinked && String(p) === d) {
        throw Object.assign(new Error(`EIO: i/o error, utime '${d}'`), {
          code: 'EIO',
          syscall: 'utime',
        });
      }
      realUtimes(p, at, mt);
    });
    const err = await restore({ destination: dst, snapshot: 'latest', target: t, io: 'sync' })
      .then(() => null)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EfsBackupError);
    expect((err as EfsBackupError).code).toBe('FAILED');
    expect((err as Error).message).toBe(`restore stopped: EIO: i/o error, utime '${d}'`);
  });
});

describe('warnings name the entry as the target holds it', () => {
  it("a file whose snapshot data does not match its manifest, restored with --subdir: named from the target's root", async () => {
    const { base, dst, snap } = await backedUp({ d: dir({ sub: dir({ x: file('original\n') }) }) });
    const x = path.join(snap, 'd', 'sub', 'x');
    const st = fs.statSync(x);
    fs.chmodSync(x, 0o644);
    fs.writeFileSync(x, 'damaged!\n');
    fs.chmodSync(x, st.mode & 0o7777);
    fs.utimesSync(x, st.atime, st.mtime);
    const t = path.join(base, 'target');
    const r = await restore({ destination: dst, snapshot: 'latest', target: t, subdir: 'd' });
    expect(r.warnings).toEqual([
      "sub/x: the snapshot's data does not match its manifest (run verify)",
    ]);
  });
});
