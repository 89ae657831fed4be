// Bundles the orchestrator Lambda and the worker agent, each one file with every dependency
// (core, service, the AWS SDK clients): what the CDK app takes as assets and `npm run dist`
// ships. No native addon may be in either (the run lifecycle's import graph has none).
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'bundles');
fs.rmSync(out, { recursive: true, force: true });

const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
};

const results = await Promise.all([
  build({
    ...common,
    entryPoints: [path.join(root, 'dist', 'lambda.js')],
    outfile: path.join(out, 'orchestrator', 'index.js'),
  }),
  build({
    ...common,
    entryPoints: [path.join(root, 'dist', 'worker-bin.js')],
    outfile: path.join(out, 'worker', 'efs-backup-worker.cjs'),
    // The SDK's ES modules, so that only the commands the worker sends are in the bundle (of
    // CloudWatch, GetMetricData: no PutMetricData, nothing that could send metrics anywhere).
    mainFields: ['module', 'main'],
    // libuv sizes its thread pool at the first asynchronous call: set before anything runs.
    banner: { js: "process.env.UV_THREADPOOL_SIZE ??= '64';" },
  }),
]);
// The Lambda's directory is CommonJS whatever the package around it says.
fs.writeFileSync(path.join(out, 'orchestrator', 'package.json'), '{ "type": "commonjs" }\n');
for (const r of results) {
  const native = Object.keys(r.metafile.inputs).filter((i) =>
    /\.node$|better-sqlite3|bindings/.test(i),
  );
  if (native.length) throw new Error(`a bundle reached a native addon: ${native.join(', ')}`);
}
