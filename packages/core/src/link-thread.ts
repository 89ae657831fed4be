import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { InFlight } from './inflight.js';
import { fsPath } from './names.js';

type Done = (err: NodeJS.ErrnoException | null) => void;

/**
 * Hard links made on a second thread, in batches.
 *
 * On a local disk the walk makes its calls directly on the main thread, and in a backup where
 * little changed the hard link is the one expensive call: about half the run (20 000 files:
 * 190 ms of 430 ms). One thread that does nothing but link, fed a few hundred names per
 * message, overlaps that with the walk on a second core; a message per batch keeps the
 * hand-off far cheaper than a thread-pool round trip per call (which cost more than it saved).
 *
 * A batch is a job of the walk's `InFlight`: it holds a slot until its results are back, so
 * batches in flight are bounded like every other call and the walk is idle only once every
 * link has answered. A partial batch goes out as soon as the walk has nothing else to run.
 * Callbacks run on the main thread in the order the links were asked for.
 */
export class LinkThread {
  private worker: Worker | null = null;
  private from: string[] = [];
  private to: string[] = [];
  private cbs: Done[] = [];
  private readonly waiting = new Map<number, Batch>();
  private nextId = 0;
  private failed = false;

  constructor(
    private readonly pool: InFlight,
    private readonly batchSize = 256,
  ) {}

  link(from: string, to: string, cb: Done): void {
    this.from.push(from);
    this.to.push(to);
    this.cbs.push(cb);
    if (this.from.length >= this.batchSize) this.flush();
  }

  /** Sends what is queued (the walk calls this when it has nothing else to run). */
  flush(): void {
    if (this.from.length === 0) return;
    const from = this.from;
    const to = this.to;
    const cbs = this.cbs;
    this.from = [];
    this.to = [];
    this.cbs = [];
    this.pool.push((done) => {
      this.send(from, to, (codes) => {
        for (let i = 0; i < cbs.length; i++) {
          const f = codes[i];
          cbs[i]!(f ? linkError(f, from[i]!, to[i]!) : null);
        }
        done();
      });
    });
  }

  /** Ends the thread; links still queued are dropped (the walk stopped). */
  async close(): Promise<void> {
    this.from = [];
    this.to = [];
    this.cbs = [];
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
  }

  private send(from: string[], to: string[], cb: (codes: LinkFailure[]) => void): void {
    if (this.failed) return cb(linkHere(from, to));
    const w = this.start();
    const id = this.nextId++;
    this.waiting.set(id, { from, to, cb });
    w.ref();
    // One string each way: cloning two strings costs far less than cloning 2 × 256.
    w.postMessage({ id, from: from.join('\0'), to: to.join('\0') });
  }

  /** Starts the thread ahead of the first batch (it takes a few milliseconds to come up). */
  start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(THREAD_SOURCE, { eval: true });
    w.unref();
    w.on('message', (m: { id: number; codes: LinkFailure[] }) => {
      const batch = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (this.waiting.size === 0) w.unref();
      batch?.cb(m.codes);
    });
    // A thread that cannot run (no memory for it, say) leaves the links to the main thread:
    // the batches it had are made again here (a link it already made answers EEXIST, which
    // the walk's link step handles by replacing the name).
    const fail = (): void => {
      if (this.failed) return;
      this.failed = true;
      this.worker = null;
      const waiting = [...this.waiting.values()];
      this.waiting.clear();
      for (const b of waiting) b.cb(linkHere(b.from, b.to));
    };
    w.on('error', fail);
    w.on('exit', () => {
      if (this.worker === w) fail();
    });
    this.worker = w;
    return w;
  }
}

/** `[code, message]` of a failed link; null for a link made. */
type LinkFailure = [string, string] | null;

interface Batch {
  from: string[];
  to: string[];
  cb: (codes: LinkFailure[]) => void;
}

/** The thread's loop, run on the main thread instead. */
function linkHere(from: string[], to: string[]): LinkFailure[] {
  return from.map((f, i) => {
    try {
      fs.linkSync(fsPath(f), fsPath(to[i]!));
      return null;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      return [err.code ?? 'EIO', err.message];
    }
  });
}

function linkError(f: [string, string], from: string, to: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(f[1]);
  err.code = f[0];
  err.syscall = 'link';
  err.path = from;
  (err as NodeJS.ErrnoException & { dest: string }).dest = to;
  return err;
}

// The thread's whole program: a string, so the engine stays one bundled file.
const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { linkSync } = require('node:fs');
// Names that are not UTF-8 arrive in the engine's byte-safe form (names.ts): back to bytes.
const bytes = (s) =>
  s.isWellFormed()
    ? s
    : Buffer.concat(
        [...s].map((c) => {
          const u = c.charCodeAt(0);
          return c.length === 1 && u >= 0xdc80 && u <= 0xdcff
            ? Buffer.of(u - 0xdc00)
            : Buffer.from(c, 'utf8');
        }),
      );
parentPort.on('message', (m) => {
  const id = m.id;
  const from = m.from.split('\\0');
  const to = m.to.split('\\0');
  const codes = new Array(from.length);
  for (let i = 0; i < from.length; i++) {
    try {
      linkSync(bytes(from[i]), bytes(to[i]));
      codes[i] = null;
    } catch (e) {
      codes[i] = [String(e.code || 'EIO'), String(e.message)];
    }
  }
  parentPort.postMessage({ id, codes });
});
`;
