#!/usr/bin/env node
// Times efs-backup and the tools people use instead, side by side, on the same tree in the same
// run; reports medians and ratios as JSON, a Markdown table and an SVG chart.
//
//   npm run bench                                  all the suites below, one after the other
//   npm run bench -- --files 20000                 local disk, 20 000 files, every scenario
//   npm run bench -- --latency-us 1000 --files 2000   through latencyfs (1 ms per call, like EFS)
//   npm run bench -- --latency-us 1000 --files 2000 --layout src-local   mixed storage (below)
//   npm run bench -- --scale 10000,100000,1000000     time per file and peak RSS of efs-backup
//   npm run bench -- --smoke                        seconds: that the harness works (CI)
//   node bench/workers.mjs                          scale-out: 1, 2, 4 workers (also in the list)
//
// Options: --files N, --reps N, --mix mixed|small, --scenarios full,incremental,churn,prune,restore,
//          --peers efs,rsync,rsnapshot,fpsync,lower, --fpsync-jobs N, --dir D, --out D,
//          --layout both|src-local|dst-local, --efs-args '--no-xattrs' (extra backup options)
//
// --layout (with --latency-us) says which side of the backup sits behind latencyfs; every peer
// runs on the same layout in the same run:
//   both       the source tree and the destination on the latencyfs mount (the default)
//   src-local  the source on the local disk, the destination (where every tool writes its
//              snapshots) on the mount: a local disk or EBS volume backed up onto EFS or NFS
//   dst-local  the source on the mount, the destination on the local disk: EFS backed up
//              onto a local disk or EBS volume
// A mixed layout's results are named after it, e.g. latency-1000us-src-local.{json,md,svg}, so
// they never overwrite latency-1000us.*. Every scenario works on every layout: churn changes the
// source, prune deletes a snapshot on the destination, restore copies one back to the source side.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { env, mountLatencyfs, rm, settle, sh } from './lib.mjs';
import { efsBackup, fpsync, lowerBound, rsnapshotWay, rsyncLinkDest } from './peers.mjs';
import { rewriteReadme, writeReport } from './report.mjs';
import { churn, makeTree } from './tree.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const smoke = process.argv.includes('--smoke');
const latencyUs = Number(arg('latency-us', 0));
const files = Number(arg('files', smoke ? 300 : latencyUs > 0 ? 2000 : 20000));
const reps = Number(arg('reps', smoke ? 1 : latencyUs > 0 ? 1 : 3));
const scenarios = arg('scenarios', 'full,incremental,churn,prune,restore').split(',');
// The latency scenarios of the benchmark issue use small files; the local ones a mixed tree.
const mix = arg('mix', latencyUs > 0 ? 'small' : 'mixed');
const fpsyncJobs = Number(arg('fpsync-jobs', 16 * os.availableParallelism()));
const wanted = arg('peers', smoke ? 'efs,rsync,lower' : 'efs,rsync,rsnapshot,fpsync,lower').split(
  ',',
);
const work = path.resolve(repo, arg('dir', '.bench'));
const out = path.resolve(
  repo,
  arg('out', smoke ? path.join(work, 'smoke-results') : 'bench/results'),
);
const scale = arg('scale', null);
const layout = arg('layout', 'both');
const LAYOUTS = {
  both: 'latencyfs',
  'src-local': 'source local disk → destination latencyfs',
  'dst-local': 'source latencyfs → destination local disk',
};
if (!Object.hasOwn(LAYOUTS, layout)) {
  console.error(`--layout ${layout}: expected one of ${Object.keys(LAYOUTS).join(', ')}`);
  process.exit(2);
}
if (layout !== 'both' && (latencyUs <= 0 || scale)) {
  console.error(`--layout ${layout} puts one side behind latencyfs: it needs --latency-us N`);
  process.exit(2);
}

const peers = [
  ['efs', efsBackup],
  ['rsync', rsyncLinkDest],
  ['rsnapshot', rsnapshotWay],
  ['fpsync', fpsync(fpsyncJobs)],
  ['lower', lowerBound],
]
  .filter(([key]) => wanted.includes(key))
  .map(([, p]) => p);

/** Runs a shell command; returns wall seconds and peak RSS (KiB) of the command. */
function timed(cmd) {
  // The smoke checks that the harness works, not how fast: on a busy disk, waiting for it to
  // go quiet could take minutes per command.
  if (!smoke) settle();
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', 'bash', '-c', cmd], { encoding: 'utf8', env });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  // efs-backup exits 1 for warnings; anything else is a broken benchmark.
  if (r.status !== 0 && !(r.status === 1 && cmd.includes('efs-backup.cjs'))) {
    throw new Error(`${cmd}\nexited ${r.status}: ${r.stderr.slice(-2000)}`);
  }
  const rss = Number(r.stderr.trim().split('\n').pop());
  return { seconds, rssKiB: rss };
}

