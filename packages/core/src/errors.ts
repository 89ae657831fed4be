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

export const badInput = (message: string): EfsBackupError =>
  new EfsBackupError('BAD_INPUT', message);

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
