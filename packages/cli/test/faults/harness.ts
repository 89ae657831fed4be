/**
 * Fault injection for the CLI tests: the real `efs-backup` process run under faultfs.so (an
 * LD_PRELOAD shim that fails or delays chosen libc calls by path, see faultfs.c), and two outside
 * judges of a snapshot: rsync against the source, and the CLI's own `verify`.
 *
 * `EFS_BACKUP_BIN` runs another build of the CLI (default: this checkout's), so one test file
 * can be shown to fail on an old build and to pass on a new one. `FAULTFS_SO` names a built shim
 * (CI builds it once); otherwise it is built here with `cc` into `.build/` (ignored by git).
 */
import {
  execFileSync,
  spawn,
  spawnSync,
  type ChildProcess,
  type SpawnSyncOptions,
} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { restoreArgs } from '../helpers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '../../../..');
export const BIN = process.env.EFS_BACKUP_BIN
  ? path.resolve(process.env.EFS_BACKUP_BIN)
  : path.join(REPO, 'packages/cli/bin/efs-backup.cjs');

export const LABEL = 'efs-backup';
export const INTERVAL = 'daily';
export const STAMP = /^\d{8}T\d{6}Z$/;

// ---- tools ----------------------------------------------------------------------------------

const toolCache = new Map<string, string | null>();

/** Why `name` cannot be used here, or null when it is on the PATH. */
export function missingTool(name: string): string | null {
  if (!toolCache.has(name)) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    toolCache.set(name, r.status === 0 ? null : `${name} is not installed (not on the PATH)`);
  }
  return toolCache.get(name)!;
}

/**
 * The reason to skip a test needing `names`, printed once (a skipped test always says why), or
 * null when all are there. Use as `it.skipIf(skipReason('strace'))(...)`.
 */
export function skipReason(...names: string[]): string | null {
  for (const n of names) {
    const why = n === 'faultfs' ? shimMissing() : missingTool(n);
    if (why) {
      console.warn(`SKIPPED (needs ${n}): ${why}`);
      return why;
    }
  }
  return null;
}

/** Throws when `name` is missing (for set-up that cannot go on without it). */
export function requireTool(name: string): void {
  const why = name === 'faultfs' ? shimMissing() : missingTool(name);
  if (why) throw new Error(why);
}

// ---- the shim -------------------------------------------------------------------------------

let shim: { path: string | null; why: string | null } | undefined;

function buildShim(): { path: string | null; why: string | null } {
  const given = process.env.FAULTFS_SO;
  if (given) {
    if (fs.existsSync(given)) return { path: path.resolve(given), why: null };
    return { path: null, why: `FAULTFS_SO=${given} does not exist` };
  }
  const why = missingTool('cc');
  if (why) return { path: null, why: `cannot build faultfs.so: ${why}` };
  const source = path.join(HERE, 'faultfs.c');
  const dir = path.join(HERE, '.build');
  const out = path.join(dir, 'faultfs.so');
  fs.mkdirSync(dir, { recursive: true });
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs >= fs.statSync(source).mtimeMs)
    return { path: out, why: null };
  // Two test files may build at once: each builds its own, the rename is atomic.
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-o', tmp, source, '-ldl', '-lpthread'], {
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    return { path: null, why: `cc failed on faultfs.c:\n${r.stderr}` };
  }
  fs.renameSync(tmp, out);
  return { path: out, why: null };
}

function shimMissing(): string | null {
  shim ??= buildShim();
  return shim.why;
}

/** The built faultfs.so, or null (with the reason printed) when it cannot be had. */
export function shimPath(): string | null {
  shim ??= buildShim();
  if (shim.why) console.warn(`faultfs.so unavailable: ${shim.why}`);
  return shim.path;
}

// ---- running the CLI ------------------------------------------------------------------------

