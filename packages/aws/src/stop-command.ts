/**
 * How the orchestrator tells the worker to stop (through SSM Run Command) and how the worker
 * hears it: a stop file holding the reason, and SIGTERM to the pid the worker wrote. The file
 * covers a worker that has not started its run yet; the signal, one that is running.
 */
import type { StopReason } from '@efs-backup/service';

export const STOP_FILE = 'stop';
export const PID_FILE = 'worker.pid';
/** Where the worker keeps its pid and hears the stop, on the instance. */
export const DEFAULT_RUN_DIR = '/run/efs-backup';

/** Directories the commands name must not need quoting. */
const SAFE_PATH = /^\/[A-Za-z0-9._/-]*$/;

export function checkRunDir(runDir: string): string {
  if (!SAFE_PATH.test(runDir))
    throw new Error(
      `the run directory ${runDir} must be an absolute path of letters, digits, ".", "_", "-" and "/"`,
    );
  return runDir;
}

/** The shell commands of the AWS-RunShellScript document that stop the worker. */
export function stopCommands(
  runDir: string,
  reason: Extract<StopReason, 'window' | 'shutdown'>,
): string[] {
  const dir = checkRunDir(runDir);
  return [
    `mkdir -p ${dir}`,
    `echo ${reason} > ${dir}/${STOP_FILE}.new && mv -f ${dir}/${STOP_FILE}.new ${dir}/${STOP_FILE}`,
    `if [ -s ${dir}/${PID_FILE} ]; then kill -TERM "$(cat ${dir}/${PID_FILE})" 2>/dev/null || true; fi`,
    `echo "efs-backup worker asked to stop (${reason})"`,
  ];
}
