/**
 * A notice a channel could not deliver, saying where it was going and why: the log line of a
 * webhook that cannot be reached names the host and `ECONNREFUSED`, not just `fetch failed`.
 */
export class NoticeError extends Error {
  constructor(
    /** Where the notice was going, without secrets (`webhookTarget`, `smtpTarget`). */
    readonly target: string,
    /** The system's code for the cause (`ECONNREFUSED`, `ENOTFOUND`, `EAUTH`), when it has one. */
    readonly code: string | null,
    why: string,
    options?: ErrorOptions,
  ) {
    super(`${target}: ${why}`, options);
    this.name = 'NoticeError';
  }
}

interface Failure {
  code?: unknown;
  originalCode?: unknown;
  message?: unknown;
  name?: unknown;
  cause?: unknown;
  errors?: unknown;
}

const text = (v: unknown): string => (typeof v === 'string' ? v : '');

/**
 * The code and the words of what went wrong under a failed call: fetch throws `fetch failed`
 * with the socket's error as its `cause` (an AggregateError when every address of a name was
 * refused); nodemailer says `ESOCKET` and keeps the socket's code as `originalCode`.
 */
export function causeOf(e: unknown): { code: string | null; message: string } {
  let f = (typeof e === 'object' && e !== null ? e : { message: String(e) }) as Failure;
  // Down to the innermost cause: the socket's own error.
  for (let i = 0; i < 5 && typeof f.cause === 'object' && f.cause !== null; i++)
    f = f.cause as Failure;
  const inner = Array.isArray(f.errors) ? (f.errors as Failure[]) : [];
  const code =
    text(f.originalCode) || text(f.code) || inner.map((x) => text(x.code)).find(Boolean) || null;
  const message = text(f.message) || inner.map((x) => text(x.message)).join('; ') || String(e);
  return { code, message };
}

/** `why` of a NoticeError: the code first when the words do not already say it. */
export function failureText(e: unknown, timeoutMs: number): { code: string | null; why: string } {
  if (typeof e === 'object' && e !== null && (e as Failure).name === 'TimeoutError')
    return { code: 'ETIMEDOUT', why: `no answer within ${timeoutMs / 1000} s` };
  const { code, message } = causeOf(e);
  return { code, why: code && !message.includes(code) ? `${code}: ${message}` : message };
}
