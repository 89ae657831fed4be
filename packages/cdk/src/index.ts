/** @efs-backup/cdk: the constructs and the app of the AWS deployment. */
export { EfsToEfsBackup } from './backup.js';
export type { EfsToEfsBackupProps } from './backup.js';
export { EfsToEfsRestore } from './restore.js';
export type { EfsToEfsRestoreProps } from './restore.js';
export { RunStore } from './run-store.js';
export type { RunStoreProps } from './run-store.js';
export { WorkerHost } from './worker-host.js';
export type { WorkerHostProps } from './worker-host.js';
export { BackupDashboard } from './dashboard.js';
export type { BackupDashboardProps } from './dashboard.js';
export { BackupStack, RestoreStack } from './stacks.js';
export { DistSynthesizer } from './dist-synthesizer.js';
export type { DistAsset, DistSynthesizerProps } from './dist-synthesizer.js';
export { BACKUP_STACK, RESTORE_STACK, buildApp } from './app.js';
export type { EfsBackupApp, EfsBackupAppOptions } from './app.js';
export { writeDist } from './dist.js';
export type { DistOptions, DistOutput } from './dist.js';
export { zipDirectory } from './zip.js';
