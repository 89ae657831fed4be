/**
 * `efs-backup restore` run as someone other than root, of entries owned by someone else: each
 * owner that needs root is a warning naming the entry as the target holds it, never a
 * temporary name, and the restore goes on. Needs a build (`npm run build`) and root (to run
 * the CLI as nobody).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dir, fifo, file, sourceAndDestination, symlink } from '../../core/test/fixtures/tree.js';
import { cli, requireBuild, restoreArgs } from './helpers.js';

beforeAll(requireBuild);

const NOBODY = 65534;
const FOREIGN = 4242;

describe('restore as nobody of entries owned by someone else', () => {
  it.skipIf(process.getuid?.() !== 0)(
    'warns "owner not restored" for each, by its name in the target, and restores the rest',
    () => {
      const owned = { uid: FOREIGN, gid: FOREIGN };
      const { base, src, dst } = sourceAndDestination(
        {
          f: file('a file\n', { ...owned, mode: 0o640 }),
          l: symlink('f', owned),
          p: fifo({ ...owned, mode: 0o600 }),
          d: dir({ g: file('g\n', { ...owned, mode: 0o600 }) }, { ...owned, mode: 0o750 }),
        },
        'efs-restore-owners-',
      );
      const b = cli(['backup', '--source', src, '--destination', dst]);
      expect(b.status, b.stderr).toBe(0);
      // nobody reads the set and writes only the target.
      fs.chmodSync(base, 0o755);
      execFileSync('chmod', ['-R', 'a+rX', dst]);
      const target = path.join(base, 'target');
      fs.mkdirSync(target);
      fs.chownSync(target, NOBODY, NOBODY);

      const r = cli(restoreArgs(dst, target), { uid: NOBODY, gid: NOBODY, cwd: '/' });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stdout).toMatch(/^restored .*: 5 created, 1 updated, 0 deleted/m);
      const warned = r.stderr
        .split('\n')
        .filter((l) => l !== '')
        .sort();
      expect(warned).toEqual(
        ['.', 'd', 'd/g', 'f', 'l', 'p']
          .map((n) => `warning: ${n}: owner not restored (needs root)`)
          .sort(),
      );
      expect(fs.readFileSync(path.join(target, 'f'), 'utf8')).toBe('a file\n');
      expect(fs.readFileSync(path.join(target, 'd', 'g'), 'utf8')).toBe('g\n');
      expect(fs.readlinkSync(path.join(target, 'l'))).toBe('f');
      expect(fs.lstatSync(path.join(target, 'p')).isFIFO()).toBe(true);
      for (const [n, mode] of [
        ['f', 0o640],
        ['p', 0o600],
        ['d', 0o750],
        ['d/g', 0o600],
      ] as const) {
        const st = fs.lstatSync(path.join(target, n));
        expect([n, st.mode & 0o7777, st.uid], n).toEqual([n, mode, NOBODY]);
      }
      expect(fs.readdirSync(target).sort()).toEqual(['d', 'f', 'l', 'p']);
      expect(fs.readdirSync(path.join(target, 'd'))).toEqual(['g']);
    },
  );
});
