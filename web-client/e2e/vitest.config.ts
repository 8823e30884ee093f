// The browser tests (npm run test:browsers): real browsers against a real `confer serve --dev`
// serving the built page (dist/). One file at a time: each browser is a process of its own
// and the machine has two cores.
import path from "node:path";

import { defineConfig } from "vitest/config";

export default defineConfig({
  root: path.resolve(import.meta.dirname, ".."),
  test: {
    include: ["e2e/**/*.test.ts"],
    environment: "node",
    pool: "forks",
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 20_000,
    globalSetup: ["e2e/helpers/preflight.ts"],
  },
});
