// Twin of crates/e2ee/src/secret.rs: secret bytes that are wiped on request and never print.
//
// JavaScript cannot zeroize on drop; an owner calls `zeroize()` when it lets a secret go
// (WEB.md: "overwrite Uint8Arrays after use"). `toString` and `toJSON` print `[redacted]`.

import type { Rng } from "./lib.js";

/** A 32-byte secret (base keys, step keys, invite secrets). */
export class Secret32 {
  readonly #bytes: Uint8Array;

  /** Wraps (a copy of) 32 bytes. */
  constructor(b: Uint8Array) {
    if (b.length !== 32) {
      throw new RangeError("a Secret32 is 32 bytes");
    }
    this.#bytes = b.slice();
  }

  /** Fresh random bytes. */
  static random(rng: Rng): Secret32 {
    const b = new Uint8Array(32);
    rng.fill(b);
    const s = new Secret32(b);
    b.fill(0);
    return s;
  }

  /** The bytes; handle with care (the view is live: do not keep it past `zeroize`). */
  expose(): Uint8Array {
    return this.#bytes;
  }

  /** Byte-for-byte equality (Rust derives `PartialEq`). */
  equals(other: Secret32): boolean {
    const a = this.#bytes;
    const b = other.#bytes;
    return a.every((x, i) => x === b[i]);
  }

  /** Overwrites the bytes with zeros. */
  zeroize(): void {
    this.#bytes.fill(0);
  }

  /** A copy (Rust derives `Clone`). */
  clone(): Secret32 {
    return new Secret32(this.#bytes);
  }

  toString(): string {
    return "Secret32([redacted])";
  }

  toJSON(): string {
    return "Secret32([redacted])";
  }
}
