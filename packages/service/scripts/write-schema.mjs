// Writes the published JSON Schema of the configuration file from the zod schema (run after
// the build: `npm run schema -w @efs-backup/service`); a test checks that the file is current.
import fs from 'node:fs';
import * as prettier from 'prettier';
import { configJsonSchema } from '../dist/index.js';

const file = new URL('../efs-backup.schema.json', import.meta.url);
const options = (await prettier.resolveConfig(file.pathname)) ?? {};
const text = await prettier.format(JSON.stringify(configJsonSchema()), {
  ...options,
  parser: 'json',
});
fs.writeFileSync(file, text);
console.log(`wrote ${file.pathname}`);
