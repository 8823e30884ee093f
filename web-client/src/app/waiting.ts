// The mediator's waiting-room message: a few words the mediator writes when making invitation
// links ("I will let you in at 10:00; please have your documents ready"), shown to the person
// while they wait. It travels only in the invite link's fragment (`&w=`, unpadded base64url of
// UTF-8), which browsers never send to a server and the page removes from the address bar as it
// starts (invite.ts): the server never sees it. Whoever holds the link reads it, as they can use
// the link; it is not a secret, and it is shown as plain text only.
//
// Both ends cap and clean it: the mediator's page before encoding, the party's page after
// decoding (a link can be edited by hand). Pure functions; no DOM.

/** The longest message, in characters (Unicode code points). */
export const WAITING_MESSAGE_MAX = 280;

/** The longest `w` value read: 280 characters of at most 4 UTF-8 bytes each, in base64url. */
const ENCODED_MAX = Math.ceil((WAITING_MESSAGE_MAX * 4 * 4) / 3);

/**
 * Cleans a message for display: no control characters but line breaks (at most one blank line
 * in a row), no bidirectional overrides or isolates (they can make text read other than it is
 * stored), trimmed, at most `WAITING_MESSAGE_MAX` characters.
 */
export function cleanWaitingMessage(text: string): string {
  const cleaned = text
    .normalize("NFC")
    .replace(/\r\n?/g, "\n")
    .split("")
    .filter((c) => !dropped(c.charCodeAt(0)))
    .join("")
    .replace(/ +\n/g, "\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
  const chars = Array.from(cleaned);
  return chars.length <= WAITING_MESSAGE_MAX ? cleaned : chars.slice(0, WAITING_MESSAGE_MAX).join("").trimEnd();
}

/** C0 and C1 controls but the line feed (tabs too); bidi embeddings, overrides and isolates. */
function dropped(code: number): boolean {
  return (code < 0x20 && code !== 0x0a) || (code >= 0x7f && code <= 0x9f) || (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069);
}

/** The `w` value for `text` (cleaned and capped first); `undefined` when nothing is left. */
export function encodeWaitingMessage(text: string): string | undefined {
  const clean = cleanWaitingMessage(text);
  if (clean === "") {
    return undefined;
  }
  let bin = "";
  for (const b of new TextEncoder().encode(clean)) {
    bin += String.fromCharCode(b);
  }
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * The message a `w` value carries, cleaned and capped; `undefined` when it is empty, too long,
 * not base64url or not UTF-8. A bad message never makes the invitation unusable.
 */
export function decodeWaitingMessage(value: string): string | undefined {
  if (value === "" || value.length > ENCODED_MAX || !/^[A-Za-z0-9_-]+$/.test(value) || value.length % 4 === 1) {
    return undefined;
  }
  let bin: string;
  try {
    bin = atob(value.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (value.length % 4)) % 4));
  } catch {
    return undefined;
  }
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
  const clean = cleanWaitingMessage(text);
  return clean === "" ? undefined : clean;
}

/** `link` with the message added to its fragment (unchanged when the message is empty). */
export function withWaitingMessage(link: string, text: string): string {
  const w = encodeWaitingMessage(text);
  return w === undefined ? link : `${link}${link.includes("#") ? "&" : "#"}w=${w}`;
}
