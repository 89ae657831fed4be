/**
 * `@efs-backup/aws/contract`: what the CDK constructs and the AWS code must agree on (event
 * shapes, the orchestrator's environment, the worker's configuration, metric names, the stop
 * command), without the AWS SDK: cheap to load at synthesis.
 */
export * from './events.js';
export {
  BACKUP_METRICS,
  FILE_SYSTEM_METRICS,
  METRIC_DIMENSIONS,
  METRICS_NAMESPACE,
} from './metrics.js';
export type { BackupMetric, FileSystemMetric } from './metrics.js';
export * from './orchestrator-settings.js';
export { DEFAULT_RUN_DIR, PID_FILE, STOP_FILE, stopCommands } from './stop-command.js';
export {
  DEFAULT_BURST_CREDIT_FLOOR,
  DEFAULT_MOUNT_COMMAND,
  MAX_WORKERS,
  RestoreSettingsSchema,
  WorkerConfigSchema,
  WorkersSchema,
} from './worker-config.js';
export type { WorkerConfig, WorkerConfigInput } from './worker-config.js';
