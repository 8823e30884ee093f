// ESLint: typescript-eslint's strict, type-checked rules everywhere, and the layer rules of
// WEB.md: core/ is sans-IO ES2022 (no DOM, no Node, no timers, no clock, no Math.random, no
// Web Crypto; randomness and time are inputs), proto/ (wire types) likewise, and the page
// never imports crypto.
import { builtinModules } from "node:module";

import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import globals from "globals";
import tseslint from "typescript-eslint";

const SANS_IO = "core/ and proto/ are sans-IO ES2022: clock, randomness and I/O are inputs (WEB.md, Layers)";

/**
 * The layer rules of src/core/ (exported so test/layers.test.ts can check they bite).
 * @type {import("eslint").Linter.RulesRecord}
 */
export const coreLayerRules = {
  "no-restricted-globals": [
    "error",
    ...[
      // DOM, workers, WebRTC, network
      "window",
      "document",
      "self",
      "navigator",
      "location",
      "history",
      "localStorage",
      "sessionStorage",
      "indexedDB",
      "fetch",
      "WebSocket",
      "Worker",
      "MessageChannel",
      "BroadcastChannel",
      "RTCPeerConnection",
      "RTCRtpScriptTransform",
      "TextEncoder",
      "TextDecoder",
      "atob",
      "btoa",
      // Web Crypto (randomness is the `Rng` argument)
      "crypto",
      // clocks and timers (time is an input)
      "Date",
      "performance",
      "setTimeout",
      "setInterval",
      "clearTimeout",
      "clearInterval",
      "setImmediate",
      "queueMicrotask",
      "requestAnimationFrame",
      // Node
      "process",
      "Buffer",
      "require",
      "module",
      "__dirname",
      "__filename",
      "global",
      // logs (nothing secret in logs; the core reports, the shell logs)
      "console",
    ].map((name) => ({ name, message: SANS_IO })),
  ],
  "no-restricted-properties": [
    "error",
    { object: "Math", property: "random", message: SANS_IO },
    { object: "globalThis", property: "crypto", message: SANS_IO },
    { object: "globalThis", property: "window", message: SANS_IO },
    { object: "globalThis", property: "document", message: SANS_IO },
    { object: "globalThis", property: "process", message: SANS_IO },
    { object: "globalThis", property: "setTimeout", message: SANS_IO },
    { object: "globalThis", property: "setInterval", message: SANS_IO },
    { object: "globalThis", property: "Date", message: SANS_IO },
    { object: "globalThis", property: "console", message: SANS_IO },
    { property: "getRandomValues", message: SANS_IO },
  ],
  "no-restricted-imports": [
    "error",
    {
      paths: builtinModules.map((name) => ({ name, message: SANS_IO })),
      patterns: [
        { group: ["node:*"], message: SANS_IO },
        {
          // Only core/ itself and the primitives WEB.md names.
          regex: "^(?!\\./[a-z-]+\\.js$|@noble/(ciphers|curves|hashes)/[a-z0-9-]+\\.js$|@hpke/(core|dhkem-x25519|chacha20poly1305)$)",
          message: "core/ imports only ./*.js, @noble/{ciphers,curves,hashes} and @hpke/*",
        },
      ],
    },
  ],
};

/**
 * The page never touches crypto (WEB.md: app/ "never imports crypto modules").
 * @type {import("eslint").Linter.RulesRecord}
 */
export const pageLayerRules = {
  "no-restricted-imports": [
    "error",
    {
      patterns: [
        {
          group: ["@noble/*", "@hpke/*", "**/core/*", "./core/*"],
          message: "the page never imports crypto modules; it talks to the SDK",
        },
      ],
    },
  ],
};

export default defineConfig(
  { ignores: ["dist/", "dist-e2e/", "dist-bot/", "dist-bench/", "node_modules/", "coverage/", "e2e/artifacts/"] },
  js.configs.recommended,
  tseslint.configs.strictTypeChecked,
  tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: false }],
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/switch-exhaustiveness-check": "error",
      eqeqeq: "error",
      "no-console": "off",
    },
  },
  {
    files: ["**/*.js"],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: globals.node },
  },
  {
    // proto/ (the wire types of crates/proto) is sans-IO like core/.
    files: ["src/core/**/*.ts", "src/proto/**/*.ts"],
    rules: { ...coreLayerRules, "no-console": "error" },
  },
  {
    files: ["src/main.ts", "src/app/**/*.ts"],
    languageOptions: { globals: globals.browser },
    rules: pageLayerRules,
  },
  {
    files: ["test/**/*.ts", "vite.config.ts"],
    languageOptions: { globals: globals.node },
  },
);
