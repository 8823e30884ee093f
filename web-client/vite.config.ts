// Vite builds the page (index.html, src/main.ts, src/app/) and the console (console.html,
// src/console/) into dist/; Vitest runs test/ in
// Node (the browser tests in e2e/ have their own config, e2e/vitest.config.ts).
//
// `vite build --mode e2e` builds the same page into dist-e2e/ with the test hooks of the SDK
// turned on (`__CONFER_TEST_BUILD__`: a sender may skip its transform, receive keys may be
// dropped), for the browser tests that must show those faults are caught. dist/ never has them.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";

import type { Plugin } from "vite";
import { defineConfig } from "vitest/config";

/** The manifest a mediator or operator checks the client against (`confer client-hash`). */
const MANIFEST = "client-manifest.json";

/**
 * Writes `client-manifest.json` into the build: every file's SHA-256 and the build hash, the
 * SHA-256 of the `sha256sum` lines (`HEX  PATH\n`, paths sorted bytewise, the manifest left
 * out). crates/server/src/client_hash.rs computes the same from the files on disk.
 */
function clientManifest(): Plugin {
  let outDir = "dist";
  return {
    name: "confer-client-manifest",
    apply: "build",
    configResolved(c) {
      outDir = path.resolve(c.root, c.build.outDir);
    },
    closeBundle() {
      const files: [string, string][] = [];
      const walk = (dir: string): void => {
        for (const name of readdirSync(dir)) {
          const full = path.join(dir, name);
          if (statSync(full).isDirectory()) {
            walk(full);
          } else {
            const rel = path.relative(outDir, full).split(path.sep).join("/");
            if (rel !== MANIFEST) {
              files.push([rel, createHash("sha256").update(readFileSync(full)).digest("hex")]);
            }
          }
        }
      };
      walk(outDir);
      files.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
      const lines = files.map(([rel, sum]) => `${sum}  ${rel}\n`).join("");
      const build = createHash("sha256").update(lines).digest("hex");
      const manifest = { build, files: Object.fromEntries(files) };
      writeFileSync(path.join(outDir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    },
  };
}

export default defineConfig(({ mode }) => {
  const e2e = mode === "e2e";
  return {
    define: { __CONFER_TEST_BUILD__: JSON.stringify(e2e) },
    plugins: [clientManifest()],
    build: {
      outDir: e2e ? "dist-e2e" : "dist",
      // Two pages: the client (index.html) and the mediators' console (console.html, /console).
      rolldownOptions: { input: { index: path.resolve(import.meta.dirname, "index.html"), console: path.resolve(import.meta.dirname, "console.html") } },
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
