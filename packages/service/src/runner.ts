/**
 * What one backup needs from the service, without the configuration schema (zod, yaml): the
 * command line loads this for a plain `backup`, and the full entry point only for a job.
 */
export { runBackup } from './lifecycle.js';
export { createServiceLog } from './service-log.js';
export { removeStatus, writeStatus } from './status-file.js';
