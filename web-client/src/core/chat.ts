// Twin of crates/client/src/core/chat.rs: encrypted chat per room, frames held for their key.

import type { ParticipantId } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- the client core speaks crates/proto's wire types (sans-IO, ES2022)
import type { Core } from "./client.js";
import { ChatRefused, durationSince, id16 } from "./client.js";
import { FailureReason, HOLD_FOR_KEY_MS, MAX_EARLY_CHATS, MAX_HELD_CHAT_BYTES } from "./codes.js";
import { toHex, utf8Decode, utf8Encode } from "./enc.js";
import { STREAM_DATA, frameGeneration } from "./frame.js";
import { openerKey } from "./keys.js";
import type { Id16 } from "./lib.js";

/**
 * Rust's `String::from_utf8_lossy`: each maximal ill-formed subsequence becomes U+FFFD (the
 * WHATWG decoder's rule, which Rust follows).
 */
function utf8Lossy(b: Uint8Array): string {
  let s = "";
  let i = 0;
  while (i < b.length) {
    const x = b[i] ?? 0;
    if (x < 0x80) {
      s += String.fromCharCode(x);
      i++;
      continue;
    }
    let need: number;
    let cp: number;
    let lower = 0x80;
    let upper = 0xbf;
    if (x >= 0xc2 && x <= 0xdf) {
      need = 1;
      cp = x & 0x1f;
    } else if (x >= 0xe0 && x <= 0xef) {
      need = 2;
      cp = x & 0x0f;
      if (x === 0xe0) {
        lower = 0xa0;
      } else if (x === 0xed) {
        upper = 0x9f;
      }
    } else if (x >= 0xf0 && x <= 0xf4) {
      need = 3;
      cp = x & 0x07;
      if (x === 0xf0) {
        lower = 0x90;
      } else if (x === 0xf4) {
        upper = 0x8f;
      }
    } else {
      s += "\ufffd";
      i++;
      continue;
    }
    let j = i + 1;
    let ok = true;
    for (let k = 0; k < need; k++) {
      const y = b[j];
      if (y === undefined || y < lower || y > upper) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (y & 0x3f);
      lower = 0x80;
      upper = 0xbf;
      j++;
    }
    s += ok ? String.fromCodePoint(cp) : "\ufffd";
    i = j;
  }
  return s;
}

/**
 * Seals a chat message for my current channel. Rejects with `NotSecured` (nothing sent)
 * until I may talk there; a `text` that is not a Unicode string (a lone surrogate, which no
 * Rust `&str` can hold) is a `RangeError`.
 */
function sendChat(this: Core, text: string): Promise<void> {
  return this.serial(() => {
    const bytes = utf8Encode(text);
    if (bytes === undefined) {
      throw new RangeError("a chat message is a Unicode string");
    }
    const [ch, cid, frame] = this.sealHere(STREAM_DATA, "data", bytes);
    this.relay({ channel: ch }, { k: "chat", cid: cid.slice(), f: frame });
    this._stats.messagesSent += 1;
    return Promise.resolve();
  });
}

/**
 * Decrypts a chat frame as if it came from `from` in channel `cid` (for tests that hand a
 * non-member a ciphertext it was never sent), saying precisely why it does not open (a
 * thrown `ChatRefused`). Nothing is counted.
 */
function tryOpenChat(this: Core, from: ParticipantId, cid: Id16, frame: Uint8Array): string {
  const sender = id16(from);
  if (sender === undefined) {
    throw new ChatRefused("no_key");
  }
  const opener = this.keys.openers.get(openerKey(cid, sender, STREAM_DATA));
  if (opener === undefined) {
    throw new ChatRefused("no_key");
  }
  let pt: Uint8Array;
  try {
    pt = opener.open("data", frame);
  } catch {
    throw new ChatRefused("does_not_open");
  }
  const text = utf8Decode(pt);
  if (text === undefined) {
    throw new ChatRefused("does_not_open");
  }
  return text;
}

function retryEarlyChats(this: Core, now: number): void {
  if (this._stats.keysDeleted) {
    this.earlyChats = [];
    return;
  }
  const early = this.earlyChats;
  this.earlyChats = [];
  for (const e of early) {
    this.openChat(e.since, e.from, e.cid, e.f, now);
  }
}

function onChat(this: Core, from: ParticipantId, cid: Uint8Array, f: Uint8Array, now: number): void {
  this.openChat(now, from, cid, f, now);
}

// Opens a chat frame; one whose key has not arrived yet (its sender rekeyed on a roster I
// have not seen: rosters and keys come from different senders) waits up to HOLD_FOR_KEY, and
// fails only then.
function openChat(this: Core, since: number, from: ParticipantId, cidB: Uint8Array, f: Uint8Array, now: number): void {
  const sender = id16(from);
  if (cidB.length !== 16 || sender === undefined) {
    this.failed(FailureReason.ChatHeader);
    return;
  }
  const cid = cidB;
  // Malformed or oversized frames fail at once; only a well-formed one may wait.
  let g: bigint;
  try {
    g = frameGeneration("data", f);
  } catch {
    this.failed(FailureReason.ChatMalformed);
    return;
  }
  const key = openerKey(cid, sender, STREAM_DATA);
  const opener = this.keys.openers.get(key);
  const keyHeld = opener?.holds(g) ?? false;
  const oldest = opener?.oldest();
  if (oldest !== undefined && g < oldest) {
    // Sealed before I joined (or under a key already deleted): never mine to read.
    this._stats.staleFrames += 1;
    return;
  }
  if (
    !keyHeld &&
    f.length <= MAX_HELD_CHAT_BYTES &&
    durationSince(now, since) < HOLD_FOR_KEY_MS &&
    this.earlyChats.length < MAX_EARLY_CHATS
  ) {
    this.earlyChats.push({ since, from, cid: cidB, f });
    return;
  }
  const channel = this.chains.get(toHex(cid))?.serverChannel;
  const o = this.keys.openers.get(key);
  if (o === undefined) {
    this.failed(keyHeld ? FailureReason.ChatOpen : FailureReason.ChatNoKey);
    return;
  }
  let pt: Uint8Array;
  try {
    pt = o.open("data", f);
  } catch {
    this.failed(FailureReason.ChatOpen);
    return;
  }
  if (channel === undefined) {
    this.failed(FailureReason.ChatNoRoom);
    return;
  }
  this._stats.messagesReceived += 1;
  const text = utf8Lossy(pt);
  this.events.push({ type: "chat", from, channel, text });
}

/** The methods of chat.rs's `impl Core`. */
export function chatMethods() {
  return { sendChat, tryOpenChat, retryEarlyChats, onChat, openChat };
}
export type ChatMethods = ReturnType<typeof chatMethods>;
