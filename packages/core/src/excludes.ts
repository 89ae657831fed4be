import fs from 'node:fs';
import ignore, { type Ignore } from 'ignore';
import { badInput } from './errors.js';
import { nameFromBytes, shown } from './names.js';

/**
 * What a backup leaves out, as the user gave it and as a snapshot's manifest records it:
 * gitignore-style patterns, matched by the `ignore` package (git's rules, `git check-ignore`
 * tested), and restic's `--exclude-if-present` names.
 *
 * Paths are relative to the backed-up root (source plus prefix), `/`-separated, a directory's
 * with a trailing `/` (so `build/` matches only a directory); names are the engine's strings
 * (names.ts), so a name that is not UTF-8 is matched by its escaped bytes: `*` and `?` match
 * them as any other character, and a pattern read from an `--exclude-from` file is decoded the
 * same way, so its bytes match the same bytes in a name. Case matters, as on Linux.
 *
 * An excluded directory is never listed (git's rule too: nothing below it can be re-included);
 * a directory holding one of the `ifPresent` names is kept, empty: its owner, mode and times
 * are in the snapshot and restore puts them back, its content (the tag too) is left out.
 */
export interface ExcludeRules {
  /** Patterns in order: the last one that matches decides (`!` re-includes). */
  exclude: string[];
  /** Names whose presence in a directory leaves the directory's content out (CACHEDIR.TAG). */
  excludeIfPresent: string[];
}

/** Why `p` is not a pattern worth having (it would match nothing, or is not one), or null. */
export function excludePatternProblem(p: string): string | null {
  if (typeof p !== 'string') return 'is not a string';
  if (p.includes('\0')) return 'contains NUL, which no name holds';
  if (p.trim() === '') return 'is blank: it matches nothing';
  if (p.startsWith('#'))
    return 'starts with "#", which makes it a comment in gitignore syntax: write \\# to match a name starting with #';
  let body = p.startsWith('!') ? p.slice(1) : p;
  if (/(^|[^\\])(\\\\)*\\$/.test(body))
    return 'ends with a lone backslash, which gitignore syntax drops (it matches nothing)';
  body = body.replace(/(?<!\\) +$/, '');
  if (body === '' || /^\/+$/.test(body))
    return 'names no path: it matches nothing (a pattern such as build/, *.tmp or /cache)';
  return null;
}

/** Why `n` is not a name `excludeIfPresent` can look for, or null. */
export function ifPresentNameProblem(n: string): string | null {
  if (typeof n !== 'string') return 'is not a string';
  if (n === '') return 'is empty: it must be a file name such as CACHEDIR.TAG';
  if (n.includes('\0')) return 'contains NUL, which no name holds';
  if (n.includes('/'))
    return 'contains "/": it must be a name in the directory, such as CACHEDIR.TAG';
  if (n === '.' || n === '..') return `is "${n}", which every directory holds`;
  return null;
}

/** Throws BAD_INPUT naming the first pattern or name that is not one. Writes nothing. */
export function checkExcludeRules(r: Partial<ExcludeRules>): void {
  for (const [what, list, problem] of [
    ['exclude pattern', r.exclude, excludePatternProblem],
    ['exclude-if-present name', r.excludeIfPresent, ifPresentNameProblem],
  ] as const) {
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw badInput(`${what}s must be a list, not ${String(list)}`);
    for (const p of list) {
      const why = problem(p);
      if (why) throw badInput(`the ${what} "${shown(String(p))}" ${why}`);
    }
  }
}

/**
 * The patterns of an `--exclude-from` file: one a line, gitignore syntax (blank lines and `#`
 * comments skipped, a CR before the LF dropped), each line's bytes decoded as names are, so a
 * pattern that is not UTF-8 matches the same bytes in a name; a leading byte-order mark
 * dropped. A file that cannot be read, or a
 * line that is not a pattern, is BAD_INPUT naming the file (and line).
 */
export function readExcludeFile(file: string): string[] {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw badInput(
      code === 'ENOENT'
        ? `exclude file ${file} does not exist`
        : `cannot read the exclude file ${file}: ${code ?? (e as Error).message}`,
    );
  }
  const out: string[] = [];
  // A byte-order mark some editors write is not part of the first pattern.
  let start = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  let line = 0;
  while (start <= bytes.length) {
    let end = bytes.indexOf(10, start);
    if (end < 0) end = bytes.length;
    line++;
    let stop = end;
    if (stop > start && bytes[stop - 1] === 13) stop--;
    const p = nameFromBytes(bytes.subarray(start, stop));
    start = end + 1;
    if (p.trim() === '' || p.startsWith('#')) continue;
    const why = excludePatternProblem(p);
    if (why) throw badInput(`${file}:${line}: the pattern "${shown(p)}" ${why}`);
    out.push(p);
  }
  return out;
}

