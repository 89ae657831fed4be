#!/usr/bin/env node
'use strict';
// libuv sizes its thread pool once, at the first asynchronous call, and the ES module loader
// makes one; so the size is set here, in CommonJS, before anything else is loaded.
if (!process.env.UV_THREADPOOL_SIZE) {
  const i = process.argv.indexOf('--concurrency');
  const eq = process.argv.find((a) => a.startsWith('--concurrency='));
  const asked = Number(eq ? eq.slice('--concurrency='.length) : i > 0 ? process.argv[i + 1] : NaN);
  // Idle threads cost nothing: the engine bounds the calls in flight, the pool only has to keep up.
  const size = Number.isInteger(asked) && asked > 0 ? Math.min(asked, 1024) : 64;
  process.env.UV_THREADPOOL_SIZE = String(Math.max(4, size));
}
// One bundle, split so each command loads only what it uses (the service's configuration
// schema, e-mail and so on stay unread for a plain backup).
import('../dist/bundle/main.js').then((m) => m.main(process.argv));
