// Replays every scenario under ../tests/scenarios (format: tests/scenarios/README.md) against
// real cores with real crypto, the test playing the server: honest routing, or the lies a
// scenario scripts. The TypeScript twin of crates/client/tests/scenarios.rs (whose `Run` is
// test/scenario-run.ts here); the Rust suite replays the same files.

import { readdirSync } from "node:fs";

import { describe, expect, it } from "vitest";

import type { Json } from "./helpers.js";
import { isObj } from "./helpers.js";
import { DIR, load, replay } from "./scenario-run.js";

const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".json"))
  .sort();

describe("client scenarios (tests/scenarios)", () => {
  it("has at least 17 files", () => {
    expect(files.length, `${files.length.toString()} scenario files in ${DIR}`).toBeGreaterThanOrEqual(17);
  });

  it.each(files)(
    "%s replays",
    async (f) => {
      await replay(f.slice(0, -".json".length), load(f));
    },
    300_000,
  );
});

describe("the scenario runner", () => {
  const trio = load("welcomed_trio.json");
  const steps = trio["steps"] as Json[];

  it("fails on an unknown op", async () => {
    await expect(replay("probe", { ...trio, steps: [...steps, { op: "teleport", who: "a" }] })).rejects.toThrow(
      /unknown op teleport/,
    );
  });

  it("fails a file without an expect step", async () => {
    const noExpect = steps.filter((st) => !(isObj(st) && st["op"] === "expect"));
    await expect(replay("probe", { ...trio, steps: noExpect })).rejects.toThrow(/without expectations/);
  });

  it.each([
    [{ op: "expect", who: "a", alarms: ["roster_fork"] }, /alarms/],
    [{ op: "expect", who: "a", secured: "caucus-A" }, /secured/],
    [{ op: "expect", who: "a", present: { joint: ["m", "a"] } }, /present joint/],
    [{ op: "expect", who: "b", heard: ["never said"] }, /did not hear/],
    [{ op: "expect", who: "b", not_heard: ["hello from A"] }, /heard/],
    [{ op: "expect", who: "a", names: ["Bo"] }, /names/],
    [{ op: "expect", who: "m", sent: [{ kind: "chat", min: 1 }] }, /sent/],
    [{ op: "expect", who: "b", decrypt_failures: 1 }, /expected \+0 to be 1/],
    [{ op: "chat", who: "a", text: "x", refused: true }, /chat sent/],
  ])("fails a wrong expectation: %j", async (bad, why) => {
    await expect(replay("probe", { ...trio, steps: [...steps, bad] })).rejects.toThrow(why);
  }, 60_000);
});
