#!/usr/bin/env node
// Scale-out on one host: `efs-backup backup --workers N` runs N worker processes that share one
// run (one snapshot) through a lease store, each with its own --concurrency and --max-mibps, as
// N machines would have their own. Times full and no-change backups with 1, 2 and 4 workers and
// a plain `backup` (no --workers) with the same limits, through latencyfs (source and
// destination behind it, 1 ms per call, like EFS), and checks the issue's targets:
//   4 workers at least 3× faster than 1 worker (full), 2.5× (no change); 1 worker within 5% of
//   a plain backup; peak memory of every process of a run no higher than the plain run's.
//
//   npm run build && node bench/workers.mjs            the issue's suite (about 10 minutes)
//   node bench/workers.mjs --smoke                     seconds: that the harness works
//
// Options: --files N (small files, 20000), --big N (200), --big-mib N (4: each large file's
//          size), --reps N (3), --workers 1,2,4, --concurrency N (32), --max-mibps N (20),
//          --latency-us N (1000; 0: the local disk, no FUSE), --dir D (.bench), --out D
//          (bench/results)
//
// Each full backup goes to a new destination; each no-change backup to the destination of a
// full one of the same case, which holds that one snapshot. Every run is checked (the
// snapshot's entries and bytes, as `efs-backup snapshots --json` reports them and as a walk of
// the snapshot finds them, a few files' contents, and for no change that every file is a hard
// link to the snapshot before), so a fast wrong run is never reported as a win.
//
// Memory and CPU are measured per process: bench/proc-peak.cjs, loaded into every Node process
// of the run, writes each one's VmHWM and CPU time as it exits, and the process tree is polled
// every 100 ms besides (for a process that dies without its exit handler). The machine's CPU use
// over the run (/proc/stat) and latencyfs's own CPU time say when a run is CPU-bound.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli, env, mountLatencyfs, rm, settle, sh } from './lib.mjs';
import { mdTable } from './report.mjs';
import { makeTree, rng } from './tree.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
function count(name, fallback, min = 0) {
  const v = arg(name, String(fallback));
  if (!/^\d+$/.test(v) || Number(v) < min) {
    console.error(`--${name} ${v}: expected a whole number of at least ${min}`);
    process.exit(2);
  }
  return Number(v);
}
const smoke = process.argv.includes('--smoke');
const files = count('files', smoke ? 300 : 20000, 1);
const big = count('big', smoke ? 4 : 200);
const bigMiB = count('big-mib', smoke ? 1 : 4, 1);
const reps = count('reps', smoke ? 1 : 3, 1);
const concurrency = count('concurrency', 32, 1);
const maxMibps = count('max-mibps', 20, 1);
const latencyUs = count('latency-us', 1000);
const workerCounts = arg('workers', '1,2,4')
  .split(',')
  .filter((w) => w !== '' && w !== 'none')
  .map((w) => {
    if (!/^[1-9]\d*$/.test(w)) {
      console.error(`--workers ${w}: expected a list of worker counts, e.g. 1,2,4`);
      process.exit(2);
    }
    return Number(w);
  });
const work = path.resolve(repo, arg('dir', '.bench'));
const out = path.resolve(
  repo,
  arg('out', smoke ? path.join(work, 'smoke-results') : 'bench/results'),
);

const PLAIN = 'plain backup';
/** Where the suite's own time goes besides the runs: waiting for a quiet disk, checking, cleaning. */
const harness = { settleSeconds: 0, checkSeconds: 0, cleanupSeconds: 0 };
const cases = [PLAIN, ...workerCounts.map((n) => `${n} worker${n === 1 ? '' : 's'}`)];
const workersOf = (c) => (c === PLAIN ? null : Number(c.split(' ')[0]));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---- where the trees live -----------------------------------------------------------------

function stage() {
  fs.mkdirSync(work, { recursive: true });
  if (latencyUs === 0) {
    const base = path.join(work, 'workers-local');
    fs.mkdirSync(base, { recursive: true });
    return { mnt: base, backing: base, unmount: () => {} };
  }
  const backing = path.join(work, 'workers-backing');
  const mnt = path.join(work, 'workers-mnt');
  return { mnt, backing, unmount: mountLatencyfs(backing, mnt, latencyUs) };
}

