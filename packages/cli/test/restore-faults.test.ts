/**
 * `efs-backup restore | verify | ls` when things go wrong: a restore killed with SIGKILL and
 * run again, a manifest edited to leave the target, names that are not UTF-8.
 * Needs a build (`npm run build`).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dir, file, sourceAndDestination } from '../../core/test/fixtures/tree.js';
import {
  BIN,
  cli,
  cliJson,
  expectOneLineError,
  requireBuild,
  restoreArgs,
  type CliResult,
} from './helpers.js';

beforeAll(requireBuild);

const ok = (r: CliResult, what = ''): CliResult => {
  expect(r.status, `${what}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`).toBe(0);
  return r;
};

function backupCli(src: string, dst: string): string {
  const { result, json } = cliJson(['backup', '--source', src, '--destination', dst]);
  ok(result, 'backup');
  expect(json.Status).toBe('Success');
  return json.Snapshot as string;
}

/** Every `.efs-restore-*` name below `root`. */
function temporaries(root: string): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    let names: string[];
    try {
      names = fs.readdirSync(p);
    } catch {
      return;
    }
    for (const n of names) {
      const c = path.join(p, n);
      if (n.startsWith('.efs-restore-')) out.push(path.relative(root, c));
      else if (fs.lstatSync(c).isDirectory()) walk(c);
    }
  };
  walk(root);
  return out;
}

function rsyncItemized(src: string, target: string): string {
  return execFileSync(
    'rsync',
    ['-aHcn', '--numeric-ids', '--delete', '--itemize-changes', `${src}/`, `${target}/`],
    { encoding: 'utf8' },
  );
}

/** Starts a CLI restore and kills it with SIGKILL as soon as a temporary file shows. */
async function killMidRestore(args: string[], target: string): Promise<boolean> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: 'ignore' });
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  let running = true;
  void exited.then(() => (running = false));
  let seen = false;
  const deadline = Date.now() + 30_000;
  while (running && Date.now() < deadline) {
    if (temporaries(target).length > 0) {
      child.kill('SIGKILL');
      seen = true;
      break;
    }
    await new Promise((res) => setTimeout(res, 1));
  }
  await exited;
  return seen && temporaries(target).length > 0;
}

describe('restore killed with SIGKILL, then run again', () => {
  it('the rerun (no --delete) removes the temporary files and leaves the target clean', async () => {
    // Big files: each is copied into a temporary for a while.
    const big = (seed: number): Buffer => Buffer.alloc(48 << 20, `content ${seed} `);
    const { base, src, dst } = sourceAndDestination(
      {
        b1: file(big(1)),
        d: dir({ b2: file(big(2)), b3: file(big(3)), small: file('small') }),
        b4: file(big(4)),
      },
      'efs-restore-kill-',
    );
    backupCli(src, dst);
    const target = path.join(base, 'target');
    let left = false;
    for (let attempt = 0; attempt < 5 && !left; attempt++) {
      fs.rmSync(target, { recursive: true, force: true });
      left = await killMidRestore(restoreArgs(dst, target), target);
    }
    expect(left, 'the kill never landed while a temporary file existed').toBe(true);

    const r = ok(cli(restoreArgs(dst, target)), 'rerun');
    expect(r.stdout).toMatch(/^restored /m);
    expect(temporaries(target)).toEqual([]);
    expect(rsyncItemized(src, target)).toBe('');
  });
});

// ---- hostile manifests ----------------------------------------------------------------------

function rewriteManifest(manifest: string, edit: (lines: string[]) => string[]): void {
  const lines = fs.readFileSync(manifest, 'utf8').split('\n');
  lines.pop();
  lines.pop();
  const body = edit(lines).join('\n') + '\n';
  fs.writeFileSync(manifest, `${body}#sha256 ${createHash('sha256').update(body).digest('hex')}\n`);
}

describe('a manifest edited to hold names that leave the target', () => {
  it('restore exits 3 naming the entry, writes nothing outside; ls and verify say the manifest is damaged', () => {
    const { base, src, dst } = sourceAndDestination({ a: file('a') }, 'efs-restore-evil-');
    const stamp = backupCli(src, dst);
    const manifest = path.join(dst, 'efs-backup', '.efs-backup', 'manifests', `${stamp}.manifest`);
    rewriteManifest(manifest, (lines) =>
      lines.map((l) =>
        l.startsWith('""\t')
          ? l.replace(
              /\]\]$/,
              '],["..","d",16895,4242,4242,0,0,0,""],["../PLANTED","l",41471,4242,4242,0,0,0,"/etc"]]',
            )
          : l,
      ),
    );
    const out = path.join(base, 'out');
    const target = path.join(out, 'target');
    fs.mkdirSync(target, { recursive: true });
    const before = fs.lstatSync(out);

    const r = cli(restoreArgs(dst, target));
    expect(r.status, r.stderr).toBe(3);
    expectOneLineError(r, /manifest of snapshot daily\/\S+ is damaged: .*"\.\.".*run verify/);
    const after = fs.lstatSync(out);
    expect([after.mode, after.uid, after.gid, after.mtimeMs]).toEqual([
      before.mode,
      before.uid,
      before.gid,
      before.mtimeMs,
    ]);
    expect(fs.readdirSync(out)).toEqual(['target']);

    const ls = cli(['ls', '--destination', dst]);
    expect(ls.status).toBe(3);
    expectOneLineError(ls, /manifest .* is damaged/);

    const v = cli(['verify', '--destination', dst]);
    expect(v.status).toBe(1);
    expect(v.stdout).toMatch(/^DAMAGED daily\/\S+: 1 problem/m);
    expect(v.stdout).toMatch(/^ {2}manifest: .*is damaged/m);
  });
});

// ---- names that are not UTF-8 -------------------------------------------------------------

describe('names that are not UTF-8 in the CLI output', () => {
  it('ls, verify and restore --dry-run print such a name as \\xNN', () => {
    const { base, src, dst } = sourceAndDestination({ nZ: file('hello') }, 'efs-restore-bytes-');
    const stamp = backupCli(src, dst);
    const snap = path.join(dst, 'efs-backup', 'daily', stamp);
    const manifest = path.join(dst, 'efs-backup', '.efs-backup', 'manifests', `${stamp}.manifest`);
    const st = fs.lstatSync(snap, { bigint: true });
    fs.renameSync(path.join(snap, 'nZ'), Buffer.from(`${snap}/n\xff`, 'latin1'));
    const t = (Number(st.mtimeNs / 1000n) + 0.5) / 1e6;
    fs.utimesSync(snap, t, t);
    rewriteManifest(manifest, (lines) => lines.map((l) => l.replace('"nZ"', '"n\\udcff"')));

    const ls = ok(cli(['ls', '--destination', dst]), 'ls');
    expect(ls.stdout).toMatch(/ n\\xff\n$/);
    ok(cli(['verify', '--destination', dst]), 'verify');

    const target = path.join(base, 'target');
    const dry = ok(cli(restoreArgs(dst, target, '--dry-run')), 'dry run');
    expect(dry.stdout).toMatch(/^create n\\xff$/m);
    ok(cli(restoreArgs(dst, target)), 'restore');
    expect(fs.readdirSync(target, { encoding: 'buffer' })).toEqual([Buffer.from([0x6e, 0xff])]);

    fs.writeFileSync(Buffer.from(`${snap}/x\xfe`, 'latin1'), '');
    const v = cli(['verify', '--destination', dst]);
    expect(v.status).toBe(1);
    expect(v.stdout).toMatch(/^ {2}extra: x\\xfe$/m);
  });
});
