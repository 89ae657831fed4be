/**
 * What the worker processes a run starts are told (in their environment: nothing on a command
 * line), and the schema a started worker checks it against. A module of its own, loaded only
 * by the worker that parses a spec: zod is 200 kB of code in every process that loads it, and
 * the command that starts the workers (a backup given its options as flags, like a plain one)
 * has no schema to check. Imported as a namespace, as everywhere here: `import { z }` takes
 * zod's `z` object whole, and with it every locale's messages (750 kB in all), where the
 * namespace lets the bundler keep only what is used (English is the default).
 */
import * as z from 'zod';

export const WorkerSpec = z.object({
  backupId: z.string().min(1),
  workers: z.number().int().min(1).max(64),
  leaseMs: z.number().int().positive().optional(),
  options: z
    .object({
      source: z.string(),
      destination: z.string(),
      label: z.string().optional(),
      interval: z.string().optional(),
      retain: z.number().optional(),
      prefix: z.string().optional(),
      windowMinutes: z.number().optional(),
      concurrency: z.number().optional(),
      xattrs: z.boolean().optional(),
      checksum: z.boolean().optional(),
      maxMiBps: z.number().optional(),
      maxOps: z.number().optional(),
      exclude: z.array(z.string()).optional(),
      excludeIfPresent: z.array(z.string()).optional(),
    })
    .strict(),
});
export type WorkerSpec = z.infer<typeof WorkerSpec>;

/** The options a spec carries, by name. */
export type WorkerOption = keyof WorkerSpec['options'];
