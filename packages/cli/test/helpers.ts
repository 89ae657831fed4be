/**
 * Helpers for driving the real `efs-backup` command in a child process and for proving that a
 * refused command wrote nothing.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The CLI under test: this checkout's build, or another (`EFS_BACKUP_BIN`, to see a test fail on it). */
export const BIN = process.env.EFS_BACKUP_BIN
  ? path.resolve(process.env.EFS_BACKUP_BIN)
  : path.join(REPO, 'packages/cli/bin/efs-backup.cjs');

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The CLI runs from its build; `npm test` builds first. */
export function requireBuild(): void {
  const r = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(`${BIN} does not run (${r.stderr.trim()}): run \`npm run build\` first`);
}

/** Runs `node packages/cli/bin/efs-backup.cjs ...args` and waits for it. */
export function cli(args: string[], options: SpawnSyncOptions = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    ...options,
    env: { ...process.env, EFS_BACKUP_DEBUG: '', ...options.env },
  });
  if (r.error) throw r.error;
  return {
    status: r.status,
    signal: r.signal,
    stdout: String(r.stdout),
    stderr: String(r.stderr),
  };
}

/** Runs the CLI with --json and parses the record it prints. */
export function cliJson<T = Record<string, unknown>>(
  args: string[],
  options: SpawnSyncOptions = {},
): { result: CliResult; json: T } {
  const result = cli([...args, '--json'], options);
  let json: T;
  try {
    json = JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(
      `not JSON (exit ${result.status}):\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`,
    );
  }
  return { result, json };
}

/** Commander's hint after a usage error; not part of the message itself. */
const USAGE_HINT = '(run with --help for usage)';

/**
 * The message of a refused command: exactly one line naming the problem (Commander's usage
 * hint aside), and no stack trace.
 */
export function expectOneLineError(r: CliResult, names: RegExp): string {
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  expect(
    lines.filter((l) => /^\s+at /.test(l)),
    `stack trace in:\n${r.stderr}`,
  ).toEqual([]);
  const message = lines.filter((l) => l.trim() !== USAGE_HINT);
  expect(message, `stderr:\n${r.stderr}`).toHaveLength(1);
  expect(message[0]).toMatch(names);
  return message[0]!;
}

export { fingerprint } from '../../core/test/fixtures/fingerprint.js';

/** A unix socket file left in `dir` (a process that exits without closing its server). */
export function leaveSocket(file: string): void {
  const r = spawnSync(
    process.execPath,
    ['-e', "require('net').createServer().listen(process.argv[1], () => process.exit(0))", file],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`could not make a socket: ${r.stderr}`);
  if (!fs.lstatSync(file).isSocket()) throw new Error(`${file} is not a socket`);
}

/** A live process of this host whose pid a test can put in a lock; kill it when done. */
export function liveProcess(): ChildProcess {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  if (child.pid === undefined) throw new Error('could not start sleep');
  return child;
}

/** The pid of a process of this host that has exited. */
export function deadPid(): number {
  const r = spawnSync('true');
  if (r.pid === undefined || r.pid <= 0) throw new Error('could not run true');
  return r.pid;
}

/** `restore` of the newest snapshot of the default label into `target`. */
export const restoreArgs = (dst: string, target: string, ...extra: string[]): string[] => [
  'restore',
  '--destination',
  dst,
  '--snapshot',
  'latest',
  '--target',
  target,
  ...extra,
];

/** Another run's lock on the default set of `dst`, as its holder writes it. */
export function plantLock(
  dst: string,
  o: { pid: number; host?: string; heartbeatAgoMs?: number; owner?: string },
): string {
  const dataDir = path.join(dst, 'efs-backup', '.efs-backup');
  fs.mkdirSync(dataDir, { recursive: true });
  const beat = new Date(Date.now() - (o.heartbeatAgoMs ?? 0)).toISOString();
  const lock = path.join(dataDir, 'lock');
  fs.writeFileSync(
    lock,
    JSON.stringify({
      owner: o.owner ?? 'other-run-0000',
      host: o.host ?? os.hostname(),
      pid: o.pid,
      startedAt: beat,
      heartbeat: beat,
    }) + '\n',
  );
  return lock;
}
