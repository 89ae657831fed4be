/**
 * `--max-mibps` and `--max-ops` (and the job keys): the limits are taken, the snapshot is whole
 * under them, and a limit that is not a number above 0 is bad input with nothing written. How
 * well the budget holds is measured by bench/throttle.mjs, not here; the core's throttle tests
 * prove every call on the source goes through it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  dir,
  file,
  rsyncDifferences,
  sourceAndDestination,
} from '../../core/test/fixtures/tree.js';
import { cli, cliJson, fingerprint, requireBuild } from './helpers.js';

beforeAll(requireBuild);

const tree = { 'a.bin': file(Buffer.alloc(300_000, 3)), sub: dir({ 'b.txt': file('b') }) };

describe('a gentle backup', () => {
  it('backs up whole under both limits, from flags and from a job', () => {
    const { base, src, dst } = sourceAndDestination(tree, 'efs-gentle-');
    const { result, json } = cliJson<{ Status: string; Snapshot: string }>([
      'backup',
      '--source',
      src,
      '--destination',
      dst,
      '--max-mibps',
      '0.5',
      '--max-ops',
      '500',
    ]);
    expect(result.status, result.stderr).toBe(0);
    expect(rsyncDifferences(src, path.join(dst, 'efs-backup/latest'))).toEqual([]);
    const cfg = path.join(base, 'efs-backup.yaml');
    fs.writeFileSync(
      cfg,
      `jobs:\n  - { name: gentle, source: ${JSON.stringify(src)}, destination: ${JSON.stringify(dst)}, ` +
        `label: job, schedule: '0 2 * * *', maxMiBps: 1, maxOps: 1000 }\n`,
    );
    fs.writeFileSync(path.join(src, 'c.txt'), 'new');
    const r = cli(['backup', '--job', 'gentle', '--config', cfg]);
    expect(r.status, r.stderr).toBe(0);
    expect(rsyncDifferences(src, path.join(dst, 'job/latest'))).toEqual([]);
    expect(json.Status).toBe('Success');
  });

  it('refuses a limit that is not a number above 0, in a flag or a job, writing nothing', () => {
    const { base, src, dst } = sourceAndDestination(tree, 'efs-gentle-');
    const before = fingerprint(base);
    for (const [flag, v] of [
      ['--max-mibps', '0'],
      ['--max-mibps', 'fast'],
      ['--max-ops', '-5'],
    ]) {
      const r = cli(['backup', '--source', src, '--destination', dst, flag, v]);
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`${flag.slice(2)} must be a number above 0, not "${v}"`);
    }
    expect(fingerprint(base)).toEqual(before);
    const cfg = path.join(base, 'bad.yaml');
    fs.writeFileSync(
      cfg,
      `jobs:\n  - name: gentle\n    source: ${JSON.stringify(src)}\n    destination: ${JSON.stringify(dst)}\n` +
        `    schedule: '0 2 * * *'\n    maxMiBps: 0\n`,
    );
    const before2 = fingerprint(base);
    const r = cli(['backup', '--job', 'gentle', '--config', cfg]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(
      'bad.yaml:6: jobs[0].maxMiBps is 0, but must be a number of MiB per second above 0',
    );
    expect(fingerprint(base)).toEqual(before2);
  });
});
