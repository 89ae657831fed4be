/**
 * A path that fits in PATH_MAX (4096 bytes) on the source but not below the destination's
 * longer prefix: that one entry cannot be written, so the run warns about it and backs up all
 * the rest (SuccessWithWarnings), every time, instead of failing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  backup,
  cleanup,
  describeRun,
  latestDir,
  rsyncDiff,
  skipReason,
  smallTree,
  snapshots,
  tempDir,
} from './harness.js';

const skip = skipReason('rsync');
let base = '';
afterEach(() => cleanup(base));

/** `count` nested directory names of `len` bytes each, named c01xxx…, c02xxx…, … */
const chain = (count: number, len: number, tag: string): string[] =>
  Array.from({ length: count }, (_, i) =>
    `${tag}${String(i + 1).padStart(2, '0')}`.padEnd(len, 'x'),
  );

describe.skipIf(skip)('a source path too long for the destination', () => {
  it('warns about that entry, backs up the rest: SuccessWithWarnings, twice', () => {
    base = tempDir('efs-faults-long-');
    const src = path.join(base, 's');
    // The destination sits ~3000 bytes deep.
    const dst = path.join(base, ...chain(15, 200, 'dest'));
    expect(dst.length).toBeGreaterThan(3000);
    fs.mkdirSync(dst, { recursive: true });
    smallTree(src, 20);
    // ~3500 bytes below the source: fine there (< 4096), too long under the destination.
    const deepRel = path.join('long', ...chain(17, 200, 'c'), 'deepfile.txt');
    expect(deepRel.length).toBeGreaterThan(3400);
    expect((src + '/' + deepRel).length).toBeLessThan(4000);
    fs.mkdirSync(path.dirname(path.join(src, deepRel)), { recursive: true });
    fs.writeFileSync(path.join(src, deepRel), 'deep\n');
    // A sibling of the long chain that is short enough, inside the same top directory.
    fs.writeFileSync(path.join(src, 'long', 'short.txt'), 'short\n');

    for (let run = 1; run <= 2; run++) {
      const r = backup(src, dst);
      expect(r.status, `run ${run}: ${describeRun(r)}`).toBe(1);
      expect(r.json?.Status, `run ${run}: ${describeRun(r)}`).toBe('SuccessWithWarnings');
      expect(Number(r.json?.NumberOfWarnings), describeRun(r)).toBeGreaterThanOrEqual(1);
      expect(snapshots(dst), `run ${run}`).toHaveLength(run);
      // The warning names the entry (by its path from the source root) and why.
      const warnings = (r.stderr + r.stdout).split('\n').filter((l) => l.includes('long/c01'));
      expect(
        warnings.length,
        `no warning names the entry: ${describeRun(r)}`,
      ).toBeGreaterThanOrEqual(1);
      expect(r.stderr + r.stdout, describeRun(r)).toMatch(/too long|ENAMETOOLONG/i);
      // Everything else is in the snapshot: only the too-long chain below long/ may be missing.
      expect(rsyncDiff(src, latestDir(dst), ['--exclude=/long/c01*'])).toEqual([]);
      expect(fs.readFileSync(path.join(latestDir(dst), 'long', 'short.txt'), 'utf8')).toBe(
        'short\n',
      );
    }
  });
});
