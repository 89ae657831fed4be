/**
 * Gentle on a source in Bursting mode: while the run goes, the worker reads the source's
 * BurstCreditBalance every few minutes and, while it is under the floor, slows the run's reads
 * to the low-credit rate; once it is back at the floor or above, the configured limits (or
 * none) hold again. Each change is logged. A balance that cannot be read changes nothing.
 */
import type { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { Throttle, type Limits } from '@efs-backup/core';
import type { ServiceLog } from '@efs-backup/service';
import { burstCreditBalance } from './file-system-figures.js';
import { errorText } from './json-log.js';

const MiB = 2 ** 20;

export interface LimitSettings {
  /** 0: no limit. */
  maxMiBps: number;
  /** 0: no limit. */
  maxOps: number;
}

export interface CreditWatchSettings extends LimitSettings {
  /** Bytes of credits under which the run slows down; 0: never. */
  burstCreditFloor: number;
  lowCreditMaxMiBps: number;
  creditCheckSeconds: number;
}

/** The configured limits, as the engine's throttle takes them. */
export function configuredLimits(s: LimitSettings): Limits {
  return {
    ...(s.maxMiBps > 0 ? { bytesPerSecond: s.maxMiBps * MiB } : {}),
    ...(s.maxOps > 0 ? { callsPerSecond: s.maxOps } : {}),
  };
}

/** The limits while the credits are low: the floor's rate, or the configured one if slower. */
export function lowCreditLimits(s: CreditWatchSettings): Limits {
  const configured = configuredLimits(s);
  const floor = s.lowCreditMaxMiBps * MiB;
  return {
    ...configured,
    bytesPerSecond: Math.min(floor, configured.bytesPerSecond ?? floor),
  };
}

export const describeLimits = (l: Limits): { maxMiBps: number | null; maxOps: number | null } => ({
  maxMiBps: l.bytesPerSecond !== undefined ? l.bytesPerSecond / MiB : null,
  maxOps: l.callsPerSecond ?? null,
});

export interface CreditWatchOptions {
  cloudwatch: CloudWatchClient;
  fileSystemId: string;
  settings: CreditWatchSettings;
  log: ServiceLog;
}

export class CreditWatch {
  /** The run's source budget: hand it to the engine (`throttle`). */
  readonly throttle: Throttle;
  private low = false;
  private timer: NodeJS.Timeout | null = null;
  private checking: Promise<void> | null = null;

  constructor(private readonly o: CreditWatchOptions) {
    this.throttle = new Throttle(this.normal());
  }

  /** Whether the run is slowed for low credits. */
  get slowed(): boolean {
    return this.low;
  }

  /** The configured limits (none, maybe: a throttle given to the engine takes later ones). */
  private normal(): Limits {
    return configuredLimits(this.o.settings);
  }

  /** Takes a balance read: slows down or restores as it says. Null (no data) changes nothing. */
  observe(balance: number | null): void {
    if (balance === null) return;
    const s = this.o.settings;
    const low = s.burstCreditFloor > 0 && balance < s.burstCreditFloor;
    if (low === this.low) return;
    this.low = low;
    const limits = low ? lowCreditLimits(s) : this.normal();
    this.throttle.setLimits(limits);
    this.o.log.info(
      {
        fileSystemId: this.o.fileSystemId,
        burstCreditBalance: balance,
        burstCreditFloor: s.burstCreditFloor,
        ...describeLimits(limits),
      },
      low
        ? `the source's burst credits are under the floor: reads slowed to ${describeLimits(limits).maxMiBps} MiB/s`
        : "the source's burst credits are back over the floor: the configured limits again",
    );
  }

  /** Reads the balance now and acts on it; a failed read is logged and changes nothing. */
  async check(at: Date = new Date()): Promise<void> {
    try {
      this.observe(await burstCreditBalance(this.o.cloudwatch, this.o.fileSystemId, at));
    } catch (e) {
      this.o.log.warn(
        { err: errorText(e), fileSystemId: this.o.fileSystemId },
        "cannot read the source's burst credits: the limits stay as they are",
      );
    }
  }

  /** Checks every `creditCheckSeconds` until `stop()`; the timer never keeps the process alive. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.checking ??= this.check().finally(() => (this.checking = null));
    }, this.o.settings.creditCheckSeconds * 1000);
    this.timer.unref();
  }

  /** Stops the checks and waits for one under way. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.checking;
  }
}
