/**
 * The shim and harness themselves: that a FAULTFS rule does fail (or delay) the call it names,
 * and only that one, in a real Node process; a fault test that passes because the shim did
 * nothing would prove nothing.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, rsyncDiff, shimPath, skipReason, tempDir } from './harness.js';

const noShim = skipReason('faultfs');

/** Runs `node -e script dir` under the shim with `rules`; returns stdout lines. */
function node(rules: string, script: string, dir: string): string[] {
  const r = spawnSync(process.execPath, ['-e', script, dir], {
    encoding: 'utf8',
    env: { ...process.env, UV_USE_IO_URING: '0', LD_PRELOAD: shimPath()!, FAULTFS: rules },
    timeout: 20_000,
  });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim().split('\n');
}

const tryCall = `const fs = require('fs'), p = require('path'), d = process.argv[1];
const t = (name, f) => { try { f(); console.log(name + ' ok'); } catch (e) { console.log(name + ' ' + e.code); } };`;

let dir = '';
afterEach(() => cleanup(dir));

describe.skipIf(noShim)('faultfs.so', () => {
  it('fails open with the errno named, only for paths holding the substring', () => {
    dir = tempDir();
    const out = node(
      `open:${dir}/x:EIO`,
      `${tryCall} t('x', () => fs.openSync(p.join(d, 'x1'), 'w')); t('y', () => fs.openSync(p.join(d, 'y1'), 'w'));`,
      dir,
    );
    expect(out).toEqual(['x EIO', 'y ok']);
    expect(fs.existsSync(path.join(dir, 'x1'))).toBe(false);
  });

  it('skip=N lets N calls through, times=M acts M times', () => {
    dir = tempDir();
    const out = node(
      `open:${dir}/f:ENOSPC:skip=1:times=2`,
      `${tryCall} for (let i = 0; i < 4; i++) t('o' + i, () => fs.openSync(p.join(d, 'f' + i), 'w'));`,
      dir,
    );
    expect(out).toEqual(['o0 ok', 'o1 ENOSPC', 'o2 ENOSPC', 'o3 ok']);
  });

  it('fails writes (sync and thread-pool) by the path the fd was opened with', () => {
    dir = tempDir();
    const out = node(
      'write:.journal:EIO',
      `${tryCall} const a = fs.openSync(p.join(d, 'x.journal'), 'w'), b = fs.openSync(p.join(d, 'plain'), 'w');
       t('journal', () => fs.writeSync(a, 'data')); t('plain', () => fs.writeSync(b, 'data'));
       fs.closeSync(a); const c = fs.openSync(p.join(d, 'plain2'), 'w');
       fs.write(fs.openSync(p.join(d, 'y.journal'), 'a'), 'z', (e) => console.log('async ' + (e ? e.code : 'ok')));`,
      dir,
    );
    expect(out).toEqual(['journal EIO', 'plain ok', 'async EIO']);
  });

  it('fails rename, link, mkdir, symlink, unlink, fsync; delays statx as libuv calls it', () => {
    dir = tempDir();
    fs.writeFileSync(path.join(dir, 'a'), 'a');
    const out = node(
      'rename:.partial:EIO;link:/a:EMLINK;mkdir:/m:EACCES;symlink:/s:EPERM;unlink:/a:EBUSY;fsync:/a:EIO;statx:/a:delay=400',
      `${tryCall} const f = p.join(d, 'a');
       t('rename', () => fs.renameSync(f, p.join(d, '.x.partial')));
       t('link', () => fs.linkSync(f, p.join(d, 'b')));
       t('mkdir', () => fs.mkdirSync(p.join(d, 'm')));
       t('symlink', () => fs.symlinkSync('a', p.join(d, 's')));
       t('unlink', () => fs.unlinkSync(f));
       t('fsync', () => fs.fsyncSync(fs.openSync(f, 'r')));
       const t0 = Date.now(); fs.lstat(f, () => console.log('statx ' + (Date.now() - t0 >= 390 ? 'delayed' : 'fast')));`,
      dir,
    );
    expect(out).toEqual([
      'rename EIO',
      'link EMLINK',
      'mkdir EACCES',
      'symlink EPERM',
      'unlink EBUSY',
      'fsync EIO',
      'statx delayed',
    ]);
  });
});

describe('rsyncDiff', () => {
  it.skipIf(skipReason('rsync'))('is empty for equal trees and names what differs', () => {
    dir = tempDir();
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    for (const d of [a, b]) {
      fs.mkdirSync(d);
      fs.writeFileSync(path.join(d, 'same'), 'x');
      fs.utimesSync(path.join(d, 'same'), 1000, 1000);
    }
    fs.utimesSync(a, 1000, 1000);
    fs.utimesSync(b, 1000, 1000);
    expect(rsyncDiff(a, b)).toEqual([]);
    fs.writeFileSync(path.join(b, 'same'), 'y');
    fs.utimesSync(path.join(b, 'same'), 1000, 1000);
    fs.writeFileSync(path.join(b, 'extra'), '');
    const d = rsyncDiff(a, b);
    expect(d.some((l) => l.endsWith(' same'))).toBe(true);
    expect(d.some((l) => /deleting\s+extra$/.test(l))).toBe(true);
  });
});
