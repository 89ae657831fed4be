/**
 * Restore, verify and browse against snapshots they must not trust: manifests edited to hold
 * names that leave the target, snapshots that a prune deletes under them, leftovers of a
 * killed restore, and names that are not UTF-8.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  backup,
  BackupSet,
  EfsBackupError,
  listPath,
  ManifestIndex,
  openSnapshot,
  prune,
  restore,
  verify,
  type RestoreChange,
} from '../src/index.js';
import { bytesOfName } from '../src/names.js';
import { fingerprint } from './fixtures/fingerprint.js';
import { dir, fifo, file, hardlink, sourceAndDestination, symlink } from './fixtures/tree.js';

// ---- helpers --------------------------------------------------------------------------------

/**
 * Rewrites a manifest's body lines with `edit` and recomputes its checksum line (the sha256
 * of every byte before it), so the manifest is damaged in meaning but not in form.
 */
function rewriteManifest(manifest: string, edit: (lines: string[]) => string[]): void {
  const text = fs.readFileSync(manifest, 'utf8');
  const lines = text.split('\n');
  expect(lines.pop()).toBe('');
  expect(lines.pop()).toMatch(/^#sha256 [0-9a-f]{64}$/);
  const body = edit(lines).join('\n') + '\n';
  const sum = createHash('sha256').update(body).digest('hex');
  fs.writeFileSync(manifest, `${body}#sha256 ${sum}\n`);
}

type Raw = [string, string, number, number, number, number, number, number, string, string?];

/** Adds raw entries to the block of `dirKey` (a JSON-decoded directory path). */
function addEntries(manifest: string, dirKey: string, extra: Raw[]): void {
  rewriteManifest(manifest, (lines) => {
    const i = lines.findIndex((l) => l.startsWith(JSON.stringify(dirKey) + '\t'));
    expect(i, `no block for ${dirKey}`).toBeGreaterThan(0);
    const tab = lines[i]!.indexOf('\t');
    const entries = JSON.parse(lines[i]!.slice(tab + 1)) as Raw[];
    lines[i] = `${JSON.stringify(dirKey)}\t${JSON.stringify([...entries, ...extra])}`;
    return lines;
  });
}

async function backedUp(entries: Parameters<typeof sourceAndDestination>[0]): Promise<{
  base: string;
  src: string;
  dst: string;
  snap: string;
  stamp: string;
  manifest: string;
}> {
  const s = sourceAndDestination(entries, 'efs-hostile-');
  const r = await backup({ source: s.src, destination: s.dst });
  expect(r.Status, r.Message).toBe('Success');
  const set = new BackupSet(s.dst, 'efs-backup');
  return {
    ...s,
    snap: r.snapshotPath!,
    stamp: r.Snapshot!,
    manifest: set.manifestPath(r.Snapshot!),
  };
}

async function failure(p: Promise<unknown>): Promise<EfsBackupError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'expected an error').toBeInstanceOf(EfsBackupError);
  return err as EfsBackupError;
}

/** The parent of a target, as far as an escaping restore could change it. */
function parentState(p: string): string {
  const st = fs.lstatSync(p, { bigint: true });
  return `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.mtimeNs} ${fs.readdirSync(p).sort().join(',')}`;
}

// ---- 1. manifest names --------------------------------------------------------------------

