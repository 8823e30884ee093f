// The layer rules (WEB.md) and the twin rule (STYLE.md, "Twins"), checked so they cannot
// silently stop holding: core/ is file for file with crates/e2ee/src and with the Rust client
// core crates/client/src/core (its mod.rs is client.ts), and back; each file names its twin on
// its first line; each client core twin uses the alarm codes, failure reasons and constants its
// Rust twin uses, all of them in codes.ts; the core tsconfig has no DOM; and the lint rules
// reject what they must.

import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { ESLint } from "eslint";
import type { Linter } from "eslint";
import ts from "typescript";
import tseslint from "typescript-eslint";
import { describe, expect, it } from "vitest";

import { coreLayerRules, pageLayerRules } from "../eslint.config.js";
import * as codes from "../src/core/codes.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CORE = path.join(ROOT, "src/core");
const RUST = path.resolve(ROOT, "../crates/e2ee/src");
const CLIENT_RUST = path.resolve(ROOT, "../crates/client/src/core");

/** The TS twin of a file of the Rust client core: `mod.rs` is `client.ts`, the rest keep their names. */
function clientTwin(rs: string): string {
  return rs === "mod" ? "client" : rs;
}

function rustNames(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".rs"))
    .map((f) => f.slice(0, -3))
    .sort();
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

describe("core/ is the twin of crates/e2ee/src and crates/client/src/core", () => {
  it("file for file and back, each TS file naming its Rust twin on its first line", () => {
    // TS name -> the Rust file it twins.
    const twins = new Map<string, string>();
    for (const name of rustNames(RUST)) {
      twins.set(name, `crates/e2ee/src/${name}.rs`);
    }
    for (const name of rustNames(CLIENT_RUST)) {
      const ts = clientTwin(name);
      expect(twins.get(ts), `${name}.rs of the client core would share ${ts}.ts`).toBeUndefined();
      twins.set(ts, `crates/client/src/core/${name}.rs`);
    }
    const mine = readdirSync(CORE)
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
      .map((f) => f.slice(0, -3))
      .sort();
    expect(mine).toEqual([...twins.keys()].sort());
    for (const name of mine) {
      const first = readFileSync(path.join(CORE, `${name}.ts`), "utf8").split("\n")[0];
      expect(first, `${name}.ts`).toMatch(new RegExp(`^// Twin of ${escape(twins.get(name) ?? "?")}`));
    }
  });

  it("each Rust client core file names its TS twin", () => {
    for (const name of rustNames(CLIENT_RUST).filter((n) => n !== "mod")) {
      const head = readFileSync(path.join(CLIENT_RUST, `${name}.rs`), "utf8").split("\n")[0] ?? "";
      expect(head, `${name}.rs`).toContain(`core/${clientTwin(name)}.ts`);
    }
  });
});

/** Rust source without comments and `use` declarations (which name what a file merely imports). */
function rustCode(file: string): string {
  return readFileSync(file, "utf8")
    .replace(/\/\/.*$/gm, "")
    .replace(/^\s*(pub(\([a-z]+\))? )?use [^;]*;/gms, "");
}

/** TS source without comments. */
function tsCode(file: string): string {
  return readFileSync(file, "utf8")
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\/\/.*$/gm, "");
}

describe("the client core twins use the shared codes and constants", () => {
  // The constants of crates/e2ee/src/codes.rs: a `Duration` is `<NAME>_MS` in codes.ts.
  const codesRs = readFileSync(path.join(RUST, "codes.rs"), "utf8");
  const durations = new Set([...codesRs.matchAll(/pub const ([A-Z0-9_]+): Duration/g)].map((m) => m[1] ?? ""));
  const shared = new Set([...codesRs.matchAll(/pub const ([A-Z0-9_]+):/g)].map((m) => m[1] ?? ""));
  const tsName = (rs: string): string => (durations.has(rs) ? `${rs}_MS` : rs);

  it.each(rustNames(CLIENT_RUST))("%s.rs: every code and constant it uses, its twin uses too", (name) => {
    const rs = rustCode(path.join(CLIENT_RUST, `${name}.rs`));
    const ts = tsCode(path.join(CORE, `${clientTwin(name)}.ts`));
    const used = (re: RegExp): string[] => [...new Set([...rs.matchAll(re)].map((m) => m[1] ?? ""))].sort();
    for (const v of used(/AlarmCode::([A-Za-z]+)/g)) {
      expect(Object.keys(codes.AlarmCode), `AlarmCode::${v}`).toContain(v);
      expect(ts, `${clientTwin(name)}.ts: AlarmCode.${v}`).toMatch(new RegExp(`\\bAlarmCode\\.${v}\\b`));
    }
    for (const v of used(/FailureReason::([A-Za-z]+)/g)) {
      expect(Object.keys(codes.FailureReason), `FailureReason::${v}`).toContain(v);
      expect(ts, `${clientTwin(name)}.ts: FailureReason.${v}`).toMatch(new RegExp(`\\bFailureReason\\.${v}\\b`));
    }
    for (const c of used(/\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b/g)) {
      if (shared.has(c)) {
        expect(Object.keys(codes), `codes.ts: ${tsName(c)}`).toContain(tsName(c));
      }
      expect(ts, `${clientTwin(name)}.ts: ${tsName(c)}`).toMatch(new RegExp(`\\b${tsName(c)}\\b`));
    }
  });

  it("every alarm code and constant the Rust client core imports exists in codes.ts", () => {
    const all = rustNames(CLIENT_RUST)
      .map((n) => readFileSync(path.join(CLIENT_RUST, `${n}.rs`), "utf8"))
      .join("\n");
    const imported = [...all.matchAll(/confer_e2ee::codes::\{([^}]*)\}/g)].flatMap((m) =>
      (m[1] ?? "").split(",").map((x) => x.trim()).filter((x) => /^[A-Z][A-Z0-9_]+$/.test(x)),
    );
    expect(imported.length).toBeGreaterThan(0);
    for (const c of imported) {
      expect(Object.keys(codes), `codes.ts: ${tsName(c)}`).toContain(tsName(c));
    }
    for (const m of all.matchAll(/AlarmCode::([A-Za-z]+)/g)) {
      expect(Object.keys(codes.AlarmCode)).toContain(m[1]);
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

  it("hold for src/main.ts: it imports no crypto and nothing of core/", async () => {
    const main = readFileSync(path.join(ROOT, "src/main.ts"), "utf8");
    expect(await lint(main, pageLayerRules)).toEqual([]);
  });
});
