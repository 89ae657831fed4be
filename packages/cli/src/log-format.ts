/**
 * How the daemon (`efs-backup run`) writes its log on standard error: JSON lines (pino's, as
 * journald and log shippers take them) or lines for people (pino-pretty), by `--log-format` or,
 * without it, by whether the stream is a terminal. Each run's own log file is JSON either way.
 */
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export function logFormatFor(asked: LogFormat | undefined, stream: NodeJS.WriteStream): LogFormat {
  return asked ?? (stream.isTTY ? 'pretty' : 'json');
}

/** Fields every line has, or that the message already says. */
const UNSHOWN = new Set(['level', 'time', 'msg', 'pid', 'host', 'hostname']);

/**
 * The message, then the fields it does not already say, as `key=value`: a person reads one
 * line per event, with what the JSON would add (a BackupId, a log's location, a cause).
 */
export function messageWithFields(log: Record<string, unknown>): string {
  const msg = typeof log.msg === 'string' ? log.msg : '';
  const extra: string[] = [];
  for (const [key, value] of Object.entries(log)) {
    if (UNSHOWN.has(key) || value === null || value === undefined) continue;
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    if (msg.includes(text)) continue;
    extra.push(
      `${key}=${typeof value === 'string' && /\s/.test(value) ? JSON.stringify(value) : text}`,
    );
  }
  return extra.length > 0 ? `${msg} ${extra.join(' ')}` : msg;
}

/** Where the daemon's JSON lines go: the stream as they are, or each made a human line. */
export async function logWriter(
  format: LogFormat,
  stream: NodeJS.WriteStream,
): Promise<(line: string) => void> {
  if (format === 'json') return (line) => void stream.write(line);
  // pino-pretty's formatter, in this process: no transport worker, so it bundles.
  // (A CommonJS module: its exports are `default` both under Node and in the bundle.)
  const { prettyFactory, isColorSupported } = (await import('pino-pretty')).default;
  const pretty = prettyFactory({
    colorize: Boolean(stream.isTTY) && isColorSupported,
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss',
    ignore: 'pid,hostname,host',
    hideObject: true,
    messageFormat: (log) => messageWithFields(log),
  });
  return (line) => void stream.write(pretty(line));
}
