// Loaded into every Node process of a timed run (NODE_OPTIONS=--require): as the process exits,
// writes what it used to $EFS_BENCH_PROC_DIR/<pid>.json: its peak resident memory (VmHWM, the
// kernel's own high-water mark, so nothing between two samples is missed), its CPU time (every
// thread: the libuv pool's too) and when it exited. bench/workers.mjs reads them.
const fs = require('node:fs');
const path = require('node:path');

const dir = process.env.EFS_BENCH_PROC_DIR;
if (dir) {
  process.on('exit', (code) => {
    try {
      const status = fs.readFileSync('/proc/self/status', 'utf8');
      const cpu = process.cpuUsage();
      fs.writeFileSync(
        path.join(dir, `${process.pid}.json`),
        JSON.stringify({
          pid: process.pid,
          ppid: process.ppid,
          argv: process.argv.slice(1),
          hwmKiB: Number(/^VmHWM:\s+(\d+)/m.exec(status)?.[1] ?? 0),
          cpuSeconds: (cpu.user + cpu.system) / 1e6,
          exitedAt: Date.now(),
          code,
        }),
      );
    } catch {
      // A measurement, never a reason for the measured process to fail.
    }
  });
}
