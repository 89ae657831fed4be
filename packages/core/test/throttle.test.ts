import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../src/index.js';
import { asyncOps, syncOps } from '../src/fs-ops.js';
import { createTree, dir, file, rsyncDifferences, sourceAndDestination } from './fixtures/tree.js';
import { Throttle, throttled, type Clock } from '../src/throttle.js';

/** A clock the test moves by hand; timers fire when it passes them. */
class FakeClock implements Clock {
  t = 0;
  private timers: Array<{ at: number; f: () => void }> = [];
  now(): number {
    return this.t;
  }
  setTimeout(f: () => void, ms: number): void {
    this.timers.push({ at: this.t + ms, f });
  }
  /** Moves time on in 1 ms steps, firing the timers that come due. */
  advance(ms: number): void {
    const end = this.t + ms;
    while (this.t < end) {
      this.t++;
      const due = this.timers.filter((x) => x.at <= this.t);
      this.timers = this.timers.filter((x) => x.at > this.t);
      for (const d of due) d.f();
    }
  }
}

/** A throttle that lets everything through and counts what it was asked for. */
class CountingThrottle extends Throttle {
  asked = 0;
  reserved = 0;
  constructor() {
    super({ callsPerSecond: 1e12, bytesPerSecond: 1e15 });
  }
  override take(bytes: number, run: () => void): void {
    this.asked++;
    this.reserved += bytes;
    super.take(bytes, run);
  }
}

