import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup, BackupSet, ManifestIndex } from '../src/index.js';
import { everyKindTree } from './fixtures/every-kind.js';
import {
  createTree,
  diffStates,
  diffTrees,
  dir,
  file,
  readTree,
  rsyncDifferences,
  sharedInodes,
  sourceAndDestination,
} from './fixtures/tree.js';

const setup = (): { src: string; dst: string } => sourceAndDestination();

describe('a snapshot equals its source', () => {
  it('keeps every entry kind, name and attribute (rsync -aHc as the judge)', async () => {
    const { src, dst } = setup();
    createTree(src, everyKindTree());
    const r = await backup({ source: src, destination: dst });
    expect(r.Status).toBe('Success');
    expect(r.snapshotPath).not.toBeNull();
    expect(rsyncDifferences(src, r.snapshotPath!)).toEqual([]);
    expect(diffTrees(src, r.snapshotPath!, { sparse: true })).toEqual([]);
  });

  it('is as faithful with many calls in flight (the network file-system mode)', async () => {
    const { src, dst } = setup();
    createTree(src, everyKindTree());
    const first = await backup({ source: src, destination: dst, io: 'async', concurrency: 16 });
    expect(first.Status).toBe('Success');
    expect(rsyncDifferences(src, first.snapshotPath!)).toEqual([]);
    expect(diffTrees(src, first.snapshotPath!, { sparse: true })).toEqual([]);
    fs.writeFileSync(path.join(src, 'plain.txt'), 'changed');
    const second = await backup({ source: src, destination: dst, io: 'async', concurrency: 16 });
    expect(second.NumberOfFilesTransferred).toBe(1);
    expect(diffTrees(src, second.snapshotPath!, { sparse: true })).toEqual([]);
    expect(sharedInodes(first.snapshotPath!, second.snapshotPath!, 'hard/first')).toBe(true);
  });

  it.each([
    ['a local source onto a network destination', { source: 'sync', destination: 'async' }],
    ['a network source onto a local destination', { source: 'async', destination: 'sync' }],
  ] as const)('is as faithful backing %s (each side its own calls)', async (_what, io) => {
    const { src, dst } = setup();
    createTree(src, everyKindTree());
    const first = await backup({ source: src, destination: dst, io, concurrency: 16 });
    expect(first.Status).toBe('Success');
    expect(rsyncDifferences(src, first.snapshotPath!)).toEqual([]);
    fs.writeFileSync(path.join(src, 'plain.txt'), 'changed');
    const second = await backup({ source: src, destination: dst, io, concurrency: 16 });
    expect(second.NumberOfFilesTransferred).toBe(1);
    expect(rsyncDifferences(src, second.snapshotPath!)).toEqual([]);
    expect(diffTrees(src, second.snapshotPath!, { sparse: true })).toEqual([]);
    expect(sharedInodes(first.snapshotPath!, second.snapshotPath!, 'hard/first')).toBe(true);
  });

  // Without attributes to keep, a file is made with its mode where that is its mode in the end
  // (copy-file.ts), and set after it where not: every mode comes out exact either way.
  it.each(['sync', 'async'] as const)(
    'keeps every mode of a file when it keeps no attributes (%s calls)',
    async (io) => {
      const { src, dst } = setup();
      const modes = [
        0o644, 0o600, 0o755, 0o640, 0o200, 0o444, 0o000, 0o666, 0o777, 0o4755, 0o2755, 0o1777,
      ];
      createTree(src, {
        ...everyKindTree(),
        modes: dir(
          Object.fromEntries(modes.map((m) => [`m${m.toString(8)}`, file('x', { mode: m })])),
        ),
      });
      const r = await backup({ source: src, destination: dst, xattrs: false, io, concurrency: 8 });
      expect(r.Status, r.Message).toBe('Success');
      expect(rsyncDifferences(src, r.snapshotPath!)).toEqual([]);
      for (const m of modes)
        expect(
          fs.statSync(path.join(r.snapshotPath!, 'modes', `m${m.toString(8)}`)).mode & 0o7777,
        ).toBe(m);
    },
  );

  it('keeps sparse holes (block counts)', async () => {
    const { src, dst } = setup();
    createTree(src, everyKindTree());
    const r = await backup({ source: src, destination: dst });
    const blocks = (p: string): number => fs.statSync(p).blocks;
    expect(blocks(path.join(r.snapshotPath!, 'sparse'))).toBeLessThanOrEqual(
      blocks(path.join(src, 'sparse')),
    );
    expect(blocks(path.join(r.snapshotPath!, 'sparse')) * 512).toBeLessThan(1024 * 1024);
    expect(fs.statSync(path.join(r.snapshotPath!, 'sparse')).size).toBe(64 * 1024 * 1024);
    expect(fs.statSync(path.join(r.snapshotPath!, 'sparse-tail')).size).toBe(8 * 1024 * 1024);
  });

  it('lays out the set: label 0700, latest symlink, manifest with every entry', async () => {
    const { src, dst } = setup();
    createTree(src, everyKindTree());
    const r = await backup({
      source: src,
      destination: dst,
      label: 'projects',
      interval: 'weekly',
    });
    const set = new BackupSet(dst, 'projects');
    expect(fs.statSync(set.dir).mode & 0o777).toBe(0o700);
    expect(fs.readlinkSync(set.latestLink)).toBe(`weekly/${r.Snapshot}`);
    expect(fs.readdirSync(set.intervalDir('weekly'))).toEqual([r.Snapshot]);
    const m = await ManifestIndex.openManifest(set.manifestPath(r.Snapshot!));
    expect(m.header!.NumberOfFiles).toBe(r.NumberOfFiles);
    expect(r.NumberOfFiles).toBe(readTree(src).size - 1);
    const hard = m.readDirSync('hard')!;
    expect(hard.get('first')!.data).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  });

  it('a damaged manifest is refused by its checksum', async () => {
    const { src, dst } = setup();
    createTree(src, { a: file('a') });
    const r = await backup({ source: src, destination: dst });
    const p = new BackupSet(dst, 'efs-backup').manifestPath(r.Snapshot!);
    const text = fs.readFileSync(p, 'utf8');
    fs.writeFileSync(p, text.replace('"a"', '"b"'));
    await expect(ManifestIndex.openManifest(p)).rejects.toThrow(/checksum/);
  });
});

