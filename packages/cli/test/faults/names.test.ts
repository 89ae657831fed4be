/**
 * Names are bytes on Linux: a file, a directory and a link target that are not UTF-8 must be
 * backed up, restored and listed as they are, and never confused with the valid UTF-8 name
 * that holds U+FFFD (the replacement character a lossy decoding would make of them).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BIN,
  backup,
  cleanup,
  describeRun,
  latestDir,
  restoredDiff,
  rsyncDiff,
  skipReason,
  smallTree,
  tempDir,
  verifyClean,
} from './harness.js';

const skip = skipReason('rsync');
let base = '';
afterEach(() => cleanup(base));

/** `dir/` + raw bytes, as a Buffer path. */
const bytesPath = (dir: string, ...bytes: number[]): Buffer =>
  Buffer.concat([Buffer.from(dir + '/'), Buffer.from(bytes)]);

function makeSource(src: string): void {
  smallTree(src, 10);
  // n\xff: not UTF-8. n\uFFFD: valid UTF-8, what a lossy decoding of n\xff would give.
  fs.writeFileSync(bytesPath(src, 0x6e, 0xff), 'latin1 name\n');
  fs.writeFileSync(path.join(src, 'n\uFFFD'), 'replacement character name\n');
  // A directory whose name is not UTF-8 (d\xe9, latin1 "dé"), holding files.
  const d = bytesPath(src, 0x64, 0xe9);
  fs.mkdirSync(d);
  fs.writeFileSync(Buffer.concat([d, Buffer.from('/inside.txt')]), 'in a latin1 directory\n');
  fs.writeFileSync(Buffer.concat([d, Buffer.from('/caf'), Buffer.from([0xe9])]), 'café\n');
  // A symlink whose target is not UTF-8.
  fs.symlinkSync(Buffer.from([0x6e, 0xff]), path.join(src, 'to-latin1'));
}

describe.skipIf(skip)('names that are not UTF-8', () => {
  it('backup Success with no warning, rsync-clean, restore clean, ls escapes the name', () => {
    base = tempDir('efs-faults-names-');
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    makeSource(src);
    fs.mkdirSync(dst);

    const r = backup(src, dst);
    expect(r.status, describeRun(r)).toBe(0);
    expect(r.json?.Status, describeRun(r)).toBe('Success');
    expect(r.json?.NumberOfWarnings, describeRun(r)).toBe(0);
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    const v = verifyClean(dst);
    expect(v.ok, v.output).toBe(true);

    const target = path.join(base, 'restored');
    expect(restoredDiff(src, dst, target)).toEqual([]);

    // ls, read as bytes: the bad name shows as n\xff, on one line, apart from n\uFFFD.
    const ls = spawnSync(
      process.execPath,
      [BIN, 'ls', '--destination', dst, '--snapshot', 'latest'],
      {
        env: { ...process.env, EFS_BACKUP_DEBUG: '' },
      },
    );
    const out = ls.stdout.toString('utf8');
    expect(ls.status, `${out}\n${ls.stderr.toString()}`).toBe(0);
    const lines = out.split('\n');
    // The name is the last field (a symlink's line ends in ` -> target`).
    const named = (re: RegExp): string[] => lines.filter((l) => re.test(l.split(' -> ')[0]!));
    const msg = `ls output:\n${out}`;
    expect(named(/(^|[\s"'/])n\\xff["']?$/), msg).toHaveLength(1);
    expect(named(/(^|[\s"'/])n\uFFFD["']?$/), msg).toHaveLength(1);
    expect(named(/(^|[\s"'/])d\\xe9\/?["']?$/), msg).toHaveLength(1);
    expect(
      lines.filter((l) => /to-latin1 -> ["']?n\\xff["']?$/.test(l)),
      msg,
    ).toHaveLength(1);
    // No raw byte that is not UTF-8 reaches the terminal.
    expect(Buffer.from(out, 'utf8').equals(ls.stdout), 'ls printed bytes that are not UTF-8').toBe(
      true,
    );
  });
});
