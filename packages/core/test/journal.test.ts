import { execFileSync } from 'node:child_process';
import { isUtf8 } from 'node:buffer';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { blockLine, type ManifestEntry, JournalWriter, ManifestIndex } from '../src/manifest.js';
import { nameFromBytes } from '../src/names.js';
import { tmpDir } from './fixtures/tmp.js';

function entry(name: string, over: Partial<ManifestEntry> = {}): ManifestEntry {
  return {
    name,
    kind: 'f',
    mode: 0o100644,
    uid: 1000,
    gid: 1000,
    size: name.length,
    mtimeSec: 1_700_000_000,
    mtimeNsec: 123_456_789,
    data: `digest-of-${name}`,
    ...over,
  };
}

function flush(w: JournalWriter): Promise<Error | null> {
  return new Promise((resolve) => w.flush(resolve));
}

const writers: JournalWriter[] = [];
const indexes: ManifestIndex[] = [];
const mounts: string[] = [];

function open(p: string, onError: ((err: Error) => void) | null = null): JournalWriter {
  const w = JournalWriter.open(p, onError);
  writers.push(w);
  return w;
}

async function index(p: string): Promise<ManifestIndex> {
  const ix = await ManifestIndex.openJournal(p);
  indexes.push(ix);
  return ix;
}

// Registered after tmpDir's afterEach, so it runs before it (hooks run as a stack): files are
// closed and unmounted before their folders are removed.
afterEach(() => {
  for (const w of writers.splice(0)) w.close();
  for (const ix of indexes.splice(0)) ix.close();
  for (const m of mounts.splice(0)) {
    try {
      execFileSync('umount', [m]);
    } catch {
      execFileSync('umount', ['-l', m]);
    }
  }
});

