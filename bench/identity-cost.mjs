// The CPU cost per entry of the source identity (inode, ctime) in the manifest: toMeta, entryOf,
// encode, stringify, parse, decode of 20 000 real lstat results, with and without it.
// Run: npm run build && node bench/identity-cost.mjs

import fs from 'node:fs';
const { toMeta, entryOf } = await import(
  new URL('../packages/core/dist/change.js', import.meta.url).href
);
const { encodeEntry, decodeEntry } = await import(
  new URL('../packages/core/dist/manifest-format.js', import.meta.url).href
);
const dir = fs.existsSync('/usr/lib/x86_64-linux-gnu') ? '/usr/lib/x86_64-linux-gnu' : '/usr/bin';
const base = fs.readdirSync(dir);
const names = Array.from({ length: 20000 }, (_, i) => base[i % base.length]);
const stats = names.map((n) => fs.lstatSync(`${dir}/${n}`, { bigint: true }));
function run(strip) {
  const t0 = process.hrtime.bigint();
  let text = '';
  const recs = [];
  for (let i = 0; i < stats.length; i++) {
    const m = toMeta(stats[i]);
    if (strip) m.ino = '';
    recs.push(entryOf(names[i], m, 'x'.repeat(44)));
  }
  text = JSON.stringify(recs.map(encodeEntry));
  const back = JSON.parse(text).map(decodeEntry);
  const t1 = process.hrtime.bigint();
  return [Number(t1 - t0) / 1e6, text.length, back.length];
}
for (let r = 0; r < 3; r++) {
  run(true);
  run(false);
}
const a = [],
  b = [];
for (let r = 0; r < 15; r++) {
  a.push(run(true));
  b.push(run(false));
}
const med = (x) => x.map((v) => v[0]).sort((p, q) => p - q)[Math.floor(x.length / 2)];
console.log(
  `entries ${stats.length}: without identity ${med(a).toFixed(1)} ms (${a[0][1]} bytes), with ${med(b).toFixed(1)} ms (${b[0][1]} bytes)`,
);
