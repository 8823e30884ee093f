// Vitest globalSetup: fails the run at once, saying what to do, when something the browser
// tests run is missing (rather than one time-out per test).

import { accessSync, constants, existsSync } from "node:fs";
import path from "node:path";

import { CHROMIUM, CONFER_BIN, DIST, FIREFOX } from "./paths.js";

export default function preflight(): void {
  const missing: string[] = [];
  const executable = (file: string, fix: string): void => {
    try {
      accessSync(file, constants.X_OK);
    } catch {
      missing.push(`${file} (${fix})`);
    }
  };
  executable(CONFER_BIN, "build it: cargo build --workspace --bins");
  executable(CHROMIUM, "install Debian's chromium: scripts/install-deps.sh");
  executable(FIREFOX, "install Debian's firefox-esr: scripts/install-deps.sh");
  if (!existsSync(path.join(DIST, "index.html"))) {
    missing.push(`${path.join(DIST, "index.html")} (build the page: npm run build)`);
  }
  if (missing.length > 0) {
    throw new Error(`the browser tests cannot run; missing:\n  ${missing.join("\n  ")}`);
  }
}
