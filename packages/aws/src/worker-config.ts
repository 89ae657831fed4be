/**
 * The worker's settings: a JSON file the instance's user data writes from the stack (on AWS,
 * `/etc/efs-backup/worker.json`). One schema gives the type and checks the file.
 */
import fs from 'node:fs';
import * as z from 'zod';
import { checkRunDir, DEFAULT_RUN_DIR } from './stop-command.js';

export const DEFAULT_MOUNT_COMMAND = [
  'mount',
  '-t',
  'efs',
  '-o',
  '{options}',
  '{fileSystemId}:/',
  '{path}',
];

const MountSchema = z.object({
  /**
   * The mount command; `{fileSystemId}`, `{path}` and `{options}` are replaced.
   * @default amazon-efs-utils: mount -t efs -o {options} {fileSystemId}:/ {path}
   */
  command: z.array(z.string()).min(1).default(DEFAULT_MOUNT_COMMAND),
  /** Mount options; the source is also mounted read-only (`ro`) by a backup. @default tls,iam */
  options: z.string().default('tls,iam'),
  /** Mount targets take a while to resolve in a new stack: tries before giving up. @default 3 */
  attempts: z.number().int().min(1).default(3),
  /** @default 10 */
  retryDelaySeconds: z.number().min(0).default(10),
});

/** A yes/no: a boolean, or "true"/"false" as a CloudFormation parameter renders it. */
const flag = z
  .union([z.boolean(), z.enum(['true', 'false'])])
  .transform((v) => v === true || v === 'true');

/** A rate limit: a number ≥ 0 (or its text); 0 means none. */
const limit = z.coerce.number().min(0);

/** The most workers one run may be given (the template's Workers parameter allows 1 to this). */
export const MAX_WORKERS = 16;

/** How many workers one run is given: a whole number from 1 to MAX_WORKERS, or its text. */
export const WorkersSchema = z.coerce.number().int().min(1).max(MAX_WORKERS);

/** Half the 2.1 TiB of credits a new file system starts with: a backup leaves the rest. */
export const DEFAULT_BURST_CREDIT_FLOOR = 2 ** 40;

export const RestoreSettingsSchema = z.object({
  /** The backup set (folder label) on the backup file system. @default efs-backup */
  label: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/)
    .default('efs-backup'),
  /** The snapshot: `latest`, `daily.0`, a stamp or a BackupId. */
  snapshot: z.string().min(1).default('latest'),
  /** A directory or a file inside the snapshot. @default the whole snapshot */
  subdir: z.string().default(''),
  /** Where on the target file system the restore goes (a sub-path of it). */
  targetPrefix: z
    .string()
    .regex(/^\/(?!.*(^|\/)\.\.(\/|$))/)
    .default('/efs-restore'),
  /** Remove from the target what the snapshot does not hold. @default false */
  delete: flag.default(false),
  /** A restore is asked for by a person: its success is notified too. @default true */
  notifyOnSuccess: flag.default(true),
  /**
   * Minutes the restore may take: the worker stops it 15 minutes before they are up (Incomplete,
   * notified, its group scaled to 0); the template keeps it from 30 to 1440. @default 720
   */
  windowMinutes: z.coerce.number().positive().default(720),
});

export const WorkerConfigSchema = z
  .object({
    region: z.string().min(1),
    table: z.string().min(1),
    /**
     * How many instances build one snapshot together (the template's Workers); a run's record
     * says its own. 1: the worker runs the backup alone, as the original did. @default 1
     */
    workers: WorkersSchema.default(1),
    /** The lease table the workers of one run share its work through (key Scope, Key). */
    leaseTable: z.string().min(1).optional(),
    /** A lease's life, in seconds, when several workers share a run. @default the engine's: 60 */
    leaseSeconds: z.coerce.number().positive().optional(),
    bucket: z.string().min(1),
    /** @default logs/ */
    logPrefix: z.string().default('logs/'),
    topicArn: z.string().min(1),
    autoScalingGroupName: z.string().min(1),
    /** The termination lifecycle hook the worker completes (a backup worker has one). */
    lifecycleHookName: z.string().min(1).optional(),
    /** The file system backed up (a backup), or restored into (a restore). */
    sourceFileSystemId: z.string().min(1),
    /** The file system that holds the backups. */
    backupFileSystemId: z.string().min(1),
    /** Each file system is mounted at `<mountRoot>/<file system id>`. @default /mnt/efs */
    mountRoot: z.string().startsWith('/').default('/mnt/efs'),
    /** Where the pid file and the stop file are. @default /run/efs-backup */
    runDir: z.string().default(DEFAULT_RUN_DIR).transform(checkRunDir),
    mount: MountSchema.default(MountSchema.parse({})),
    /** @default the instance's, from the instance metadata service (IMDSv2) */
    instanceId: z.string().min(1).optional(),
    /** @default the instance's, from the instance metadata service (IMDSv2) */
    instanceType: z.string().min(1).optional(),
    /** File-system calls in flight. @default the engine's: 64 on EFS */
    concurrency: z.number().int().min(1).max(1024).optional(),
    /**
     * Bytes read per second from the source, in MiB (the engine's maxMiBps); 0: no limit. A
     * number or its text, as a template parameter renders it. @default 0
     */
    maxMiBps: limit.default(0),
    /** File-system calls per second on the source (the engine's maxOps); 0: no limit. @default 0 */
    maxOps: limit.default(0),
    /**
     * While the source is in Bursting mode and its BurstCreditBalance (bytes) is under this, the
     * run slows to `lowCreditMaxMiBps`; 0: never. @default 1 TiB (1099511627776)
     */
    burstCreditFloor: z.coerce.number().min(0).default(DEFAULT_BURST_CREDIT_FLOOR),
    /** The read rate (MiB/s) while the source's credits are under the floor. @default 10 */
    lowCreditMaxMiBps: z.coerce.number().positive().default(10),
    /** How often the source's credits are read while the run goes. @default 300 */
    creditCheckSeconds: z.coerce.number().positive().default(300),
    /** Days records and logs are kept. @default 90 */
    expireDays: z.number().positive().default(90),
    /** How long a worker that finished early waits to be told to stop. @default 900 */
    stopWaitSeconds: z.number().min(0).default(900),
    /** Service endpoints, for emulators and tests. @default AWS's */
    endpoints: z
      .object({
        dynamodb: z.url(),
        s3: z.url(),
        sns: z.url(),
        autoScaling: z.url(),
        efs: z.url(),
        cloudwatch: z.url(),
      })
      .partial()
      .default({}),
    /** What a restore worker restores. */
    restore: RestoreSettingsSchema.optional(),
  })
  .refine((c) => c.workers === 1 || c.leaseTable !== undefined, {
    message: 'workers above 1 need a leaseTable to share the run through',
    path: ['leaseTable'],
  });
export type WorkerConfig = z.infer<typeof WorkerConfigSchema>;
/** The file as written: defaults may be left out. */
export type WorkerConfigInput = z.input<typeof WorkerConfigSchema>;

export function readWorkerConfig(file: string): WorkerConfig {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read the worker configuration ${file}: ${(e as Error).message}`);
  }
  const r = WorkerConfigSchema.safeParse(json);
  if (!r.success) throw new Error(`${file}: ${z.prettifyError(r.error)}`);
  return r.data;
}
