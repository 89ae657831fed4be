import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  checkExcludeRules,
  excludePatternProblem,
  Excludes,
  formatExcludes,
  readExcludeFile,
} from '../src/excludes.js';
import { nameFromBytes } from '../src/names.js';

/** What `patterns` leave out of `paths` (a trailing `/` marks a directory). */
function leftOut(patterns: string[], paths: string[]): string[] {
  const x = Excludes.of({ exclude: patterns })!;
  return paths.filter((p) => x.excludes(p.replace(/\/$/, ''), p.endsWith('/')));
}

describe('Excludes: gitignore patterns relative to the backed-up root', () => {
  it('a plain name matches anywhere, an anchored one at the root only', () => {
    expect(leftOut(['cache'], ['cache', 'a/cache', 'a/b/cache/', 'caches'])).toEqual([
      'cache',
      'a/cache',
      'a/b/cache/',
    ]);
    expect(leftOut(['/cache'], ['cache/', 'a/cache/', 'cache'])).toEqual(['cache/', 'cache']);
  });

  it('dir/ matches directories only', () => {
    expect(leftOut(['build/'], ['build/', 'x/build/', 'build', 'x/build'])).toEqual([
      'build/',
      'x/build/',
    ]);
  });

  it('* stays within a name, ** crosses directories', () => {
    expect(leftOut(['*.tmp'], ['a.tmp', 'd/b.tmp', 'a.tmpx'])).toEqual(['a.tmp', 'd/b.tmp']);
    expect(leftOut(['a/*.o'], ['a/x.o', 'a/b/x.o'])).toEqual(['a/x.o']);
    expect(leftOut(['a/**/x.o'], ['a/x.o', 'a/b/c/x.o', 'b/x.o'])).toEqual(['a/x.o', 'a/b/c/x.o']);
    expect(leftOut(['**/node_modules/'], ['node_modules/', 'p/q/node_modules/'])).toHaveLength(2);
  });

  it('!pattern re-includes, the last match deciding', () => {
    expect(leftOut(['*.log', '!keep.log'], ['a.log', 'd/keep.log', 'keep.log'])).toEqual(['a.log']);
    expect(leftOut(['!keep.log', '*.log'], ['keep.log'])).toEqual(['keep.log']);
  });

  it('case matters, as on Linux (the package ignores it by default)', () => {
    expect(leftOut(['Cache'], ['cache', 'Cache'])).toEqual(['Cache']);
  });

  it('a name that is not UTF-8 is matched by its bytes, as an exclude file gives them', () => {
    const name = nameFromBytes(Buffer.from([0x66, 0xff, 0x2e, 0x74, 0x6d, 0x70])); // f\xff.tmp
    expect(leftOut(['*.tmp'], [name])).toEqual([name]);
    expect(leftOut(['f?.tmp'], [name])).toEqual([name]);
    const dir = tmp();
    const file = path.join(dir, 'rules');
    fs.writeFileSync(file, Buffer.concat([Buffer.from('f'), Buffer.of(0xff), Buffer.from('*\n')]));
    const patterns = readExcludeFile(file);
    expect(leftOut(patterns, [name, 'f\uFFFD.tmp', 'fx'])).toEqual([name]);
  });

  it('a listing is filtered without a copy when nothing is left out; a tagged one is emptied', () => {
    const dir = tmp();
    for (const n of ['a.tmp', 'b', 'CACHEDIR.TAG']) fs.writeFileSync(path.join(dir, n), '');
    fs.mkdirSync(path.join(dir, 'build'));
    const list = fs.readdirSync(dir, { withFileTypes: true });
    const names = (l: fs.Dirent[]) => l.map((d) => d.name).sort();
    const x = Excludes.of({ exclude: ['*.tmp', 'build/'] })!;
    expect(names(x.filter('', list))).toEqual(['CACHEDIR.TAG', 'b']);
    const none = Excludes.of({ exclude: ['*.none'] })!;
    expect(none.filter('sub', list)).toBe(list);
    expect(Excludes.of({ excludeIfPresent: ['CACHEDIR.TAG'] })!.filter('', list)).toEqual([]);
    expect(Excludes.of({ exclude: [], excludeIfPresent: [] })).toBeNull();
  });

  it('many paths asked keep giving the same answers (the cache is let go)', () => {
    const x = Excludes.of({ exclude: ['*.tmp', '!k*.tmp'] })!;
    for (let i = 0; i < 6000; i++) {
      expect(x.excludes(`d${i % 7}/f${i}.tmp`, false)).toBe(true);
      expect(x.excludes(`d${i % 7}/k${i}.tmp`, false)).toBe(false);
    }
  });
});

describe('patterns that are not patterns are bad input', () => {
  it.each([
    ['', /blank/],
    ['   ', /blank/],
    ['#cache', /comment/],
    ['a\0b', /NUL/],
    ['cache\\', /lone backslash/],
    ['!', /names no path/],
    ['/', /names no path/],
  ])('%j', (p, why) => {
    expect(excludePatternProblem(p)).toMatch(why);
    expect(() => checkExcludeRules({ exclude: ['ok', p] })).toThrow(why);
  });

  it('the forms git takes are good', () => {
    for (const p of ['\\#cache', 'a\\ ', '!keep', '/a/b/', '**', 'x\\\\'])
      expect(excludePatternProblem(p)).toBeNull();
  });

  it('an if-present name is a name', () => {
    for (const n of ['', 'a/b', '.', '..'])
      expect(() => checkExcludeRules({ excludeIfPresent: [n] })).toThrow(/exclude-if-present/);
  });

  it('an exclude file: comments and blank lines skipped, CRLF taken, a bad line named', () => {
    const dir = tmp();
    const file = path.join(dir, 'rules');
    fs.writeFileSync(file, '\uFEFF# caches\r\n\r\n*.tmp\r\n  \nbuild/\n!keep.tmp');
    expect(readExcludeFile(file)).toEqual(['*.tmp', 'build/', '!keep.tmp']);
    fs.writeFileSync(file, '*.tmp\nbad\\\n');
    expect(() => readExcludeFile(file)).toThrow(`${file}:2: the pattern "bad\\\\"`);
    expect(() => readExcludeFile(path.join(dir, 'nope'))).toThrow(/nope does not exist/);
  });
});

describe('formatExcludes', () => {
  it('says the patterns that fit, how many more, and always the names', () => {
    expect(formatExcludes([], [])).toBe('');
    expect(formatExcludes(['*.tmp', 'build/'], ['CACHEDIR.TAG'])).toBe(
      '*.tmp build/ (if present: CACHEDIR.TAG)',
    );
    expect(formatExcludes(['aaaa', 'bbbb', 'cccc', 'dddd'], [], 17)).toBe('aaaa bbbb +2 more');
  });
});

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'efs-excludes-'));
}
