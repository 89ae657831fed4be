import { ensureDir } from '@efs-backup/core';
import fs from 'node:fs';
import path from 'node:path';
import type { LogStore, RunLog } from './ports.js';
import type { RunRecord } from './record.js';
import { setDataDir } from './set-data.js';

const FLUSH_BYTES = 64 * 1024;

/**
 * The local LogStore: `<destination>/<label>/.efs-backup/logs/<BackupId>.log`, the run's JSON
 * lines as they come, then its human summary.
 */
export class FileLogStore implements LogStore {
  async open(record: RunRecord): Promise<RunLog> {
    const dir = path.join(setDataDir(record.Destination, record.Label), 'logs');
    ensureDir(dir);
    const file = path.join(dir, `${record.BackupId}.log`);
    const fd = fs.openSync(file, 'a', 0o600);
    let pending: string[] = [];
    let size = 0;
    let closed = false;
    const flush = (): void => {
      if (pending.length === 0) return;
      fs.writeSync(fd, pending.join(''));
      pending = [];
      size = 0;
    };
    return {
      location: file,
      write(line: string) {
        if (closed) return;
        pending.push(line.endsWith('\n') ? line : `${line}\n`);
        size += line.length;
        // Lines are kept and written in blocks: one write per warning would crawl on EFS.
        if (size >= FLUSH_BYTES) flush();
      },
      async store(summary: string) {
        if (closed) return;
        closed = true;
        try {
          pending.push(`\n${summary}`);
          flush();
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      },
    };
  }

  async readEnd(location: string): Promise<RunRecord | null> {
    if (!/\/\.efs-backup\/logs\/[^/]+\.log$/.test(location)) return null;
    let lines: Record<string, unknown>[];
    try {
      ({ lines } = readRunLog(location));
    } catch {
      return null;
    }
    for (let i = lines.length - 1; i >= 0; i--) {
      const l = lines[i]!;
      if (typeof l.msg !== 'string' || !l.msg.startsWith('run ended: ') || !l.record) continue;
      const record = l.record as RunRecord;
      return record.Status !== 'Running' ? record : null;
    }
    return null;
  }

  async remove(location: string): Promise<void> {
    // Only a log file of a backup set is ever removed.
    if (!/\/\.efs-backup\/logs\/[^/]+\.log$/.test(location)) return;
    fs.rmSync(location, { force: true });
  }
}

/** Reads a stored log: its JSON lines and the human summary after them. */
export function readRunLog(file: string): { lines: Record<string, unknown>[]; summary: string } {
  const text = fs.readFileSync(file, 'utf8');
  const lines: Record<string, unknown>[] = [];
  const rest: string[] = [];
  for (const line of text.split('\n')) {
    if (rest.length === 0 && line.startsWith('{'))
      lines.push(JSON.parse(line) as Record<string, unknown>);
    else rest.push(line);
  }
  return { lines, summary: rest.join('\n').trim() + '\n' };
}