export interface RunOptions {
  /** FAULTFS rules (`call:substring:action[:skip=N][:times=M]`, `;`-separated). */
  faults?: string;
  env?: NodeJS.ProcessEnv;
  /** Killed (SIGKILL) after this long; the result then has `timedOut`. Default 60 s. */
  timeoutMs?: number;
  /** A command to run the CLI under, e.g. ['strace', '-f', '-o', FILE]. */
  wrapper?: string[];
  cwd?: string;
}

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** The parsed stdout when it is JSON, else undefined. */
  json?: Record<string, unknown>;
}

/** The command and environment for one CLI run. */
function command(
  args: string[],
  o: RunOptions,
): { file: string; argv: string[]; env: NodeJS.ProcessEnv } {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    EFS_BACKUP_DEBUG: '',
    // libuv may otherwise do file I/O through io_uring, past libc and the shim.
    UV_USE_IO_URING: '0',
    ...o.env,
  };
  if (o.faults !== undefined) {
    const so = shimPath();
    if (!so) throw new Error('faultfs.so is unavailable: skip the test with skipReason("faultfs")');
    env.LD_PRELOAD = [so, env.LD_PRELOAD].filter(Boolean).join(':');
    env.FAULTFS = o.faults;
  }
  const argv = [...(o.wrapper ?? []), process.execPath, BIN, ...args];
  return { file: argv[0]!, argv: argv.slice(1), env };
}

function parseJson(stdout: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(stdout);
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Runs the CLI (under the shim when `faults` is given) and waits for it. */
export function runCli(args: string[], o: RunOptions = {}): RunResult {
  const c = command(args, o);
  const options: SpawnSyncOptions = {
    encoding: 'utf8',
    env: c.env,
    cwd: o.cwd,
    timeout: o.timeoutMs ?? 60_000,
    killSignal: 'SIGKILL',
    maxBuffer: 64 << 20,
  };
  const r = spawnSync(c.file, c.argv, options);
  const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  if (r.error && !timedOut) throw r.error;
  const stdout = String(r.stdout ?? '');
  return {
    status: r.status,
    signal: r.signal,
    stdout,
    stderr: String(r.stderr ?? ''),
    timedOut,
    json: parseJson(stdout),
  };
}

export interface RunningCli {
  child: ChildProcess;
  /** Resolves when the process has exited (or was killed at the timeout). */
  done: Promise<RunResult>;
}

/** Starts the CLI and returns at once, for SIGSTOP, kill -9, or changes made while it runs. */
export function startCli(args: string[], o: RunOptions = {}): RunningCli {
  const c = command(args, o);
  const child = spawn(c.file, c.argv, {
    env: c.env,
    cwd: o.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, o.timeoutMs ?? 60_000);
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, timedOut, json: parseJson(stdout) });
    });
  });
  return { child, done };
}

/** Runs `efs-backup backup --source src --destination dst --json ...extra`. */
export function backup(
  src: string,
  dst: string,
  o: RunOptions = {},
  extra: string[] = [],
): RunResult {
  return runCli(['backup', '--source', src, '--destination', dst, '--json', ...extra], o);
}

/** Everything about a run, for assertion messages. */
export function describeRun(r: RunResult): string {
  return [
    `exit ${r.status}${r.signal ? ` (signal ${r.signal})` : ''}${r.timedOut ? ' (timed out, killed)' : ''}`,
    `--- stdout`,
    r.stdout.slice(0, 4000),
    `--- stderr`,
    r.stderr.slice(0, 4000),
  ].join('\n');
}

// ---- trees and snapshots --------------------------------------------------------------------

/** A fresh temporary directory (its real path); remove it with `cleanup`. */
export function tempDir(prefix = 'efs-faults-'): string {
  return fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
}

/** Removes a test's directory, read-only snapshot folders and all. */
export function cleanup(dir: string): void {
  if (!dir || !fs.existsSync(dir)) return;
  spawnSync('chmod', ['-R', 'u+rwx', dir]);
  fs.rmSync(dir, { recursive: true, force: true });
}