describe('restore refuses manifest names that would leave the target', () => {
  const dirEntry = (name: string): Raw => [name, 'd', 0o40777, 4242, 4242, 0, 0, 0, ''];
  const linkEntry = (name: string): Raw => [name, 'l', 0o120777, 4242, 4242, 0, 0, 0, '/etc'];

  it.each([
    ['..', dirEntry('..')],
    ['../PLANTED', linkEntry('../PLANTED')],
    ['a/b', linkEntry('sub/PLANTED')],
    ['.', dirEntry('.')],
    ['empty', dirEntry('')],
    ['NUL', linkEntry('x\0y')],
  ])(
    'a manifest entry named %s: restore, verify and ls say the manifest is damaged',
    async (_, raw) => {
      const { base, dst, manifest } = await backedUp({ a: file('a'), sub: dir({ x: file('x') }) });
      addEntries(manifest, '', [raw]);
      const target = path.join(base, 'out', 'target');
      fs.mkdirSync(path.join(target, 'sub'), { recursive: true });
      const parent = path.dirname(target);
      const before = parentState(parent);
      const beforeTarget = fingerprint(target);

      const err = await failure(restore({ destination: dst, snapshot: 'latest', target }));
      expect(err.code).toBe('FAILED');
      expect(err.message).toMatch(/manifest .*is damaged/);
      expect(err.message).toContain(JSON.stringify(raw[0]));
      expect(err.message).toMatch(/verify/);
      expect(parentState(parent)).toBe(before);
      expect(fs.existsSync(path.join(parent, 'PLANTED'))).toBe(false);
      expect(fs.existsSync(path.join(target, 'sub', 'PLANTED'))).toBe(false);
      expect(fingerprint(target)).toEqual(beforeTarget);

      const [v] = await verify({ destination: dst });
      expect(v!.problems.join('\n')).toMatch(/^manifest: .*damaged/m);

      const { index } = await openSnapshot(dst, 'efs-backup', 'latest');
      try {
        expect(() => listPath(index, '')).toThrow(/manifest .*is damaged/);
      } finally {
        index.close();
      }
    },
  );

  it('a hard link whose first name leaves the snapshot is refused, nothing is linked', async () => {
    const { base, dst, manifest } = await backedUp({ a: file('a') });
    const outside = path.join(base, 'secret');
    fs.writeFileSync(outside, 'secret');
    const digest = createHash('sha256').update('secret').digest('base64');
    addEntries(manifest, '', [['h', 'f', 0o100644, 0, 0, 6, 0, 0, digest, '../../secret']]);
    const target = path.join(base, 'target');
    const err = await failure(restore({ destination: dst, snapshot: 'latest', target }));
    expect(err.code).toBe('FAILED');
    expect(err.message).toMatch(/manifest .*is damaged.*"h".*link/);
    const h = path.join(target, 'h');
    expect(fs.existsSync(h) && fs.lstatSync(h).ino === fs.lstatSync(outside).ino).toBe(false);
  });
});

// ---- 2. leftovers of a killed restore ------------------------------------------------------

describe('temporary files of a killed restore', () => {
  it('a rerun removes .efs-restore-<pid>-<n> leftovers and never counts them as content', async () => {
    const { base, src, dst } = await backedUp({ a: file('a'), d: dir({ b: file('b') }) });
    const target = path.join(base, 'target');
    await restore({ destination: dst, snapshot: 'latest', target });
    // What a kill -9 leaves: temporaries of a dead process, in the root and in a sub-directory.
    const dead = 999_999_999;
    fs.writeFileSync(path.join(target, `.efs-restore-${dead}-1`), 'partial');
    fs.writeFileSync(path.join(target, 'd', `.efs-restore-${dead}-7`), 'partial');
    const changes: RestoreChange[] = [];
    const r = await restore({
      destination: dst,
      snapshot: 'latest',
      target,
      onChange: (c) => changes.push(c),
    });
    // Only the directories' mtimes, which the temporaries moved, are put back.
    expect(changes.map((c) => `${c.action} ${c.path} ${c.reasons.join(',')}`).sort()).toEqual([
      'update . mtime',
      'update d mtime',
    ]);
    expect(r.deleted).toBe(0);
    expect(fs.readdirSync(target).sort()).toEqual(['a', 'd']);
    expect(fs.readdirSync(path.join(target, 'd'))).toEqual(['b']);
    const out = execFileSync(
      'rsync',
      ['-aHcn', '--numeric-ids', '--delete', '--itemize-changes', `${src}/`, `${target}/`],
      { encoding: 'utf8' },
    );
    expect(out.trim()).toBe('');
  });
});

// ---- 3. verify while a prune deletes ------------------------------------------------------

