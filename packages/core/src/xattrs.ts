import { createRequire } from 'node:module';

/**
 * Extended attributes, POSIX ACLs among them (`system.posix_acl_access`, `..._default`), and
 * file capabilities (`security.capability`). Node has no call for them: `@napi-rs/xattr`
 * (prebuilt per platform, no install script) is loaded the first time a run needs it, and only
 * then, so a bundle without it (the AWS worker: EFS has no extended attributes) still runs.
 *
 * Its calls never follow a symlink (l*xattr). They take UTF-8 paths: an entry whose path is
 * not valid UTF-8 cannot be reached (`unreachable`).
 */
interface XattrLibrary {
  listAttributesSync(path: string): string[];
  getAttributeSync(path: string, name: string): Buffer | null;
  setAttributeSync(path: string, name: string, value: Uint8Array): void;
  removeAttributeSync(path: string, name: string): void;
  listAttributes(path: string): Promise<string[]>;
  getAttribute(path: string, name: string): Promise<Buffer | null>;
}

let library: XattrLibrary | null | undefined;

/** The library, or null where it is not installed (the reason in `libraryProblem`). */
export function xattrLibrary(): XattrLibrary | null {
  if (library === undefined) {
    try {
      library = createRequire(import.meta.url)('@napi-rs/xattr') as XattrLibrary;
    } catch (e) {
      library = null;
      libraryProblem = (e as Error).message.split('\n')[0] ?? 'not installed';
    }
  }
  return library;
}

export let libraryProblem = '';

/** Name → base64 value, names sorted; what a manifest entry keeps. */
export type Xattrs = Record<string, string>;

/** The errno of the library's error ("... (os error 95)"), as Node would name it. */
export function xattrErrno(e: unknown): string {
  const m = /\(os error (\d+)\)/.exec((e as Error).message ?? '');
  const n = m ? Number(m[1]) : NaN;
  return ERRNO_NAMES[n] ?? 'EIO';
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  7: 'E2BIG',
  13: 'EACCES',
  20: 'ENOTDIR',
  22: 'EINVAL',
  28: 'ENOSPC',
  34: 'ERANGE',
  36: 'ENAMETOOLONG',
  61: 'ENODATA',
  95: 'ENOTSUP',
  122: 'EDQUOT',
};

/** The file system has no extended attributes at all (EFS, some FUSE and NFS mounts). */
export function isUnsupported(code: string): boolean {
  return code === 'ENOTSUP';
}

/**
 * Not reachable by the library: a path whose bytes are not UTF-8 (a surrogateescape string,
 * the same rule as `fsPath`). A real U+FFFD in a name is valid UTF-8 and reachable.
 */
export function unreachable(p: string): boolean {
  return !p.isWellFormed();
}

/**
 * The extended attributes of `p` (not following a symlink), or null when it has none. Throws
 * the library's error, its errno given by `xattrErrno`.
 */
export function readXattrs(lib: XattrLibrary, p: string): Xattrs | null {
  const names = lib.listAttributesSync(p);
  return toXattrs(
    names,
    names.map((n) => lib.getAttributeSync(p, n)),
  );
}

/** `readXattrs` off the main thread (libuv's pool), for a side on a network file system. */
export async function readXattrsAsync(lib: XattrLibrary, p: string): Promise<Xattrs | null> {
  const names = await lib.listAttributes(p);
  return toXattrs(names, await Promise.all(names.map((n) => lib.getAttribute(p, n))));
}

/** Names and their values (null: removed between the list and the read) as a sorted set. */
function toXattrs(names: string[], values: Array<Buffer | null>): Xattrs | null {
  const order = names.map((_, i) => i).sort((i, j) => (names[i]! < names[j]! ? -1 : 1));
  let out: Xattrs | null = null;
  for (const i of order) {
    const v = values[i];
    if (v) (out ??= {})[names[i]!] = v.toString('base64');
  }
  return out;
}

/**
 * Sets each attribute on `p`; returns the ones set (null if none) and the names refused one by
 * one (EPERM: `security.*` and `trusted.*` need root). Throws for anything else, with its errno
 * from `xattrErrno` (ENOTSUP: the file system has none).
 */
export function writeXattrs(
  lib: XattrLibrary,
  p: string,
  x: Xattrs,
): { set: Xattrs | null; refused: string[] } {
  let set: Xattrs | null = null;
  const refused: string[] = [];
  for (const name of Object.keys(x)) {
    try {
      lib.setAttributeSync(p, name, Buffer.from(x[name]!, 'base64'));
      (set ??= {})[name] = x[name]!;
    } catch (e) {
      const code = xattrErrno(e);
      if (code !== 'EPERM' && code !== 'EACCES') throw e;
      refused.push(name);
    }
  }
  return { set, refused };
}

/** Whether two attribute sets are the same (both may be absent). */
export function sameXattrs(a: Xattrs | undefined | null, b: Xattrs | undefined | null): boolean {
  const ak = a ? Object.keys(a) : [];
  const bk = b ? Object.keys(b) : [];
  if (ak.length !== bk.length) return false;
  for (const k of ak) if (a![k] !== b![k]) return false;
  return true;
}

