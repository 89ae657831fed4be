import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { copyFile } from '../src/copy-file.js';
import { hashFile, hashFileSync } from '../src/digest.js';
import { asyncOps, CHUNK, syncOps, type FsOps } from '../src/fs-ops.js';
import { fsPath, nameFromBytes } from '../src/names.js';
import { tmpDir } from './fixtures/tmp.js';

const hashed = (io: FsOps, p: string): Promise<{ digest: string; bytes: number }> =>
  new Promise((resolve, reject) =>
    hashFile(io, p, (err, digest, bytes) => (err ? reject(err) : resolve({ digest, bytes }))),
  );

const copied = (p: string, dst: string): Promise<string> =>
  new Promise((resolve, reject) =>
    copyFile(
      syncOps,
      syncOps,
      p,
      dst,
      fs.statSync(fsPath(p)).size,
      { mode: 0o600, uid: -1, gid: -1, atime: 0, mtime: 0, sparse: false },
      { stopping: () => false, modeAtCreate: () => false },
      (err, r) => (err ? reject(err) : resolve(r!.digest)),
    ),
  );

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return null;
}

describe('the content digest', () => {
  const sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17];

  it.each(sizes)('of %d bytes is the same read either way, and as the copy makes it', async (n) => {
    const dir = tmpDir('efs-digest-');
    // Not UTF-8: the path must reach the system calls as bytes.
    const p = path.join(dir, nameFromBytes(Buffer.from([0x66, 0xff])));
    const data = Buffer.alloc(n, 0);
    for (let i = 0; i < n; i += 4099) data[i] = i & 0xff;
    fs.writeFileSync(fsPath(p), data);
    const expected = createHash('sha256').update(data).digest('base64');
    expect(await hashed(syncOps, p)).toEqual({ digest: expected, bytes: n });
    expect(await hashed(asyncOps, p)).toEqual({ digest: expected, bytes: n });
    expect(hashFileSync(p)).toEqual({ digest: expected, bytes: n });
    expect(await copied(p, path.join(dir, 'copy'))).toBe(expected);
  });

  it('reads to the end of file, one call after another without a stack frame each', () => {
    const p = path.join(tmpDir('efs-digest-'), 'f');
    const data = Buffer.from(Array.from({ length: 200_000 }, (_, i) => i % 251));
    fs.writeFileSync(p, data);
    // Short reads of one byte, answered at once: 200 000 reads before the end of file.
    const oneByte: FsOps = {
      ...syncOps,
      read: (fd, b, _n, at, cb) => syncOps.read(fd, b, 1, at, cb),
    };
    let got: unknown = null;
    hashFile(oneByte, p, (err, digest, bytes) => (got = { err, digest, bytes }));
    expect(got).toEqual({
      err: null,
      digest: createHash('sha256').update(data).digest('base64'),
      bytes: data.length,
    });
  });

  it('does not follow a symlink, and says why it could not read', async () => {
    const dir = tmpDir('efs-digest-');
    fs.writeFileSync(path.join(dir, 'f'), 'x');
    fs.symlinkSync('f', path.join(dir, 'l'));
    await expect(hashed(asyncOps, path.join(dir, 'l'))).rejects.toMatchObject({ code: 'ELOOP' });
    expect(thrown(() => hashFileSync(path.join(dir, 'l')))).toMatchObject({ code: 'ELOOP' });
    expect(thrown(() => hashFileSync(path.join(dir, 'gone')))).toMatchObject({ code: 'ENOENT' });
  });
});
