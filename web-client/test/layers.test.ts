// The layer rules (WEB.md) and the twin rule (STYLE.md, "Twins"), checked so they cannot
// silently stop holding: core/ is file for file with crates/e2ee/src, each file names its twin
// on its first line, the core tsconfig has no DOM, and the lint rules reject what they must.

import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { ESLint } from "eslint";
import type { Linter } from "eslint";
import ts from "typescript";
import tseslint from "typescript-eslint";
import { describe, expect, it } from "vitest";

import { coreLayerRules, pageLayerRules } from "../eslint.config.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CORE = path.join(ROOT, "src/core");
const RUST = path.resolve(ROOT, "../crates/e2ee/src");

describe("core/ is the twin of crates/e2ee/src", () => {
  it("file for file, each TS file naming its Rust twin on its first line", () => {
    const rust = readdirSync(RUST)
      .filter((f) => f.endsWith(".rs"))
      .map((f) => f.slice(0, -3))
      .sort();
    const mine = readdirSync(CORE)
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
      .map((f) => f.slice(0, -3))
      .sort();
    expect(mine).toEqual(rust);
    for (const name of mine) {
      const first = readFileSync(path.join(CORE, `${name}.ts`), "utf8").split("\n")[0];
      expect(first, `${name}.ts`).toMatch(new RegExp(`^// Twin of crates/e2ee/src/${name}\\.rs`));
    }
  });
});

describe("proto/ holds twins of crates/proto/src", () => {
  it("each naming an existing Rust file on its first line", () => {
    const dir = path.join(ROOT, "src/proto");
    const mine = readdirSync(dir).filter((f) => f.endsWith(".ts"));
    expect(mine.length).toBeGreaterThan(0);
    for (const f of mine) {
      const first = readFileSync(path.join(dir, f), "utf8").split("\n")[0] ?? "";
      expect(first, f).toMatch(new RegExp(`^// Twin of crates/proto/src/${f.slice(0, -3)}\\.rs`));
      expect(readdirSync(path.resolve(ROOT, "../crates/proto/src"))).toContain(`${f.slice(0, -3)}.rs`);
    }
  });
});

describe("the core tsconfig", () => {
  it.each(["src/core", "src/proto"])("of %s has lib ES2022 only: no DOM, no Node types", (dir) => {
    const file = path.join(ROOT, dir, "tsconfig.json");
    const read = ts.readConfigFile(file, (p) => ts.sys.readFile(p));
    const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, path.join(ROOT, dir));
    expect(parsed.errors).toEqual([]);
    expect(parsed.options.lib).toEqual(["lib.es2022.d.ts"]);
    expect(parsed.options.types).toEqual([]);
    expect(parsed.options.strict).toBe(true);
  });

  it("refuses a DOM global in core code", () => {
    const file = path.join(CORE, "tsconfig.json");
    const read = ts.readConfigFile(file, (p) => ts.sys.readFile(p));
    const { options } = ts.parseJsonConfigFileContent(read.config, ts.sys, CORE);
    const probe = path.join(CORE, "__probe__.ts");
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, lang) =>
      name === probe
        ? ts.createSourceFile(name, "export const t = document.title + String(setTimeout);\n", lang)
        : getSourceFile(name, lang);
    const program = ts.createProgram([probe], options, host);
    const errors = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    expect(errors.join("\n")).toMatch(/Cannot find name 'document'/);
    expect(errors.join("\n")).toMatch(/Cannot find name 'setTimeout'/);
  });
});

async function lint(code: string, rules: Linter.RulesRecord): Promise<string[]> {
  const eslint = new ESLint({
    cwd: ROOT,
    overrideConfigFile: true,
    overrideConfig: [
      {
        files: ["**/*.ts"],
        languageOptions: { parser: tseslint.parser },
        rules,
      },
    ],
  });
  const [result] = await eslint.lintText(code, { filePath: path.join(ROOT, "src/core/probe.ts") });
  return (result?.messages ?? []).map((m) => `${m.ruleId ?? "parse"}: ${m.message}`);
}

describe("the core lint rules", () => {
  it("allow core's own imports and the named primitives", async () => {
    const ok = await lint(
      [
        'import { sha256 } from "@noble/hashes/sha2.js";',
        'import { x25519 } from "@noble/curves/ed25519.js";',
        'import { chacha20poly1305 } from "@noble/ciphers/chacha.js";',
        'import { CipherSuite } from "@hpke/core";',
        'import { Writer } from "./enc.js";',
        "export const x = [sha256, x25519, chacha20poly1305, CipherSuite, Writer];",
      ].join("\n"),
      coreLayerRules,
    );
    expect(ok).toEqual([]);
  });

  it.each([
    ["Math.random()", "no-restricted-properties"],
    ["crypto.getRandomValues(new Uint8Array(1))", "no-restricted-globals"],
    ["globalThis.crypto.getRandomValues(new Uint8Array(1))", "no-restricted-properties"],
    ["Date.now()", "no-restricted-globals"],
    ["setTimeout(() => 0, 1)", "no-restricted-globals"],
    ["performance.now()", "no-restricted-globals"],
    ["document.title", "no-restricted-globals"],
    ["new TextEncoder()", "no-restricted-globals"],
    ["process.env", "no-restricted-globals"],
    ["console.log(1)", "no-restricted-globals"],
  ])("reject %s", async (expr, rule) => {
    const messages = await lint(`export const x = ${expr};\n`, coreLayerRules);
    expect(messages.join("\n")).toContain(rule);
  });

  it.each([
    'import { readFileSync } from "node:fs";',
    'import { createHash } from "crypto";',
    'import { Buffer } from "buffer";',
    'import { sdk } from "../sdk.js";',
    'import { x } from "some-package";',
    'import { randomBytes } from "@noble/hashes/utils";',
  ])("reject %s", async (imp) => {
    const messages = await lint(`${imp}\nexport const y = 1;\n`, coreLayerRules);
    expect(messages.join("\n")).toContain("no-restricted-imports");
  });
});

describe("the page lint rules", () => {
  it.each(['import { sha256 } from "@noble/hashes/sha2.js";', 'import { Identity } from "./core/identity.js";', 'import { seal } from "@hpke/core";'])(
    "reject %s",
    async (imp) => {
      const messages = await lint(`${imp}\nexport const y = 1;\n`, pageLayerRules);
      expect(messages.join("\n")).toContain("no-restricted-imports");
    },
  );

  it("hold for src/main.ts today", () => {
    const main = readFileSync(path.join(ROOT, "src/main.ts"), "utf8");
    expect(main).not.toMatch(/^\s*import\b/m);
  });
});
