import type { ServiceLog } from '@efs-backup/service';

/** A ServiceLog writing one JSON object a line (CloudWatch Logs and journald read it as such). */
export function jsonLog(write: (line: string) => void = (l) => console.log(l)): ServiceLog {
  const line = (level: string) => (obj: object, msg?: string) =>
    write(JSON.stringify({ level, time: new Date().toISOString(), msg, ...obj }));
  return { info: line('info'), warn: line('warn'), error: line('error') };
}

export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));
