import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
    // Drops the handlers' EMF metric lines from the output (test/setup/quiet-output.ts says why).
    setupFiles: ['./test/setup/quiet-output.ts'],
    env: {
      // The SDK warns on every run that releases after January 2027 need Node 22; the project runs on
      // Node >= 20.15 on purpose (package.json engines), so the warning is only noise here.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  },
});
