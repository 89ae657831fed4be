import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { asyncOps, type FsOps, syncOps } from '../src/fs-ops.js';
import {
  blockLine,
  type ManifestEntry,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type ManifestHeader,
  ManifestIndex,
  writeManifest,
  writeManifestSegments,
} from '../src/manifest.js';
import { nameFromBytes } from '../src/names.js';
import { tmpDir } from './fixtures/tmp.js';

function entry(name: string, over: Partial<ManifestEntry> = {}): ManifestEntry {
  return {
    name,
    kind: 'f',
    mode: 0o100644,
    uid: 0,
    gid: 0,
    size: 10,
    mtimeSec: 1_600_000_000,
    mtimeNsec: 5,
    data: `sum-${name}`,
    ...over,
  };
}

function header(over: Partial<ManifestHeader> = {}): ManifestHeader {
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    BackupId: 'b-1',
    Label: 'home',
    Interval: 'daily',
    Snapshot: '2024-05-06T07-08-09Z',
    Source: '/srv/home',
    Prefix: '',
    StartTime: '2024-05-06T07:08:09.000Z',
    StopTime: '2024-05-06T07:09:10.000Z',
    NumberOfFiles: 5,
    TotalFileSize: 50,
    root: ['', 'd', 0o40755, 0, 0, 0, 1_600_000_000, 0, ''],
    ...over,
  };
}

const indexes: ManifestIndex[] = [];

async function open(p: string): Promise<ManifestIndex> {
  const ix = await ManifestIndex.openManifest(p);
  indexes.push(ix);
  return ix;
}

afterEach(() => {
  for (const ix of indexes.splice(0)) ix.close();
});

function readDir(
  ix: ManifestIndex,
  io: Pick<FsOps, 'read'>,
  dir: string,
): Promise<Map<string, ManifestEntry> | null> {
  return new Promise((resolve, reject) =>
    ix.readDir(io, dir, (err, entries) => (err ? reject(err) : resolve(entries))),
  );
}

const blocks: Array<[string, ManifestEntry[]]> = [
  ['', [entry('a', { kind: 'd', mode: 0o40755, size: 0, data: '' }), entry('top')]],
  ['a', [entry('f1'), entry('ln', { kind: 'l', mode: 0o120777, size: 0, data: 'f1' })]],
  ['a', [entry('f2', { link: 'a/f1' }), entry('f1', { size: 11, data: 'sum-f1-new' })]],
  [nameFromBytes(Buffer.from([0x61, 0x2f, 0xff])), [entry(nameFromBytes(Buffer.from([0xfe])))]],
];

/** What `blocks` holds per directory, later blocks winning. */
function expected(list: Array<[string, ManifestEntry[]]>): Map<string, Map<string, ManifestEntry>> {
  const out = new Map<string, Map<string, ManifestEntry>>();
  for (const [dir, entries] of list) {
    const m = out.get(dir) ?? new Map<string, ManifestEntry>();
    for (const e of entries) m.set(e.name, e);
    out.set(dir, m);
  }
  return out;
}

/** A journal of `list` and a manifest made of it; returns both paths. */
function written(
  list: Array<[string, ManifestEntry[]]> = blocks,
  h: ManifestHeader = header(),
): { dir: string; journal: string; manifest: string } {
  const dir = tmpDir('efs-manifest-');
  const journal = path.join(dir, 'journal');
  fs.writeFileSync(journal, list.map(([d, e]) => blockLine(d, e)).join(''));
  const manifest = path.join(dir, 'manifests', 'snap.manifest');
  fs.mkdirSync(path.dirname(manifest));
  writeManifest(manifest, h, journal, 0);
  return { dir, journal, manifest };
}

