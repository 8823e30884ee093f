// The invite link's fragment (`/join#t=<token>&k=<invite secret>&m=<mediator key>`, the format
// of crates/client/src/link.rs, and the page's own `&w=<the mediator's waiting-room message>`,
// which both link parsers ignore: waiting.ts): read once when the page starts, then removed
// from the address bar and the history entry, so it is not left where a screenshot, a shared
// screen, a bookmark or a synced history could reveal it. Browsers never send a fragment to
// the server.
//
// The fragment holds secrets: it is never logged, and `Invite` prints as `[redacted]`.

import { decodeWaitingMessage } from "./waiting.js";

/** What the fragment carries, still encoded (the SDK decodes and checks it). */
export interface InviteFields {
  /** The signalling token (`t`). */
  readonly token: string;
  /** The invite secret (`k`, base64url), when the link has one. */
  readonly secret: string | undefined;
  /** The mediator's identity key (`m`, base64url), when the link has one. */
  readonly mediatorKey: string | undefined;
  /** The mediator's waiting-room message (`w`), decoded and cleaned, when the link has one. */
  readonly waitingMessage: string | undefined;
}

/** The invite, held in memory only; `take()` hands it over once. */
export class Invite {
  #fields: InviteFields | undefined;

  constructor(fields: InviteFields) {
    this.#fields = fields;
  }

  /** Hands the fields over and forgets them; `undefined` the second time. */
  take(): InviteFields | undefined {
    const fields = this.#fields;
    this.#fields = undefined;
    return fields;
  }

  toString(): string {
    return "[redacted]";
  }

  toJSON(): string {
    return "[redacted]";
  }
}

/** Why a fragment is not an invite. */
export type InviteProblem = "malformed" | "no_token";

export type InviteReading =
  | { readonly kind: "none" }
  | { readonly kind: "invite"; readonly invite: Invite }
  | { readonly kind: "invalid"; readonly problem: InviteProblem };

/** Parses a fragment (without the `#`) as crates/client's `Invite::parse` does. */
export function parseFragment(fragment: string): InviteReading {
  if (fragment === "") {
    return { kind: "none" };
  }
  let token: string | undefined;
  let secret: string | undefined;
  let mediatorKey: string | undefined;
  let waitingMessage: string | undefined;
  for (const part of fragment.split("&")) {
    const at = part.indexOf("=");
    if (at < 0) {
      return { kind: "invalid", problem: "malformed" };
    }
    const key = part.slice(0, at);
    const value = part.slice(at + 1);
    if (key === "t") {
      token = value;
    } else if (key === "k") {
      secret = value;
    } else if (key === "m") {
      mediatorKey = value;
    } else if (key === "w") {
      // A message that does not decode is left out; the invitation still works.
      waitingMessage = decodeWaitingMessage(value);
    }
  }
  if (token === undefined || token === "") {
    return { kind: "invalid", problem: "no_token" };
  }
  return { kind: "invite", invite: new Invite({ token, secret, mediatorKey, waitingMessage }) };
}

/** The parts of `window.location` and `window.history` this needs (tests pass fakes). */
export interface AddressBar {
  readonly location: { readonly hash: string; readonly pathname: string; readonly search: string };
  readonly history: { replaceState(data: unknown, unused: string, url: string): void };
}

/**
 * Reads the fragment once and removes it: the current history entry is replaced by the same
 * address without the fragment (no new entry, nothing to go Back to).
 */
export function takeInviteFragment(bar: AddressBar): InviteReading {
  const hash = bar.location.hash;
  if (hash === "" || hash === "#") {
    return { kind: "none" };
  }
  bar.history.replaceState(null, "", bar.location.pathname + bar.location.search);
  return parseFragment(hash.slice(1));
}