/**
 * Where the trees live: `srcBase` holds the source, `dstBase` every tool's destination, each a
 * local directory or a latencyfs mount over one (`mnt`, over `backing`), as --layout says. The
 * local side of a mixed layout is a plain directory of the same disk as `backing`, so the cached
 * tree is hard-linked into either.
 */
function stage() {
  fs.mkdirSync(work, { recursive: true });
  if (latencyUs === 0) {
    const base = path.join(work, 'local');
    fs.mkdirSync(base, { recursive: true });
    return { srcBase: base, dstBase: base, mnt: base, backing: base, unmount: () => {} };
  }
  const backing = path.join(work, `latency-backing`);
  const mnt = path.join(work, `latency-mnt`);
  const local = path.join(work, `latency-local`);
  fs.mkdirSync(local, { recursive: true });
  const unmount = mountLatencyfs(backing, mnt, latencyUs);
  return {
    srcBase: layout === 'src-local' ? local : mnt,
    dstBase: layout === 'dst-local' ? local : mnt,
    mnt,
    backing,
    unmount,
  };
}

function main() {
  if (scale) return scaleRun();
  const { srcBase, dstBase, mnt, backing, unmount } = stage();
  // Set-up and clean-up bypass the latency (a path on the local side is already direct).
  const fast = (p) => (p === mnt || p.startsWith(`${mnt}/`) ? backing + p.slice(mnt.length) : p);
  const results = {
    when: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    mode: latencyUs > 0 ? `${LAYOUTS[layout]}, ${latencyUs} µs per call` : 'local disk',
    ...(latencyUs > 0 ? { layout } : {}),
    versions: {
      node: process.version,
      rsync: execFileSync('rsync', ['--version'], { encoding: 'utf8' }).split('\n')[0],
      fpart:
        (({ stdout, stderr }) => `${stdout}${stderr}`.split('\n')[0])(
          spawnSync('fpart', ['-V'], { encoding: 'utf8' }),
        ) || 'fpart not installed',
    },
    reps,
    scenarios: {},
  };
  try {
    const srcBacking = path.join(backing, `src-${mix}-${files}`);
    if (!fs.existsSync(path.join(srcBacking, '.complete'))) {
      rm(srcBacking);
      const t = makeTree(srcBacking, { files, seed: 1, mix });
      fs.writeFileSync(
        path.join(srcBacking, '.complete'),
        JSON.stringify(t, (k, v) => (k === 'paths' ? undefined : v)),
      );
    }
    const info = JSON.parse(fs.readFileSync(path.join(srcBacking, '.complete'), 'utf8'));
    results.tree = { files: info.files, dirs: info.dirs, bytes: info.bytes };
    console.error(
      `tree: ${info.files} files in ${info.dirs} directories, ${(info.bytes / 1e6).toFixed(0)} MB (${results.mode})`,
    );
    // Each run works on its own copy of the source, so churn never touches the cached tree.
    const src = path.join(srcBase, 'src');
    rm(fast(src));
    sh(`cp -al ${srcBacking} ${fast(src)} && rm -f ${fast(src)}/.complete`);
    const record = (scenario, peer, r) => {
      const s = (results.scenarios[scenario] ??= {});
      (s[peer.name] ??= []).push(r);
      console.error(
        `  ${scenario.padEnd(12)} ${peer.name.padEnd(44)} ${r.seconds.toFixed(2)} s  ${(r.rssKiB / 1024).toFixed(0)} MiB`,
      );
    };
    const dest = (peer) => path.join(dstBase, `dst-${peer.name.replace(/[^a-z0-9]+/gi, '-')}`);

    // Full backups, each into a new directory; the last of each tool is its base afterwards.
    // Nothing is deleted between timed runs (see `incremental` below for why).
    const fullOut = (peer, i) => path.join(dest(peer), `full-${i}`);
    for (const peer of peers) rm(fast(dest(peer)));
    sh('sync');
    for (let i = 0; i < reps; i++) {
      for (const peer of peers) {
        const target = fullOut(peer, i);
        fs.mkdirSync(fast(dest(peer)), { recursive: true });
        // cp -a makes its target; efs-backup, rsync and fpsync want it to exist.
        if (peer !== lowerBound) fs.mkdirSync(fast(target));
        const r = timed(peer.full(src, target));
        if (scenarios.includes('full')) record('full', peer, r);
      }
    }
    for (const peer of peers) {
      for (let i = 0; i < reps - 1; i++) rm(fast(fullOut(peer, i)));
    }
    const baseOf = (peer) => fullOut(peer, reps - 1);
    const efsSet = path.join(baseOf(efsBackup), 'efs-backup');
    const efsNewest = () => fs.readlinkSync(path.join(fast(efsSet), 'latest'));
    /** Drops efs-backup's snapshots newer than `keep`, so repetitions start from the same base. */
    const efsDropNewest = (keep) => {
      const [interval, keepStamp] = keep.split('/');
      const dir = path.join(fast(efsSet), interval);
      for (const stamp of fs.readdirSync(dir)) {
        if (!/^\d{8}T\d{6}Z$/.test(stamp) || stamp <= keepStamp) continue;
        rm(path.join(dir, stamp));
        rm(path.join(fast(efsSet), '.efs-backup/manifests', `${stamp}.manifest`));
      }
      fs.rmSync(path.join(fast(efsSet), 'latest'));
      fs.symlinkSync(keep, path.join(fast(efsSet), 'latest'));
    };

    // Outputs are deleted only after the scenario: on ext4, creating inodes just after many
    // were deleted is slow for a while, which would charge one tool for another's clean-up.
    const incremental = (scenario, resetEfs) => {
      const baseSnap = efsNewest();
      const leftovers = [];
      for (let i = 0; i < reps; i++) {
        for (const peer of peers) {
          const d = dest(peer);
          if (peer === efsBackup) {
            record(scenario, peer, timed(peer.incremental(src, null, baseOf(peer))));
            if (resetEfs) efsDropNewest(baseSnap);
          } else {
            const next = path.join(d, `next-${i}`);
            rm(fast(next));
            record(scenario, peer, timed(peer.incremental(src, baseOf(peer), next)));
            leftovers.push(next);
          }
        }
      }
      for (const l of leftovers) rm(fast(l));
      // Back to the base snapshot for the scenarios that follow.
      if (!resetEfs) efsDropNewest(baseSnap);
    };
    if (scenarios.includes('incremental')) incremental('incremental', false);
    if (scenarios.includes('churn')) {
      churn(fast(src), { paths: walkFiles(fast(src)) });
      incremental('churn', true);
    }
    if (scenarios.includes('prune')) {
      // Deleting one old snapshot: efs-backup's parallel prune against rm -rf of the same tree.
      const pruneScript = path.join(here, 'prune-one.mjs');
      for (let i = 0; i < reps; i++) {
        const baseSnap = efsNewest();
        const copy = path.join(dstBase, 'old-snapshot');
        rm(fast(copy));
        sh(`cp -al ${fast(path.join(efsSet, baseSnap))} ${fast(copy)}`);
        record('prune', { name: 'rm -rf' }, timed(`rm -rf ${copy}`));
        // An extra old snapshot for efs-backup to prune (made untimed, as a hard-linked copy).
        const old = path.join(path.dirname(baseSnap), '19700101T000000Z');
        rm(fast(path.join(efsSet, old)));
        sh(`cp -al ${fast(path.join(efsSet, baseSnap))} ${fast(path.join(efsSet, old))}`);
        record(
          'prune',
          efsBackup,
          timed(
            `UV_THREADPOOL_SIZE=64 node ${pruneScript} ${baseOf(efsBackup)} ${path.dirname(baseSnap)}`,
          ),
        );
      }
    }
    if (scenarios.includes('restore')) {
      for (let i = 0; i < reps; i++) {
        for (const peer of peers.filter((p) => p.restore)) {
          // Back to the source's side: from the destination's storage onto the source's.
          const target = path.join(srcBase, 'restored');
          rm(fast(target));
          const snap = baseOf(peer);
          record('restore', peer, timed(peer.restore(snap, target)));
          rm(fast(target));
        }
      }
    }
  } finally {
    unmount();
  }
  const tag =
    latencyUs > 0 ? `latency-${latencyUs}us${layout === 'both' ? '' : `-${layout}`}` : 'local';
  writeReport(out, results, tag);
}

