/**
 * The orchestrator's settings: the Lambda's environment, which the CDK construct sets. One
 * schema checks them and gives their type.
 */
import * as z from 'zod';
import { checkRunDir, DEFAULT_RUN_DIR } from './stop-command.js';
import { WorkersSchema } from './worker-config.js';

export const DEFAULT_STOP_RULE_PREFIX = 'efs-backup-stop-';
/** Where the SSM agent writes the stop command's output in the log bucket. */
export const SSM_OUTPUT_PREFIX = 'ssm-logs/';
/** Launch failures of one run after which it is closed Failed rather than left to its stop. */
export const DEFAULT_LAUNCH_FAILURE_LIMIT = 3;

/** A stop this soon after its run's start is ignored, as the original did. */
export const MIN_MINUTES_BEFORE_STOP = 10;
/** The id of the orchestrator among the stop rule's targets. */
export const STOP_TARGET_ID = 'orchestrator';

const flag = z
  .enum(['true', 'false', 'Yes', 'No', 'yes', 'no'])
  .transform((v) => v === 'true' || v.toLowerCase() === 'yes');

/** The orchestrator's settings: the Lambda's environment, set by the CDK construct. */
export const OrchestratorSettingsSchema = z.object({
  TABLE_NAME: z.string().min(1),
  TOPIC_ARN: z.string().min(1),
  AUTO_SCALING_GROUP_NAME: z.string().min(1),
  SOURCE_FILE_SYSTEM_ID: z.string().min(1),
  BACKUP_FILE_SYSTEM_ID: z.string().min(1),
  /** Where the worker mounts each file system: `<MOUNT_ROOT>/<file system id>`. */
  MOUNT_ROOT: z.string().startsWith('/').default('/mnt/efs'),
  RUN_DIR: z.string().default(DEFAULT_RUN_DIR).transform(checkRunDir),
  NOTIFY_ON_SUCCESS: flag.default(false),
  EXPIRE_DAYS: z.coerce.number().positive().default(90),
  /** Every stop rule's name starts with it: unique to the stack and the construct. */
  STOP_RULE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,27}$/)
    .default(DEFAULT_STOP_RULE_PREFIX),
  /** The log bucket: the stop command's output goes there, under `ssm-logs/`. @default none kept */
  LOG_BUCKET: z.string().min(3).optional(),
  /** The stack's name, for the stop rules' descriptions. @default none */
  STACK_NAME: z.string().min(1).optional(),
  /** The staleness alarm's hours without a successful run, for its notice. @default unsaid */
  STALE_AFTER_HOURS: z.coerce.number().positive().optional(),
  /** The label of the stack's backup set, for the staleness notice. @default unsaid */
  LABEL: z.string().min(1).optional(),
  /** Instances a start asks the group for: the workers that build one snapshot. @default 1 */
  WORKERS: WorkersSchema.default(1),
  /** Launch failures of a run before it is closed Failed. @default 3 */
  LAUNCH_FAILURE_LIMIT: z.coerce.number().int().min(1).default(DEFAULT_LAUNCH_FAILURE_LIMIT),
});
export type OrchestratorSettings = z.infer<typeof OrchestratorSettingsSchema>;

/** The environment as the construct writes it (every value a string). */
export type OrchestratorEnvironment = {
  [K in keyof z.input<typeof OrchestratorSettingsSchema>]: string;
};