/** Paths matched before the matcher's cache is let go: it remembers every path it was asked. */
const CACHE_PATHS = 4096;

/**
 * The rules of one run (or one snapshot) made ready to match. Absent (null) when there are
 * none, so a walk without excludes calls nothing.
 */
export class Excludes {
  readonly rules: ExcludeRules;
  private readonly compiled: Ignore | null;
  private matcher: Ignore | null;
  private asked = 0;
  private readonly tags: ReadonlySet<string>;

  private constructor(rules: ExcludeRules) {
    this.rules = rules;
    // Case matters on Linux: the package's default is to ignore it.
    this.compiled = rules.exclude.length ? ignore({ ignorecase: false }).add(rules.exclude) : null;
    this.matcher = this.compiled;
    this.tags = new Set(rules.excludeIfPresent);
  }

  /** The rules as matchers, or null when they leave nothing out. Checked by `checkExcludeRules`. */
  static of(rules: Partial<ExcludeRules> | null | undefined): Excludes | null {
    const exclude = rules?.exclude ?? [];
    const excludeIfPresent = rules?.excludeIfPresent ?? [];
    if (exclude.length === 0 && excludeIfPresent.length === 0) return null;
    return new Excludes({ exclude: [...exclude], excludeIfPresent: [...excludeIfPresent] });
  }

  /** The rules a manifest header records (none in a manifest older than version 3). */
  static ofHeader(h: { Exclude?: unknown; ExcludeIfPresent?: unknown } | null): Excludes | null {
    const list = (v: unknown): string[] =>
      Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : [];
    return Excludes.of({ exclude: list(h?.Exclude), excludeIfPresent: list(h?.ExcludeIfPresent) });
  }

  /** The entry at `rel` (a directory when `dir`) is left out by a pattern. */
  excludes(rel: string, dir: boolean): boolean {
    if (!this.matcher) return false;
    if (++this.asked > CACHE_PATHS) {
      // A fresh matcher with the same compiled rules: the cache of a million paths is not kept.
      this.matcher = ignore({ ignorecase: false }).add(this.compiled!);
      this.asked = 1;
    }
    return this.matcher.ignores(dir ? `${rel}/` : rel);
  }

  /** A directory whose listing holds one of the `excludeIfPresent` names: its content is left out. */
  tagged(list: readonly fs.Dirent[]): boolean {
    if (this.tags.size === 0) return false;
    for (const d of list) if (this.tags.has(d.name)) return true;
    return false;
  }

  /**
   * What of the listing of the directory `rel` a backup takes: none of it when the directory is
   * tagged, else every entry no pattern leaves out; the same array when nothing is left out.
   * Node's listings type every entry (one the file system leaves untyped, DT_UNKNOWN, it
   * lstat's itself), so the listing decides.
   */
  filter(rel: string, list: fs.Dirent[]): fs.Dirent[] {
    if (this.tagged(list)) return [];
    if (!this.matcher) return list;
    let out: fs.Dirent[] | null = null;
    for (let i = 0; i < list.length; i++) {
      const d = list[i]!;
      const left = this.excludesEntry(rel, d);
      if (left && out === null) out = list.slice(0, i);
      else if (!left && out !== null) out.push(d);
    }
    return out ?? list;
  }

  /** The entry `d` of the listing of the directory `rel` is left out by a pattern. */
  excludesEntry(rel: string, d: fs.Dirent): boolean {
    if (!this.matcher) return false;
    return this.excludes(rel === '' ? d.name : `${rel}/${d.name}`, d.isDirectory());
  }
}

/**
 * The rules for people to read: `*.tmp build/ (if present: CACHEDIR.TAG)`, '' for none; within
 * `max` characters the patterns that fit, then how many more (the names are always said).
 */
export function formatExcludes(
  exclude: readonly string[] | null | undefined,
  ifPresent: readonly string[] | null | undefined,
  max = Infinity,
): string {
  const tail = ifPresent?.length
    ? `(if present: ${ifPresent.map((n) => shown(n)).join(', ')})`
    : '';
  const patterns = (exclude ?? []).map((p) => shown(p));
  const room = max - (tail ? tail.length + 1 : 0);
  let text = '';
  for (let i = 0; i < patterns.length; i++) {
    const next = text ? `${text} ${patterns[i]}` : patterns[i]!;
    const rest = patterns.length - i - 1;
    // The last pattern needs no "+N more" after it.
    if (next.length + (rest ? ` +${rest} more`.length : 0) > room) {
      const more = `+${patterns.length - i} more`;
      text = text ? `${text} ${more}` : more;
      break;
    }
    text = next;
  }
  return [text, tail].filter(Boolean).join(' ');
}
