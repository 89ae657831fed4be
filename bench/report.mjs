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

export function markdown(results, summary) {
  const t = results.tree;
  const lines = [
    `### ${results.mode}: ${t.files.toLocaleString('en')} files, ${t.dirs} directories, ${(t.bytes / 1e6).toFixed(0)} MB`,
    '',
    `${results.machine}; ${results.versions.node}; ${results.versions.rsync}; ${results.versions.fpart}; median of ${results.reps}, ${results.when.slice(0, 10)}.`,
    '',
  ];
  for (const [scenario, rows] of Object.entries(summary)) {
    lines.push(
      `**${TITLES[scenario] ?? scenario}**`,
      '',
      '| tool | median | peak RSS | tool ÷ efs-backup (× faster) |',
      '| --- | ---: | ---: | ---: |',
    );
    for (const r of rows) {
      const times = r.efsRatio === null ? '' : (1 / r.efsRatio).toFixed(2);
      lines.push(
        `| ${r.tool} | ${r.seconds.toFixed(2)} s | ${r.rssMiB.toFixed(0)} MiB | ${times} |`,
      );
    }
    lines.push('');
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
  fs.writeFileSync(path.join(dir, `${tag}.md`), md + '\n');
  fs.writeFileSync(path.join(dir, `${tag}.svg`), svg(results, summary));
  console.log(md);
}

/** Re-renders the Markdown and the chart of a saved run: node bench/report.mjs results/local.json */
if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  for (const file of process.argv.slice(2)) {
    const results = JSON.parse(fs.readFileSync(file, 'utf8'));
    delete results.summary;
    writeReport(path.dirname(file), results, path.basename(file, '.json'));
  }
}
