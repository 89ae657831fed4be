/**
 * `npm run dist` (the original's build-s3-dist): both templates in
 * `deployment/global-s3-assets/`, the orchestrator's zip and the worker bundle in
 * `deployment/regional-s3-assets/`, named as the templates read them from
 * `s3://<bucket>-<region>/<solution>/<version>/`.
 *
 *   npm run dist -- [--bucket NAME] [--solution efs-backup] [--version v0.1.0] [--out deployment]
 *
 * (or DIST_OUTPUT_BUCKET, SOLUTION_NAME and VERSION in the environment, as the original took).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BACKUP_STACK, buildApp, RESTORE_STACK } from './app.js';
import { DistSynthesizer } from './dist-synthesizer.js';
import { zipDirectory } from './zip.js';

export interface DistOptions {
  /** The assets bucket's name before `-<region>`. @default none: asked for at deployment */
  bucket?: string;
  /** @default 'efs-backup' */
  solution?: string;
  /** @default 'v' and the package's version */
  version?: string;
  /** @default 'deployment' in the working directory */
  out?: string;
}

export interface DistOutput {
  templates: string[];
  assets: string[];
  keyPrefix: string;
}

const PACKAGE_VERSION = (
  JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

export function writeDist(o: DistOptions = {}): DistOutput {
  const keyPrefix = `${o.solution ?? 'efs-backup'}/${o.version ?? `v${PACKAGE_VERSION}`}/`;
  const out = path.resolve(o.out ?? 'deployment');
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-dist-'));
  try {
    const synthesizers: DistSynthesizer[] = [];
    const { app } = buildApp({
      outdir,
      synthesizer: () => {
        const s = new DistSynthesizer({ ...(o.bucket ? { bucket: o.bucket } : {}), keyPrefix });
        synthesizers.push(s);
        return s;
      },
    });
    const assembly = app.synth();
    const global = path.join(out, 'global-s3-assets');
    const regional = path.join(out, 'regional-s3-assets');
    for (const d of [global, regional]) {
      fs.rmSync(d, { recursive: true, force: true });
      fs.mkdirSync(d, { recursive: true });
    }
    const templates = [BACKUP_STACK, RESTORE_STACK].map((name) => {
      const file = path.join(global, `${name}.template`);
      fs.copyFileSync(assembly.getStackByName(name).templateFullPath, file);
      return file;
    });
    const assets = new Map<string, string>();
    for (const a of synthesizers.flatMap((s) => s.assets)) {
      const file = path.join(regional, a.fileName);
      if (assets.has(a.fileName)) continue;
      const source = path.join(outdir, a.sourcePath);
      if (a.packaging === 'zip') zipDirectory(source, file);
      else fs.copyFileSync(source, file);
      assets.set(a.fileName, file);
    }
    return { templates, assets: [...assets.values()], keyPrefix };
  } finally {
    fs.rmSync(outdir, { recursive: true, force: true });
  }
}

function option(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const env = process.env;
  const bucket = option(argv, 'bucket') ?? env.DIST_OUTPUT_BUCKET;
  const solution = option(argv, 'solution') ?? env.SOLUTION_NAME;
  const version = option(argv, 'version') ?? env.VERSION;
  const outDir = option(argv, 'out');
  const r = writeDist({
    ...(bucket ? { bucket } : {}),
    ...(solution ? { solution } : {}),
    ...(version ? { version } : {}),
    ...(outDir ? { out: outDir } : {}),
  });
  const rel = (f: string): string => path.relative(process.cwd(), f);
  console.log(`templates:\n${r.templates.map((f) => `  ${rel(f)}`).join('\n')}`);
  console.log(`assets:\n${r.assets.map((f) => `  ${rel(f)}`).join('\n')}`);
  console.log(
    `\nUpload both folders to s3://${bucket ?? '<bucket>'}-<region>/${r.keyPrefix} and create a stack from the template's S3 URL (README, "Deploy on AWS").`,
  );
}
