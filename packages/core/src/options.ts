import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { badInput, OptionError } from './errors.js';
import { checkExcludeRules } from './excludes.js';
import { checkInterval, checkLabel, existingDirectory } from './layout.js';

/** The most worker processes one run takes. */
export const MAX_WORKERS = 64;

export interface BackupOptions {
  /** The file system (or directory) to protect. */
  source: string;
  /** The sub-path of the source to back up. @default '/' */
  prefix?: string;
  /** The file system that holds the backups; it must exist. */
  destination: string;
  /** The backup set's folder on the destination. @default 'efs-backup' */
  label?: string;
  /** The series tag. @default 'daily' */
  interval?: string;
  /** Complete snapshots of the interval to keep. @default 7 */
  retain?: number;
  /** Minutes the run may take; it stops gracefully before. @default no limit */
  windowMinutes?: number;
  /** File-system calls in flight. @default from the source's file-system type */
  concurrency?: number;
  /**
   * Keep extended attributes and POSIX ACLs (needs the optional `@napi-rs/xattr`).
   * @default true
   */
  xattrs?: boolean;
  /**
   * Hash every source file and compare it with the previous manifest's digest, for the rare
   * change that keeps every stat field (rsync's `-c`): slow, it reads everything.
   * @default false
   */
  checksum?: boolean;
  /** At most this many MiB read from the source per second, over every call in flight. @default no limit */
  maxMiBps?: number;
  /** At most this many calls on the source per second. @default no limit */
  maxOps?: number;
  /**
   * Worker processes that build the snapshot together (scale-out): the command line starts
   * them, each one a `backup()` with `share`; the engine itself is always one of them. Each has
   * the run's `concurrency` and throughput limits as its own. @default 1 (a run of its own)
   */
  workers?: number;
  /**
   * gitignore-style patterns of what to leave out, relative to the backed-up root (source plus
   * prefix), in order: the last that matches decides (`!` re-includes). An excluded directory
   * is not descended into. Recorded in the snapshot's manifest and the run's record.
   * @default none
   */
  exclude?: string[];
  /**
   * Names (such as CACHEDIR.TAG) whose presence in a directory leaves that directory's
   * content out: the directory is kept, empty. @default none
   */
  excludeIfPresent?: string[];
}

/**
 * Every option of a run besides its source and destination, by name: what a job may set, and
 * what a run's started workers are given (all but `workers`).
 */
export const RUN_OPTIONS = [
  'prefix',
  'label',
  'interval',
  'retain',
  'windowMinutes',
  'concurrency',
  'xattrs',
  'checksum',
  'maxMiBps',
  'maxOps',
  'workers',
  'exclude',
  'excludeIfPresent',
] as const satisfies readonly (keyof BackupOptions)[];
/** The compiler holds the list to `BackupOptions`: an option left out is an error naming it. */
type Unlisted = Exclude<
  keyof BackupOptions,
  (typeof RUN_OPTIONS)[number] | 'source' | 'destination'
>;
const everyOptionListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyOptionListed;

export interface ResolvedOptions {
  source: string;
  prefix: string;
  /** source + prefix, resolved. */
  sourceRoot: string;
  destination: string;
  label: string;
  interval: string;
  retain: number;
  windowMinutes: number | null;
  concurrency: number;
  /** The source is on a network file system (NFS, EFS, FUSE): many calls in flight there. */
  sourceRemote: boolean;
  /** The same for the destination; each side's calls are chosen by its own. */
  destinationRemote: boolean;
  xattrs: boolean;
  checksum: boolean;
  maxMiBps: number | null;
  maxOps: number | null;
  /** null: a run of its own; a number (1 too): a shared run of that many workers. */
  workers: number | null;
  exclude: string[];
  excludeIfPresent: string[];
}

/**
 * The one window rule, for the command line, the configuration, the service, the AWS worker
 * and the engine: a number of minutes, fractions allowed, at least a tenth of a minute.
 */
export const MIN_WINDOW_MINUTES = 0.1;
export const WINDOW_RULE = `a number of minutes, at least ${MIN_WINDOW_MINUTES} (fractions allowed)`;

export function isWindowMinutes(n: number): boolean {
  return Number.isFinite(n) && n >= MIN_WINDOW_MINUTES;
}

/** Throws BAD_INPUT unless `n` is a window by the one rule. */
export function checkWindowMinutes(n: number): void {
  if (!isWindowMinutes(n)) throw badInput(`window must be ${WINDOW_RULE}, not ${n}`);
}

export const DEFAULTS = { prefix: '/', label: 'efs-backup', interval: 'daily', retain: 7 } as const;

