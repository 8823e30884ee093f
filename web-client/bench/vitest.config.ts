// The browser benchmark (bench/call.ts) runs under Vitest, like the browser tests whose helpers
// it uses; it prints a table, and checks only that each page was measured (speed is not asserted).
import path from "node:path";

import { defineConfig } from "vitest/config";

export default defineConfig({
  root: path.resolve(import.meta.dirname, ".."),
  test: {
    include: ["bench/call.ts"],
    environment: "node",
    pool: "forks",
    globalSetup: ["e2e/helpers/preflight.ts"],
  },
});
