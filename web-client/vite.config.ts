// Vite builds the page (index.html, src/main.ts, src/app/) into dist/; Vitest runs test/ in
// Node (the browser tests in e2e/ have their own config, e2e/vitest.config.ts).
//
// `vite build --mode e2e` builds the same page into dist-e2e/ with the test hooks of the SDK
// turned on (`__CONFER_TEST_BUILD__`: a sender may skip its transform, receive keys may be
// dropped), for the browser tests that must show those faults are caught. dist/ never has them.
import { defineConfig } from "vitest/config";

export default defineConfig(({ mode }) => {
  const e2e = mode === "e2e";
  return {
    define: { __CONFER_TEST_BUILD__: JSON.stringify(e2e) },
    build: {
      outDir: e2e ? "dist-e2e" : "dist",
      emptyOutDir: true,
      sourcemap: false,
      // Reproducible output: no inlined assets whose names depend on anything but content.
      assetsInlineLimit: 0,
      // Only current browsers run the client: no modulepreload polyfill in the entry chunk.
      modulePreload: { polyfill: false },
    },
    worker: { format: "es" as const },
    test: {
      include: ["test/**/*.test.ts"],
      environment: "node",
      // Vector cases run in file order inside a file (chains are built case by case).
      sequence: { concurrent: false },
    },
  };
});
