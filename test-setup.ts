/**
 * Before any test: the tools the suite judges with must be there, or `npm test` stops at once
 * with what to install (not a raw `spawnSync rsync ENOENT` in five tests). Tests that need a
 * rarer tool (strace, setfacl) skip with a printed reason instead.
 */
import { spawnSync } from 'node:child_process';

const REQUIRED: Array<{ tool: string; why: string; install: string }> = [
  {
    tool: 'rsync',
    why: 'the outside judge of every snapshot and restore',
    install:
      'apt-get install -y rsync (Debian, Ubuntu) or dnf install -y rsync (Amazon Linux, Fedora)',
  },
];

export default function setup(): void {
  const missing = REQUIRED.filter(
    (r) => spawnSync(r.tool, ['--version'], { stdio: 'ignore' }).error !== undefined,
  );
  if (missing.length === 0) return;
  throw new Error(
    missing.map((m) => `the tests need ${m.tool} (${m.why}): ${m.install}`).join('\n'),
  );
}
