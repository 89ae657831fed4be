/**
 * The README's examples, run in order as a new user runs them right after the quick start: every
 * `sh` block that works on the demo destination (`/tmp/efs-backup-demo`), from the quick start
 * on. `npx efs-backup` is this checkout's build; `npm ci` and `npm test` (the quick start's
 * install and test commands) are what this suite is already inside, so they do nothing here.
 * The demo destination and the backed-up `packages` are a fresh directory and a copy of the
 * repository's sources, so the test neither reads nor writes the user's /tmp/efs-backup-demo.
 *
 * The examples that need a mounted EFS, sudo or an AWS account (`/mnt/...`, the install on a
 * host, the deploy) are left out: scripts/install-check.sh runs the install, the AWS tests
 * the rest.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, REPO, requireBuild } from './helpers.js';

const DEMO = '/tmp/efs-backup-demo';

interface Block {
  line: number;
  script: string;
}

/** The README's `sh` blocks, with the line each starts on. */
function shBlocks(readme: string): Block[] {
  const blocks: Block[] = [];
  const lines = readme.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '```sh') continue;
    const start = i + 1;
    while (++i < lines.length && lines[i].trim() !== '```');
    blocks.push({ line: start + 1, script: lines.slice(start, i).join('\n') });
  }
  return blocks;
}

/** The blocks a user runs on one machine after the quick start: those on the demo destination. */
function demoBlocks(readme: string): Block[] {
  return shBlocks(readme).filter((b) => b.script.includes(DEMO));
}

let work: string;
let bin: string;

function copySources(from: string, to: string): void {
  fs.cpSync(from, to, {
    recursive: true,
    filter: (src) => !/(^|\/)(node_modules|dist|\.build)(\/|$)/.test(path.relative(from, src)),
  });
}

beforeAll(() => {
  requireBuild();
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-readme-'));
  copySources(path.join(REPO, 'packages'), path.join(work, 'packages'));
  // `npx efs-backup` runs this build; `npm ci` / `npm test` are this suite's own steps.
  bin = path.join(work, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(
    path.join(bin, 'npx'),
    `#!/bin/sh\n[ "$1" = efs-backup ] || { echo "npx $1: not an example of this README" >&2; exit 99; }\n` +
      `shift\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} "$@"\n`,
    { mode: 0o755 },
  );
  fs.writeFileSync(
    path.join(bin, 'npm'),
    `#!/bin/sh\ncase "$1" in ci|test) exit 0;; esac\necho "npm $1: not an example of this README" >&2\nexit 99\n`,
    { mode: 0o755 },
  );
});

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('the README', () => {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');

  it('has examples on the demo destination, the quick start first', () => {
    const blocks = demoBlocks(readme);
    expect(blocks.length).toBeGreaterThanOrEqual(4);
    expect(blocks[0].script).toMatch(
      /^npm ci && mkdir -p \/tmp\/efs-backup-demo && npx efs-backup backup/,
    );
  });

  it('runs every example in order, each command succeeding', () => {
    const demo = path.join(work, DEMO);
    for (const block of demoBlocks(readme)) {
      // Every /tmp path of the examples (the demo destination, a restore's target) goes in here.
      const script = block.script.replaceAll('/tmp/', `${work}/tmp/`);
      const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], {
        cwd: work,
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, EFS_BACKUP_DEBUG: '' },
      });
      if (r.status !== 0)
        throw new Error(
          `README.md:${block.line}: the example exits ${r.status}\n${block.script}\n` +
            `--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`,
        );
    }
    // The examples made the quick start's two snapshots and restored a file out of them.
    expect(fs.existsSync(path.join(demo, 'efs-backup/latest/core/src/backup.ts'))).toBe(true);
  });

  it('links only to files in the repository', () => {
    const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]);
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) {
      if (/^https?:\/\//.test(link) || link.startsWith('#')) continue;
      const target = path.resolve(REPO, link.split('#')[0]);
      expect(path.relative(REPO, target).startsWith('..'), `${link} leaves the repository`).toBe(
        false,
      );
      expect(fs.existsSync(target), `${link} does not exist`).toBe(true);
    }
  });
});
