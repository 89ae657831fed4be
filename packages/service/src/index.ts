/**
 * @efs-backup/service: the configuration, the run lifecycle written against ports, the
 * scheduler and the adapters that need no native addon. The SQLite store and the local wiring
 * are in `@efs-backup/service/local`, so a bundle of this entry point has no native addon.
 */
export {
  ConfigError,
  ConfigSchema,
  configJsonSchema,
  DEFAULT_CONFIG_FILE,
  DEFAULT_EXPIRE_DAYS,
  findJob,
  JobSchema,
  loadConfig,
  parseConfig,
  parseSchedule,
} from './config.js';
export type { Config, Job, LoadOptions, Notifications } from './config.js';
export { ManualClock, systemClock } from './clock.js';
export type { Clock } from './clock.js';
export { engineOptions, recordSkipped, runBackup } from './lifecycle.js';
export type {
  Engine,
  JobSpec,
  NoticeOutcome,
  ResolvedJob,
  RunOptions,
  RunOutcome,
  RunPorts,
  StopReason,
} from './lifecycle.js';
export { composeNotice, runName, shouldNotify, summary, whatToDo } from './notice.js';
export { silentLog } from './ports.js';
export type {
  LogStore,
  Notice,
  Notifier,
  RecordQuery,
  RecordStore,
  RunLog,
  ServiceLog,
} from './ports.js';
export { emptyFigures, END_STATUSES, expireItem, newRunRecord, RECORD_FIELDS } from './record.js';
export type { BackupStart, RestoreStart, RunKind, RunRecord, RunStatus } from './record.js';
export { Scheduler } from './scheduler.js';
export type { SchedulerOptions } from './scheduler.js';
export { readStatuses, removeStatus, statusDir, writerGone, writeStatus } from './status-file.js';
export type { RunningNow, SetStatus } from './status-file.js';
export { FileLogStore, readRunLog } from './file-log-store.js';
export { EmailNotifier, smtpTarget } from './email-notifier.js';
export { NoticeError } from './notice-error.js';
export type { EmailOptions } from './email-notifier.js';
export { WebhookNotifier, webhookTarget } from './webhook-notifier.js';
export type { WebhookOptions } from './webhook-notifier.js';
export { ConsoleNotifier } from './console-notifier.js';
export { createServiceLog } from './service-log.js';
export { DEFAULT_STALE_AFTER_HOURS, defaultStaleAfterHours, staleness } from './staleness.js';
export type { Staleness } from './staleness.js';
