/** Shared set-ups of the service tests: real directories, the real engine, real SQLite. */
import { backup, type BackupResult, type BackupRunOptions } from '@efs-backup/core';
import fs from 'node:fs';
import path from 'node:path';
import { dir, file, sourceAndDestination, symlink } from '../../core/test/fixtures/tree.js';
import type { Engine, RunPorts } from '../src/index.js';
import { defaultRecordsFile, localPorts, openRecordStore } from '../src/local.js';
import type { Notifier, RunRecord } from '../src/index.js';

export interface SetUp {
  base: string;
  src: string;
  dst: string;
}

/** A small source tree and an empty destination. */
export function setUp(prefix = 'efs-backup-service-'): SetUp {
  return sourceAndDestination(
    {
      'a.txt': file('hello\n'),
      sub: dir({ 'b.txt': file('bb'), deeper: dir({ 'c.bin': file(Buffer.alloc(1000, 7)) }) }),
      link: symlink('a.txt'),
    },
    prefix,
  );
}

/** The local adapters, with these notifiers instead of the configuration's. */
export function ports(notifiers: Notifier[] = []): RunPorts {
  return { ...localPorts(null), notifiers };
}

/** Every record of a set's SQLite file, newest first. */
export async function records(dst: string, label = 'efs-backup'): Promise<RunRecord[]> {
  const store = await openRecordStore(defaultRecordsFile(dst, label));
  try {
    return await store.list();
  } finally {
    await store.close();
  }
}

/** Complete snapshots of an interval, oldest first. */
export function snapshots(dst: string, interval = 'daily', label = 'efs-backup'): string[] {
  const d = path.join(dst, label, interval);
  return fs.existsSync(d)
    ? fs
        .readdirSync(d)
        .filter((n) => /^\d{8}T\d{6}Z$/.test(n))
        .sort()
    : [];
}

/**
 * The real engine behind a gate: a run waits at the gate (it has started: its Running record is
 * written) until the test opens it or the run is asked to stop, then the engine runs. Lets a
 * test hold a run "in progress" for as long as it likes, on any machine.
 */
export function gatedEngine(): {
  engine: Engine;
  open: () => void;
  /** Resolves when `n` runs have reached the gate. */
  reached: (n: number) => Promise<void>;
} {
  let opened = false;
  let arrivals = 0;
  const waiting: Array<() => void> = [];
  const watchers: Array<{ n: number; resolve: () => void }> = [];
  const engine: Engine = async (o: BackupRunOptions): Promise<BackupResult> => {
    arrivals++;
    for (const w of watchers.filter((w) => arrivals >= w.n)) w.resolve();
    if (!opened && !o.signal?.aborted) {
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        o.signal?.addEventListener('abort', () => resolve(), { once: true });
      });
    }
    return backup(o);
  };
  return {
    engine,
    open: () => {
      opened = true;
      for (const w of waiting.splice(0)) w();
    },
    reached: (n) =>
      arrivals >= n ? Promise.resolve() : new Promise((resolve) => watchers.push({ n, resolve })),
  };
}

/** A notifier that keeps what it is sent. */
export function memoryNotifier(): Notifier & { sent: RunRecord[] } {
  const sent: RunRecord[] = [];
  return {
    channel: 'memory',
    sent,
    send: async (n) => {
      sent.push(n.record);
    },
  };
}