describe('JournalWriter', () => {
  it('has the lines added on disk after flush, as block lines the index reads back', async () => {
    const j = path.join(tmpDir(), 'journal');
    const w = open(j);
    expect(w.offset).toBe(0);
    expect((fs.statSync(j).mode & 0o777).toString(8)).toBe('600');
    const a = [entry('one'), entry('sub', { kind: 'd', mode: 0o40755, size: 0, data: '' })];
    const b = [entry('ln', { kind: 'l', mode: 0o120777, size: 0, data: '../one' })];
    const c = [entry('second', { link: 'a/one' }), entry('pipe', { kind: 'p', mode: 0o10600 })];
    w.add('', a);
    w.add('a/sub', b);
    w.add('a', c);
    w.add('empty', []); // no entries, no line
    expect(await flush(w)).toBeNull();

    const text = fs.readFileSync(j, 'utf8');
    expect(text).toBe(blockLine('', a) + blockLine('a/sub', b) + blockLine('a', c));
    expect(text.split('\n')[0]).toBe(
      '""\t[["one","f",33188,1000,1000,3,1700000000,123456789,"digest-of-one"],' +
        '["sub","d",16877,1000,1000,0,1700000000,123456789,""]]',
    );
    expect(w.offset).toBe(Buffer.byteLength(text));

    const ix = await index(j);
    expect(ix.header).toBeNull();
    expect([...ix.dirs()].length).toBe(3);
    expect(new Set(ix.dirs())).toEqual(new Set(['', 'a/sub', 'a']));
    expect(ix.readDirSync('empty')).toBeNull();
    expect(ix.readDirSync('empty')).toBeNull();
    expect([...ix.readDirSync('')!.values()]).toEqual(a);
    expect([...ix.readDirSync('a/sub')!.values()]).toEqual(b);
    const got = ix.readDirSync('a')!;
    expect([...got.values()]).toEqual(c);
    expect(got.get('second')!.link).toBe('a/one');
    expect('link' in got.get('pipe')!).toBe(false);
  });

  it('writes several megabytes added between flushes whole and in order', async () => {
    const j = path.join(tmpDir(), 'journal');
    const w = open(j);
    const filler = 'x'.repeat(900);
    const expected: string[] = [];
    const flushes: Array<Promise<Error | null>> = [];
    for (let i = 0; i < 5000; i++) {
      const entries = [entry(`f${i}`, { data: filler })];
      w.add(`d${i}`, entries);
      expected.push(blockLine(`d${i}`, entries));
      if (i % 1500 === 0) flushes.push(flush(w)); // flushes while a write is under way
    }
    flushes.push(flush(w));
    expect(await Promise.all(flushes)).toEqual(flushes.map(() => null));
    const want = expected.join('');
    expect(Buffer.byteLength(want)).toBeGreaterThan(4 << 20);
    expect(fs.readFileSync(j, 'utf8')).toBe(want);
    const ix = await index(j);
    expect([...ix.dirs()].length).toBe(5000);
    expect(ix.readDirSync('d4321')!.get('f4321')!.data).toBe(filler);
  });

  it('cuts a torn last line off on open; offset is where this run begins', async () => {
    const j = path.join(tmpDir(), 'journal');
    const whole = blockLine('a', [entry('x')]) + blockLine('b', [entry('y')]);
    const torn = blockLine('c', [entry('z')]).slice(0, 25);
    fs.writeFileSync(j, whole + torn);

    const w = open(j);
    const start = Buffer.byteLength(whole);
    expect(w.offset).toBe(start);
    expect(fs.statSync(j).size).toBe(start);
    w.add('d', [entry('w')]);
    expect(await flush(w)).toBeNull();
    w.close();

    const text = fs.readFileSync(j, 'utf8');
    expect(text).toBe(whole + blockLine('d', [entry('w')]));
    expect(text.slice(start)).toBe(blockLine('d', [entry('w')]));
    const ix = await index(j);
    expect(new Set(ix.dirs())).toEqual(new Set(['a', 'b', 'd']));
    expect(ix.readDirSync('c')).toBeNull();

    // Reopened whole, nothing is cut and this run starts at the end.
    const again = open(j);
    expect(again.offset).toBe(Buffer.byteLength(text));
    expect(fs.readFileSync(j, 'utf8')).toBe(text);
  });

  it('cuts a journal of one torn line to nothing', async () => {
    const j = path.join(tmpDir(), 'journal');
    fs.writeFileSync(j, '"a"\t[["x","f",');
    const w = open(j);
    expect(w.offset).toBe(0);
    expect(fs.statSync(j).size).toBe(0);
    w.add('b', [entry('y')]);
    expect(await flush(w)).toBeNull();
    expect(fs.readFileSync(j, 'utf8')).toBe(blockLine('b', [entry('y')]));
  });

  it('finds the last newline more than a megabyte before the end', () => {
    const j = path.join(tmpDir(), 'journal');
    const whole = blockLine('a', [entry('x')]);
    // A torn line longer than the chunk the tail is read in (1 MiB), spanning two chunks.
    fs.writeFileSync(j, whole + '"b"\t[' + 'y'.repeat((1 << 20) + 12345));
    const w = open(j);
    expect(w.offset).toBe(Buffer.byteLength(whole));
    expect(fs.readFileSync(j, 'utf8')).toBe(whole);
  });

  it('lets later blocks win over earlier ones for the same name, within a run and across runs', async () => {
    const j = path.join(tmpDir(), 'journal');
    const w = open(j);
    w.add('d', [entry('x', { size: 1 }), entry('y', { size: 2 })]);
    w.add('other', [entry('x', { size: 99 })]);
    w.add('d', [entry('x', { size: 3 })]);
    expect(await flush(w)).toBeNull();
    w.close();
    // A resumed run appends to the same journal.
    const w2 = open(j);
    w2.add('d', [entry('z', { size: 4 }), entry('y', { size: 5, kind: 'l', data: 't' })]);
    expect(await flush(w2)).toBeNull();

    const ix = await index(j);
    expect([...ix.dirs()].length).toBe(2);
    const d = ix.readDirSync('d')!;
    expect(new Map([...d].map(([k, v]) => [k, [v.size, v.kind]]))).toEqual(
      new Map([
        ['x', [3, 'f']],
        ['y', [5, 'l']],
        ['z', [4, 'f']],
      ]),
    );
    expect(ix.readDirSync('other')!.get('x')!.size).toBe(99);
  });

  it('round-trips names that are not UTF-8', async () => {
    const j = path.join(tmpDir(), 'journal');
    const w = open(j);
    const bad = nameFromBytes(Buffer.from([0x6e, 0xff])); // "n\udcff"
    const latin = nameFromBytes(Buffer.from('café', 'latin1')); // "caf\udce9"
    const dir = nameFromBytes(Buffer.from([0x64, 0x80, 0x2f, 0x73, 0xfe])); // "d\udc80/s\udcfe"
    expect(bad.isWellFormed()).toBe(false);
    expect(dir).toBe('d\udc80/s\udcfe');
    const entries = [
      entry(bad),
      entry('n\uFFFD', { size: 77 }), // the valid name that a lossy decoding would make of `bad`
      entry(latin, { kind: 'l', data: `../${bad}/${latin}` }),
      entry('second', { link: `${dir}/${bad}` }),
      entry('\udcc0\udcff'),
    ];
    w.add(dir, entries);
    w.add(bad, [entry(latin)]);
    expect(await flush(w)).toBeNull();

    // The journal itself is valid UTF-8: the surrogates are escaped, not replaced.
    const raw = fs.readFileSync(j);
    expect(isUtf8(raw)).toBe(true);
    expect(raw.toString('utf8')).toContain('\\udcff');

    const ix = await index(j);
    expect(ix.readDirSync(dir)).not.toBeNull();
    expect(ix.readDirSync('d\uFFFD/s\uFFFD')).toBeNull();
    const got = ix.readDirSync(dir)!;
    expect(got.size).toBe(entries.length);
    expect([...got.values()]).toEqual(entries);
    expect(got.get(bad)!.size).toBe(bad.length);
    expect(got.get('n\uFFFD')!.size).toBe(77);
    expect(got.get(latin)!.data).toBe(`../${bad}/${latin}`);
    expect(got.get('second')!.link).toBe(`${dir}/${bad}`);
    expect([...ix.readDirSync(bad)!.keys()]).toEqual([latin]);
  });

  it('reports a write error once to onError and to every later flush', async (ctx) => {
    const mnt = tmpDir('efs-journal-tmpfs-');
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (e) {
      console.log(`skipped: cannot mount a 64 KiB tmpfs (${(e as Error).message.trim()})`);
      ctx.skip();
      return;
    }
    mounts.push(mnt);
    const j = path.join(mnt, 'journal');
    const errors: Error[] = [];
    const w = open(j, (err) => errors.push(err));
    w.add('small', [entry('fits')]);
    expect(await flush(w)).toBeNull();
    expect(errors).toEqual([]);

    const filler = 'z'.repeat(1000);
    for (let i = 0; i < 200; i++) w.add(`d${i}`, [entry(`f${i}`, { data: filler })]);
    const first = await flush(w);
    expect(first).toBeInstanceOf(Error);
    expect((first as NodeJS.ErrnoException).code).toBe('ENOSPC');
    expect(errors).toEqual([first]);

    // Later flushes, with or without new lines, keep failing with the same error; onError is
    // not called again.
    expect(await flush(w)).toBe(first);
    w.add('after', [entry('more')]);
    expect(await flush(w)).toBe(first);
    const [x, y] = await Promise.all([flush(w), flush(w)]);
    expect(x).toBe(first);
    expect(y).toBe(first);
    expect(errors).toHaveLength(1);
    // What was written before the error is still there, whole.
    w.close();
    const ix = await index(j);
    expect([...ix.readDirSync('small')!.keys()]).toEqual(['fits']);
  });
});
