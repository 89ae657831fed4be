// Writes a benchmark run as JSON, a Markdown table and an SVG bar chart.
import fs from 'node:fs';
import path from 'node:path';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const TITLES = {
  full: 'Full backup',
  incremental: 'Incremental, nothing changed',
  churn: 'Incremental, 1% changed, 0.5% deleted, 0.5% added',
  prune: 'Deleting one old snapshot',
  restore: 'Restoring a snapshot',
};

export function summarize(results) {
  const out = {};
  for (const [scenario, byTool] of Object.entries(results.scenarios)) {
    const rows = Object.entries(byTool).map(([tool, runs]) => ({
      tool,
      seconds: median(runs.map((r) => r.seconds)),
      rssMiB: Math.max(...runs.map((r) => r.rssKiB)) / 1024,
      runs: runs.length,
    }));
    const efs = rows.find((r) => r.tool === 'efs-backup');
    for (const r of rows) r.efsRatio = efs ? efs.seconds / r.seconds : null;
    out[scenario] = rows.sort((a, b) => a.seconds - b.seconds);
  }
  return out;
}

/**
 * A Markdown table laid out as prettier lays it out (the results are committed and linted):
 * `rows[0]` is the header; the first column left-aligned, the others right-aligned.
 */
export function mdTable(rows, { firstLeft = true } = {}) {
  const width = (x) => [...x].length;
  const widths = rows[0].map((_, i) => Math.max(3, ...rows.map((r) => width(r[i]))));
  const left = (i) => i === 0 && firstLeft;
  const pad = (x, i) =>
    left(i) ? x + ' '.repeat(widths[i] - width(x)) : ' '.repeat(widths[i] - width(x)) + x;
  const line = (r) => `| ${r.map(pad).join(' | ')} |`;
  const rule = `| ${widths.map((w, i) => (left(i) ? '-'.repeat(w) : '-'.repeat(w - 1) + ':')).join(' | ')} |`;
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join('\n');
}

export function markdown(results, summary) {
  const t = results.tree;
  const lines = [
    `### ${results.mode}: ${t.files.toLocaleString('en')} files, ${t.dirs} directories, ${(t.bytes / 1e6).toFixed(0)} MB`,
    '',
    `${results.machine}; ${results.versions.node}; ${results.versions.rsync}; ${results.versions.fpart}; median of ${results.reps}, ${results.when.slice(0, 10)}.`.replace(
      / {2,}/g,
      ' ',
    ),
    '',
  ];
  for (const [scenario, rows] of Object.entries(summary)) {
    const table = [['tool', 'median', 'peak RSS', 'tool ÷ efs-backup (× faster)']];
    for (const r of rows) {
      const times = r.efsRatio === null ? '' : (1 / r.efsRatio).toFixed(2);
      table.push([r.tool, `${r.seconds.toFixed(2)} s`, `${r.rssMiB.toFixed(0)} MiB`, times]);
    }
    lines.push(`**${TITLES[scenario] ?? scenario}**`, '', mdTable(table), '');
  }
  return lines.join('\n');
}

/** Horizontal bars, one group per scenario, time relative to the slowest tool of the group. */
export function svg(results, summary) {
  const rowH = 18;
  const groupGap = 30;
  const left = 280;
  const width = 820;
  const barMax = width - left - 90;
  let y = 40;
  const parts = [];
  for (const [scenario, rows] of Object.entries(summary)) {
    parts.push(
      `<text x="10" y="${y}" font-weight="bold">${esc(TITLES[scenario] ?? scenario)}</text>`,
    );
    y += 8;
    const max = Math.max(...rows.map((r) => r.seconds));
    for (const r of rows) {
      const w = Math.max(1, (r.seconds / max) * barMax);
      const color = r.tool === 'efs-backup' ? '#d9480f' : '#868e96';
      parts.push(
        `<text x="${left - 8}" y="${y + 13}" text-anchor="end">${esc(r.tool)}</text>`,
        `<rect x="${left}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 4}" fill="${color}"/>`,
        `<text x="${left + w + 6}" y="${y + 13}">${r.seconds.toFixed(2)} s</text>`,
      );
      y += rowH;
    }
    y += groupGap;
  }
  const t = results.tree;
  const title = `efs-backup and its peers: ${results.mode}, ${t.files.toLocaleString('en')} files (${(t.bytes / 1e6).toFixed(0)} MB)`;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" font-family="sans-serif" font-size="12">` +
    `<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">${esc(title)}</text>` +
    parts.join('') +
    '</svg>\n'
  );
}

const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function writeReport(dir, results, tag) {
  fs.mkdirSync(dir, { recursive: true });
  const summary = summarize(results);
  fs.writeFileSync(
    path.join(dir, `${tag}.json`),
    JSON.stringify({ ...results, summary }, null, 2) + '\n',
  );
  const md = markdown(results, summary);
  fs.writeFileSync(path.join(dir, `${tag}.md`), md.trimEnd() + '\n');
  fs.writeFileSync(path.join(dir, `${tag}.svg`), svg(results, summary));
  console.log(md);
}

const COLUMNS = ['full', 'incremental', 'churn', 'prune', 'restore'];
const SHORT = {
  full: 'full backup',
  incremental: 'no change',
  churn: '1% changed',
  prune: 'delete a snapshot',
  restore: 'restore',
};

