// The tools a user would run instead of efs-backup, each as the shell command it is.
// A peer is { name, full(src, dst), incremental(src, prev, dst), restore?(snap, dst) }.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(repo, 'packages/cli/bin/efs-backup.cjs');
const q = (s) => `'${s.replace(/'/g, `'\\''`)}'`;
// --efs-args '...': extra options for efs-backup's backups (e.g. --no-xattrs), to measure them.
const at = process.argv.indexOf('--efs-args');
const extra = at > 0 ? ` ${process.argv[at + 1]}` : '';

/** efs-backup: dst is the destination; snapshots accumulate under it (retain is large). */
export const efsBackup = {
  name: 'efs-backup',
  full: (src, dst) =>
    `node ${q(cli)} backup --source ${q(src)} --destination ${q(dst)} --retain 1000${extra}`,
  incremental: (src, _prev, dst) =>
    `node ${q(cli)} backup --source ${q(src)} --destination ${q(dst)} --retain 1000${extra}`,
  restore: (dst, target) =>
    `node ${q(cli)} restore --destination ${q(dst)} --snapshot latest --target ${q(target)}`,
};

export const rsyncLinkDest = {
  name: 'rsync -a --link-dest',
  full: (src, dst) => `rsync -a --numeric-ids ${q(src)}/ ${q(dst)}/`,
  incremental: (src, prev, dst) =>
    `rsync -a --numeric-ids --link-dest=${q(prev)} ${q(src)}/ ${q(dst)}/`,
  restore: (snap, target) => `rsync -a --numeric-ids ${q(snap)}/ ${q(target)}/`,
};

/** rsnapshot's way: hard-link copy of the previous snapshot, then rsync --delete into it. */
export const rsnapshotWay = {
  name: 'rsnapshot (cp -al + rsync --delete)',
  full: (src, dst) => `rsync -a --numeric-ids --delete ${q(src)}/ ${q(dst)}/`,
  incremental: (src, prev, dst) =>
    `cp -al ${q(prev)} ${q(dst)} && rsync -a --numeric-ids --delete ${q(src)}/ ${q(dst)}/`,
};

/** What the original AWS solution ran: fpsync (fpart + parallel rsync), 16 jobs per core. */
export function fpsync(jobs) {
  // fpsync recurses itself and adds --delete with -E; -r and --delete are refused in -o.
  const opts = q('-lptgoD --numeric-ids');
  return {
    name: `fpsync -n ${jobs}`,
    full: (src, dst) => `fpsync -n ${jobs} -E -o ${opts} ${q(src)}/ ${q(dst)}/`,
    incremental: (src, prev, dst) =>
      `cp -al ${q(prev)} ${q(dst)} && fpsync -n ${jobs} -E -o ${opts} ${q(src)}/ ${q(dst)}/`,
  };
}

/** Lower bounds: the least work any tool must do. */
export const lowerBound = {
  name: 'lower bound (cp -a; find -printf + cp -al)',
  full: (src, dst) => `cp -a ${q(src)} ${q(dst)}`,
  incremental: (src, prev, dst) =>
    `find ${q(src)} -printf '%p %s %T@ %m %U %G\\n' >/dev/null && cp -al ${q(prev)} ${q(dst)}`,
  restore: (snap, target) => `cp -a ${q(snap)} ${q(target)}`,
};
