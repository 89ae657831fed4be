/**
 * The worker's ear for a stop: SIGTERM (the orchestrator's SSM command, or systemd) and the
 * stop file the command writes first, which also reaches a worker that had not written its
 * pid yet. The stop file says why: `window` or `shutdown`.
 */
import type { StopReason } from '@efs-backup/service';
import fs from 'node:fs';
import path from 'node:path';
import { PID_FILE, STOP_FILE } from './stop-command.js';

export class StopListener {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly onSignal = (): void => this.heard(this.readReason() ?? 'shutdown');
  /** Resolves when the worker is told to stop from outside (stop file, SIGTERM). */
  readonly told: Promise<StopReason>;
  private resolveTold!: (r: StopReason) => void;
  private wasTold = false;

  constructor(
    readonly runDir: string,
    pollMs = 1000,
  ) {
    this.told = new Promise((r) => (this.resolveTold = r));
    fs.mkdirSync(runDir, { recursive: true });
    fs.writeFileSync(path.join(runDir, PID_FILE), `${process.pid}\n`);
    process.on('SIGTERM', this.onSignal);
    process.on('SIGINT', this.onSignal);
    this.timer = setInterval(() => {
      const reason = this.readReason();
      if (reason) this.heard(reason);
    }, pollMs);
    this.timer.unref();
    const early = this.readReason();
    if (early) this.heard(early);
  }

  /** Aborted with the StopReason once a stop is asked for. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get reason(): StopReason | null {
    return this.controller.signal.aborted ? (this.controller.signal.reason as StopReason) : null;
  }

  /** Whether the worker was told to stop from outside, rather than stopping by itself. */
  get toldToStop(): boolean {
    return this.wasTold;
  }

  /** The worker stops by itself (its window's stop time came). */
  stopWith(reason: StopReason): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  private heard(reason: StopReason): void {
    this.stopWith(reason);
    if (this.wasTold) return;
    this.wasTold = true;
    this.resolveTold(reason);
  }

  private readReason(): StopReason | null {
    try {
      const said = fs.readFileSync(path.join(this.runDir, STOP_FILE), 'utf8').trim();
      return said === 'window' || said === 'shutdown' ? said : 'signal';
    } catch {
      return null;
    }
  }

  close(): void {
    clearInterval(this.timer);
    process.off('SIGTERM', this.onSignal);
    process.off('SIGINT', this.onSignal);
    fs.rmSync(path.join(this.runDir, PID_FILE), { force: true });
  }
}
