// Vite builds the page (index.html, src/main.ts) into dist/; Vitest runs test/ in Node.
import { defineConfig } from "vitest/config";

export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    // Reproducible output: no inlined assets whose names depend on anything but content.
    assetsInlineLimit: 0,
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
    // Vector cases run in file order inside a file (chains are built case by case).
    sequence: { concurrent: false },
  },
});
