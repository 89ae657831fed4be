/**
 * The AWS worker runs one bundled file of core, service and aws: the run lifecycle and
 * everything the service's main entry point reaches must bundle without a native addon.
 */
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');

async function inputsOf(entry: string): Promise<string[]> {
  const r = await build({
    entryPoints: [path.join(SRC, entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  return Object.keys(r.metafile.inputs);
}

describe('bundles', () => {
  it.each(['lifecycle.ts', 'index.ts'])('%s bundles with no native addon', async (entry) => {
    const inputs = await inputsOf(entry);
    expect(inputs.some((i) => i.includes('packages/core/'))).toBe(true);
    expect(inputs.filter((i) => /better-sqlite3|bindings|\.node$/.test(i))).toEqual([]);
    expect(inputs.filter((i) => i.includes('sqlite-record-store'))).toEqual([]);
  });

  it('the local wiring is where SQLite comes in', async () => {
    const inputs = await inputsOf('local.ts');
    expect(inputs.some((i) => i.includes('node_modules/better-sqlite3/'))).toBe(true);
  });
});