/** Two complete snapshots of one interval; the older is the one a prune with retain 1 deletes. */
async function twoSnapshots(): Promise<{
  dst: string;
  set: BackupSet;
  older: string;
  newer: string;
}> {
  const s = sourceAndDestination({ a: file('a'), d: dir({ b: file('b'), c: file('c') }) });
  const r1 = await backup({ source: s.src, destination: s.dst });
  expect(r1.Status, r1.Message).toBe('Success');
  await new Promise((res) => setTimeout(res, 1100)); // a new stamp
  fs.writeFileSync(path.join(s.src, 'a'), 'changed');
  const r2 = await backup({ source: s.src, destination: s.dst, retain: 5 });
  expect(r2.Status, r2.Message).toBe('Success');
  return {
    dst: s.dst,
    set: new BackupSet(s.dst, 'efs-backup'),
    older: r1.Snapshot!,
    newer: r2.Snapshot!,
  };
}

/** What prune does first to a doomed snapshot: renamed `.<stamp>.deleting`, manifest removed. */
function startPrune(set: BackupSet, stamp: string): void {
  fs.renameSync(set.snapshotDir('daily', stamp), set.deletingDir('daily', stamp));
  fs.rmSync(set.manifestPath(stamp));
}

describe('verify --all while a prune deletes snapshots', () => {
  it('a snapshot pruned between the listing and its check is skipped, not damaged', async () => {
    const { dst, set, older, newer } = await twoSnapshots();
    const vs = await verify({
      destination: dst,
      all: true,
      onSnapshot: (s) => {
        if (s.stamp === newer) startPrune(set, older);
      },
    });
    expect(vs.map((v) => [v.snapshot.stamp, v.problems, v.skipped ?? null])).toEqual([
      [newer, [], null],
      [older, [], `daily/${older} was deleted by a prune while being verified`],
    ]);
  });

  it('a snapshot pruned while it is being checked is skipped, not damaged', async () => {
    const { dst, set, older, newer } = await twoSnapshots();
    const vs = await verify({
      destination: dst,
      all: true,
      onSnapshot: async (s) => {
        if (s.stamp !== older) return;
        // Its manifest is open: the real prune deletes the tree under the check.
        const r = await prune(set, 'daily', 1, { concurrency: 4, deadline: null });
        expect(r.stamps).toEqual([older]);
      },
    });
    expect(vs.map((v) => [v.snapshot.stamp, v.problems, v.skipped ?? null])).toEqual([
      [newer, [], null],
      [older, [], `daily/${older} was deleted by a prune while being verified`],
    ]);
  });
});

// ---- 4. restore while a prune deletes its snapshot -----------------------------------------

describe('restore while a prune deletes its snapshot', () => {
  it('says the snapshot was deleted by a prune, naming it (FAILED: exit 3)', async () => {
    const { dst, set, older } = await twoSnapshots();
    const target = path.join(path.dirname(dst), 'target');
    let pruned = false;
    const err = await failure(
      restore({
        destination: dst,
        snapshot: older,
        target,
        io: 'async',
        concurrency: 1,
        onChange: () => {
          if (!pruned) startPrune(set, older);
          pruned = true;
        },
      }),
    );
    expect(err.code).toBe('FAILED');
    expect(err.message).toMatch(
      new RegExp(`snapshot daily/${older} was deleted by a prune while being restored`),
    );
    expect(err.message).not.toMatch(/ENOENT/);
  });

  it('a snapshot pruned after it was chosen and before its manifest is read: the same', async () => {
    const { dst, set, older } = await twoSnapshots();
    const target = path.join(path.dirname(dst), 'target');
    // The manifest goes between resolving the selector and opening it.
    const real = ManifestIndex.openManifest;
    ManifestIndex.openManifest = function (manifest: string) {
      ManifestIndex.openManifest = real;
      startPrune(set, older);
      return real.call(this, manifest);
    };
    try {
      const err = await failure(restore({ destination: dst, snapshot: older, target }));
      expect(err.code).toBe('FAILED');
      expect(err.message).toMatch(`snapshot daily/${older} was deleted by a prune`);
    } finally {
      ManifestIndex.openManifest = real;
    }
  });
});

// ---- 5. names are bytes ---------------------------------------------------------------------

/** `Ω` in the test tree's names stands for the byte 0xff, which is not UTF-8. */
const MARK = 'Ω';
const ESC = '\udcff';
const byteName = (s: string): Buffer => bytesOfName(s.replaceAll(MARK, ESC));

/**
 * Turns a snapshot made from names holding `Ω` into one whose names hold the byte 0xff
 * instead: the tree renamed with Buffer paths (times kept), the manifest rewritten.
 */
