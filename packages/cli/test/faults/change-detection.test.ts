/**
 * Changes that keep size and mtime: a file rewritten in place with its mtime set back
 * (`touch -r`, `cp -p`, tar extracting over it), and a file replaced by a rename of another
 * with the same size and mtime. Both must reach the next snapshot: the manifest keeps the
 * source's inode number and ctime, which no program can set back.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
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
  tempDir,
  verifyClean,
} from './harness.js';

const skip = skipReason('rsync', 'touch');
let base = '';
afterEach(() => cleanup(base));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Rewrites the set's manifests as version 1 wrote them (entries end at `link`), valid still. */
function asVersion1(dst: string): void {
  const manifests = path.join(dst, 'efs-backup', '.efs-backup', 'manifests');
  for (const name of fs.readdirSync(manifests)) {
    const file = path.join(manifests, name);
    const lines = fs.readFileSync(file, 'utf8').split('\n').slice(0, -2);
    const header = { ...JSON.parse(lines[0]!), version: 1 };
    const body = lines.slice(1).map((l) => {
      const tab = l.indexOf('\t');
      const entries = (JSON.parse(l.slice(tab + 1)) as unknown[][]).map((e) =>
        e.slice(0, 9).concat(typeof e[9] === 'string' ? [e[9]] : []),
      );
      return `${l.slice(0, tab)}\t${JSON.stringify(entries)}`;
    });
    const text = [JSON.stringify(header), ...body].join('\n') + '\n';
    const sum = createHash('sha256').update(text).digest('hex');
    fs.chmodSync(file, 0o600);
    fs.writeFileSync(file, `${text}#sha256 ${sum}\n`);
  }
}

/** Rewrites `p` in place (same size), its mtime set back to the nanosecond. */
function rewriteKeepingMtime(p: string, ref: string): void {
  execFileSync('touch', ['-r', p, ref]);
  const fd = fs.openSync(p, 'r+');
  fs.writeSync(fd, Buffer.from('X'), 0, 1, 0);
  fs.closeSync(fd);
  execFileSync('touch', ['-r', ref, p]);
}

/** A source of `files` small files and an empty destination, in a fresh `base`. */
function sourceAndDestination(prefix: string, files: number): { src: string; dst: string } {
  base = tempDir(prefix);
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  smallTree(src, files);
  fs.mkdirSync(dst);
  return { src, dst };
}

describe.skipIf(skip)('a change that keeps size and mtime', () => {
  it('is backed up: in place with the mtime set back, and a rename over it of a same-size file', async () => {
    const { src, dst } = sourceAndDestination('efs-faults-change-', 12);
    const inPlace = path.join(src, 'd0', 'f0.txt');
    const renamed = path.join(src, 'd2', 'f2.txt');
    const first = backup(src, dst);
    expect(first.json?.Status, describeRun(first)).toBe('Success');

    await sleep(20); // past the clock tick of the first ctimes
    const ref = path.join(base, 'ref');
    fs.writeFileSync(ref, '');
    const keep = (p: string, write: () => void): void => {
      const st = fs.statSync(p, { bigint: true });
      const before = fs.readFileSync(p);
      execFileSync('touch', ['-r', p, ref]);
      write();
      execFileSync('touch', ['-r', ref, p]); // the mtime set back, to the nanosecond
      const now = fs.statSync(p, { bigint: true });
      expect(now.size).toBe(st.size);
      expect(now.mtimeNs).toBe(st.mtimeNs);
      expect(fs.readFileSync(p)).not.toEqual(before);
    };
    keep(inPlace, () => {
      const fd = fs.openSync(inPlace, 'r+');
      fs.writeSync(fd, Buffer.from('X'), 0, 1, 0);
      fs.closeSync(fd);
    });
    keep(renamed, () => {
      const other = path.join(src, 'd2', '.new');
      const bytes = fs.readFileSync(renamed);
      bytes[0] = bytes[0]! ^ 1;
      fs.writeFileSync(other, bytes);
      fs.renameSync(other, renamed);
    });

    const second = backup(src, dst);
    expect(second.json?.Status, describeRun(second)).toBe('Success');
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    expect(second.json?.NumberOfFilesTransferred, describeRun(second)).toBe(2);
    const v = verifyClean(dst);
    expect(v.ok, v.output).toBe(true);
  });

  it('an older manifest without inode and ctime is judged as before, once; the next run has them', () => {
    const { src, dst } = sourceAndDestination('efs-faults-change-v1-', 6);
    expect(backup(src, dst).json?.Status).toBe('Success');
    asVersion1(dst);

    const again = backup(src, dst);
    expect(again.json?.Status, describeRun(again)).toBe('Success');
    expect(again.json?.NumberOfFilesTransferred, describeRun(again)).toBe(0);
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    const manifests = path.join(dst, 'efs-backup', '.efs-backup', 'manifests');
    const newest = fs.readdirSync(manifests).sort().at(-1)!;
    expect(fs.readFileSync(path.join(manifests, newest), 'utf8')).toMatch(/"\d+",\d+,\d+\]/);
  });

  it('--checksum finds a change that every stat field the manifest knows hides, and copies it', () => {
    const { src, dst } = sourceAndDestination('efs-faults-change-checksum-', 6);
    expect(backup(src, dst).json?.Status).toBe('Success');
    // A manifest that knows size and mtime only (version 1): a rewrite keeping them is hidden.
    asVersion1(dst);
    rewriteKeepingMtime(path.join(src, 'd2', 'f2.txt'), path.join(base, 'ref'));
    const plain = backup(src, dst);
    expect(plain.json?.Status, describeRun(plain)).toBe('Success');
    expect(rsyncDiff(src, latestDir(dst))).toEqual(['>fc........ d2/f2.txt']);
    asVersion1(dst);

    const r = backup(src, dst, {}, ['--checksum']);
    expect(r.json?.Status, describeRun(r)).toBe('Success');
    expect(r.json?.NumberOfFilesChangedByChecksum, describeRun(r)).toBe(1);
    expect(r.json?.Message).toMatch(/1 changed file\(s\) found by checksum/);
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    const v = verifyClean(dst);
    expect(v.ok, v.output).toBe(true);
  });
});
