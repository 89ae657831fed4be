export { backup, pointLatest, startBackup } from './backup.js';
export type {
  BackupFigures,
  BackupProgress,
  BackupResult,
  BackupRunOptions,
  BackupStatus,
  BackupWarning,
  ShareOptions,
  StartedBackup,
  WorkerFigures,
} from './backup.js';
export { EfsBackupError, OptionError, RunOver, badInput, isSystemError } from './errors.js';
export type { ErrorCode } from './errors.js';
export { InFlight } from './inflight.js';
export type { Job } from './inflight.js';
export {
  BackupSet,
  checkInterval,
  checkLabel,
  isIntervalName,
  DATA_DIR,
  ensureDir,
  existingDirectory,
  existingSet,
  LATEST,
} from './layout.js';
export type { SnapshotRef } from './layout.js';
export { LabelLock, readLock } from './lock.js';
export type { LockInfo } from './lock.js';
export { ManifestIndex, MANIFEST_FORMAT } from './manifest.js';
export type { EntryKind, ManifestEntry, ManifestHeader } from './manifest.js';
export {
  defaultConcurrency,
  MAX_WORKERS,
  NETWORK_CONCURRENCY,
  resolveBackupOptions,
  RUN_OPTIONS,
  isRemote,
  DEFAULTS,
  checkWindowMinutes,
  isWindowMinutes,
  MIN_WINDOW_MINUTES,
  WINDOW_RULE,
  within,
} from './options.js';
export type { BackupOptions, ResolvedOptions } from './options.js';
export { prune } from './prune.js';
export type { PruneResult } from './prune.js';
export { removeTree } from './remove-tree.js';
export { isStamp, stampToDate, toStamp } from './stamp.js';
export { restore, differences, restoreTemporary } from './restore.js';
export type { RestoreAction, RestoreChange, RestoreOptions, RestoreResult } from './restore.js';
export { verify } from './verify.js';
export type { SnapshotVerification, VerifyOptions } from './verify.js';
export { diffManifests, entryChanges, listPath, pathHistory } from './browse.js';
export type { DiffLine, ListedEntry, PathVersion } from './browse.js';
export {
  checkSnapshotPath,
  entryAt,
  openManifest,
  openSnapshot,
  readHeader,
  resolveSnapshot,
  rootEntry,
} from './selectors.js';
export { adopt } from './adopt.js';
export type { AdoptedSnapshot, AdoptOptions } from './adopt.js';
export { formatBytes, formatCount, formatDuration } from './format.js';
export { bytesOfName, fsPath, nameFromBytes, shown } from './names.js';
export { windowDeadline } from './run-control.js';
export { Throttle, throttled } from './throttle.js';
export type { Limits } from './throttle.js';
export {
  checkExcludeRules,
  Excludes,
  excludePatternProblem,
  formatExcludes,
  ifPresentNameProblem,
  readExcludeFile,
} from './excludes.js';
export type { ExcludeRules } from './excludes.js';
export { FileLeaseStore } from './file-lease-store.js';
export { eachLimited, leaseOf, LeaseStoreBusy, shuffle, skewFrom } from './leases.js';
export { patientStore, StoreWaitStopped } from './patient-store.js';
export type {
  ClockSkew,
  LeaseRun,
  LeaseStore,
  UnitCounts,
  UnitDone,
  UnitLease,
  UnitState,
  UnitStatus,
} from './leases.js';