function toByteNames(snap: string, manifest: string): void {
  const walk = (p: Buffer): void => {
    const st = fs.lstatSync(p, { bigint: true });
    if (!st.isDirectory()) return;
    for (const n of fs.readdirSync(p, { encoding: 'buffer' })) {
      const child = Buffer.concat([p, Buffer.from('/'), n]);
      walk(child);
      const name = n.toString('utf8');
      const cst = fs.lstatSync(child, { bigint: true });
      let renamed = child;
      if (name.includes(MARK)) {
        renamed = Buffer.concat([p, Buffer.from('/'), byteName(name)]);
        fs.renameSync(child, renamed);
      }
      if (cst.isSymbolicLink() && fs.readlinkSync(renamed).includes(MARK)) {
        const target = byteName(fs.readlinkSync(renamed));
        fs.rmSync(renamed);
        fs.symlinkSync(target, renamed);
        const t = (Number(cst.mtimeNs / 1000n) + 0.5) / 1e6;
        fs.lutimesSync(renamed, t, t);
      }
    }
    const t = (Number(st.mtimeNs / 1000n) + 0.5) / 1e6;
    fs.utimesSync(p, Number(st.atimeNs / 1000n) / 1e6, t);
  };
  walk(Buffer.from(snap));
  rewriteManifest(manifest, (lines) => lines.map((l) => l.replaceAll(MARK, '\\udcff')));
}

describe('names that are not UTF-8', () => {
  it('restore writes the byte names, a second restore and verify find nothing to do', async () => {
    const { base, dst, snap, manifest } = await backedUp({
      [`n${MARK}`]: file('hello'),
      [`d${MARK}`]: dir({
        [`f${MARK}`]: file('x'),
        [`l${MARK}`]: symlink(`t${MARK}`),
        [`p${MARK}`]: fifo(),
      }),
      [`h${MARK}`]: hardlink(`n${MARK}`),
    });
    toByteNames(snap, manifest);
    const names = (p: Buffer | string): string[] =>
      fs
        .readdirSync(p, { encoding: 'buffer' })
        .map((b) => b.toString('hex'))
        .sort();
    expect(names(snap)).toEqual(['64ff', '68ff', '6eff']);

    const [before] = await verify({ destination: dst });
    expect(before!.problems).toEqual([]);

    const target = path.join(base, 'target');
    const r = await restore({ destination: dst, snapshot: 'latest', target });
    expect(r.warnings).toEqual([]);
    expect(names(target)).toEqual(['64ff', '68ff', '6eff']);
    const n = Buffer.concat([Buffer.from(`${target}/`), Buffer.from([0x6e, 0xff])]);
    expect(fs.readFileSync(n, 'utf8')).toBe('hello');
    const h = Buffer.concat([Buffer.from(`${target}/`), Buffer.from([0x68, 0xff])]);
    expect(fs.lstatSync(h).ino).toBe(fs.lstatSync(n).ino);
    const d = Buffer.concat([Buffer.from(`${target}/`), Buffer.from([0x64, 0xff])]);
    expect(names(d)).toEqual(['66ff', '6cff', '70ff']);
    const l = Buffer.concat([d, Buffer.from('/'), Buffer.from([0x6c, 0xff])]);
    expect(fs.readlinkSync(l, { encoding: 'buffer' }).toString('hex')).toBe('74ff');
    const out = execFileSync(
      'rsync',
      ['-aHcn', '--numeric-ids', '--delete', '--itemize-changes', `${snap}/`, `${target}/`],
      { encoding: 'utf8' },
    );
    expect(out.trim()).toBe('');

    const changes: RestoreChange[] = [];
    const again = await restore({
      destination: dst,
      snapshot: 'latest',
      target,
      delete: true,
      onChange: (c) => changes.push(c),
    });
    expect(changes).toEqual([]);
    expect(again.deleted).toBe(0);

    // Names the manifest does not list are found as bytes, and reported as such.
    fs.writeFileSync(Buffer.concat([Buffer.from(`${snap}/`), Buffer.from([0x78, 0xfe])]), '');
    const [after] = await verify({ destination: dst });
    expect(after!.problems.sort()).toEqual(['changed: .: mtime', `extra: x\udcfe`]);
  });
});