/** Checks every option; throws BAD_INPUT with a message naming the problem. Writes nothing. */
export function resolveBackupOptions(o: BackupOptions): ResolvedOptions {
  const label = o.label ?? DEFAULTS.label;
  const interval = o.interval ?? DEFAULTS.interval;
  const retain = o.retain ?? DEFAULTS.retain;
  checkLabel(label);
  checkInterval(interval);
  if (!Number.isInteger(retain) || retain < 1)
    throw badInput(`retain must be a positive integer, not ${retain}`);
  if (o.windowMinutes !== undefined) checkWindowMinutes(o.windowMinutes);
  if (
    o.concurrency !== undefined &&
    !(Number.isInteger(o.concurrency) && o.concurrency >= 1 && o.concurrency <= 1024)
  ) {
    throw badInput(`concurrency must be an integer from 1 to 1024, not ${o.concurrency}`);
  }
  if (
    o.workers !== undefined &&
    !(Number.isInteger(o.workers) && o.workers >= 1 && o.workers <= MAX_WORKERS)
  ) {
    throw badInput(`workers must be an integer from 1 to ${MAX_WORKERS}, not ${o.workers}`);
  }
  for (const k of ['maxMiBps', 'maxOps'] as const) {
    const v = o[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0))
      throw badInput(`${k} must be a number above 0, not ${String(v)}`);
  }
  for (const k of ['xattrs', 'checksum'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean')
      throw badInput(`${k} must be true or false, not ${String(o[k])}`);
  }
  checkExcludeRules(o);
  if (!o.source) throw badInput('source is required');
  if (!o.destination) throw badInput('destination is required');
  const prefix = normalizePrefix(o.prefix ?? DEFAULTS.prefix);
  const source = readableDir(o.source, 'source');
  const sourceRoot = prefix === '/' ? source : path.join(source, prefix);
  let rootStat: fs.Stats;
  try {
    rootStat = fs.lstatSync(sourceRoot);
  } catch {
    throw new OptionError('prefix', prefix, `does not exist in source ${source}`);
  }
  if (!rootStat.isDirectory())
    throw new OptionError('prefix', prefix, `is not a directory in source ${source}`);
  try {
    fs.accessSync(sourceRoot, fs.constants.R_OK | fs.constants.X_OK);
  } catch {
    throw new OptionError('prefix', prefix, `is not readable in source ${source}`);
  }
  const destination = existingDirectory(o.destination, 'destination');
  if (within(destination, sourceRoot)) {
    throw new OptionError(
      'destination',
      destination,
      `is inside the source ${sourceRoot}: the backup would back itself up`,
    );
  }
  if (within(sourceRoot, destination)) {
    throw new OptionError('source', sourceRoot, `is inside the destination ${destination}`);
  }
  const sourceRemote = isRemote(sourceRoot);
  const destinationRemote = isRemote(destination);
  return {
    source,
    prefix,
    sourceRoot,
    destination,
    label,
    interval,
    retain,
    windowMinutes: o.windowMinutes ?? null,
    // Sized for the slower side: one side on a network file system waits on every call.
    concurrency: o.concurrency ?? concurrencyFor(sourceRemote || destinationRemote),
    sourceRemote,
    destinationRemote,
    xattrs: o.xattrs ?? true,
    checksum: o.checksum ?? false,
    maxMiBps: o.maxMiBps ?? null,
    maxOps: o.maxOps ?? null,
    workers: o.workers ?? null,
    exclude: [...(o.exclude ?? [])],
    excludeIfPresent: [...(o.excludeIfPresent ?? [])],
  };
}

function normalizePrefix(prefix: string): string {
  if (prefix.includes('\0')) throw badInput('prefix must not contain NUL');
  const parts = prefix.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw badInput(`prefix "${prefix}" must not contain ".."`);
  return '/' + parts.join('/');
}

function readableDir(p: string, what: string): string {
  const real = existingDirectory(p, what);
  try {
    fs.accessSync(real, fs.constants.R_OK | fs.constants.X_OK);
  } catch {
    throw new OptionError(what, p, 'is not readable');
  }
  return real;
}

/** True when `inner` is `outer` or below it. */
export function within(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

// statfs f_type of file systems where every call crosses a network (or a user-space daemon).
const REMOTE_FS_TYPES = new Set([
  0x6969, // NFS (Amazon EFS)
  0x65735546, // FUSE
  0xff534d42, // CIFS
  0xfe534d42, // SMB2
  0x517b, // SMB
  0x00c36400, // Ceph
  0x0bd00bd0, // Lustre
  0x47504653, // GPFS
  0x01021997, // 9p
]);

/** The network default keeps many calls in flight; a local disk wants about its core count. */
export const NETWORK_CONCURRENCY = 64;

export function isRemote(p: string): boolean {
  try {
    return REMOTE_FS_TYPES.has(fs.statfsSync(p).type);
  } catch {
    return true;
  }
}

export function defaultConcurrency(p: string): number {
  return concurrencyFor(isRemote(p));
}

function concurrencyFor(remote: boolean): number {
  return remote ? NETWORK_CONCURRENCY : Math.max(4, os.availableParallelism());
}
