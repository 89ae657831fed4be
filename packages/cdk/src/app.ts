/**
 * The CDK app: the backup and the restore stacks, checked by cdk-nag's AwsSolutions pack.
 * `npx cdk deploy efs-to-efs-backup` runs it (cdk.json at the repository root) with CDK's
 * default, bootstrapped synthesizer; `npm run dist` runs it with the DistSynthesizer.
 */
import { App, DefaultStackSynthesizer, Validations, type IStackSynthesizer } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { fileURLToPath } from 'node:url';
import { BackupStack, RestoreStack } from './stacks.js';

export const BACKUP_STACK = 'efs-to-efs-backup';
export const RESTORE_STACK = 'efs-to-efs-restore';

export interface EfsBackupApp {
  app: App;
  backup: BackupStack;
  restore: RestoreStack;
}

export interface EfsBackupAppOptions {
  /** @default the CDK CLI's, or a temporary directory */
  outdir?: string;
  /** One synthesizer per stack. @default CDK's default (bootstrapped) synthesizer */
  synthesizer?: (stack: string) => IStackSynthesizer;
  /** @default true */
  nag?: boolean;
}

export function buildApp(o: EfsBackupAppOptions = {}): EfsBackupApp {
  const app = new App(o.outdir ? { outdir: o.outdir } : {});
  const synth = o.synthesizer ?? (() => new DefaultStackSynthesizer());
  const backup = new BackupStack(app, BACKUP_STACK, { synthesizer: synth(BACKUP_STACK) });
  const restore = new RestoreStack(app, RESTORE_STACK, { synthesizer: synth(RESTORE_STACK) });
  if (o.nag ?? true) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, backup, restore };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  buildApp().app.synth();
}