/**
 * The small files of tree.mjs (0 to 4 KiB, 50 to a directory) and `big` large ones spread over
 * their directories, one every files/big small files: the bytes are where the entries are, as in
 * a home or project tree, and no one directory holds them all. Cached beside its description.
 */
function sourceTree(backing) {
  const name = `workers-src-${files}-${big}x${bigMiB}m`;
  const root = path.join(backing, name);
  const described = `${root}.json`;
  if (fs.existsSync(described)) return { root, name, ...JSON.parse(fs.readFileSync(described)) };
  rm(root);
  rm(described);
  const t = makeTree(root, { files, seed: 11, mix: 'small' });
  const r = rng(12);
  const size = bigMiB * 2 ** 20;
  const block = Buffer.alloc(2 ** 20);
  const bigPaths = [];
  for (let k = 0; k < big; k++) {
    const rel = path.join(path.dirname(t.paths[Math.floor((k * files) / big)]), `big${k}.dat`);
    const fd = fs.openSync(path.join(root, rel), 'w');
    for (let off = 0; off < size; off += block.length) {
      for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((r() * 4294967296) >>> 0, i);
      fs.writeSync(fd, block, 0, Math.min(block.length, size - off));
    }
    fs.closeSync(fd);
    bigPaths.push(rel);
  }
  const found = walk(root);
  // A few files whose contents every run's snapshot must have, by path and digest.
  const samples = [t.paths[0], t.paths[files - 1], bigPaths[0], bigPaths[big - 1]];
  const info = {
    files: found.files,
    dirs: found.dirs,
    entries: found.entries,
    bytes: found.bytes,
    samples: [...new Set(samples.filter(Boolean))].map((p) => ({
      path: p,
      sha256: digest(path.join(root, p)),
    })),
  };
  fs.writeFileSync(described, JSON.stringify(info));
  return { root, name, ...info };
}

/** Entries under `root` (not itself), its files, folders and bytes; files with one link only. */
function walk(root) {
  const r = { entries: 0, files: 0, dirs: 0, bytes: 0, singleLinked: 0 };
  const visit = (dir) => {
    for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, d.name);
      r.entries++;
      if (d.isDirectory()) {
        r.dirs++;
        visit(p);
      } else if (d.isFile()) {
        const st = fs.lstatSync(p);
        r.files++;
        r.bytes += st.size;
        if (st.nlink < 2) r.singleLinked++;
      }
    }
  };
  visit(root);
  return r;
}

const digest = (p) => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');

// ---- measuring one run ------------------------------------------------------------------------

/** Busy and total jiffies of the machine (/proc/stat's first line; idle and iowait are not busy). */
function cpuTimes() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1);
  const n = f.map(Number);
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - n[3] - n[4], total };
}

const TICK = 100; // USER_HZ, the unit of /proc/<pid>/stat's times, on every Linux Node runs on
/** CPU seconds (user + system, every thread) of a process, or null once it is gone. */
function procCpu(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch {
    return null;
  }
}

/** The process of latencyfs serving `mnt` (it daemonizes: found by its command line). */
function latencyfsPid(mnt) {
  if (latencyUs === 0) return null;
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (cmd[0].endsWith('latencyfs/latencyfs') && cmd.includes(mnt)) return Number(p);
    } catch {
      // gone meanwhile
    }
  }
  return null;
}

