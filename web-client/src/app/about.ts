// "About this client": the build hash of the code this page runs, to compare with the hash the
// operator publishes (`confer client-hash` prints it from the files on the server). The page
// fetches client-manifest.json and every file it lists, hashes them (Web Crypto) and shows the
// build hash it computed, and whether it matches the manifest.
//
// What this proves, and what not: the server serves this very code, so a server that wanted to
// could serve a page that shows a made-up hash. The check that holds is made outside the page:
// the operator publishes the hash of a reproducible build, and anyone can fetch the files and
// recompute it (docs/web-client.md, "Checking the client").

import { el } from "./dom.js";

interface Manifest {
  build: string;
  files: Record<string, string>;
}

function hex(b: ArrayBuffer): string {
  return Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
}

async function sha256(data: BufferSource): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", data));
}

/** Adds the "About this client" disclosure to `parent`. */
export function mountAbout(doc: Document, parent: HTMLElement): void {
  const details = el(doc, "details", { id: "about" });
  const summary = el(doc, "summary", { text: "About this client" });
  const text = el(doc, "p", { id: "about-text", text: "Open to check which build of Confer this page runs." });
  const hash = el(doc, "p", { id: "build-hash", className: "code" });
  details.append(summary, text, hash);
  parent.append(details);
  let done = false;
  details.addEventListener("toggle", () => {
    if (!details.open || done) {
      return;
    }
    done = true;
    text.textContent = "Checking the files of this page…";
    void check().then(
      (r) => {
        hash.textContent = r.build;
        text.textContent = r.ok
          ? `Build hash of the ${String(r.count)} files of this page (it matches the build's manifest). Compare it with the hash your mediation service publishes.`
          : "The files of this page do not match the build's manifest: do not use this page; tell the service's operator.";
      },
      () => {
        text.textContent = "The build's manifest could not be read, so this page cannot be checked.";
      },
    );
  });
}

async function check(): Promise<{ build: string; ok: boolean; count: number }> {
  const res = await fetch("/client-manifest.json", { cache: "no-store" });
  const m = (await res.json()) as Manifest;
  const names = Object.keys(m.files).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let lines = "";
  let ok = true;
  for (const name of names) {
    const body = await (await fetch(`/${name}`, { cache: "no-store" })).arrayBuffer();
    const sum = await sha256(body);
    ok &&= sum === m.files[name];
    lines += `${sum}  ${name}\n`;
  }
  const build = await sha256(new TextEncoder().encode(lines));
  return { build, ok: ok && build === m.build, count: names.length };
}