describe('incremental snapshots', () => {
  it('links unchanged entries and copies changed ones, leaving the old snapshot as it was', async () => {
    const { src, dst } = setup();
    createTree(src, {
      ...everyKindTree(),
      change: dir({
        content: file('v1'),
        mode: file('m', { mode: 0o644 }),
        owner: file('o'),
        same: file('s'),
      }),
    });
    const first = await backup({ source: src, destination: dst });
    const before = readTree(first.snapshotPath!);

    const second = await backup({ source: src, destination: dst });
    expect(second.Status).toBe('Success');
    expect(second.NumberOfFilesTransferred).toBe(0);
    for (const rel of [
      'plain.txt',
      'hard/first',
      'links/relative',
      'change/same',
      'perms/setuid',
      'owners/foreign',
    ]) {
      expect(sharedInodes(first.snapshotPath!, second.snapshotPath!, rel), rel).toBe(true);
    }

    const t = fs.statSync(path.join(src, 'change/content')).mtime;
    fs.writeFileSync(path.join(src, 'change/content'), 'v2');
    fs.utimesSync(path.join(src, 'change/content'), t, t); // same mtime and size: only the digest differs... so change size
    fs.writeFileSync(path.join(src, 'change/content'), 'v2 longer');
    fs.chmodSync(path.join(src, 'change/mode'), 0o600);
    fs.chownSync(path.join(src, 'change/owner'), 777, 888);
    const third = await backup({ source: src, destination: dst });
    expect(third.Status).toBe('Success');
    expect(third.NumberOfFilesTransferred).toBe(3);
    expect(rsyncDifferences(src, third.snapshotPath!)).toEqual([]);
    for (const rel of ['change/content', 'change/mode', 'change/owner']) {
      expect(sharedInodes(second.snapshotPath!, third.snapshotPath!, rel), rel).toBe(false);
    }
    expect(sharedInodes(second.snapshotPath!, third.snapshotPath!, 'change/same')).toBe(true);
    // The first snapshot is byte for byte and metadata for metadata what it was.
    expect(diffStates(before, readTree(first.snapshotPath!))).toEqual([]);
    expect(fs.readFileSync(path.join(first.snapshotPath!, 'change/content'), 'utf8')).toBe('v1');
  });

  for (const io of ['sync', 'async'] as const) {
    it(`copies again what the previous snapshot lost, and links the rest (${io} calls)`, async () => {
      const { src, dst } = setup();
      const many: Record<string, ReturnType<typeof file>> = {};
      for (let i = 0; i < 700; i++) many[`f${i}`] = file(`file ${i}`);
      createTree(src, { ...everyKindTree(), many: dir(many) });
      const first = await backup({ source: src, destination: dst, io });
      fs.rmSync(path.join(first.snapshotPath!, 'many/f300'));
      fs.rmSync(path.join(first.snapshotPath!, 'plain.txt'));

      const second = await backup({ source: src, destination: dst, io });
      expect(second.Status).toBe('Success');
      expect(second.NumberOfFilesTransferred).toBe(2);
      expect(rsyncDifferences(src, second.snapshotPath!)).toEqual([]);
      expect(fs.readFileSync(path.join(second.snapshotPath!, 'many/f300'), 'utf8')).toBe(
        'file 300',
      );
      for (const rel of ['many/f0', 'many/f299', 'many/f699', 'hard/first']) {
        expect(sharedInodes(first.snapshotPath!, second.snapshotPath!, rel), rel).toBe(true);
      }
    });
  }
});
