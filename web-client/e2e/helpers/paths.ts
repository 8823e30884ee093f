// Where the browser tests find what they run. Each can be overridden by an environment
// variable; the defaults are this repository's build outputs and Debian's browsers.

import { existsSync } from "node:fs";
import path from "node:path";

/** The repository root: the nearest folder above this file that holds Cargo.toml (bundled benches run from elsewhere). */
export const REPO = findRepo(import.meta.dirname);

function findRepo(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "Cargo.toml")) && existsSync(path.join(dir, "web-client"))) {
      return dir;
    }
    if (path.dirname(dir) === dir) {
      return path.resolve(import.meta.dirname, "../../..");
    }
  }
}
/** The built page (`npm run build`), served by the server under test as its web root. */
export const DIST = process.env["CONFER_E2E_DIST"] ?? path.join(REPO, "web-client/dist");
/** The server binary (`cargo build --workspace --bins`). */
export const CONFER_BIN = process.env["CONFER_BIN"] ?? path.join(REPO, "target/debug/confer");
/** Debian's `chromium` (never a downloaded build). */
export const CHROMIUM = process.env["CONFER_E2E_CHROMIUM"] ?? "/usr/bin/chromium";
/** Debian's `firefox-esr` (never a downloaded build). */
export const FIREFOX = process.env["CONFER_E2E_FIREFOX"] ?? "/usr/bin/firefox-esr";
/** Screenshots and logs of the last run, one folder per test file. */
export const ARTIFACTS = process.env["CONFER_E2E_ARTIFACTS"] ?? path.join(REPO, "web-client/e2e/artifacts");
/** The test build of the page (`vite build --mode e2e`): the SDK's test hooks are on. */
export const DIST_E2E = process.env["CONFER_E2E_DIST_TEST"] ?? path.join(REPO, "web-client/dist-e2e");