/** The complete snapshots (their stamps, oldest first) of one interval. */
export function snapshots(dst: string, label = LABEL, interval = INTERVAL): string[] {
  const d = path.join(dst, label, interval);
  return fs.existsSync(d)
    ? fs
        .readdirSync(d)
        .filter((n) => STAMP.test(n))
        .sort()
    : [];
}

export function snapshotDir(
  dst: string,
  stamp: string,
  label = LABEL,
  interval = INTERVAL,
): string {
  return path.join(dst, label, interval, stamp);
}

export function latestDir(dst: string, label = LABEL): string {
  return path.join(dst, label, 'latest');
}

/** Where the set's manifests, journals and lock live. */
export function stateDir(dst: string, label = LABEL): string {
  return path.join(dst, label, '.efs-backup');
}

// ---- judges ---------------------------------------------------------------------------------

/**
 * rsync as the outside judge: `rsync -aHAXcn --numeric-ids --delete --itemize-changes src/ snap/`,
 * every line it prints (one per differing entry); empty when the snapshot equals the source.
 * Names that are not UTF-8 come back with their bytes as latin1.
 */
export function rsyncDiff(src: string, snap: string, extra: string[] = []): string[] {
  const out = execFileSync(
    'rsync',
    ['-aHAXcn', '--numeric-ids', '--delete', '--itemize-changes', ...extra, `${src}/`, `${snap}/`],
    { maxBuffer: 64 << 20 },
  );
  return out
    .toString('latin1')
    .split('\n')
    .filter((l) => l.trim() !== '');
}

/** Runs `efs-backup verify` on one snapshot of the set. */
export function verifyClean(
  destination: string,
  label = LABEL,
  selector = 'latest',
): { ok: boolean; output: string } {
  const r = runCli([
    'verify',
    '--destination',
    destination,
    '--label',
    label,
    '--snapshot',
    selector,
  ]);
  return { ok: r.status === 0, output: describeRun(r) };
}

/** Grants write (and search) on the directories of `rel`'s path inside a snapshot. */
export function makeWritable(snapshot: string, rel: string): void {
  let d = snapshot;
  fs.chmodSync(d, 0o700);
  for (const part of path
    .dirname(rel)
    .split('/')
    .filter((p) => p !== '.')) {
    d = path.join(d, part);
    fs.chmodSync(d, 0o700);
  }
}

/** A realistic small tree: `n` files of a few hundred bytes in a handful of directories. */
export function smallTree(root: string, n = 30, seed = 'v1'): void {
  fs.mkdirSync(root, { recursive: true });
  for (let i = 0; i < n; i++) {
    const d = path.join(root, `d${i % 5}`, i % 2 ? 'sub' : '');
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, `f${i}.txt`), `${seed} file ${i}\n`.repeat(20 + i));
  }
  fs.symlinkSync('d0/f0.txt', path.join(root, 'link'));
  fs.mkdirSync(path.join(root, 'empty'));
}

/** A copy of `src` as it is now (`cp -a`), for judging an older snapshot later. */
export function copyTree(src: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  execFileSync('cp', ['-a', `${src}/.`, to]);
}

/** Restores the newest snapshot into a fresh `target`: the differences from `src` (none: []). */
export function restoredDiff(src: string, dst: string, target: string): string[] {
  const r = runCli(restoreArgs(dst, target));
  if (r.status !== 0) return [`restore exited ${r.status}: ${describeRun(r)}`];
  return rsyncDiff(src, target);
}

/** A fresh source of `n` small files and an empty destination, under a new temp folder. */
export function sourceAndDestination(
  prefix: string,
  n = 25,
): { base: string; src: string; dst: string } {
  const base = tempDir(prefix);
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  smallTree(src, n);
  fs.mkdirSync(dst);
  return { base, src, dst };
}
