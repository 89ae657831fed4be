import { pino, stdTimeFunctions, type Logger } from 'pino';

/** The service's own log (the daemon's): JSON lines, one per event, ISO times. */
export function createServiceLog(
  write: (line: string) => void,
  base: Record<string, unknown> = {},
): Logger {
  return pino(
    {
      base,
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    { write },
  );
}
