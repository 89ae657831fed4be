/**
 * @efs-backup/aws: the AWS adapters of the service's ports (DynamoDB records, S3 logs, SNS
 * notices), the orchestrator Lambda and the EC2 worker agents of backups and restores.
 */
export * from './contract.js';
export { DynamoDbRecordStore, attributesOf, recordOf } from './dynamodb-record-store.js';
export type { DynamoDbRecordStoreOptions, ItemFilter } from './dynamodb-record-store.js';
export { S3LogStore } from './s3-log-store.js';
export type { S3LogStoreOptions } from './s3-log-store.js';
export { SnsNotifier, snsSubject } from './sns-notifier.js';
export type { SnsNotifierOptions } from './sns-notifier.js';
export { RUN_ATTRIBUTES } from './run-item.js';
export type { RunAttributes, RunItem } from './run-item.js';
export { metricsLine, metricValues } from './metrics.js';
export { Orchestrator, oneTimeCron } from './orchestrator.js';
export type {
  OrchestratorClients,
  OrchestratorOptions,
  OrchestratorResult,
} from './orchestrator.js';
export { handler } from './lambda.js';
export { claimRun, runBackupWorker, workerPorts } from './worker.js';
export type { BackupWorkerResult, WorkerOptions } from './worker.js';
export { restoreStopAfterMinutes, restoreSummary, runRestoreWorker } from './restore-worker.js';
export type { RestoreWorkerOptions } from './restore-worker.js';
export { isMountPoint, mount, MountError, mountPath } from './mount.js';
export type { MountRequest } from './mount.js';
export { StopListener } from './stop-listener.js';
export { instanceIdFromMetadata, instanceMetadata, workerClients } from './worker-clients.js';
export type { InstanceMetadata, WorkerClients } from './worker-clients.js';
export {
  burstCreditBalance,
  describeFileSystem,
  endFigures,
  startFigures,
} from './file-system-figures.js';
export type { FiguresContext, FileSystemFacts } from './file-system-figures.js';
export { readWorkerConfig } from './worker-config.js';
export { main as workerMain } from './worker-main.js';
export { jsonLog } from './json-log.js';
export { configuredLimits, CreditWatch, lowCreditLimits } from './credit-watch.js';
export type { CreditWatchOptions, CreditWatchSettings, LimitSettings } from './credit-watch.js';
export { DynamoDbLeaseStore, LEASE_TABLE_KEYS } from './dynamodb-lease-store.js';
export type { DynamoDbLeaseStoreOptions } from './dynamodb-lease-store.js';
