// Vite builds the page (index.html, src/main.ts, src/app/) into dist/; Vitest runs test/ in
// Node (the browser tests in e2e/ have their own config, e2e/vitest.config.ts).
import { defineConfig } from "vitest/config";

export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    // Reproducible output: no inlined assets whose names depend on anything but content.
    assetsInlineLimit: 0,
    // Only current browsers run the client: no modulepreload polyfill in the entry chunk.
    modulePreload: { polyfill: false },
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
    // Vector cases run in file order inside a file (chains are built case by case).
    sequence: { concurrent: false },
  },
});
