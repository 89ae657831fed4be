/**
 * Opt-in: a real system tree (`EFS_BACKUP_SYSTEM_TREE=/usr npx vitest run
 * packages/cli/test/system-tree.test.ts`) backed up and restored, each judged by
 * `rsync -aHAXn --numeric-ids`: hard links, file capabilities, ACLs and every other attribute
 * kept. Minutes and gigabytes, so never part of `npm test`.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  backup,
  cleanup,
  describeRun,
  latestDir,
  runCli,
  skipReason,
  tempDir,
} from './faults/harness.js';

const tree = process.env.EFS_BACKUP_SYSTEM_TREE;
const skip = !tree ? 'set EFS_BACKUP_SYSTEM_TREE (e.g. /usr) to run it' : skipReason('rsync');
if (skip) console.log(`skipped: system tree test: ${skip}`);

let base = '';
afterAll(() => cleanup(base));

function rsyncN(from: string, to: string): string[] {
  const out = execFileSync(
    'rsync',
    ['-aHAXn', '--numeric-ids', '--delete', '--itemize-changes', `${from}/`, `${to}/`],
    { maxBuffer: 256 << 20 },
  );
  return out
    .toString('latin1')
    .split('\n')
    .filter((l) => l.trim() !== '');
}

describe.skipIf(skip)(`a real system tree (${tree ?? 'unset'})`, () => {
  it(
    'is backed up and restored whole: rsync -aHAXn finds no difference',
    () => {
      base = tempDir('efs-system-tree-');
      const dst = path.join(base, 'dst');
      execFileSync('mkdir', ['-p', dst]);
      const started = Date.now();
      const r = backup(tree!, dst, { timeoutMs: 30 * 60_000 });
      console.log(`backup of ${tree}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
      expect(r.json?.Status, describeRun(r)).toBe('Success');
      expect(rsyncN(tree!, latestDir(dst))).toEqual([]);

      const target = path.join(base, 'restored');
      const t0 = Date.now();
      const rr = runCli(
        ['restore', '--destination', dst, '--snapshot', 'latest', '--target', target],
        { timeoutMs: 30 * 60_000 },
      );
      console.log(`restore: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      expect(rr.status, describeRun(rr)).toBe(0);
      expect(rsyncN(tree!, target)).toEqual([]);
    },
    60 * 60_000,
  );
});
