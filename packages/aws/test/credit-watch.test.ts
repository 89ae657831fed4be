/**
 * The worker's watch of the source's burst credits: CloudWatch's GetMetricData against the SDK
 * client mock with the exact request it takes; the throttle the engine is given slows to the
 * floor while the balance is under it, and has the configured limits (or none) again after.
 */
import { CloudWatchClient, GetMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { CreditWatch, type CreditWatchSettings } from '../src/credit-watch.js';
import { jsonLog } from '../src/json-log.js';
import { WorkerConfigSchema } from '../src/worker-config.js';
import { burstCreditsQuery } from './fixtures/requests.js';

const MiB = 2 ** 20;
const TiB = 2 ** 40;
const cloudwatch = new CloudWatchClient({ region: 'eu-west-1' });
const cw = mockClient(cloudwatch);
afterEach(() => cw.reset());

function balances(...values: (number | null)[]): void {
  let i = 0;
  cw.on(GetMetricDataCommand).callsFake(() => {
    const v = values[Math.min(i++, values.length - 1)];
    return {
      MetricDataResults: [
        {
          Id: 'credits',
          StatusCode: 'Complete',
          Timestamps: v === null || v === undefined ? [] : [new Date()],
          Values: v === null || v === undefined ? [] : [v],
        },
      ],
    };
  });
}

function watch(settings: Partial<CreditWatchSettings> = {}) {
  const lines: Record<string, unknown>[] = [];
  const w = new CreditWatch({
    cloudwatch,
    fileSystemId: 'fs-source',
    settings: {
      maxMiBps: 0,
      maxOps: 0,
      burstCreditFloor: TiB,
      lowCreditMaxMiBps: 10,
      creditCheckSeconds: 300,
      ...settings,
    },
    log: jsonLog((l) => lines.push(JSON.parse(l) as Record<string, unknown>)),
  });
  return { w, lines };
}

describe("the source's burst credits", () => {
  it('under the floor the reads slow to the floor; back over it, the configured limits again', async () => {
    balances(0.5 * TiB, 0.4 * TiB, 1.5 * TiB);
    const { w, lines } = watch({ maxMiBps: 50, maxOps: 400 });
    expect(w.throttle.limits).toEqual({ bytesPerSecond: 50 * MiB, callsPerSecond: 400 });

    const at = new Date('2026-12-01T03:00:00Z');
    await w.check(at);
    expect(w.throttle.limits).toEqual({ bytesPerSecond: 10 * MiB, callsPerSecond: 400 });
    expect(w.slowed).toBe(true);
    await w.check(at); // still low: nothing changes, nothing logged
    await w.check(at);
    expect(w.throttle.limits).toEqual({ bytesPerSecond: 50 * MiB, callsPerSecond: 400 });
    expect(w.slowed).toBe(false);

    expect(cw.commandCalls(GetMetricDataCommand).map((c) => c.args[0].input)).toEqual(
      [1, 2, 3].map(() => burstCreditsQuery('fs-source', new Date('2026-12-01T02:45:00Z'), at)),
    );
    // Each change logged, once.
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'info',
        msg: "the source's burst credits are under the floor: reads slowed to 10 MiB/s",
        fileSystemId: 'fs-source',
        burstCreditBalance: 0.5 * TiB,
        burstCreditFloor: TiB,
        maxMiBps: 10,
        maxOps: 400,
      }),
      expect.objectContaining({
        level: 'info',
        msg: "the source's burst credits are back over the floor: the configured limits again",
        burstCreditBalance: 1.5 * TiB,
        maxMiBps: 50,
        maxOps: 400,
      }),
    ]);
  });

  it('with no limit configured, the run is unlimited again once the credits recover', async () => {
    balances(100 * 2 ** 30, 2 * TiB);
    const { w, lines } = watch();
    expect(w.throttle.limits).toEqual({});
    await w.check();
    expect(w.throttle.limits).toEqual({ bytesPerSecond: 10 * MiB });
    await w.check();
    expect(w.throttle.limits).toEqual({});
    expect(lines.map((l) => [l.maxMiBps, l.maxOps])).toEqual([
      [10, null],
      [null, null],
    ]);
  });

  it('a configured limit slower than the floor stays; no data and a failed read change nothing', async () => {
    const { w, lines } = watch({ maxMiBps: 5 });
    w.observe(10);
    expect(w.throttle.limits).toEqual({ bytesPerSecond: 5 * MiB });
    expect(w.slowed).toBe(true);
    balances(null);
    await w.check();
    expect(w.slowed).toBe(true);
    cw.reset();
    cw.on(GetMetricDataCommand).rejects(new Error('Rate exceeded'));
    await w.check();
    expect(w.slowed).toBe(true);
    expect(lines.at(-1)).toMatchObject({
      level: 'warn',
      err: 'Rate exceeded',
      msg: "cannot read the source's burst credits: the limits stay as they are",
    });
  });

  it('the timer reads every creditCheckSeconds and does not keep the process alive', async () => {
    balances(0.1 * TiB);
    const { w } = watch({ creditCheckSeconds: 0.01 });
    w.start();
    const timer = (w as unknown as { timer: NodeJS.Timeout }).timer;
    expect(timer.hasRef()).toBe(false);
    while (!w.slowed) await new Promise((r) => setTimeout(r, 5));
    await w.stop();
    const n = cw.commandCalls(GetMetricDataCommand).length;
    await new Promise((r) => setTimeout(r, 50));
    expect(cw.commandCalls(GetMetricDataCommand)).toHaveLength(n);
  });
});

describe("the worker's configuration", () => {
  const base = {
    region: 'eu-west-1',
    table: 't',
    bucket: 'b',
    topicArn: 'arn:aws:sns:eu-west-1:1:t',
    autoScalingGroupName: 'g',
    sourceFileSystemId: 'fs-source',
    backupFileSystemId: 'fs-backup',
  };
  it('takes the limits as numbers or as a parameter renders them, 0 for none', () => {
    expect(WorkerConfigSchema.parse(base)).toMatchObject({
      maxMiBps: 0,
      maxOps: 0,
      burstCreditFloor: TiB,
      lowCreditMaxMiBps: 10,
      creditCheckSeconds: 300,
    });
    expect(
      WorkerConfigSchema.parse({
        ...base,
        maxMiBps: '20',
        maxOps: '500',
        burstCreditFloor: '0',
        lowCreditMaxMiBps: '2.5',
      }),
    ).toMatchObject({ maxMiBps: 20, maxOps: 500, burstCreditFloor: 0, lowCreditMaxMiBps: 2.5 });
  });
  it('refuses a negative limit or one that is not a number, naming it', () => {
    for (const [key, value] of [
      ['maxMiBps', -1],
      ['maxOps', 'fast'],
      ['burstCreditFloor', -5],
      ['lowCreditMaxMiBps', 0],
    ] as const) {
      const r = WorkerConfigSchema.safeParse({ ...base, [key]: value });
      expect(r.success, key).toBe(false);
      expect(JSON.stringify(r.error?.issues[0]?.path)).toContain(key);
    }
  });
});
