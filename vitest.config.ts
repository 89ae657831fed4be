import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts'],
    globalSetup: ['./test-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    // The AWS SDK warns, once per process, that its releases from January 2027 need Node 22.
    // The project runs on 20 and 22 and .ci/run tests both; production runs 22 (the worker) and
    // 24 (the Lambda), where the SDK says nothing. The notice is not a test's output.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
