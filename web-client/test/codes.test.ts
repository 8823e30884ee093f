// Alarm codes and failure reasons (the unit test of crates/e2ee/src/codes.rs). That they
// equal the Rust lists is checked against constants.json in vectors.test.ts.

import { describe, expect, it } from "vitest";

import { ALARM_CODES, AlarmCode, FAILURE_REASONS, FailureReason } from "../src/core/codes.js";
import { ERROR_CODES } from "../src/proto/error.js";

describe("codes", () => {
  it("are unique snake_case, listed in declaration order", () => {
    for (const list of [ALARM_CODES, FAILURE_REASONS, ERROR_CODES]) {
      expect(list.length).toBeGreaterThan(0);
      expect(new Set(list).size).toBe(list.length);
      for (const c of list) {
        expect(c).toMatch(/^[a-z_]+$/);
      }
    }
    expect(ALARM_CODES[0]).toBe(AlarmCode.RosterRollback);
    expect(ALARM_CODES.at(-1)).toBe(AlarmCode.DelegationInvalid);
    expect(FAILURE_REASONS.at(-1)).toBe(FailureReason.Media);
  });
});