/** The process tree under `root`, root first (children as its main thread forked them). */
function tree(root) {
  const pids = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop();
    pids.push(p);
    let kids = '';
    try {
      kids = fs.readFileSync(`/proc/${p}/task/${p}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const k of kids.split(' ')) if (k.trim()) stack.push(Number(k));
  }
  return pids;
}

function sample(pid, seen) {
  let status;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return;
  }
  const hwm = Number(/^VmHWM:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  let s = seen.get(pid);
  if (!s) seen.set(pid, (s = { pid, argv: [], hwmKiB: 0, cpuSeconds: 0, polls: 0 }));
  // Read every time: a child forked to run another program (sync, mkfifo) shows Node's
  // command line until it execs.
  try {
    s.argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    // gone meanwhile
  }
  s.polls++;
  if (hwm > s.hwmKiB) s.hwmKiB = hwm;
  const cpu = procCpu(pid);
  if (cpu !== null && cpu > s.cpuSeconds) s.cpuSeconds = cpu;
}

/**
 * Runs efs-backup with `args`; resolves to its wall seconds, exit code, record (--json) and
 * every process of its tree: peak RSS, CPU seconds, when it exited (seconds after the start).
 */
async function timed(args, { lfsPid }) {
  // The smoke checks that the harness works, not how fast: waiting for a quiet disk could take
  // minutes on a busy one.
  const s0 = Date.now();
  if (!smoke) settle();
  harness.settleSeconds += (Date.now() - s0) / 1000;
  const procDir = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-bench-proc-'));
  const preload = path.join(here, 'proc-peak.cjs');
  const childEnv = {
    ...env,
    EFS_BENCH_PROC_DIR: procDir,
    NODE_OPTIONS: `${env.NODE_OPTIONS ?? ''} --require ${JSON.stringify(preload)}`.trim(),
  };
  const cpu0 = cpuTimes();
  const lfs0 = lfsPid ? procCpu(lfsPid) : null;
  const started = Date.now();
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, [cli, ...args], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const seen = new Map();
  const poll = () => {
    for (const p of tree(child.pid)) sample(p, seen);
  };
  const timer = setInterval(poll, 100);
  poll();
  const exited = new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? sig)));
  const closed = new Promise((resolve) => child.on('close', resolve));
  const code = await exited;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  clearInterval(timer);
  const cpu1 = cpuTimes();
  const lfs1 = lfsPid ? procCpu(lfsPid) : null;
  await closed;
  // Workers outliving their coordinator would be a bug of the run, and would charge the next.
  for (let i = 0; i < 100 && [...seen.keys()].some((p) => p !== child.pid && alive(p)); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const leftover = [...seen.keys()].filter((p) => p !== child.pid && alive(p));
  // What each process wrote as it exited is exact; the polled values fill in for any that
  // could not write (killed by a signal).
  for (const f of fs.readdirSync(procDir)) {
    const r = JSON.parse(fs.readFileSync(path.join(procDir, f), 'utf8'));
    const s = seen.get(r.pid) ?? { pid: r.pid, hwmKiB: 0, cpuSeconds: 0 };
    seen.set(r.pid, {
      ...s,
      argv: s.argv?.length ? s.argv : [process.execPath, ...r.argv],
      hwmKiB: Math.max(s.hwmKiB, r.hwmKiB),
      cpuSeconds: Math.max(s.cpuSeconds, r.cpuSeconds),
      exitedS: (r.exitedAt - started) / 1000,
      exact: true,
    });
  }
  rm(procDir);
  if (code !== 0 && code !== 1) {
    throw new Error(`efs-backup ${args.join(' ')}\nexited ${code}: ${stderr.slice(-3000)}`);
  }
  let record = null;
  try {
    record = JSON.parse(stdout);
  } catch {
    // a run that printed no record (or several): its figures are left out
  }
  // The Node processes of the run: the command and the workers it started, each of which wrote
  // its figures as it exited, and any that could not (killed) but was seen running efs-backup
  // for a few polls. A program the CLI runs (sync, mkfifo) is no worker, even when a poll
  // caught it between its fork and its exec.
  const procs = [...seen.values()]
    .filter(
      (p) =>
        p.pid === child.pid ||
        p.exact ||
        (p.polls >= 3 && p.argv.some((a) => a.endsWith('efs-backup.cjs'))),
    )
    .map((p) => ({
      pid: p.pid,
      role: p.pid === child.pid ? 'command' : 'worker',
      hwmKiB: p.hwmKiB,
      cpuSeconds: Number(p.cpuSeconds.toFixed(2)),
      ...(p.exitedS !== undefined ? { exitedS: Number(p.exitedS.toFixed(2)) } : {}),
      measured: p.exact ? 'at exit' : 'polled',
    }));
  const efsCpu = procs.reduce((a, p) => a + p.cpuSeconds, 0);
  const lfsCpu = lfs0 !== null && lfs1 !== null ? lfs1 - lfs0 : 0;
  return {
    seconds,
    code,
    procs,
    // The run's own CPU (efs-backup's processes and latencyfs) as a share of all the cores.
    runCpuShare: Number(((efsCpu + lfsCpu) / (seconds * os.cpus().length)).toFixed(3)),
    peakRssKiB: Math.max(...procs.map((p) => p.hwmKiB)),
    efsCpuSeconds: Number(efsCpu.toFixed(2)),
    // Everything running on the machine (other jobs too), as a share of all its cores.
    machineCpuBusy: Number(((cpu1.busy - cpu0.busy) / (cpu1.total - cpu0.total)).toFixed(3)),
    ...(lfs0 !== null && lfs1 !== null
      ? { latencyfsCpuSeconds: Number((lfs1 - lfs0).toFixed(2)) }
      : {}),
    ...(leftover.length ? { leftoverProcesses: leftover.length } : {}),
    ...(record?.share ? { share: record.share } : {}),
    status: record?.Status ?? null,
  };
}

const alive = (pid) => {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};

// ---- checking one run ------------------------------------------------------------------------

/**
 * What is wrong with the destination `dest` after a run (empty: nothing): it must hold `n`
 * snapshots, the newest with the source's entries and bytes, as the CLI lists it and as a walk
 * of it finds it, the sample files' contents, and (no change) only hard links to the one before.
 */
function check(dest, src, n, fast) {
  const problems = [];
  const r = spawnSync(process.execPath, [cli, 'snapshots', '--destination', dest, '--json'], {
    encoding: 'utf8',
    env,
  });
  let list = [];
  try {
    list = JSON.parse(r.stdout);
  } catch {
    return [`snapshots --json printed no list (exit ${r.status}): ${r.stderr.slice(-300)}`];
  }
  if (list.length !== n) problems.push(`${list.length} snapshots, expected ${n}`);
  const latest = list.find((s) => s.latest);
  if (!latest) return [...problems, 'no latest snapshot'];
  if (latest.NumberOfFiles !== src.entries) {
    problems.push(
      `snapshots --json: ${latest.NumberOfFiles} entries, the source has ${src.entries}`,
    );
  }
  if (latest.TotalFileSize !== src.bytes) {
    problems.push(`snapshots --json: ${latest.TotalFileSize} bytes, the source has ${src.bytes}`);
  }
  const snap = fast(latest.path);
  const found = walk(snap);
  for (const k of ['entries', 'files', 'dirs', 'bytes']) {
    if (found[k] !== src[k])
      problems.push(`the snapshot holds ${found[k]} ${k}, the source ${src[k]}`);
  }
  if (n > 1 && found.singleLinked > 0) {
    problems.push(`${found.singleLinked} files copied again, not linked to the snapshot before`);
  }
  for (const s of src.samples) {
    const p = path.join(snap, s.path);
    if (!fs.existsSync(p) || digest(p) !== s.sha256)
      problems.push(`${s.path} differs from the source`);
  }
  return problems;
}

// ---- the suite -------------------------------------------------------------------------------

async function main() {
  const { mnt, backing, unmount } = stage();
  const fast = (p) => (p === mnt || p.startsWith(`${mnt}/`) ? backing + p.slice(mnt.length) : p);
  const results = {
    when: new Date().toISOString(),
    command: ['node', 'bench/workers.mjs', ...process.argv.slice(2)].join(' '),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    mode:
      latencyUs > 0 ? `latencyfs (source and destination), ${latencyUs} µs per call` : 'local disk',
    node: process.version,
    limits: { concurrency, maxMibps, note: 'each worker process its own' },
    reps,
    cases: {},
  };
  try {
    const src = sourceTree(backing);
    results.tree = {
      smallFiles: files,
      bigFiles: big,
      bigMiB,
      files: src.files,
      dirs: src.dirs,
      entries: src.entries,
      bytes: src.bytes,
    };
    console.error(
      `tree: ${src.files} files (${big} of ${bigMiB} MiB) in ${src.dirs} directories, ` +
        `${(src.bytes / 2 ** 20).toFixed(0)} MiB (${results.mode}); ` +
        `each worker --concurrency ${concurrency} --max-mibps ${maxMibps}`,
    );
    // Read from memory in every run, as the other suites' trees are.
    sh(`tar -C ${JSON.stringify(src.root)} -cf - . | wc -c`);
    const source = path.join(mnt, src.name);
    const dstRoot = path.join(mnt, 'workers-dst');
    rm(fast(dstRoot));
    fs.mkdirSync(dstRoot);
    const lfsPid = latencyfsPid(mnt);
    const dest = (c, i) => path.join(dstRoot, `${c.replace(/\s+/g, '-')}-${i}`);
    const argsOf = (c, d) => [
      'backup',
      ...['--source', source, '--destination', d, '--retain', '1000', '--json'],
      ...['--concurrency', String(concurrency), '--max-mibps', String(maxMibps)],
      ...(workersOf(c) === null ? [] : ['--workers', String(workersOf(c))]),
    ];
    for (const c of cases) results.cases[c] = { full: [], nochange: [], failures: [] };
    const one = async (scenario, c, i) => {
      const d = dest(c, i);
      if (scenario === 'full') fs.mkdirSync(d);
      let r;
      try {
        r = await timed(argsOf(c, d), { lfsPid });
      } catch (e) {
        // A failed run is reported as one, and the other cases still run.
        console.error(`  ${scenario.padEnd(8)} ${c.padEnd(12)} FAILED: ${e.message}`);
        results.cases[c].failures.push({ scenario, rep: i, error: e.message.slice(-2000) });
        return;
      }
      const c0 = Date.now();
      r.problems = check(d, src, scenario === 'full' ? 1 : 2, fast);
      harness.checkSeconds += (Date.now() - c0) / 1000;
      if (r.status !== null && r.status !== 'Success') r.problems.push(`the run ended ${r.status}`);
      results.cases[c][scenario].push(r);
      const w = r.procs.filter((p) => p.role === 'worker').length;
      console.error(
        `  ${scenario.padEnd(8)} ${c.padEnd(12)} ${r.seconds.toFixed(2).padStart(7)} s  ` +
          `peak RSS ${(r.peakRssKiB / 1024).toFixed(0)} MiB (${r.procs.length} process${r.procs.length === 1 ? '' : 'es'}${w ? `, ${w} started` : ''})  ` +
          `CPU ${(r.runCpuShare * 100).toFixed(0)}% of ${os.cpus().length} cores ` +
          `(machine ${(r.machineCpuBusy * 100).toFixed(0)}%)  ` +
          (r.problems.length ? `WRONG: ${r.problems.join('; ')}` : 'checked'),
      );
    };
    // Every case once per repetition, so that a drift of the machine spreads over all of them.
    for (let i = 0; i < reps; i++) for (const c of cases) await one('full', c, i);
    for (let i = 0; i < reps; i++) for (const c of cases) await one('nochange', c, i);
  } finally {
    const c0 = Date.now();
    rm(fast(path.join(mnt, 'workers-dst')));
    harness.cleanupSeconds = (Date.now() - c0) / 1000;
    unmount();
  }
  results.harness = Object.fromEntries(
    Object.entries(harness).map(([k, v]) => [k, Number(v.toFixed(1))]),
  );
  await report(results);
}

// ---- the report ------------------------------------------------------------------------------

const TITLES = { full: 'full backup', nochange: 'no change' };

function summarize(results) {
  const s = {};
  for (const [c, { failures, ...byScenario }] of Object.entries(results.cases)) {
    s[c] = {};
    for (const [scenario, runs] of Object.entries(byScenario)) {
      const failed = failures.filter((f) => f.scenario === scenario).length;
      if (!runs.length) {
        if (failed) s[c][scenario] = { failed };
        continue;
      }
      const workerPeaks = runs.flatMap((r) =>
        r.procs.filter((p) => p.role === 'worker').map((p) => p.hwmKiB),
      );
      s[c][scenario] = {
        seconds: median(runs.map((r) => r.seconds)),
        // The most any one process of a run held (a worker, or the command that started them),
        // the median over the repetitions.
        peakRssMiB: median(runs.map((r) => r.peakRssKiB)) / 1024,
        peakRssRangeMiB: [
          Math.min(...runs.map((r) => r.peakRssKiB)) / 1024,
          Math.max(...runs.map((r) => r.peakRssKiB)) / 1024,
        ],
        commandRssMiB:
          median(runs.map((r) => r.procs.find((p) => p.role === 'command').hwmKiB)) / 1024,
        workerRssMiB: workerPeaks.length ? Math.max(...workerPeaks) / 1024 : null,
        processes: Math.max(...runs.map((r) => r.procs.length)),
        runCpuShare: median(runs.map((r) => r.runCpuShare)),
        machineCpuBusy: median(runs.map((r) => r.machineCpuBusy)),
        efsCpuSeconds: median(runs.map((r) => r.efsCpuSeconds)),
        latencyfsCpuSeconds:
          runs[0].latencyfsCpuSeconds !== undefined
            ? median(runs.map((r) => r.latencyfsCpuSeconds))
            : null,
        wrong: runs.filter((r) => r.problems.length).length + failed,
        failed,
      };
    }
  }
  const one = results.cases['1 worker'] ? '1 worker' : null;
  for (const c of Object.keys(s)) {
    for (const [scenario, x] of Object.entries(s[c])) {
      const base = one && s[one][scenario];
      x.speedupVs1 = base?.seconds && x.seconds ? base.seconds / x.seconds : null;
    }
  }
  return s;
}

function targets(results, s) {
  const t = [];
  // A case whose runs all failed has no figures: its targets fail.
  const has = (c, sc) => s[c]?.[sc] !== undefined;
  const timedOk = (c, sc) => s[c]?.[sc]?.seconds !== undefined;
  const ok = (c, sc) => timedOk(c, sc) && s[c][sc].wrong === 0;
  const failed = (name) => t.push({ name, pass: false, text: 'the runs FAILED' });
  const speed = (n, scenario, bound) => {
    const c = `${n} workers`;
    const name = `${n} workers ≥ ${bound}× faster than 1 worker (${TITLES[scenario]})`;
    if (!has(c, scenario) || !has('1 worker', scenario)) return t.push({ name, pass: null });
    if (!timedOk(c, scenario) || !timedOk('1 worker', scenario)) return failed(name);
    const v = s[c][scenario].speedupVs1;
    const right = ok(c, scenario) && ok('1 worker', scenario);
    t.push({
      name,
      pass: right && v >= bound,
      text: `${v.toFixed(2)}× (${s['1 worker'][scenario].seconds.toFixed(2)} s → ${s[c][scenario].seconds.toFixed(2)} s)${right ? '' : '; a run was WRONG'}`,
    });
  };
  speed(4, 'full', 3);
  speed(4, 'nochange', 2.5);
  for (const scenario of ['full', 'nochange']) {
    const name = `1 worker within 5% of a plain backup (${TITLES[scenario]})`;
    const a = s['1 worker']?.[scenario];
    const p = s[PLAIN]?.[scenario];
    if (!a || !p) {
      t.push({ name, pass: null });
      continue;
    }
    if (!timedOk('1 worker', scenario) || !timedOk(PLAIN, scenario)) {
      failed(name);
      continue;
    }
    const d = a.seconds / p.seconds - 1;
    const right = ok('1 worker', scenario) && ok(PLAIN, scenario);
    t.push({
      name,
      pass: right && d <= 0.05,
      text: `${d >= 0 ? '+' : ''}${(d * 100).toFixed(1)}% (${p.seconds.toFixed(2)} s → ${a.seconds.toFixed(2)} s)${right ? '' : '; a run was WRONG'}`,
    });
  }
  for (const scenario of ['full', 'nochange']) {
    const p = s[PLAIN]?.[scenario];
    const name = `peak RSS of every process ≤ the plain backup's (${TITLES[scenario]})`;
    const others = Object.keys(s).filter((c) => c !== PLAIN && timedOk(c, scenario));
    if (!p?.seconds || !others.length) {
      t.push({ name, pass: null });
      continue;
    }
    const worst = others.reduce((a, c) =>
      s[c][scenario].peakRssMiB > s[a][scenario].peakRssMiB ? c : a,
    );
    const w = s[worst][scenario].peakRssMiB;
    const [lo, hi] = p.peakRssRangeMiB ?? [p.peakRssMiB, p.peakRssMiB];
    t.push({
      name,
      pass: w <= p.peakRssMiB,
      text:
        `the most: ${w.toFixed(0)} MiB (${worst}), the plain backup ${p.peakRssMiB.toFixed(0)} MiB (${w > p.peakRssMiB ? '+' : ''}${(((w - p.peakRssMiB) / p.peakRssMiB) * 100).toFixed(1)}%` +
        (results.reps > 1 ? `; its runs ${lo.toFixed(0)} to ${hi.toFixed(0)} MiB)` : ')'),
    });
  }
  return t;
}

function markdown(results, s, t) {
  const tr = results.tree;
  const cores = os.cpus().length;
  const lines = [
    `### Scale-out on one host, ${results.mode}: ${tr.files.toLocaleString('en')} files (${tr.smallFiles.toLocaleString('en')} small, ${tr.bigFiles} of ${tr.bigMiB} MiB), ${tr.dirs} directories, ${(tr.bytes / 2 ** 20).toFixed(0)} MiB`,
    '',
    `Each worker process \`--concurrency ${results.limits.concurrency} --max-mibps ${results.limits.maxMibps}\` (as N machines would each have their own limits), and the plain backup the same. ${results.machine}; Node ${results.node}; median of ${results.reps}, ${results.when.slice(0, 10)}; \`${results.command}\`.`,
    '',
  ];
  const table = [
    [
      'run',
      'full backup',
      '× 1 worker',
      'no change',
      '× 1 worker',
      'peak RSS, full / no change',
      'CPU, full / no change',
      'checked',
    ],
  ];
  const rss = (x, c) =>
    x?.seconds !== undefined
      ? `${x.peakRssMiB.toFixed(0)} MiB${workersOf(c) > 1 ? ` (command ${x.commandRssMiB.toFixed(0)})` : ''}`
      : '';
  for (const [c, x] of Object.entries(s)) {
    const f = x.full;
    const n = x.nochange;
    const cell = (y) =>
      y?.seconds !== undefined ? `${y.seconds.toFixed(2)} s` : y?.failed ? 'FAILED' : '';
    const sp = (y) => (y?.speedupVs1 ? `${y.speedupVs1.toFixed(2)}` : '');
    const wrong = (f?.wrong ?? f?.failed ?? 0) + (n?.wrong ?? n?.failed ?? 0);
    const both = (a, b) => (a || b ? `${a} / ${b}` : '');
    const pct = (y) =>
      y?.seconds !== undefined
        ? `${(y.runCpuShare * 100).toFixed(0)}% (${(y.machineCpuBusy * 100).toFixed(0)}%)`
        : '';
    table.push([
      c,
      cell(f),
      sp(f),
      cell(n),
      sp(n),
      both(rss(f, c), rss(n, c)),
      both(pct(f), pct(n)),
      wrong ? `${wrong} WRONG` : 'yes',
    ]);
  }
  lines.push(mdTable(table), '');
  lines.push(
    `Peak RSS: the most any one process of a run held (VmHWM), median of the runs; with workers, in brackets, the \`backup\` command's own (itself the first worker, the one that commits; it starts the others as \`efs-backup worker\` processes). CPU: the run's own CPU time (its efs-backup processes and latencyfs) over its wall time, as a share of the machine's ${cores} cores (near 100%: the run is CPU-bound); in brackets, the whole machine's over the same time: well above the run's, other jobs shared the machine.`,
    '',
  );
  const split = workSplit(results);
  if (split.length)
    lines.push('How the work was shared (the median run of each case):', '', ...split, '');
  for (const x of t) {
    lines.push(
      `- ${x.pass === null ? 'n/a ' : x.pass ? 'PASS' : 'FAIL'}: ${x.name}${x.text ? `: ${x.text}` : ''}`,
    );
  }
  return lines.join('\n');
}

/** Per worker of the median run of each case with workers: CPU, when it exited, its share. */
function workSplit(results) {
  const lines = [];
  for (const [c, byScenario] of Object.entries(results.cases)) {
    if (c === PLAIN) continue;
    for (const scenario of Object.keys(TITLES)) {
      const runs = byScenario[scenario];
      if (!runs.length) continue;
      const m = [...runs].sort((a, b) => a.seconds - b.seconds)[Math.floor(runs.length / 2)];
      const workers = m.procs.filter((p) => p.role === 'worker');
      const cmd = m.procs.find((p) => p.role === 'command');
      const list = (xs) => xs.join(' / ');
      const parts = [
        `${workers.length} started worker process${workers.length === 1 ? '' : 'es'}` +
          (workers.length
            ? `, CPU ${list(workers.map((p) => p.cpuSeconds.toFixed(1)))} s` +
              `, exited at ${list(workers.map((p) => p.exitedS?.toFixed(1) ?? '?'))} s`
            : ''),
        `the command: CPU ${cmd.cpuSeconds.toFixed(1)} s, ${(cmd.hwmKiB / 1024).toFixed(0)} MiB, exited at ${cmd.exitedS?.toFixed(1) ?? m.seconds.toFixed(1)} s`,
      ];
      const shares = m.share?.workers ?? [];
      if (shares.length) {
        parts.push(
          `units ${list(shares.map((w) => w.units))}, entries ${list(shares.map((w) => w.entries))}, ` +
            `MiB ${list(shares.map((w) => (w.bytes / 2 ** 20).toFixed(0)))}, ` +
            `busy ${list(shares.map((w) => (w.ms / 1000).toFixed(1)))} s`,
        );
      }
      lines.push(`- ${c}, ${TITLES[scenario]} (${m.seconds.toFixed(2)} s): ${parts.join('; ')}`);
    }
  }
  return lines;
}

async function report(results, dir = out) {
  const s = summarize(results);
  const t = targets(results, s);
  const md = markdown(results, s, t);
  fs.mkdirSync(dir, { recursive: true });
  let json = JSON.stringify({ ...results, summary: s, targets: t }, null, 2);
  let text = md;
  try {
    // The results are committed and linted: written as prettier writes them.
    const prettier = await import('prettier');
    const options = (await prettier.resolveConfig(path.join(dir, 'workers.md'))) ?? {};
    json = await prettier.format(json, { ...options, parser: 'json' });
    text = await prettier.format(md, { ...options, parser: 'markdown' });
  } catch {
    // prettier is a development dependency: without it, the same content, formatted plainly
  }
  fs.writeFileSync(path.join(dir, 'workers.json'), json.trimEnd() + '\n');
  fs.writeFileSync(path.join(dir, 'workers.md'), text.trimEnd() + '\n');
  console.log(text);
  for (const x of t)
    console.error(
      `${x.pass === null ? 'n/a ' : x.pass ? 'PASS' : 'FAIL'} ${x.name}${x.text ? `: ${x.text}` : ''}`,
    );
  // A missed target is a figure; a run that failed or made a wrong snapshot is a broken suite.
  const broken = Object.values(s).some((c) => Object.values(c).some((x) => x.wrong || x.failed));
  if (broken) process.exitCode = 1;
}

const saved = arg('report', null);
if (saved) {
  // Re-renders a saved run's summary, targets and table: node bench/workers.mjs --report FILE
  const results = JSON.parse(fs.readFileSync(saved, 'utf8'));
  delete results.summary;
  delete results.targets;
  await report(results, path.dirname(path.resolve(saved)));
} else {
  await main();
}
