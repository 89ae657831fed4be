/**
 * Mounting the file systems on the worker: amazon-efs-utils (`mount -t efs -o tls,iam`) by
 * default, each at `<mountRoot>/<file system id>`, with a few tries (a new stack's mount targets
 * take a moment to resolve). A path that is a mount point already is left as it is.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { WorkerConfig } from './worker-config.js';

export class MountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MountError';
  }
}

export interface MountRequest {
  fileSystemId: string;
  /** What the file system is to the run, for messages: `source`, `backup`. */
  role: string;
  readOnly: boolean;
}

export function mountPath(config: Pick<WorkerConfig, 'mountRoot'>, fileSystemId: string): string {
  return path.posix.join(config.mountRoot, fileSystemId);
}

/** Whether `dir` is a mount point (it is in /proc/self/mounts). */
export function isMountPoint(dir: string): boolean {
  try {
    const target = fs.realpathSync(dir);
    return fs
      .readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[1]?.replace(/\\040/g, ' ') === target);
  } catch {
    return false;
  }
}

function run(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: 120_000 }, (err, stdout, stderr) => {
      if (!err) return resolve();
      const said = `${stderr}${stdout}`.trim().split('\n').slice(-3).join(' ');
      reject(new Error(said || err.message));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Mounts one file system; throws a MountError naming it and what the mount command said. */
export async function mount(
  config: Pick<WorkerConfig, 'mountRoot' | 'mount'>,
  m: MountRequest,
  signal?: AbortSignal,
): Promise<string> {
  const dir = mountPath(config, m.fileSystemId);
  fs.mkdirSync(dir, { recursive: true });
  if (isMountPoint(dir)) return dir;
  const options = m.readOnly ? `${config.mount.options},ro` : config.mount.options;
  const argv = config.mount.command.map((a) =>
    a
      .replaceAll('{fileSystemId}', m.fileSystemId)
      .replaceAll('{path}', dir)
      .replaceAll('{options}', options),
  );
  let last = '';
  for (let attempt = 1; attempt <= config.mount.attempts; attempt++) {
    try {
      await run(argv);
      return dir;
    } catch (e) {
      last = (e as Error).message;
      if (attempt < config.mount.attempts && !signal?.aborted)
        await sleep(config.mount.retryDelaySeconds * 1000);
      else break;
    }
  }
  throw new MountError(
    `cannot mount the ${m.role} file system ${m.fileSystemId} at ${dir}: ${last} (is there a mount target in the worker's Availability Zone, and does its security group allow NFS, TCP 2049, from the worker?)`,
  );
}
