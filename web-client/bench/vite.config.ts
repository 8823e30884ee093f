// Builds the Node benchmark into an ES module Node 20 runs: dist-bench/frame.mjs (the frame
// code against raw ChaCha20-Poly1305). The browser benchmark, bench/call.ts, runs under Vitest
// (bench/vitest.config.ts).
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    ssr: true,
    outDir: "dist-bench",
    target: "node20",
    emptyOutDir: true,
    rolldownOptions: {
      input: { frame: "bench/frame.ts" },
      output: { entryFileNames: "[name].mjs" },
    },
  },
  ssr: { noExternal: true },
  logLevel: "warn",
});