describe('Throttle', () => {
  it('lets calls through at once while the budget lasts, then at the rate', () => {
    const clock = new FakeClock();
    const t = new Throttle({ callsPerSecond: 100 }, clock);
    let ran = 0;
    for (let i = 0; i < 1000; i++) t.take(0, () => ran++);
    // A bucket holds a tenth of a second: 10 calls now, the rest at 100 a second.
    expect(ran).toBe(10);
    clock.advance(1000);
    expect(ran).toBeGreaterThanOrEqual(109);
    expect(ran).toBeLessThanOrEqual(111);
    clock.advance(9000);
    expect(ran).toBe(1000);
  });

  it('never lets more than the limit and a tenth of a second through in any second', () => {
    const clock = new FakeClock();
    const rate = 20 * 1024 * 1024;
    const t = new Throttle({ bytesPerSecond: rate }, clock);
    const starts: Array<{ at: number; bytes: number }> = [];
    // 64 reads in flight at once, each of 1 MiB, each taking 5 ms, each followed by another.
    const chunk = 1024 * 1024;
    let left = 400;
    const read = (): void => {
      if (left-- <= 0) return;
      t.take(chunk, () => {
        starts.push({ at: clock.now(), bytes: chunk });
        clock.setTimeout(read, 5);
      });
    };
    for (let i = 0; i < 64; i++) read();
    clock.advance(30_000);
    expect(starts.length).toBe(400);
    const took = starts[starts.length - 1].at / 1000;
    // 400 MiB at 20 MiB/s: 20 s, less the first tenth of a second's burst.
    expect(took).toBeGreaterThan(19.5);
    expect(took).toBeLessThan(20.5);
    for (let from = 0; from < starts[starts.length - 1].at; from += 100) {
      const inSecond = starts
        .filter((s) => s.at >= from && s.at < from + 1000)
        .reduce((n, s) => n + s.bytes, 0);
      expect(inSecond).toBeLessThanOrEqual(rate * 1.1 + chunk);
    }
  });

  it('gives back what a short read did not use', () => {
    const clock = new FakeClock();
    const t = new Throttle({ bytesPerSecond: 1000 }, clock);
    let ran = 0;
    t.take(100, () => ran++); // the whole bucket (a tenth of 1000)
    t.take(100, () => ran++);
    expect(ran).toBe(1);
    t.refund(100); // the first read found end of file at once: the second may go
    expect(ran).toBe(2);
    t.take(0, () => ran++); // a call that reads nothing is not held by the byte budget
    expect(ran).toBe(3);
  });

  it('never holds a call that reads nothing behind a read waiting for bytes (the walk goes on while a large file copies)', () => {
    const clock = new FakeClock();
    const t = new Throttle({ bytesPerSecond: 1000 }, clock);
    const order: string[] = [];
    t.take(100, () => order.push('read 1')); // the whole bucket
    t.take(100, () => order.push('read 2')); // waits a tenth of a second for bytes
    for (let i = 0; i < 3; i++) t.take(0, () => order.push(`call ${i}`));
    expect(order).toEqual(['read 1', 'call 0', 'call 1', 'call 2']);
    clock.advance(100);
    expect(order).toEqual(['read 1', 'call 0', 'call 1', 'call 2', 'read 2']);
  });

  it("never holds a small file's read behind a large file's chunk waiting for bytes, and still keeps the byte rate", () => {
    const clock = new FakeClock();
    const rate = 20 * 1024 * 1024; // a bucket of 2 MiB
    const t = new Throttle({ bytesPerSecond: rate }, clock);
    const order: string[] = [];
    const mib = 1024 * 1024;
    t.take(2 * mib, () => order.push('chunk 1')); // the whole bucket
    t.take(mib, () => order.push('chunk 2')); // waits 50 ms for its bytes
    t.take(4096, () => order.push('small 1')); // 4 KiB: in 0.2 ms
    t.take(4096, () => order.push('small 2'));
    clock.advance(1);
    expect(order).toEqual(['chunk 1', 'small 1', 'small 2']);
    clock.advance(60);
    expect(order).toEqual(['chunk 1', 'small 1', 'small 2', 'chunk 2']);
  });

  it('keeps one order for the call budget: reads and other calls wait their turn for a call token', () => {
    const clock = new FakeClock();
    const t = new Throttle({ callsPerSecond: 10, bytesPerSecond: 1e9 }, clock);
    const order: string[] = [];
    t.take(0, () => order.push('call 0')); // the one call a tenth of a second holds
    t.take(10, () => order.push('read 1'));
    t.take(0, () => order.push('call 2'));
    t.take(10, () => order.push('read 3'));
    expect(order).toEqual(['call 0']);
    clock.advance(1000);
    expect(order).toEqual(['call 0', 'read 1', 'call 2', 'read 3']);
  });

  it('serves waiting calls in order, and a new limit at once', () => {
    const clock = new FakeClock();
    const t = new Throttle({ callsPerSecond: 10 }, clock);
    const order: number[] = [];
    for (let i = 0; i < 20; i++) t.take(0, () => order.push(i));
    expect(order).toEqual([0]);
    t.setLimits({ callsPerSecond: 1000 });
    clock.advance(100);
    expect(order).toEqual([...Array(20).keys()]);
    t.setLimits({});
    expect(t.limits).toEqual({});
  });

  it('costs nothing where no budget is given: the calls are the ones given', () => {
    expect(throttled(asyncOps, null)).toBe(asyncOps);
    expect(throttled(syncOps, null)).toBe(syncOps);
  });

  it('takes a limit set later on a throttle given without one', () => {
    const clock = new FakeClock();
    const t = new Throttle({}, clock);
    const io = throttled(syncOps, t);
    expect(io).not.toBe(syncOps);
    let ran = 0;
    const dir = os.tmpdir();
    for (let i = 0; i < 5; i++) io.lstat(dir, () => ran++);
    expect(ran).toBe(5); // no limit: at once
    t.setLimits({ callsPerSecond: 10 });
    for (let i = 0; i < 5; i++) io.lstat(dir, () => ran++);
    expect(ran).toBe(6); // the bucket holds one call (a tenth of a second at 10 a second)
    clock.advance(1000);
    expect(ran).toBe(10);
  });

  it('wraps real calls, both kinds, and reads what the file holds', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-throttle-'));
    try {
      const file = path.join(dir, 'f');
      fs.writeFileSync(file, Buffer.alloc(300_000, 7));
      for (const ops of [syncOps, asyncOps]) {
        const t = new CountingThrottle();
        const io = throttled(ops, t);
        expect(io.mode).toBe(ops.mode);
        const total = await new Promise<number>((resolve, reject) => {
          io.open(file, fs.constants.O_RDONLY, 0, (err, fd) => {
            if (err) return reject(err);
            const buf = Buffer.alloc(65536);
            let got = 0;
            const next = (): void =>
              io.read(fd, buf, buf.length, got, (e, n) => {
                if (e) return reject(e);
                if (n === 0) return io.close(fd, () => resolve(got));
                got += n;
                next();
              });
            next();
          });
        });
        expect(total).toBe(300_000);
        // open, five reads with data and the one at end of file, close: each through the
        // budget, and every read reserving its whole length first.
        expect(t.asked).toBe(8);
        expect(t.reserved).toBe(6 * 65536);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a backup under a budget', () => {
  for (const io of ['sync', 'async'] as const) {
    it(`puts every call on the source through it, the pool's too (${io} calls)`, async () => {
      const { src, dst } = sourceAndDestination();
      const big = 3 * 1024 * 1024 + 5; // larger than a chunk: copied through the pool
      createTree(src, {
        'big.bin': file(Buffer.alloc(big, 1)),
        sub: dir({ 'a.txt': file('a'), deeper: dir({ 'b.txt': file('bb') }) }),
      });
      const throttle = new CountingThrottle();
      const r = await backup({ source: src, destination: dst, throttle, io });
      expect(r.Status, r.Message).toBe('Success');
      expect(rsyncDifferences(src, r.snapshotPath!)).toEqual([]);
      // Every byte copied was reserved first (a read reserves its whole length).
      expect(throttle.reserved).toBeGreaterThanOrEqual(big + 3);
      // At least a listing per directory and an open, a read and a close per file.
      expect(throttle.asked).toBeGreaterThanOrEqual(3 + 3 * 3);
      // A second, unchanged backup reads no file, but still walks the source through it.
      const again = new CountingThrottle();
      const r2 = await backup({ source: src, destination: dst, throttle: again, io });
      expect(r2.NumberOfFilesLinked).toBe(3);
      expect(again.reserved).toBe(0);
      expect(again.asked).toBeGreaterThanOrEqual(3);
    });
  }

  it('refuses a limit that is not a number above 0, before anything is written', async () => {
    const { src, dst } = sourceAndDestination();
    for (const [k, v] of [
      ['maxMiBps', 0],
      ['maxOps', -3],
      ['maxMiBps', Number.NaN],
    ] as const) {
      await expect(backup({ source: src, destination: dst, [k]: v })).rejects.toThrow(
        `${k} must be a number above 0`,
      );
    }
    expect(fs.readdirSync(dst)).toEqual([]);
  });
});