function walkFiles(root) {
  const outList = [];
  const walk = (rel) => {
    for (const d of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) walk(r);
      else outList.push(r);
    }
  };
  walk('');
  return outList;
}

/** Time per file and peak RSS of efs-backup's full and no-change runs at several sizes. */
/**
 * A file system of its own for one size's snapshots, when this process may make one (root, with
 * mkfs.ext4 and a loop device): every size then starts from the same state. On a disk that has
 * just had a million files deleted, ext4 creates files up to 30 times slower for minutes after
 * (measured here: 2 000 empty files in 1.6 s instead of 50 ms), which made the time per file of
 * a full backup vary eightfold from one run to the next. Falls back to a plain folder.
 */
function scratchFs(name, bytes, files) {
  const dir = path.join(work, name);
  const image = `${dir}.img`;
  spawnSync('umount', [dir]);
  rm(dir);
  rm(image);
  fs.mkdirSync(dir);
  const release = () => {
    spawnSync('umount', [dir]);
    rm(dir);
    rm(image);
  };
  if (process.getuid?.() !== 0) return { dir, release };
  const size = Math.max(2 * 2 ** 30, Math.ceil((bytes * 3) / 2 ** 30) * 2 ** 30);
  const made =
    spawnSync('truncate', ['-s', String(size), image]).status === 0 &&
    // Inodes for every file and folder of two snapshots, whatever the size of the files.
    spawnSync('mkfs.ext4', ['-q', '-F', '-N', String(2 * files + 100_000), image]).status === 0 &&
    spawnSync('mount', ['-o', 'loop', image, dir]).status === 0;
  if (!made) {
    rm(image);
    return { dir, release };
  }
  return { dir, release, fresh: true };
}

