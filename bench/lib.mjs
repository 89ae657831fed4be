// What the benchmark suites share: the environment every tool runs in, waiting for a quiet disk
// between timed runs, and mounting latencyfs.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The efs-backup command as a user runs it: the CLI package's bin, the bundle it loads. */
export const cli = path.join(here, '..', 'packages/cli/bin/efs-backup.cjs');

// Every tool runs in the same environment, minus NODE_EXTRA_CA_CERTS: some hosts (this one) set
// it, and Node then reads and parses that certificate bundle before any script runs (30 ms per
// start here), which no plain EC2 instance or laptop pays and no backup needs.
export const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;

export const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

export const rm = (p) => fs.rmSync(p, { recursive: true, force: true });

export const sh = (cmd) =>
  execFileSync('bash', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });

/** Discard requests the disks have completed (/proc/diskstats, field 15). */
function discards() {
  let n = 0;
  for (const line of fs.readFileSync('/proc/diskstats', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 18) n += Number(f[14]);
  }
  return n;
}

/**
 * Waits until the disk is quiet, so no run pays for the one before it: nothing dirty left to
 * write back, and no discards going on. This machine's ext4 is mounted with `discard`: after a
 * tree is deleted it trims the freed blocks for a while (minutes after a million files), and
 * creating files meanwhile is several times slower. The quiet second also lets latencyfs's
 * one-second kernel caches expire (set-up and clean-up bypass the mount).
 */
export function settle() {
  spawnSync('sync');
  for (let i = 0; i < 600; i++) {
    const info = fs.readFileSync('/proc/meminfo', 'utf8');
    const kib = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(info)?.[1] ?? 0);
    if (kib('Dirty') + kib('Writeback') < 16 * 1024) break;
    sleep(1000);
  }
  // ext4 sends its discards at each journal commit (every 5 s): once some were seen, the
  // disk counts as quiet only after more than that without any.
  let before = discards();
  let busy = false;
  for (let quiet = 0, i = 0; i < 1000; i++) {
    sleep(1100);
    const now = discards();
    if (now !== before) {
      busy = true;
      quiet = 0;
    } else if (!busy || (quiet += 1100) > 6000) break;
    before = now;
  }
}

/**
 * Mounts latencyfs over `backing` at `mnt` (building it first if needed), `latencyUs` per call;
 * returns the function that unmounts it.
 */
export function mountLatencyfs(backing, mnt, latencyUs) {
  fs.mkdirSync(backing, { recursive: true });
  fs.mkdirSync(mnt, { recursive: true });
  spawnSync('fusermount3', ['-u', mnt]);
  sh(`make -s -C ${path.join(here, 'latencyfs')}`);
  sh(
    `${path.join(here, 'latencyfs/latencyfs')} ${backing} ${mnt} --delay-us=${latencyUs} ` +
      // FUSE's default one-second attribute and entry caches, as an NFS client caches them.
      `-o max_threads=256,max_idle_threads=256,allow_other,default_permissions`,
  );
  return () => spawnSync('fusermount3', ['-u', mnt]);
}
