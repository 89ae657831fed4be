import fs from 'node:fs';
import path from 'node:path';
import { badInput, EfsBackupError, isSystemError } from './errors.js';
import type { ManifestEntry } from './manifest.js';
import { shown } from './names.js';
import { within } from './options.js';
import type { RestoreReport } from './restore-report.js';
import { badName } from './selectors.js';

/** Where a restore writes, as checked before anything is written. */
export interface CheckedTarget {
  /** The target directory: nothing is written outside it. */
  root: string;
  /** Where the restored entry goes: the target itself, or `<target>/<name>` for a file. */
  dst: string;
  /** The target's nearest existing ancestor, whose file system chooses the target's calls. */
  existing: string;
}

/**
 * The target as given is followed (like cp); nothing inside it ever is. Bad input when it is
 * inside the backup set, holds it, or is not a directory.
 */
export function checkTarget(
  given: string,
  setDir: string,
  root: ManifestEntry,
  sub: string,
): CheckedTarget {
  const target = resolveThroughExisting(path.resolve(given));
  const realSet = resolveThroughExisting(setDir);
  if (within(target, realSet)) throw badInput(`target ${given} is inside the backup set ${setDir}`);
  if (within(realSet, target)) {
    throw badInput(
      `target ${given} holds the backup set ${setDir}: restore into a directory beside it`,
    );
  }
  if (fs.existsSync(target) && !fs.statSync(target).isDirectory()) {
    throw badInput(`target ${given} is not a directory`);
  }
  // A file is restored into the target directory under its own name.
  const dst = root.kind === 'd' ? target : path.join(target, path.basename(sub));
  return {
    root: root.kind === 'd' ? dst : path.dirname(dst),
    dst,
    existing: nearestExisting(target),
  };
}

/** The real path of the nearest existing ancestor, with the rest of `p` appended. */
function resolveThroughExisting(p: string): string {
  const existing = nearestExisting(p);
  let real = existing;
  try {
    real = fs.realpathSync(existing);
  } catch {
    /* keep the path as given */
  }
  return path.join(real, path.relative(existing, p));
}

function nearestExisting(p: string): string {
  let cur = p;
  while (!fs.existsSync(cur) && path.dirname(cur) !== cur) cur = path.dirname(cur);
  return cur;
}

/** Temporary names of a restore: `.efs-restore-<pid>-<n>`. */
const TMP_PREFIX = '.efs-restore-';
const TMP_NAME = /^\.efs-restore-(\d+)-(\d+)$/;

/**
 * A temporary file that a killed restore left behind (its process is gone), or one of a
 * restore still running into the same target: never content of the target either way.
 */
export function restoreTemporary(name: string): 'mine' | 'live' | 'leftover' | null {
  if (!name.startsWith(TMP_PREFIX)) return null;
  const m = TMP_NAME.exec(name);
  if (!m) return null;
  const pid = Number(m[1]);
  if (pid === process.pid) return 'mine';
  if (pid <= 0 || !Number.isSafeInteger(pid)) return 'leftover';
  try {
    process.kill(pid, 0);
    return 'live';
  } catch (e) {
    return isSystemError(e, 'EPERM') ? 'live' : 'leftover';
  }
}

/**
 * The target side of a run: whatever the manifest says, nothing is written outside the
 * target's root; each new inode is made under a temporary name of this process first.
 */
export class RestoreTarget {
  private tmpCounter = 0;

  constructor(
    readonly root: string,
    private readonly report: RestoreReport,
  ) {}

  /** `p` is the target's root or a path of plain names below it. */
  inside(p: string): boolean {
    if (p === this.root) return true;
    if (!p.startsWith(`${this.root}/`)) return false;
    return p
      .slice(this.root.length + 1)
      .split('/')
      .every((n) => badName(n) === null);
  }

  /** Fails the run when `p` is not inside the target; true when it is. */
  guard(p: string): boolean {
    if (this.inside(p)) return true;
    this.report.fail(
      new EfsBackupError(
        'FAILED',
        `refusing to write ${shown(p)}: it is not inside the target ${shown(this.root)} (the snapshot's manifest is damaged: run verify)`,
      ),
    );
    return false;
  }

  /** A new temporary name beside `dst`. */
  temporary(dst: string): string {
    return `${path.dirname(dst)}/${TMP_PREFIX}${process.pid}-${++this.tmpCounter}`;
  }
}
