#!/usr/bin/env node
// npm run bench -- [--files 20000] [--reps 5] [--scenario incremental] [--dir .bench]
// Times efs-backup and its peers side by side on the same tree in the same run.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTree } from './tree.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(repo, 'packages/cli/bin/efs-backup.cjs');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const files = Number(arg('files', 20000));
const reps = Number(arg('reps', 5));
const work = path.resolve(repo, arg('dir', '.bench'));
const smoke = process.argv.includes('--smoke');

function time(cmd, args, opts = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const src = path.join(work, `src-${files}`);
if (!fs.existsSync(path.join(src, '.complete'))) {
  fs.rmSync(src, { recursive: true, force: true });
  const t = makeTree(src, { files, seed: 1 });
  fs.writeFileSync(
    path.join(src, '.complete'),
    JSON.stringify({ files: t.files, dirs: t.dirs, bytes: t.bytes }),
  );
}
const info = JSON.parse(fs.readFileSync(path.join(src, '.complete'), 'utf8'));
console.error(
  `tree: ${info.files} files, ${info.dirs} dirs, ${(info.bytes / 1e6).toFixed(0)} MB in ${src}`,
);

// No-change incremental: efs-backup vs rsync --link-dest vs the lower bound, same tree, same run.
const dst = path.join(work, 'dst-efs');
const rs = path.join(work, 'dst-rsync');
const lb = path.join(work, 'dst-lower');
for (const d of [dst, rs, lb]) {
  fs.rmSync(d, { recursive: true, force: true });
  fs.mkdirSync(d, { recursive: true });
}
// Full backups first (not timed here), so each tool has its previous snapshot.
time('node', [cli, 'backup', '--source', src, '--destination', dst, '--retain', '1000']);
time('rsync', ['-a', `${src}/`, `${rs}/0/`]);
time('cp', ['-a', `${src}/.`, `${lb}/0`]);
const results = { efs: [], rsync: [], lower: [] };
for (let i = 1; i <= (smoke ? 1 : reps); i++) {
  results.efs.push(
    time('node', [cli, 'backup', '--source', src, '--destination', dst, '--retain', '1000']),
  );
  results.rsync.push(time('rsync', ['-a', `--link-dest=${rs}/${i - 1}`, `${src}/`, `${rs}/${i}/`]));
  results.lower.push(
    time('bash', [
      '-c',
      `find "${src}" -printf '%p %s %T@ %m %U %G\\n' >/dev/null && cp -al "${lb}/${i - 1}" "${lb}/${i}"`,
    ]),
  );
}
const row = (name, xs) =>
  `| ${name} | ${(median(xs) / 1000).toFixed(2)} s | ${(median(xs) / median(results.rsync)).toFixed(2)} | ${(median(xs) / median(results.lower)).toFixed(2)} |`;
const table = [
  `No-change incremental backup, ${info.files} files (${(info.bytes / 1e6).toFixed(0)} MB), median of ${results.efs.length}, local disk`,
  '',
  '| tool | time | × rsync --link-dest | × lower bound |',
  '| --- | --- | --- | --- |',
  row('efs-backup', results.efs),
  row('rsync -a --link-dest', results.rsync),
  row('find -printf + cp -al (lower bound)', results.lower),
].join('\n');
console.log(table);
const rsyncVersion = execFileSync('rsync', ['--version'], { encoding: 'utf8' }).split('\n')[0];
fs.writeFileSync(
  path.join(work, 'incremental.json'),
  JSON.stringify({ files: info, results, rsyncVersion }, null, 2),
);
for (const d of [dst, rs, lb]) fs.rmSync(d, { recursive: true, force: true });
