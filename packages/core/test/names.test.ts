import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { timeArg } from '../src/fs-ops.js';
import { bytesOfName, fsPath, nameFromBytes, shown } from '../src/names.js';

describe('names as bytes', () => {
  const cases: Array<[string, number[]]> = [
    ['ASCII', [0x61, 0x62]],
    ['valid UTF-8', [...Buffer.from('é€😀')]],
    ['a lone 0xff', [0x6e, 0xff]],
    ['a truncated sequence', [0x61, 0xe2, 0x82]],
    ['an overlong encoding', [0xc0, 0xaf]],
    ['an encoded surrogate', [0xed, 0xa0, 0x80]],
    ['Latin-1 text', [0x63, 0x61, 0x66, 0xe9]],
    ['every high byte', Array.from({ length: 128 }, (_, i) => 0x80 + i)],
  ];

  it.each(cases)('%s round-trips byte for byte', (_what, bytes) => {
    const b = Buffer.from(bytes);
    const name = nameFromBytes(b);
    expect(bytesOfName(name).equals(b)).toBe(true);
    // Stored as JSON in manifests: the name comes back the same.
    expect(JSON.parse(JSON.stringify(name))).toBe(name);
  });

  it('keeps `n\\xff` and the valid name `n\\uFFFD` apart', () => {
    const bad = nameFromBytes(Buffer.from([0x6e, 0xff]));
    expect(bad).not.toBe('n\uFFFD');
    expect(nameFromBytes(Buffer.from('n\uFFFD'))).toBe('n\uFFFD');
  });

  it('gives system calls a string when it can, the bytes when it must', () => {
    expect(fsPath('/a/é')).toBe('/a/é');
    const p = `/tmp/${nameFromBytes(Buffer.from([0xff]))}`;
    expect(Buffer.isBuffer(fsPath(p))).toBe(true);
  });

  it('shows every name on one line, and two names never the same', () => {
    expect(shown('plain é')).toBe('plain é');
    expect(shown(nameFromBytes(Buffer.from([0x6e, 0xff])))).toBe('n\\xff');
    expect(shown('a\nb\tc\\')).toBe('a\\nb\\tc\\\\');
    expect(shown('n\\xff')).not.toBe(shown(nameFromBytes(Buffer.from([0x6e, 0xff]))));
  });
});

describe('timeArg', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-timearg-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it.each([
    [1_700_000_000, 123_456_789],
    [0, 0],
    [-1, 999_999_999],
    [-10, 0],
    [-315_619_200, 123_456_789],
    [-2_000_000_000, 500_000], // 1906: ext4 keeps times from 1901 on
  ])('%i s %i ns is set to the microsecond', (sec, nsec) => {
    const f = path.join(dir, `f${sec}`);
    fs.writeFileSync(f, '');
    const t = timeArg(sec, nsec);
    fs.utimesSync(f, t, t);
    const want = BigInt(sec) * 1_000_000_000n + BigInt(Math.floor(nsec / 1000) * 1000);
    expect(fs.lstatSync(f, { bigint: true }).mtimeNs).toBe(want);
  });
});
