// Builds the Node bot (bot/bot.ts) into one ES module Node 20 runs: dist-bot/bot.mjs.
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    ssr: "bot/bot.ts",
    outDir: "dist-bot",
    target: "node20",
    emptyOutDir: true,
    rolldownOptions: { output: { entryFileNames: "bot.mjs" } },
  },
  ssr: { noExternal: true, external: ["ws"] },
  logLevel: "warn",
});
