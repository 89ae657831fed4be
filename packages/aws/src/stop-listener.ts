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
  private readonly onSignal = (): void => this.stopWith(this.readReason() ?? 'shutdown');
  readonly stopped: Promise<StopReason>;
  private resolveStopped!: (r: StopReason) => void;

  constructor(
    readonly runDir: string,
    pollMs = 1000,
  ) {
    this.stopped = new Promise((r) => (this.resolveStopped = r));
    fs.mkdirSync(runDir, { recursive: true });
    fs.writeFileSync(path.join(runDir, PID_FILE), `${process.pid}\n`);
    process.on('SIGTERM', this.onSignal);
    process.on('SIGINT', this.onSignal);
    this.timer = setInterval(() => {
      const reason = this.readReason();
      if (reason) this.stopWith(reason);
    }, pollMs);
    this.timer.unref();
    const early = this.readReason();
    if (early) this.stopWith(early);
  }

  /** Aborted with the StopReason once a stop is asked for. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get reason(): StopReason | null {
    return this.controller.signal.aborted ? (this.controller.signal.reason as StopReason) : null;
  }

  stopWith(reason: StopReason): void {
    if (this.controller.signal.aborted) return;
    this.controller.abort(reason);
    this.resolveStopped(reason);
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
