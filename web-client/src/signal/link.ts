// Twin of crates/client/src/link.rs: invite links `{base}/join#t=<token>&k=<invite secret>&m=<mediator IK>`,
// everything in the fragment (browsers never send it to a server). A bare token is accepted too.
// Fields it does not know are ignored, as link.rs ignores them: the page's `w` (the mediator's
// waiting-room message, src/app/waiting.ts) rides in the same fragment.

import { Secret32 } from "../core/secret.js";

/** What an invite carries. */
export interface ParsedInvite {
  /** The signalling token. */
  token: string;
  /** The invite secret (HPKE PSK with the mediator), if the link has one. */
  psk: Secret32 | undefined;
  /** The mediator's identity key, pinned by the link. */
  mediatorIk: Uint8Array | undefined;
}

/** Unpadded base64url of exactly 32 bytes, or `undefined`. */
function decode32(v: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]{43}$/.test(v)) {
    return undefined;
  }
  const b64 = v.replace(/-/g, "+").replace(/_/g, "/") + "=";
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) {
    out[i] = bin.charCodeAt(i);
  }
  return out.length === 32 ? out : undefined;
}

/** Parses a link (or just its fragment) or a bare token; throws a message a person can act on. */
export function parseInvite(s: string): ParsedInvite {
  const text = s.trim();
  const hash = text.indexOf("#");
  if (hash < 0) {
    return { token: text, psk: undefined, mediatorIk: undefined };
  }
  let token: string | undefined;
  let psk: Secret32 | undefined;
  let mediatorIk: Uint8Array | undefined;
  for (const part of text.slice(hash + 1).split("&")) {
    const eq = part.indexOf("=");
    if (eq < 0) {
      throw new Error("invite link: malformed fragment");
    }
    const [k, v] = [part.slice(0, eq), part.slice(eq + 1)];
    if (k === "t") {
      token = v;
    } else if (k === "k") {
      const b = decode32(v);
      if (b === undefined) {
        throw new Error("invite link: bad invite secret");
      }
      psk = new Secret32(b);
      b.fill(0);
    } else if (k === "m") {
      mediatorIk = decode32(v);
      if (mediatorIk === undefined) {
        throw new Error("invite link: bad mediator key");
      }
    }
  }
  if (token === undefined || token === "") {
    throw new Error("invite link: no token (t=)");
  }
  return { token, psk, mediatorIk };
}