describe('ManifestIndex and writeManifest', () => {
  it('opens a written manifest with its header, directories and entries', async () => {
    const h = header();
    const { manifest } = written(blocks, h);
    expect(fs.readdirSync(path.dirname(manifest))).toEqual(['snap.manifest']);
    const text = fs.readFileSync(manifest, 'utf8');
    expect(text.split('\n')[0]).toBe(JSON.stringify(h));
    expect(text).toMatch(/\n#sha256 [0-9a-f]{64}\n$/);

    const ix = await open(manifest);
    expect(ix.header).toEqual(h);
    const want = expected(blocks);
    expect(new Set(ix.dirs())).toEqual(new Set(want.keys()));
    expect(ix.readDirSync('b')).toBeNull();
    expect(ix.readDirSync('a/')).toBeNull();
    expect(ix.readDirSync(nameFromBytes(Buffer.from('a/\uFFFD')))).toBeNull();

    for (const [d, entries] of want) {
      expect(ix.readDirSync(d)).toEqual(entries);
      expect(await readDir(ix, asyncOps, d)).toEqual(entries);
      expect(await readDir(ix, syncOps, d)).toEqual(entries);
    }
    expect(ix.readDirSync('a')!.get('f1')!.data).toBe('sum-f1-new');
    expect(ix.readDirSync('a')!.get('f2')!.link).toBe('a/f1');
    expect(ix.readDirSync('b')).toBeNull();
    expect(await readDir(ix, asyncOps, 'b')).toBeNull();
  });

  it('answers readDir with syncOps before it returns, and reopens after close', async () => {
    const { manifest } = written();
    const ix = await open(manifest);
    let got: Map<string, ManifestEntry> | null = null;
    ix.readDir(syncOps, 'a', (err, entries) => {
      expect(err).toBeNull();
      got = entries;
    });
    expect(got).toEqual(expected(blocks).get('a'));
    ix.close();
    expect(await readDir(ix, asyncOps, '')).toEqual(expected(blocks).get(''));
  });

  it('passes a read error to the readDir callback', async () => {
    const { manifest } = written();
    const ix = await open(manifest);
    const failing: Pick<FsOps, 'read'> = {
      read: (_fd, _buf, _len, _pos, cb) => {
        const e: NodeJS.ErrnoException = new Error('EIO: i/o error, read');
        e.code = 'EIO';
        cb(e, 0);
      },
    };
    await expect(readDir(ix, failing, 'a')).rejects.toMatchObject({ code: 'EIO' });
  });

  it('holds only the journal bytes from `from` on', async () => {
    const dir = tmpDir('efs-manifest-');
    const journal = path.join(dir, 'journal');
    const before = blockLine('old', [entry('gone')]) + blockLine('a', [entry('earlier')]);
    fs.writeFileSync(
      journal,
      before + blockLine('a', [entry('f1')]) + blockLine('new', [entry('n')]),
    );
    const manifest = path.join(dir, 'm');
    writeManifest(manifest, header(), journal, Buffer.byteLength(before));
    const ix = await open(manifest);
    expect(new Set(ix.dirs())).toEqual(new Set(['a', 'new']));
    expect(ix.readDirSync('old')).toBeNull();
    expect([...ix.readDirSync('a')!.keys()]).toEqual(['f1']);
    expect(fs.readFileSync(manifest, 'utf8')).not.toContain('earlier');
  });

  it('writes a header-only manifest when the journal is missing or `from` is its end', async () => {
    const dir = tmpDir('efs-manifest-');
    const m1 = path.join(dir, 'm1');
    writeManifest(m1, header({ NumberOfFiles: 0 }), path.join(dir, 'no-journal'), 0);
    const ix1 = await open(m1);
    expect(ix1.header!.NumberOfFiles).toBe(0);
    expect([...ix1.dirs()]).toEqual([]);

    const journal = path.join(dir, 'journal');
    fs.writeFileSync(journal, blockLine('a', [entry('x')]));
    const m2 = path.join(dir, 'm2');
    writeManifest(m2, header(), journal, fs.statSync(journal).size);
    expect([...(await open(m2)).dirs()]).toEqual([]);
  });

  it('reads a manifest of several megabytes, lines across read chunks included', async () => {
    const list: Array<[string, ManifestEntry[]]> = [];
    for (let d = 0; d < 2000; d++) {
      list.push([`dir/${d}`, [entry(`f${d}`, { data: String(d).repeat(300).slice(0, 1000) })]]);
    }
    // One directory's block bigger than two read chunks (1 MiB each).
    list.push(['huge', Array.from({ length: 40_000 }, (_, i) => entry(`file-${i}`, { size: i }))]);
    list.push(['dir/7', [entry('late')]]);
    const { manifest, journal } = written(list);
    expect(fs.statSync(journal).size).toBeGreaterThan(4 << 20);
    expect(Buffer.byteLength(blockLine('huge', list[2000]![1]))).toBeGreaterThan(2 << 20);
    const ix = await open(manifest);
    expect([...ix.dirs()].length).toBe(2001);
    const huge = ix.readDirSync('huge')!;
    expect(huge.size).toBe(40_000);
    expect(huge.get('file-39999')!.size).toBe(39_999);
    expect((await readDir(ix, asyncOps, 'huge'))!.get('file-12345')!.size).toBe(12_345);
    expect([...ix.readDirSync('dir/7')!.keys()]).toEqual(['f7', 'late']);
    expect(ix.readDirSync('dir/1999')!.get('f1999')!.data).toBe('1999'.repeat(300).slice(0, 1000));
  });

  it('fails the checksum, naming the file, whatever byte is flipped', async () => {
    const { manifest } = written(blocks.slice(0, 2));
    const good = fs.readFileSync(manifest);
    const bad = path.join(path.dirname(manifest), 'damaged.manifest');
    const accepted: number[] = [];
    const unnamed: string[] = [];
    for (let i = 0; i < good.length; i++) {
      const copy = Buffer.from(good);
      copy[i] = copy[i]! ^ 0x01;
      fs.writeFileSync(bad, copy);
      try {
        (await ManifestIndex.openManifest(bad)).close();
        accepted.push(i);
      } catch (e) {
        const msg = (e as Error).message;
        if (!msg.includes(bad)) unnamed.push(`byte ${i}: ${msg}`);
      }
    }
    expect(accepted).toEqual([]);
    expect(unnamed).toEqual([]);
  });

  it('says a damaged body fails its checksum, not that it is malformed', async () => {
    const { manifest } = written(blocks.slice(0, 2));
    const good = fs.readFileSync(manifest, 'utf8');
    const lines = good.split('\n');
    // A block line whose tab and JSON are broken, and a header that is not JSON.
    for (const damaged of [
      [lines[0], lines[1]!.replace('\t', ' '), ...lines.slice(2)],
      [lines[0]!.slice(1), ...lines.slice(1)],
    ]) {
      fs.writeFileSync(manifest, damaged.join('\n'));
      await expect(ManifestIndex.openManifest(manifest)).rejects.toThrow(
        `manifest ${manifest} fails its checksum`,
      );
    }
  });

  it('refuses a truncated manifest and one without its checksum line', async () => {
    const { manifest, dir } = written();
    const good = fs.readFileSync(manifest);
    const cut = path.join(dir, 'cut.manifest');
    for (const len of [
      0,
      1,
      40,
      good.length - 74,
      good.length - 73,
      good.length - 10,
      good.length - 1,
    ]) {
      fs.writeFileSync(cut, good.subarray(0, len));
      await expect(ManifestIndex.openManifest(cut), `cut to ${len} bytes`).rejects.toThrow(cut);
    }
    fs.writeFileSync(cut, good.subarray(0, 20));
    await expect(ManifestIndex.openManifest(cut)).rejects.toThrow(`manifest ${cut} is truncated`);

    // The body without its checksum line, and the whole with a line after the checksum.
    const body = good.subarray(0, good.lastIndexOf('#sha256 '));
    fs.writeFileSync(cut, body);
    await expect(ManifestIndex.openManifest(cut)).rejects.toThrow(
      `manifest ${cut} has no checksum line`,
    );
    fs.writeFileSync(cut, Buffer.concat([good, Buffer.from(blockLine('extra', [entry('x')]))]));
    await expect(ManifestIndex.openManifest(cut)).rejects.toThrow(cut);
    // A journal is not a manifest.
    const journal = path.join(dir, 'journal');
    await expect(ManifestIndex.openManifest(journal)).rejects.toThrow(journal);
  });

  it('refuses a file that is not a manifest, its checksum right', async () => {
    const dir = tmpDir('efs-manifest-');
    const m = path.join(dir, 'm');
    writeManifest(
      m,
      { ...header(), format: 'something-else' } as unknown as ManifestHeader,
      path.join(dir, 'j'),
      0,
    );
    await expect(ManifestIndex.openManifest(m)).rejects.toThrow(`${m} is not a manifest`);
  });

  it('leaves no .tmp beside the manifest, written or failed, and keeps the old one on failure', async () => {
    const { manifest, dir } = written();
    const folder = path.dirname(manifest);
    expect(fs.readdirSync(folder)).toEqual(['snap.manifest']);
    const before = fs.readFileSync(manifest);

    // The journal is a directory: reading it fails half way through the write.
    const notAFile = path.join(dir, 'journal-dir');
    fs.mkdirSync(notAFile);
    expect(() => writeManifest(manifest, header({ Label: 'other' }), notAFile, 0)).toThrow(
      /EISDIR/,
    );
    expect(fs.readdirSync(folder)).toEqual(['snap.manifest']);
    expect(fs.readFileSync(manifest).equals(before)).toBe(true);
    expect((await open(manifest)).header!.Label).toBe('home');

    // The manifest's name is taken by a folder: the rename fails.
    const taken = path.join(folder, 'taken.manifest');
    fs.mkdirSync(taken);
    fs.writeFileSync(path.join(taken, 'x'), '');
    expect(() => writeManifest(taken, header(), path.join(dir, 'journal'), 0)).toThrow();
    expect(fs.readdirSync(folder).sort()).toEqual(['snap.manifest', 'taken.manifest']);

    // A new manifest replaces the old one whole.
    writeManifest(manifest, header({ Label: 'again' }), path.join(dir, 'journal'), 0);
    expect(fs.readdirSync(folder).sort()).toEqual(['snap.manifest', 'taken.manifest']);
    expect((await open(manifest)).header!.Label).toBe('again');
  });

  it("a shared run's manifest from many journals is byte for byte the one a single journal gives", async () => {
    const dir = tmpDir('segments');
    // Journal lengths around the writer's two sizes (a first chunk read ahead: 256 KiB; the
    // buffer the writes are gathered in: 1 MiB), each read from an offset past a part of an
    // earlier attempt; a unit that wrote nothing has no journal at all.
    const K = 1024;
    const sizes = [
      0,
      10,
      256 * K - 1,
      256 * K,
      256 * K + 1,
      1024 * K - 7,
      1024 * K,
      1536 * K,
      3 * 1024 * K + 3,
    ];
    let seed = 7;
    const bytes = (n: number): Buffer => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        b[i] = i % 97 === 96 ? 0x0a : 0x20 + ((seed >>> 24) % 90);
      }
      return b;
    };
    const parts: Buffer[] = [];
    const segments = sizes.map((n, k) => {
      const file = path.join(dir, `unit-${k}`);
      const skipped = bytes(k * 13);
      const mine = bytes(n);
      parts.push(mine);
      if (n > 0 || k % 2 === 0) fs.writeFileSync(file, Buffer.concat([skipped, mine]));
      return { path: n > 0 || k % 2 === 0 ? file : path.join(dir, 'none'), from: skipped.length };
    });
    // Many journals, more than are read ahead at once.
    for (let k = 0; k < 40; k++) {
      const file = path.join(dir, `small-${k}`);
      const mine = bytes(100 + k * 999);
      parts.push(mine);
      fs.writeFileSync(file, mine);
      segments.push({ path: file, from: 0 });
    }
    const whole = path.join(dir, 'whole');
    fs.writeFileSync(whole, Buffer.concat(parts));
    const one = path.join(dir, 'one.manifest');
    const many = path.join(dir, 'many.manifest');
    writeManifest(one, header(), whole, 0);
    await writeManifestSegments(many, header(), segments);
    const a = fs.readFileSync(one);
    const b = fs.readFileSync(many);
    expect(b.length).toBe(a.length);
    expect(b.equals(a)).toBe(true);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});
