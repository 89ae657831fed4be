/**
 * A copied file's mode, made with it where that is safe (a backup's partial) and set after it
 * where not: every mode comes out exact, and the call it spares is spared only where the mode
 * made is the mode wanted.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { copyFile, type CopyMeta } from '../src/copy-file.js';
import { egid, euid, syncOps, umask, type FsOps } from '../src/fs-ops.js';
import { tmpDir } from './fixtures/tmp.js';

/** syncOps, counting its fchmod calls. */
function counting(): { ops: FsOps; fchmods: () => number } {
  let n = 0;
  return {
    ops: {
      ...syncOps,
      fchmod: (fd, mode, cb) => {
        n++;
        syncOps.fchmod(fd, mode, cb);
      },
    },
    fchmods: () => n,
  };
}

function copied(src: string, dst: string, meta: CopyMeta, modeAtCreate: boolean) {
  const { ops, fchmods } = counting();
  return new Promise<{ mode: number; fchmods: number }>((resolve, reject) =>
    copyFile(
      syncOps,
      ops,
      src,
      dst,
      fs.statSync(src).size,
      meta,
      { stopping: () => false, modeAtCreate: () => modeAtCreate },
      (err) =>
        err ? reject(err) : resolve({ mode: fs.statSync(dst).mode & 0o7777, fchmods: fchmods() }),
    ),
  );
}

describe('a copied file’s mode', () => {
  let dir = '';
  let src = '';
  beforeEach(() => {
    dir = tmpDir('efs-backup-copy-mode-');
    src = path.join(dir, 'source');
    fs.writeFileSync(src, 'some bytes\n');
  });
  const meta = (mode: number): CopyMeta => ({
    mode,
    uid: euid,
    gid: egid,
    atime: 1,
    mtime: 2,
    sparse: false,
  });
  let n = 0;

  it.each([0o644, 0o600, 0o755, 0o700, 0o640, 0o200])(
    '%o, made with it in a backup (no fchmod); set after it in a restore',
    async (mode) => {
      // These are the modes the umask leaves as they are (022 or 002, as hosts have it).
      expect(mode & umask, `umask ${umask.toString(8)}`).toBe(0);
      const made = await copied(src, path.join(dir, `f${++n}`), meta(mode), true);
      expect(made).toEqual({ mode, fchmods: 0 });
      const after = await copied(src, path.join(dir, `f${++n}`), meta(mode), false);
      expect(after).toEqual({ mode, fchmods: 1 });
    },
  );

  it.each([
    [0o4755, 'setuid'],
    [0o2755, 'setgid'],
    [0o1777, 'sticky'],
    [0o444, 'not writable by its owner'],
    [0o000, 'no bits at all'],
    [0o666 | umask, 'bits the umask takes'],
  ])('%o (%s): set after it, exact', async (mode) => {
    const r = await copied(src, path.join(dir, `f${++n}`), meta(mode), true);
    expect(r).toEqual({ mode, fchmods: 1 });
  });

  it.skipIf(euid !== 0)(
    'another owner (needs root): made 0600 and set after the chown, as ever',
    async () => {
      const r = await copied(src, path.join(dir, `f${++n}`), { ...meta(0o644), uid: 1234 }, true);
      expect(r).toEqual({ mode: 0o644, fchmods: 1 });
      expect(fs.statSync(path.join(dir, `f${n}`)).uid).toBe(1234);
    },
  );
});
