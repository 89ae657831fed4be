/**
 * A committed snapshot must survive a power cut: before the rename that makes the snapshot
 * exist, the data of every file written must be on disk: either one syncfs() of the
 * destination, or an fsync()/fdatasync() per copied file. Seen from outside with strace.
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
  sourceAndDestination,
} from './harness.js';

const skip = skipReason('strace', 'rsync');
let base = '';
afterEach(() => cleanup(base));

const TRACE = 'trace=fsync,fdatasync,syncfs,sync_file_range,rename,renameat,renameat2';

describe.skipIf(skip)('durable commit', () => {
  it('syncfs, or one fsync per copied file, before the rename of the partial', () => {
    let src: string, dst: string;
    ({ base, src, dst } = sourceAndDestination('efs-faults-durable-', 300));
    const out = path.join(base, 'strace.out');

    const r = backup(src, dst, {
      wrapper: ['strace', '-f', '-qq', '-e', TRACE, '-o', out],
      timeoutMs: 90_000,
    });
    expect(r.status, describeRun(r)).toBe(0);
    expect(rsyncDiff(src, latestDir(dst))).toEqual([]);
    expect(Number(r.json?.NumberOfFilesTransferred)).toBeGreaterThanOrEqual(300);
    // The regular files written (the record's count includes the symlink).
    const copied = (fs.readdirSync(src, { recursive: true }) as string[]).filter((n) =>
      fs.lstatSync(path.join(src, n)).isFile(),
    ).length;
    expect(copied).toBe(300);

    // "PID call(args..." lines; an interrupted call shows up again as "<... call resumed>".
    const calls = fs
      .readFileSync(out, 'utf8')
      .split('\n')
      .map((l) => /^\d+\s+(\w+)\((.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ call: m[1]!, args: m[2]! }));
    const commit = calls.findIndex((c) => c.call.startsWith('rename') && /\.partial"/.test(c.args));
    expect(commit, 'no rename of the .partial directory in the trace').toBeGreaterThanOrEqual(0);
    const before = calls.slice(0, commit);
    const syncfs = before.filter((c) => c.call === 'syncfs').length;
    const fsyncs = before.filter((c) => c.call === 'fsync' || c.call === 'fdatasync').length;
    const summary = `${copied} files copied; before the commit: ${syncfs} syncfs, ${fsyncs} fsync/fdatasync`;
    expect(syncfs > 0 || fsyncs >= copied, summary).toBe(true);
  });
});