/** One table: a row per tool, a column per scenario; seconds, and in brackets tool ÷ efs-backup. */
function combinedTable(results, summary) {
  const cols = COLUMNS.filter((c) => summary[c]);
  const tools = [...new Set(cols.flatMap((c) => summary[c].map((r) => r.tool)))].sort((a, b) =>
    a === 'efs-backup' ? -1 : b === 'efs-backup' ? 1 : a.localeCompare(b),
  );
  const cell = (c, tool) => {
    const r = summary[c].find((x) => x.tool === tool);
    if (!r) return '';
    return tool === 'efs-backup'
      ? r.seconds.toFixed(2)
      : `${r.seconds.toFixed(2)} (${(1 / r.efsRatio).toFixed(1)}×)`;
  };
  return mdTable([
    ['tool', ...cols.map((c) => SHORT[c])],
    ...tools.map((t) => [t, ...cols.map((c) => cell(c, t))]),
  ]);
}

function scaleTable(scale) {
  const synced = Object.values(scale.sizes).some((r) => r.full.syncSeconds !== undefined);
  const rows = [
    [
      'files',
      'full backup',
      'µs per file',
      ...(synced ? ['µs per file, written to disk'] : []),
      'peak RSS',
      'no change',
      'µs per file',
      'peak RSS',
    ],
  ];
  for (const [n, r] of Object.entries(scale.sizes)) {
    const f = Number(n);
    const per = (x) => ((x.seconds / f) * 1e6).toFixed(0);
    const mib = (x) => `${(x.rssKiB / 1024).toFixed(0)} MiB`;
    rows.push([
      f.toLocaleString('en'),
      `${r.full.seconds.toFixed(1)} s`,
      per(r.full),
      ...(synced ? [(((r.full.seconds + (r.full.syncSeconds ?? 0)) / f) * 1e6).toFixed(0)] : []),
      mib(r.full),
      `${r.incremental.seconds.toFixed(1)} s`,
      per(r.incremental),
      mib(r.incremental),
    ]);
  }
  return mdTable(rows, { firstLeft: false });
}

/**
 * The README's block between `<!-- bench:start -->` and `<!-- bench:end -->`, from the saved
 * runs in `dir`: node bench/report.mjs --readme [dir]
 */
export function readmeBlock(dir) {
  const load = (f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  const parts = [];
  const intro = (r) => {
    const t = r.tree;
    const us = `${r.mode.match(/(\d+) µs/)?.[1] ?? '?'} µs per call`;
    const layout = r.layout ?? (r.mode.startsWith('latencyfs') ? 'both' : 'local');
    const where = {
      local: 'Local disk',
      both: `Through latencyfs, ${us} (like EFS)`,
      'src-local': `Source on the local disk, destination through latencyfs, ${us} (a local disk or EBS backed up onto EFS)`,
      'dst-local': `Source through latencyfs, ${us}, destination on the local disk (EFS backed up onto a local disk or EBS)`,
    }[layout];
    const size =
      layout !== 'local'
        ? `${t.files.toLocaleString('en')} small files`
        : `${t.files.toLocaleString('en')} files (${(t.bytes / 1e6).toFixed(0)} MB, mixed sizes)`;
    return `**${where}, ${size}**: median seconds of ${r.reps} run(s); in brackets, how many times longer the tool takes than efs-backup.`;
  };
  const runs = [
    'local.json',
    'latency-1000us.json',
    'latency-1000us-src-local.json',
    'latency-1000us-dst-local.json',
  ];
  for (const f of runs) {
    if (!fs.existsSync(path.join(dir, f))) continue;
    const r = load(f);
    parts.push(intro(r), '', combinedTable(r, r.summary ?? summarize(r)), '');
  }
  if (fs.existsSync(path.join(dir, 'workers.md'))) {
    // Written by bench/workers.mjs: its heading in bold, as the other runs' introductions are.
    const [heading, ...body] = fs.readFileSync(path.join(dir, 'workers.md'), 'utf8').split('\n');
    parts.push(`**${heading.replace(/^#+\s*/, '')}**`, ...body);
  }
  if (fs.existsSync(path.join(dir, 'scale.json'))) {
    const sc = load('scale.json');
    const dest = sc.destination ? `; snapshots on ${sc.destination}` : '';
    parts.push(
      `**Scale** (local disk, small files, \`--scale 10000,100000,1000000\`${dest}): time per file and peak memory (RSS) of the whole command; "written to disk" adds the \`sync\` that follows the full backup (a million small files outgrow the page cache's dirty limits and pay part of their writing during the run; fewer stay in memory).`,
      '',
      scaleTable(sc),
      '',
    );
  }
  return parts.join('\n');
}

export function rewriteReadme(dir) {
  const readme = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'README.md');
  const text = fs.readFileSync(readme, 'utf8');
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < i) throw new Error(`README.md has no ${start} … ${end} block`);
  fs.writeFileSync(
    readme,
    `${text.slice(0, i + start.length)}\n\n${readmeBlock(dir)}\n${text.slice(j)}`,
  );
}

/**
 * Re-renders the Markdown and the chart of a saved run: node bench/report.mjs results/local.json
 * Rewrites the README's tables from the saved runs: node bench/report.mjs --readme [bench/results]
 */
if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  if (process.argv[2] === '--readme') {
    const here = path.dirname(new URL(import.meta.url).pathname);
    rewriteReadme(process.argv[3] ?? path.join(here, 'results'));
    process.exit(0);
  }
  for (const file of process.argv.slice(2)) {
    const results = JSON.parse(fs.readFileSync(file, 'utf8'));
    delete results.summary;
    writeReport(path.dirname(file), results, path.basename(file, '.json'));
  }
}
