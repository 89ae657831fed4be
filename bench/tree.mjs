// Deterministic synthetic trees for benchmarks: the same seed gives the same tree.
import fs from 'node:fs';
import path from 'node:path';

/** A small, fast, seeded PRNG (mulberry32). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Size mix (bytes): most files small, a tail of large ones; about 38 KB a file on average,
 * which gives 20 000 files ~ 756 MB, the mix of the benchmark issue.
 */
export const MIXES = {
  mixed: [
    [0.6, 0, 8 * 1024],
    [0.3, 8 * 1024, 64 * 1024],
    [0.095, 64 * 1024, 384 * 1024],
    [0.005, 512 * 1024, 1536 * 1024],
  ],
  small: [[1, 0, 4 * 1024]],
};

function pickSize(r, mix) {
  let x = r();
  for (const [p, lo, hi] of mix) {
    if (x < p) return Math.floor(lo + r() * (hi - lo));
    x -= p;
  }
  const last = mix[mix.length - 1];
  return last[2];
}

/**
 * Writes `files` files under `root`, `perDir` to a directory, directories `fanout` wide.
 * Returns { files, dirs, bytes, paths } with paths relative to root.
 */
export function makeTree(root, { files, seed = 1, mix = 'mixed', perDir = 50, fanout = 10 }) {
  const r = rng(seed);
  const pool = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < pool.length; i += 4) pool.writeUInt32LE((r() * 4294967296) >>> 0, i);
  fs.mkdirSync(root, { recursive: true });
  const paths = [];
  let bytes = 0;
  let dirs = 0;
  const dirFor = (i) => {
    const d = Math.floor(i / perDir);
    const parts = [];
    let n = d;
    do {
      parts.unshift(`d${n % fanout}`);
      n = Math.floor(n / fanout);
    } while (n > 0);
    return parts.join('/');
  };
  let lastDir = null;
  for (let i = 0; i < files; i++) {
    const dir = dirFor(i);
    if (dir !== lastDir) {
      fs.mkdirSync(path.join(root, dir), { recursive: true });
      dirs++;
      lastDir = dir;
    }
    const size = pickSize(r, MIXES[mix]);
    const rel = `${dir}/f${i}.dat`;
    const off = Math.floor(r() * (pool.length - size - 16));
    const fd = fs.openSync(path.join(root, rel), 'w');
    if (size > 0) {
      const header = Buffer.from(`${i}:`);
      fs.writeSync(fd, header, 0, Math.min(header.length, size), 0);
      if (size > header.length) fs.writeSync(fd, pool, off, size - header.length, header.length);
    }
    fs.closeSync(fd);
    paths.push(rel);
    bytes += size;
  }
  return { files, dirs, bytes, paths };
}

/** Changes 1% of files, deletes 0.5%, adds 0.5% (the incremental-with-changes scenario). */
export function churn(root, tree, seed = 2) {
  const r = rng(seed);
  const n = tree.paths.length;
  for (let k = 0; k < Math.ceil(n * 0.01); k++) {
    const p = path.join(root, tree.paths[Math.floor(r() * n)]);
    if (!fs.existsSync(p)) continue;
    // The source is a hard-linked copy of the cached tree: a new inode first, so the change
    // stays in this copy instead of accumulating in the cache run after run.
    fs.copyFileSync(p, `${p}.churn`);
    fs.renameSync(`${p}.churn`, p);
    fs.appendFileSync(p, `changed ${k}\n`);
  }
  for (let k = 0; k < Math.ceil(n * 0.005); k++) {
    fs.rmSync(path.join(root, tree.paths[Math.floor(r() * n)]), { force: true });
  }
  for (let k = 0; k < Math.ceil(n * 0.005); k++) {
    const dir = path.dirname(tree.paths[Math.floor(r() * n)]);
    fs.writeFileSync(path.join(root, dir, `added-${seed}-${k}.dat`), `added ${k}\n`.repeat(100));
  }
}
