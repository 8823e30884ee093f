// Builds the Node benchmarks into ES modules Node 20 runs: dist-bench/frame.mjs (the frame
// code against raw ChaCha20-Poly1305) and dist-bench/call.mjs (a 4-person browser call).
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    ssr: true,
    outDir: "dist-bench",
    target: "node20",
    emptyOutDir: true,
    rolldownOptions: {
      input: { frame: "bench/frame.ts", call: "bench/call.ts" },
      output: { entryFileNames: "[name].mjs" },
    },
  },
  ssr: { noExternal: true, external: ["playwright-core", "puppeteer-core", "@axe-core/playwright"] },
  logLevel: "warn",
});
