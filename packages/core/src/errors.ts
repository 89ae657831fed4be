/** Why a command could not do its work; the CLI maps each code to an exit code. */
export type ErrorCode =
  /** Bad input: nothing was written (exit 2). */
  | 'BAD_INPUT'
  /** Another live run holds the label's lock (exit 3). */
  | 'LOCKED'
  /** The run could not go on: mount, permission, I/O (exit 3). */
  | 'FAILED';

export class EfsBackupError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EfsBackupError';
    this.code = code;
  }
}

/** A shared run's worker came to join a run that is over (its lock is gone): nothing to do. */
export class RunOver extends EfsBackupError {
  constructor(runId: string) {
    super('FAILED', `the run ${runId} is over: nothing to join`);
    this.name = 'RunOver';
  }
}

export const badInput = (message: string): EfsBackupError =>
  new EfsBackupError('BAD_INPUT', message);

/**
 * Bad input about the value of one option (`source`, `prefix`, `destination`): the command line
 * says `<option> <value> <problem>`, a configuration `jobs[i].<option> is "<value>", which
 * <problem>`, so both forms give the one answer in their own words.
 */
export class OptionError extends EfsBackupError {
  constructor(
    readonly option: string,
    readonly value: string,
    readonly problem: string,
  ) {
    super('BAD_INPUT', `${option} ${value} ${problem}`);
    this.name = 'OptionError';
  }
}

/** A Node system error, narrowed. */
export interface SystemError extends Error {
  code: string;
  path?: string;
  syscall?: string;
}

export function isSystemError(e: unknown, code?: string): e is SystemError {
  return (
    e instanceof Error &&
    typeof (e as Partial<SystemError>).code === 'string' &&
    (code === undefined || (e as SystemError).code === code)
  );
}
