import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InFlight } from '../src/inflight.js';
import { LinkThread } from '../src/link-thread.js';
import { tmpDir } from './fixtures/tmp.js';

/** `n` files in `dirs` directories under `base/from`, and the same directories under `base/to`. */
function fixture(n: number, dirs: number): { from: string[]; to: string[] } {
  const base = tmpDir();
  const from: string[] = [];
  const to: string[] = [];
  for (let d = 0; d < dirs; d++) {
    fs.mkdirSync(path.join(base, 'from', `d${d}`), { recursive: true });
    fs.mkdirSync(path.join(base, 'to', `d${d}`), { recursive: true });
  }
  for (let i = 0; i < n; i++) {
    const rel = path.join(`d${i % dirs}`, `f${i}`);
    fs.writeFileSync(path.join(base, 'from', rel), `content ${i}`);
    from.push(path.join(base, 'from', rel));
    to.push(path.join(base, 'to', rel));
  }
  return { from, to };
}

/** Runs `links` through a pool the way the walk does: each job queues its link and is done. */
async function linkAll(
  lt: LinkThread,
  pool: InFlight,
  from: string[],
  to: string[],
): Promise<Array<NodeJS.ErrnoException | null | undefined>> {
  const results: Array<NodeJS.ErrnoException | null | undefined> = new Array(from.length);
  const order: number[] = [];
  await new Promise<void>((resolve) => {
    for (let i = 0; i < from.length; i++) {
      pool.push((done) => {
        lt.link(from[i]!, to[i]!, (err) => {
          expect(results[i]).toBeUndefined(); // one answer per link
          results[i] = err;
          order.push(i);
        });
        done();
      });
    }
    pool.onIdle(resolve);
  });
  // Every answer is in when the pool goes idle.
  expect(order).toHaveLength(from.length);
  return results;
}

describe('LinkThread', () => {
  it('makes every link, in batches, and the pool is idle only once all have answered', async () => {
    const { from, to } = fixture(1000, 7); // several full batches and a partial one
    const pool = new InFlight(4);
    const lt = new LinkThread(pool, 64);
    pool.onStarve = () => lt.flush();
    const results = await linkAll(lt, pool, from, to);
    await lt.close();
    expect(results.every((r) => r === null)).toBe(true);
    for (let i = 0; i < from.length; i++) {
      expect(fs.statSync(to[i]!).ino).toBe(fs.statSync(from[i]!).ino);
    }
  });

  it('answers a failed link with the error the call gave, the others still made', async () => {
    const { from, to } = fixture(10, 2);
    fs.rmSync(from[3]!); // source gone
    fs.writeFileSync(to[5]!, 'already here'); // name taken
    const pool = new InFlight(4);
    const lt = new LinkThread(pool, 4);
    pool.onStarve = () => lt.flush();
    const results = await linkAll(lt, pool, from, to);
    await lt.close();
    expect(results[3]).toMatchObject({ code: 'ENOENT', syscall: 'link', path: from[3] });
    expect(results[3]!.message).toContain('ENOENT');
    expect(results[5]).toMatchObject({ code: 'EEXIST', syscall: 'link' });
    expect(fs.readFileSync(to[5]!, 'utf8')).toBe('already here');
    for (const i of [0, 1, 2, 4, 6, 7, 8, 9]) {
      expect(results[i]).toBeNull();
      expect(fs.statSync(to[i]!).ino).toBe(fs.statSync(from[i]!).ino);
    }
  });

  it('makes the links on the main thread when its thread dies', async () => {
    const { from, to } = fixture(600, 3);
    const pool = new InFlight(4);
    const lt = new LinkThread(pool, 50);
    pool.onStarve = () => lt.flush();
    const thread = lt.start();
    const results = linkAll(lt, pool, from, to);
    await thread.terminate(); // batches are in flight, or about to be sent
    const answers = await results;
    await lt.close();
    // A batch the thread had finished part of is made again: those names answer EEXIST,
    // which the backup's link step handles by replacing the name.
    for (let i = 0; i < from.length; i++) {
      expect(answers[i] === null || answers[i]!.code === 'EEXIST').toBe(true);
      expect(fs.statSync(to[i]!).ino).toBe(fs.statSync(from[i]!).ino);
    }
  });

  it('sends nothing after the pool is halted, and close() ends the thread', async () => {
    const { from, to } = fixture(20, 1);
    const pool = new InFlight(2);
    const lt = new LinkThread(pool, 8);
    pool.onStarve = () => lt.flush();
    const answered: number[] = [];
    pool.halt();
    for (let i = 0; i < from.length; i++) lt.link(from[i]!, to[i]!, () => answered.push(i));
    lt.flush();
    await new Promise<void>((resolve) => pool.onIdle(resolve));
    await lt.close();
    expect(answered).toEqual([]);
    expect(fs.readdirSync(path.dirname(to[0]!))).toEqual([]);
  });
});
