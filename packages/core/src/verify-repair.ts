import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { DamageRecord } from './damage.js';
import { hashFile } from './digest.js';
import { asyncOps, CHUNK, readlinkSync, timeArg } from './fs-ops.js';
import type { ManifestEntry } from './manifest.js';
import { splitNs } from './manifest-format.js';
import { bytesOfName, fsPath } from './names.js';
import { differences } from './restore-differences.js';
import {
  isUnsupported,
  readXattrs,
  sameXattrs,
  unreachable,
  writeXattrs,
  xattrErrno,
  xattrLibrary,
  type Xattrs,
} from './xattrs.js';

const { O_RDONLY, O_WRONLY, O_NOFOLLOW } = fs.constants;

/**
 * `verify --repair`: a damaged entry of a snapshot put back as its manifest says, IN PLACE, so
 * that every snapshot sharing its inode is healed at once. Content comes from the live source,
 * and only when the source still holds the manifest's digest at that path; mode, owner, times
 * and extended attributes come from the manifest. Each repair is confirmed by checking the
 * entry again (re-hashing its content). Nothing else is touched.
 */
export interface RepairItem {
  record: DamageRecord;
  entry: ManifestEntry;
  /** The entry in the snapshot. */
  path: string;
  /** The same path in the live source. */
  sourcePath: string;
}

export type RepairOutcome = { repaired: true } | { repaired: false; why: string };

/**
 * Repairs each damaged inode once (names of one inode, in one snapshot or several, share the
 * outcome), one at a time: damage is rare, and a repair must not race another. `lost` says
 * why the set's lock is no longer held (nothing more is then written).
 */
export async function repairDamage(
  items: RepairItem[],
  lost: () => string | null,
): Promise<Map<RepairItem, RepairOutcome>> {
  const byInode = new Map<string, RepairItem[]>();
  for (const it of items) {
    const list = byInode.get(it.record.ino) ?? [];
    list.push(it);
    byInode.set(it.record.ino, list);
  }
  const out = new Map<RepairItem, RepairOutcome>();
  for (const group of byInode.values()) {
    // Content damage is the one to repair when any name of the inode has it.
    const it = group.find((g) => g.record.what === 'content') ?? group[0]!;
    const why = lost();
    let outcome: RepairOutcome;
    if (why !== null) outcome = { repaired: false, why: `not written: the lock was lost (${why})` };
    else {
      try {
        outcome = await repairOne(it);
      } catch (e) {
        outcome = { repaired: false, why: (e as Error).message };
      }
    }
    for (const g of group) out.set(g, outcome);
  }
  return out;
}

const hash = (p: string): Promise<string> =>
  new Promise((resolve, reject) =>
    hashFile(asyncOps, p, (err, digest) => (err ? reject(err) : resolve(digest))),
  );

const lstat = (p: string): Promise<fs.BigIntStats> => fsp.lstat(fsPath(p), { bigint: true });

function errorCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? '';
}

/**
 * Whether the directories on the way to the entry are the snapshot's own: none replaced by a
 * symlink leading out of it (nothing is written through one).
 */
function onItsOwnPath(it: RepairItem): boolean {
  const rel = it.record.path;
  const up = rel.lastIndexOf('/');
  if (rel === '.' || up < 0) return true;
  const snapshotRoot = it.path.slice(0, it.path.length - rel.length - 1);
  const real = (p: string): Buffer => fs.realpathSync(fsPath(p), { encoding: 'buffer' });
  try {
    const want = Buffer.concat([real(snapshotRoot), bytesOfName(`/${rel.slice(0, up)}`)]);
    return real(`${snapshotRoot}/${rel.slice(0, up)}`).equals(want);
  } catch {
    return false;
  }
}

async function repairOne(it: RepairItem): Promise<RepairOutcome> {
  const { record, entry: e } = it;
  if (!onItsOwnPath(it))
    return { repaired: false, why: "a directory on its way is no longer the snapshot's own" };
  let st: fs.BigIntStats;
  try {
    st = await lstat(it.path);
  } catch {
    return { repaired: false, why: 'it is no longer in the snapshot' };
  }
  if (String(st.ino) !== record.ino)
    return { repaired: false, why: 'it was replaced in the snapshot since it was checked' };
  const atime = timeArg(...splitNs(st.atimeNs));
  if (record.what === 'content') {
    if (!st.isFile()) return { repaired: false, why: 'it is no longer a regular file' };
    let src: fs.BigIntStats;
    try {
      src = await lstat(it.sourcePath);
    } catch (err) {
      if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR')
        return { repaired: false, why: 'the source no longer has it' };
      return { repaired: false, why: `the source cannot be read: ${(err as Error).message}` };
    }
    if (!src.isFile()) return { repaired: false, why: 'the source is no longer a regular file' };
    let digest: string;
    try {
      digest = await hash(it.sourcePath);
    } catch (err) {
      return { repaired: false, why: `the source cannot be read: ${(err as Error).message}` };
    }
    if (digest !== record.digest)
      return {
        repaired: false,
        why: 'the source changed since the snapshot (its content is not the one the manifest records)',
      };
    await rewriteInPlace(it.path, it.sourcePath, st);
  }
  await putMetadata(it.path, e, atime);
  const left = await stillDiffers(it.path, e, record.what === 'content');
  if (left.length > 0)
    return { repaired: false, why: `it still differs after the repair: ${left.join(', ')}` };
  return { repaired: true };
}

