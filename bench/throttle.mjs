// Being gentle, measured: a full backup of a 400 MB tree with `--max-mibps 20` should take
// 20 s ± 10%, and the rate it reads at should never pass the limit by more than 10% over any
// 1 s interval. The rate is the backup process's own `rchar` (/proc/PID/io: bytes its read
// calls returned), sampled every 50 ms; each 1 s window is the difference of two samples a
// second apart. The same backup without a limit is timed beside it.
//
// Run: npm run build && node bench/throttle.mjs [--mib 400] [--max-mibps 20] [--dir /tmp/efs-throttle]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const MIB = Number(opt('mib', 400));
const LIMIT = Number(opt('max-mibps', 20));
const dir = path.resolve(opt('dir', '/tmp/efs-throttle'));
const bin = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '../packages/cli/bin/efs-backup.cjs',
);

fs.rmSync(dir, { recursive: true, force: true });
const src = path.join(dir, 'src');
// Mixed sizes like a home directory: mostly small files, most bytes in large ones.
const block = Buffer.alloc(1 << 20);
for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
let written = 0;
let n = 0;
while (written < MIB * 2 ** 20) {
  const d = path.join(src, `d${Math.floor(n / 100)}`);
  fs.mkdirSync(d, { recursive: true });
  const size = n % 10 === 0 ? 8 << 20 : n % 3 === 0 ? 1 << 20 : 64 << 10;
  const fd = fs.openSync(path.join(d, `f${n}`), 'w');
  for (let left = size; left > 0; left -= block.length) {
    block.writeUInt32LE(n, 0);
    fs.writeSync(fd, block, 0, Math.min(left, block.length));
  }
  fs.closeSync(fd);
  written += size;
  n++;
}
console.log(`tree: ${n} files, ${(written / 2 ** 20).toFixed(0)} MiB in ${src}`);

function rchar(pid) {
  try {
    return Number(/rchar: (\d+)/.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))[1]);
  } catch {
    return null;
  }
}

async function backup(extra) {
  const dst = path.join(dir, `dst-${extra.length ? 'limited' : 'free'}`);
  fs.rmSync(dst, { recursive: true, force: true });
  fs.mkdirSync(dst);
  // The source out of the page cache would need root and drop every cache; reads from the cache
  // are what a limit must hold back hardest, so they are the harder case.
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    [bin, 'backup', '--source', src, '--destination', dst, ...extra],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const samples = [];
  const timer = setInterval(() => {
    const r = rchar(child.pid);
    if (r !== null) samples.push([performance.now(), r]);
  }, 50);
  const code = await new Promise((resolve) => child.on('exit', resolve));
  clearInterval(timer);
  const seconds = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`backup exited ${code}`);
  let peak = 0;
  for (let i = 0, j = 0; i < samples.length; i++) {
    while (j < samples.length && samples[j][0] - samples[i][0] < 1000) j++;
    if (j === samples.length) break;
    const rate = (samples[j][1] - samples[i][1]) / ((samples[j][0] - samples[i][0]) / 1000);
    peak = Math.max(peak, rate / 2 ** 20);
  }
  return { seconds, peak };
}

const free = await backup([]);
const limited = await backup(['--max-mibps', String(LIMIT)]);
const expected = MIB / LIMIT;
console.log(
  `no limit:            ${free.seconds.toFixed(2)} s, peak ${free.peak.toFixed(0)} MiB/s over 1 s`,
);
console.log(
  `--max-mibps ${LIMIT}:      ${limited.seconds.toFixed(2)} s (target ${expected.toFixed(0)} s ± 10%), ` +
    `peak ${limited.peak.toFixed(1)} MiB/s over any 1 s (bound ${(LIMIT * 1.1).toFixed(0)})`,
);
const ok = Math.abs(limited.seconds - expected) <= expected * 0.1 && limited.peak <= LIMIT * 1.1;
console.log(ok ? 'target met' : 'target MISSED');
fs.rmSync(dir, { recursive: true, force: true });
process.exitCode = ok ? 0 : 1;
