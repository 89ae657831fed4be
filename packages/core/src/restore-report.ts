import path from 'node:path';
import { EfsBackupError } from './errors.js';
import type { SnapshotRef } from './layout.js';

export type RestoreAction = 'create' | 'update' | 'delete' | 'link';

export interface RestoreChange {
  action: RestoreAction;
  /** Relative to the target. */
  path: string;
  /** What differs, for an update: content, mode, owner, mtime, type, target. */
  reasons: string[];
}

export interface RestoreResult {
  snapshot: SnapshotRef;
  created: number;
  updated: number;
  deleted: number;
  linked: number;
  unchanged: number;
  bytes: number;
  warnings: string[];
}

/**
 * What a restore tells: each change as it is made (or would be, in a dry run), its counters
 * and warnings, and the first fatal error, which halts the walk and ends the run.
 */
export class RestoreReport {
  readonly result: RestoreResult;
  fatal: Error | null = null;

  constructor(
    snapshot: SnapshotRef,
    /** The target's root: changes are named relative to it. */
    private readonly root: string,
    private readonly onChange: ((change: RestoreChange) => void) | undefined,
    /** Starts no more work (the walk's pool). */
    private readonly halt: () => void,
  ) {
    this.result = {
      snapshot,
      created: 0,
      updated: 0,
      deleted: 0,
      linked: 0,
      unchanged: 0,
      bytes: 0,
      warnings: [],
    };
  }

  /** Target-relative name of a target path, for messages. */
  relative(dst: string): string {
    return path.relative(this.root, dst) || '.';
  }

  change(action: RestoreAction, dst: string, reasons: string[] = []): void {
    if (action === 'create') this.result.created++;
    else if (action === 'update') this.result.updated++;
    else if (action === 'delete') this.result.deleted++;
    else this.result.linked++;
    this.onChange?.({ action, path: this.relative(dst), reasons });
  }

  warn(message: string): void {
    this.result.warnings.push(message);
  }

  /** Ends the run with this error (the first one wins). */
  fail(err: Error): void {
    this.fatal ??= err;
    this.halt();
  }

  /** The run's figures, or why it stopped. */
  figures(): RestoreResult {
    if (this.fatal) {
      throw new EfsBackupError('FAILED', `restore stopped: ${this.fatal.message}`, {
        cause: this.fatal,
      });
    }
    return this.result;
  }
}
