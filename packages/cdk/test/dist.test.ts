/**
 * `npm run dist` (writeDist) lays out what the CloudFormation console deploys from, and the
 * app that `npx cdk deploy` runs (cdk.json) synthesizes for CDK's bootstrapped deployment.
 */
import { ORCHESTRATOR_BUNDLE_DIR, WORKER_BUNDLE_FILE } from '@efs-backup/aws/bundles';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, writeDist, type DistOutput } from '../src/index.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');

let out: string;
let dist: DistOutput;
beforeAll(() => {
  out = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-dist-'));
  dist = writeDist({ bucket: 'my-bucket', solution: 'efs-backup', version: 'v1.2.3', out });
});
afterAll(() => {
  if (out) fs.rmSync(out, { recursive: true, force: true });
});

/** The entries of a ZIP file, read from its central directory. */
function unzip(file: string): Map<string, Buffer> {
  const zip = fs.readFileSync(file);
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = zip.readUInt16LE(end + 10);
  let at = zip.readUInt32LE(end + 16);
  const entries = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const method = zip.readUInt16LE(at + 10);
    const size = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extra = zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.subarray(at + 46, at + 46 + nameLength).toString('utf8');
    const dataAt = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const packed = zip.subarray(dataAt, dataAt + size);
    entries.set(name, method === 8 ? zlib.inflateRawSync(packed) : packed);
    at += 46 + nameLength + extra;
  }
  return entries;
}

describe('npm run dist', () => {
  it('writes both templates and the assets they read, under the names they read', () => {
    expect(fs.readdirSync(path.join(out, 'global-s3-assets')).sort()).toEqual([
      'efs-to-efs-backup.template',
      'efs-to-efs-restore.template',
    ]);
    expect(dist.keyPrefix).toBe('efs-backup/v1.2.3/');
    const regional = fs.readdirSync(path.join(out, 'regional-s3-assets')).sort();
    expect(regional).toHaveLength(2);
    for (const name of ['efs-to-efs-backup', 'efs-to-efs-restore']) {
      const text = fs.readFileSync(path.join(out, 'global-s3-assets', `${name}.template`), 'utf8');
      const template = JSON.parse(text) as { Parameters: Record<string, { Default?: string }> };
      expect(template.Parameters.AssetsBucket?.Default).toBe('my-bucket');
      expect(template.Parameters.AssetsKeyPrefix?.Default).toBe('efs-backup/v1.2.3/');
      // Every asset file a template names is there.
      const named = [...text.matchAll(/([0-9a-f]{64}\.(?:zip|cjs))/g)].map((m) => m[1]!);
      expect(named.length).toBeGreaterThan(0);
      for (const f of named) expect(regional).toContain(f);
      // Deployable without CDK bootstrap.
      expect(text).not.toMatch(/cdk-hnb659fds|BootstrapVersion/);
    }
  });

  it("ships the orchestrator's code as a Lambda zip and the worker as its bundle", () => {
    const zip = dist.assets.find((f) => f.endsWith('.zip'))!;
    const entries = unzip(zip);
    expect([...entries.keys()]).toEqual(['index.js', 'package.json']);
    expect(
      entries
        .get('index.js')!
        .equals(fs.readFileSync(path.join(ORCHESTRATOR_BUNDLE_DIR, 'index.js'))),
    ).toBe(true);
    // Python's zipfile agrees, where there is one.
    try {
      const listed = execFileSync('python3', ['-m', 'zipfile', '-t', zip], { encoding: 'utf8' });
      expect(listed).toMatch(/Done testing/);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const worker = dist.assets.find((f) => f.endsWith('.cjs'))!;
    expect(fs.readFileSync(worker).equals(fs.readFileSync(WORKER_BUNDLE_FILE))).toBe(true);
  });
});

describe('npx cdk deploy', () => {
  it('cdk.json runs the app, which synthesizes both stacks for a bootstrapped account', () => {
    const cdkJson = JSON.parse(fs.readFileSync(path.join(ROOT, 'cdk.json'), 'utf8')) as {
      app: string;
    };
    expect(cdkJson.app).toBe('node packages/cdk/dist/app.js');
    expect(fs.existsSync(path.join(ROOT, 'packages/cdk/dist/app.js'))).toBe(true);

    const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-cdk-deploy-'));
    try {
      const assembly = buildApp({ outdir }).app.synth();
      for (const name of ['efs-to-efs-backup', 'efs-to-efs-restore']) {
        const stack = assembly.getStackByName(name);
        const template = stack.template as {
          Parameters: Record<string, unknown>;
          Rules?: Record<string, unknown>;
        };
        // CDK's own asset publishing and its bootstrap check, instead of the dist parameters.
        expect(template.Parameters.BootstrapVersion).toBeDefined();
        expect(template.Parameters.AssetsBucket).toBeUndefined();
        expect(template.Rules?.CheckBootstrapVersion).toBeDefined();
      }
      const manifest = JSON.parse(
        fs.readFileSync(path.join(outdir, 'efs-to-efs-backup.assets.json'), 'utf8'),
      ) as { files: Record<string, { source: { packaging: string } }> };
      const packagings = Object.values(manifest.files)
        .map((f) => f.source.packaging)
        .sort();
      // The template itself, the worker bundle, the orchestrator's directory.
      expect(packagings).toEqual(['file', 'file', 'zip']);
    } finally {
      fs.rmSync(outdir, { recursive: true, force: true });
    }
  });
});
