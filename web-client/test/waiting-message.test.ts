// The mediator's waiting-room message in the invite link's fragment (`&w=`, src/app/waiting.ts):
// it round-trips, both ends cap and clean it, a bad one never spoils the invitation, and both
// invite-link parsers (the page's and the SDK's, src/signal/link.ts) accept a link that has it.

import { describe, expect, test } from "vitest";

import { parseFragment } from "../src/app/invite.js";
import { WAITING_MESSAGE_MAX, cleanWaitingMessage, decodeWaitingMessage, encodeWaitingMessage, withWaitingMessage } from "../src/app/waiting.js";
import { parseInvite } from "../src/signal/link.js";

const KEY = "A".repeat(43); // 32 zero bytes, unpadded base64url

/** base64url of arbitrary bytes, as a hand-edited link could carry them. */
function raw(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

describe("the waiting-room message", () => {
  test("round-trips any text, line breaks and all", () => {
    const text = "Bonjour Zoë, je vous fais entrer à 10 h.\nMerci d'avoir vos documents 📄";
    const w = encodeWaitingMessage(text);
    expect(w).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeWaitingMessage(w ?? "")).toBe(text);
  });

  test("is capped at 280 characters when written and when read", () => {
    const long = "é".repeat(WAITING_MESSAGE_MAX + 20);
    expect(decodeWaitingMessage(encodeWaitingMessage(long) ?? "")).toBe("é".repeat(WAITING_MESSAGE_MAX));
    // A link edited by hand to carry more: read, then cut.
    const handMade = raw(new TextEncoder().encode("x".repeat(WAITING_MESSAGE_MAX + 5)));
    expect(decodeWaitingMessage(handMade)).toBe("x".repeat(WAITING_MESSAGE_MAX));
    // Characters, not UTF-16 units: an emoji counts once and is never split.
    expect(Array.from(cleanWaitingMessage("🙂".repeat(300)))).toHaveLength(WAITING_MESSAGE_MAX);
    // Far too long to be one: not read at all.
    expect(decodeWaitingMessage("A".repeat(5_000))).toBeUndefined();
  });

  test("loses control characters and direction overrides, keeps one blank line at most", () => {
    expect(cleanWaitingMessage("  Hello\u0007 \u202eevil\u202c\r\n\r\n\r\n\r\nSee you\u0000  ")).toBe("Hello evil\n\nSee you");
    expect(encodeWaitingMessage(" \n\t ")).toBeUndefined();
    expect(decodeWaitingMessage(raw(new TextEncoder().encode("\u0001\u202e")))).toBeUndefined();
  });

  test("a value that is not base64url or not UTF-8 is no message", () => {
    expect(decodeWaitingMessage("")).toBeUndefined();
    expect(decodeWaitingMessage("not base64!")).toBeUndefined();
    expect(decodeWaitingMessage("A")).toBeUndefined();
    expect(decodeWaitingMessage(raw(Uint8Array.of(0xff, 0xfe, 0x41)))).toBeUndefined();
  });

  test("goes into the fragment of the link the mediator copies", () => {
    const link = `http://127.0.0.1:7880/join#t=tok&k=${KEY}`;
    const withMessage = withWaitingMessage(link, "Wait here, please.");
    expect(withMessage).toBe(`${link}&w=${encodeWaitingMessage("Wait here, please.") ?? ""}`);
    expect(withWaitingMessage(link, "   ")).toBe(link);
  });
});

describe("invite links with a waiting-room message", () => {
  const w = encodeWaitingMessage("The mediator will join at ten.") ?? "";

  test("the page reads the message and the invitation", () => {
    const r = parseFragment(`t=tok&k=${KEY}&m=${KEY}&w=${w}`);
    expect(r.kind).toBe("invite");
    const fields = r.kind === "invite" ? r.invite.take() : undefined;
    expect(fields).toEqual({ token: "tok", secret: KEY, mediatorKey: KEY, waitingMessage: "The mediator will join at ten." });
  });

  test("a bad message leaves the invitation usable", () => {
    const r = parseFragment(`t=tok&w=%%%`);
    const fields = r.kind === "invite" ? r.invite.take() : undefined;
    expect(fields).toEqual({ token: "tok", secret: undefined, mediatorKey: undefined, waitingMessage: undefined });
  });

  test("the SDK's parser accepts the message and unknown fields, and ignores them", () => {
    const plain = parseInvite(`http://h/join#t=tok&k=${KEY}&m=${KEY}`);
    for (const extra of [`&w=${w}`, "&w=", "&future=1"]) {
      const p = parseInvite(`http://h/join#t=tok&k=${KEY}&m=${KEY}${extra}`);
      expect(p.token).toBe("tok");
      expect(p.psk?.expose()).toEqual(plain.psk?.expose());
      expect(p.mediatorIk).toEqual(plain.mediatorIk);
    }
    expect(parseInvite(`http://h/join#w=${w}&t=tok`).token).toBe("tok");
  });
});