/**
 * The source's bytes into the snapshot's inode: opened for writing without O_CREAT (the name
 * must be the damaged inode, never a new one), truncated, written, flushed. A file without
 * write permission (a snapshot's files keep their source's mode) is made writable for the
 * time of the write; `putMetadata` then gives the manifest's mode back.
 */
async function rewriteInPlace(dst: string, src: string, st: fs.BigIntStats): Promise<void> {
  const mode = Number(st.mode) & 0o7777;
  const madeWritable = (mode & 0o200) === 0;
  if (madeWritable) await fsp.chmod(fsPath(dst), mode | 0o200);
  let out: fsp.FileHandle | null = null;
  let input: fsp.FileHandle | null = null;
  try {
    input = await fsp.open(fsPath(src), O_RDONLY | O_NOFOLLOW);
    out = await fsp.open(fsPath(dst), O_WRONLY | O_NOFOLLOW);
    const now = await out.stat({ bigint: true });
    if (now.ino !== st.ino) throw new Error('it was replaced in the snapshot while being repaired');
    await out.truncate(0);
    const buf = Buffer.allocUnsafe(CHUNK);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await input.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      let off = 0;
      while (off < bytesRead) {
        const { bytesWritten } = await out.write(buf, off, bytesRead - off, pos + off);
        off += bytesWritten;
      }
      pos += bytesRead;
    }
    await out.sync();
  } catch (e) {
    if (madeWritable) await fsp.chmod(fsPath(dst), mode).catch(() => undefined);
    throw e;
  } finally {
    await input?.close();
    await out?.close();
  }
}

/** The manifest's attributes on `p`, exactly: others removed. What it could not do, thrown. */
function putXattrs(p: string, want: Xattrs | undefined): void {
  const lib = xattrLibrary();
  if (!lib || unreachable(p)) return;
  let have: Xattrs | null;
  try {
    have = readXattrs(lib, p);
  } catch (e) {
    if (isUnsupported(xattrErrno(e))) return;
    throw e;
  }
  if (sameXattrs(have, want)) return;
  for (const name of Object.keys(have ?? {})) {
    if (want && name in want) continue;
    lib.removeAttributeSync(p, name);
  }
  const todo: Xattrs = {};
  for (const [name, value] of Object.entries(want ?? {}))
    if (have?.[name] !== value) todo[name] = value;
  const { refused } = writeXattrs(lib, p, todo);
  if (refused.length > 0)
    throw new Error(`cannot set the extended attributes ${refused.join(', ')}: that needs root`);
}

/**
 * The manifest's owner, attributes, mode and times on the entry, in that order (a chown
 * clears the setuid bits and file capabilities, an ACL moves the mode's group bits); never
 * following a symlink. The atime is the one the entry had (a manifest keeps none).
 */
async function putMetadata(p: string, e: ManifestEntry, atime: string | number): Promise<void> {
  const b = fsPath(p);
  let st = await lstat(p);
  if (Number(st.uid) !== e.uid || Number(st.gid) !== e.gid) await fsp.lchown(b, e.uid, e.gid);
  putXattrs(p, e.xattrs);
  if (e.kind !== 'l') {
    st = await lstat(p);
    if ((Number(st.mode) & 0o7777) !== (e.mode & 0o7777)) await fsp.chmod(b, e.mode & 0o7777);
  }
  await fsp.lutimes(b, atime, timeArg(e.mtimeSec, e.mtimeNsec));
}

/** What still differs between the entry and its manifest (content re-hashed when asked). */
async function stillDiffers(p: string, e: ManifestEntry, content: boolean): Promise<string[]> {
  const st = await lstat(p);
  const target = e.kind === 'l' && st.isSymbolicLink() ? readlinkSync(p) : null;
  const left = differences(e, st, target);
  const lib = xattrLibrary();
  if (lib && !unreachable(p)) {
    let have: Xattrs | null = null;
    try {
      have = readXattrs(lib, p);
    } catch (err) {
      if (!isUnsupported(xattrErrno(err))) throw err;
    }
    if (!sameXattrs(have, e.xattrs)) left.push('extended attributes');
  }
  if (content && left.length === 0 && (await hash(p)) !== e.data) left.push('content');
  return left;
}