/** What a run tells about attributes it could not keep. */
export interface XattrWarnings {
  warn(rel: string, message: string): void;
}

/**
 * One run's extended attributes, source to destination: read from the source where it has
 * them, written to the destination where it keeps them. A side found without them (ENOTSUP)
 * is not asked again; a destination without them while the source has some is told once per
 * run, not per entry. Only what was written is returned, for the manifest to record.
 */
export class XattrCopy {
  private sourceHas = true;
  private destinationHas = true;
  private sourceSeen = false;
  private unreadable = 0;
  private firstUnreadable = '';

  private constructor(
    private readonly lib: XattrLibrary,
    private readonly warnings: XattrWarnings,
    /** The source is on a network file system: its reads go through the pool. */
    private readonly sourceAsync: boolean,
  ) {}

  /**
   * Nothing is written by this copier any more (the source or the destination was found to
   * keep no attributes): no default ACL of its making is on a destination folder.
   */
  get writesNone(): boolean {
    return !this.sourceHas || !this.destinationHas;
  }

  /** The run's attribute copier; null (with one warning) where the library is missing. */
  static open(enabled: boolean, warnings: XattrWarnings, sourceAsync = false): XattrCopy | null {
    if (!enabled) return null;
    const lib = xattrLibrary();
    if (!lib) {
      warnings.warn(
        '',
        `extended attributes and ACLs not kept: @napi-rs/xattr cannot be loaded (${libraryProblem}); install it, or turn attributes off`,
      );
      return null;
    }
    return new XattrCopy(lib, warnings, sourceAsync);
  }

  /**
   * The source entry's attributes, or null: at once on a local disk (where a call costs
   * microseconds), through the pool on a network file system (where it waits on the server).
   */
  read(rel: string, src: string, cb: (x: Xattrs | null) => void): void {
    if (!this.sourceHas) return cb(null);
    if (unreachable(src)) {
      if (this.unreadable++ === 0) this.firstUnreadable = rel;
      return cb(null);
    }
    if (this.sourceAsync) {
      return void readXattrsAsync(this.lib, src).then(
        (x) => cb(this.seen(x)),
        (e: unknown) => cb(this.unread(rel, e)),
      );
    }
    let x: Xattrs | null;
    try {
      x = this.seen(readXattrs(this.lib, src));
    } catch (e) {
      x = this.unread(rel, e);
    }
    cb(x);
  }

  private seen(x: Xattrs | null): Xattrs | null {
    if (x) this.sourceSeen = true;
    return x;
  }

  private unread(rel: string, e: unknown): null {
    const code = xattrErrno(e);
    if (isUnsupported(code)) this.sourceHas = false;
    else if (code !== 'ENOENT') {
      this.warnings.warn(rel, `extended attributes not read: ${(e as Error).message}`);
    }
    return null;
  }

  /** Writes `x` on the destination entry; what was written, or null. */
  write(rel: string, dst: string, x: Xattrs): Xattrs | null {
    if (!this.destinationHas) return null;
    if (unreachable(dst)) {
      this.warnings.warn(rel, 'extended attributes not kept: the name is not valid UTF-8');
      return null;
    }
    try {
      const { set, refused } = writeXattrs(this.lib, dst, x);
      if (refused.length > 0) {
        this.warnings.warn(
          rel,
          `extended attributes not kept (${refused.join(', ')}): setting them needs root`,
        );
      }
      return set;
    } catch (e) {
      const code = xattrErrno(e);
      if (isUnsupported(code)) {
        this.destinationHas = false;
        this.warnings.warn(
          rel,
          'extended attributes and ACLs not kept: the destination does not support them (told once per run)',
        );
        return null;
      }
      const err = Object.assign(
        new Error(`cannot set extended attributes: ${(e as Error).message}`),
        {
          code,
        },
      );
      throw err;
    }
  }

  /**
   * A new, still empty directory's attributes: all written (so the destination says now
   * whether it keeps them), then its default ACL taken off again until its children are
   * written (they would inherit it). What the directory holds once finished.
   */
  writeDir(rel: string, dst: string, x: Xattrs): { recorded: Xattrs | null; later: Xattrs | null } {
    const set = this.write(rel, dst, x);
    const acl = set?.[DEFAULT_ACL];
    if (acl === undefined) return { recorded: set, later: null };
    this.lib.removeAttributeSync(dst, DEFAULT_ACL);
    return { recorded: set, later: { [DEFAULT_ACL]: acl } };
  }

  /** At the end of the run: entries whose attributes could not be read, told once. */
  finish(): void {
    if (this.unreadable > 0 && this.sourceSeen) {
      this.warnings.warn(
        this.firstUnreadable,
        `extended attributes not read for ${this.unreadable} entr${this.unreadable === 1 ? 'y' : 'ies'} whose names are not valid UTF-8 (this one first)`,
      );
    }
  }
}

/** A directory's default ACL: set after its children, so they do not inherit it. */
export const DEFAULT_ACL = 'system.posix_acl_default';
