// The verifiable client: two builds of the same sources give the same bytes, and the build's
// client-manifest.json states every file's SHA-256 and the build hash computed as
// `confer client-hash` computes it (crates/server/src/client_hash.rs): the SHA-256 of the
// `sha256sum` lines of all files but the manifest, sorted by path.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "..");
const dirs: string[] = [];

async function build(): Promise<string> {
  const out = await mkdtemp(path.join(os.tmpdir(), "confer-build-"));
  dirs.push(out);
  await run("npx", ["vite", "build", "--outDir", out, "--emptyOutDir", "--logLevel", "error"], { cwd: ROOT });
  return out;
}

async function files(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(dir)) {
    const full = path.join(dir, name);
    if ((await stat(full)).isDirectory()) {
      out.push(...(await files(full, base)));
    } else {
      out.push(path.relative(base, full).split(path.sep).join("/"));
    }
  }
  return out;
}

afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe("the build", () => {
  it("is reproducible, and its manifest states every file and the build hash", { timeout: 60_000 }, async () => {
    const [a, b] = [await build(), await build()];
    const manifestA = await readFile(path.join(a, "client-manifest.json"), "utf8");
    expect(await readFile(path.join(b, "client-manifest.json"), "utf8")).toBe(manifestA);
    const m = JSON.parse(manifestA) as { build: string; files: Record<string, string> };
    const names = (await files(a)).filter((f) => f !== "client-manifest.json").sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(Object.keys(m.files).sort()).toEqual([...names].sort());
    let lines = "";
    for (const name of names) {
      const bytesA = await readFile(path.join(a, name));
      expect((await readFile(path.join(b, name))).equals(bytesA), name).toBe(true);
      const sum = createHash("sha256").update(bytesA).digest("hex");
      expect(m.files[name], name).toBe(sum);
      lines += `${sum}  ${name}\n`;
    }
    expect(m.build).toBe(createHash("sha256").update(lines).digest("hex"));
    expect(names).toContain("index.html");
  });
});