function scaleRun() {
  const sizes = scale.split(',').map(Number);
  const results = { when: new Date().toISOString(), mode: 'local disk, small files', sizes: {} };
  for (const n of sizes) {
    const src = path.join(work, `scale-src-${n}`);
    if (!fs.existsSync(path.join(src, '.complete'))) {
      rm(src);
      const t = makeTree(src, { files: n, seed: 7, mix: 'small', perDir: 100 });
      fs.writeFileSync(
        path.join(src, '.complete'),
        JSON.stringify({ files: t.files, dirs: t.dirs, bytes: t.bytes }),
      );
      rm(path.join(src, '.complete-paths'));
    }
    const tree = JSON.parse(fs.readFileSync(path.join(src, '.complete'), 'utf8'));
    const scratch = scratchFs('scale-dst', tree.bytes, tree.files + tree.dirs);
    try {
      // Every size is read from memory, as the other suites' trees are: a tree read from disk
      // measures the disk.
      sh(`tar -C ${JSON.stringify(src)} -cf - . | wc -c`);
      const full = timed(efsBackup.full(src, scratch.dir));
      // What the full backup left for the kernel to write: a million small files no longer fit
      // in the page cache's dirty limits, so part of their writing is paid by the run itself,
      // while a smaller tree's stays in memory. Timed separately, to compare like with like.
      const t0 = process.hrtime.bigint();
      spawnSync('sync');
      full.syncSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const inc = timed(efsBackup.incremental(src, null, scratch.dir));
      results.sizes[n] = { full, incremental: inc };
      results.destination = scratch.fresh
        ? 'a new ext4 file system (loop device) for each size'
        : 'a folder of the local disk';
      console.error(
        `${n} files: full ${full.seconds.toFixed(1)} s (${((full.seconds / n) * 1e6).toFixed(1)} µs/file, ${(full.rssKiB / 1024).toFixed(0)} MiB; then sync ${full.syncSeconds.toFixed(1)} s); ` +
          `no-change ${inc.seconds.toFixed(1)} s (${((inc.seconds / n) * 1e6).toFixed(1)} µs/file, ${(inc.rssKiB / 1024).toFixed(0)} MiB)`,
      );
    } finally {
      scratch.release();
    }
  }
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'scale.json'), JSON.stringify(results, null, 2) + '\n');
}

if (process.argv.length > 2) {
  main();
} else {
  // `npm run bench` with no options: every suite of the benchmark issue, one after the other.
  const self = fileURLToPath(import.meta.url);
  for (const args of [
    ['--files', '20000', '--reps', '3'],
    ['--latency-us', '1000', '--files', '2000', '--reps', '1'],
    // Mixed storage: one side on the local disk, the other behind latencyfs.
    ...['src-local', 'dst-local'].map((l) => [
      ...['--latency-us', '1000', '--files', '2000', '--reps', '1', '--layout', l],
      ...['--scenarios', 'full,incremental', '--peers', 'efs,rsync'],
    ]),
    ['--scale', '10000,100000,1000000'],
    // Scale-out: 1, 2 and 4 worker processes sharing one run, through latencyfs.
    [path.join(here, 'workers.mjs')],
  ]) {
    const script = args[0]?.endsWith('.mjs') ? [] : [self];
    const r = spawnSync(process.execPath, [...script, ...args], { stdio: 'inherit' });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
  // The README shows the tables of the latest complete run.
  rewriteReadme(out);
  console.error('README.md: the Speed tables are rewritten from bench/results/');
}
