/**
 * `@efs-backup/aws/bundles`: where `npm run bundle -w @efs-backup/aws` (part of the root build)
 * writes the two deployable bundles, for the CDK app to take as assets.
 */
import { fileURLToPath } from 'node:url';

/** The orchestrator Lambda's code: a directory holding `index.js` (handler `index.handler`). */
export const ORCHESTRATOR_BUNDLE_DIR = fileURLToPath(
  new URL('./bundles/orchestrator', import.meta.url),
);
/** The worker agent: one CommonJS file for the instance's Node.js. */
export const WORKER_BUNDLE_FILE = fileURLToPath(
  new URL('./bundles/worker/efs-backup-worker.cjs', import.meta.url),
);
