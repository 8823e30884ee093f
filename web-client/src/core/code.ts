// Twin of crates/e2ee/src/code.rs: the session security code everyone reads aloud and compares.

import { sha256 } from "@noble/hashes/sha2.js";

import { Writer, compareBytes } from "./enc.js";
import type { Id16 } from "./lib.js";

/**
 * `SHA256("confer/1 session-code" || lp(session_id) || for members sorted by participant_id:
 * lp(participant_id) || IK_pub)`, and the six 5-digit groups made from its first 30 bytes:
 * `[digest, code]`.
 */
export function sessionCode(
  sessionId: Uint8Array,
  members: readonly (readonly [Id16, Uint8Array])[],
): [Uint8Array, string] {
  // A stable sort, as Rust's `sort_by_key`.
  const sorted = [...members].sort((a, b) => compareBytes(a[0], b[0]));
  const w = Writer.label("confer/1 session-code").lp(sessionId);
  for (const [id, ik] of sorted) {
    w.lp(id).raw(ik);
  }
  const digest = sha256(w.intoBytes());
  const groups: string[] = [];
  for (let g = 0; g < 6; g++) {
    // Five bytes are below 2^40: exact in a double.
    let v = 0;
    for (const b of digest.subarray(5 * g, 5 * g + 5)) {
      v = v * 256 + b;
    }
    groups.push((v % 100_000).toString().padStart(5, "0"));
  }
  return [digest, groups.join(" ")];
}
