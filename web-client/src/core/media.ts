// Twin of crates/client/src/core/media.rs: sealing and opening media frames with the room keys.

import type { ChannelId, ParticipantId } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- the client core speaks crates/proto's wire types (sans-IO, ES2022)
import type { Core } from "./client.js";
import { MediaRejected, NotSecured, id16, mediaCodec, sortedEntries } from "./client.js";
import { FailureReason } from "./codes.js";
import { bytesEqual } from "./enc.js";
import { frameGeneration } from "./frame.js";
import type { Codec } from "./frame.js";
import { openerKey, parseOpenerKey, streamKey } from "./keys.js";
import type { Id16 } from "./lib.js";

/**
 * Seals one media frame (the whole payload, VP8 frame tag included) for the room I am in,
 * under my current key for `stream`. Refused with `NotSecured` ("securing channel": stay
 * muted) until that room's roster lists me and my new generation for it is out, so no frame
 * of a caucus is ever sealed under a key a non-member holds.
 */
function sealMedia(this: Core, stream: number, payload: Uint8Array): Uint8Array {
  const codec = mediaCodec(stream);
  if (codec === undefined) {
    throw new NotSecured();
  }
  // TypeScript only: a queued call is half done (a roster may be accepted whose new keys are
  // not out yet): fail closed, as if securing.
  if (this.busy) {
    throw new NotSecured();
  }
  const [, , frame] = this.sealHere(stream, codec, payload);
  this._stats.framesSealed += 1;
  return frame;
}

/**
 * Seals under my current key for `stream` in the room I am secured in: `NotSecured` while a
 * withheld roster stopped me, or before that room's roster lists me and my key is out.
 */
function sealHere(this: Core, stream: number, codec: Codec, payload: Uint8Array): [ChannelId, Id16, Uint8Array] {
  if (this.withheld) {
    throw new NotSecured();
  }
  const ch = this._secured;
  if (ch === undefined) {
    throw new NotSecured();
  }
  const cid = this.channelIdOf(ch);
  if (cid === undefined) {
    throw new NotSecured();
  }
  const s = this.keys.sealers.get(streamKey(cid, stream));
  if (s === undefined) {
    throw new NotSecured();
  }
  try {
    return [ch, cid, s.sealer.seal(codec, payload)];
  } catch {
    throw new NotSecured();
  }
}

/**
 * My current generation for `stream` in the room I am in (a change means new keys: the next
 * video frame should be a key frame).
 */
function mediaGeneration(this: Core, stream: number): bigint | undefined {
  const ch = this._secured;
  if (ch === undefined) {
    return undefined;
  }
  const cid = this.channelIdOf(ch);
  if (cid === undefined) {
    return undefined;
  }
  return this.keys.sealers.get(streamKey(cid, stream))?.generation;
}

/**
 * Opens a media frame that arrived from `publisher` on `stream` (the SFU slot it came in says
 * who). The key is the one the frame's KID names among `publisher`'s keys for that stream in
 * my rooms: normally the room I am in; during a move, the room the frame was sealed for, if I
 * still hold its keys (kept 10 s). Any failure is counted and nothing is returned (a thrown
 * `MediaRejected`).
 */
function openMedia(this: Core, publisher: ParticipantId, stream: number, frame: Uint8Array): Uint8Array {
  if (this._stats.keysDeleted) {
    throw new MediaRejected("ended");
  }
  let pt: Uint8Array;
  try {
    pt = this.tryOpenMedia(publisher, stream, frame);
  } catch (e) {
    if (e instanceof MediaRejected) {
      switch (e.kind) {
        case "no_key":
        case "ended":
          break;
        case "stale":
          this._stats.staleFrames += 1;
          break;
        case "invalid":
          this.mediaFailed();
          break;
      }
    }
    throw e;
  }
  this._stats.framesOpened += 1;
  return pt;
}

/** A frame held for want of its key never opened: counted as a decrypt failure. */
function mediaFrameExpired(this: Core): void {
  this.mediaFailed();
}

function mediaFailed(this: Core): void {
  // After the end every key is gone on purpose: what still arrives is not a failure.
  if (this._stats.keysDeleted) {
    return;
  }
  this._stats.mediaDecryptFailures += 1;
  this.failed(FailureReason.Media);
}

function tryOpenMedia(this: Core, publisher: ParticipantId, stream: number, frame: Uint8Array): Uint8Array {
  const codec = mediaCodec(stream);
  if (codec === undefined) {
    throw new MediaRejected("invalid");
  }
  const sender = id16(publisher);
  if (sender === undefined) {
    throw new MediaRejected("invalid");
  }
  let generation: bigint;
  try {
    generation = frameGeneration(codec, frame);
  } catch {
    throw new MediaRejected("invalid");
  }
  const here = this.myChannel === undefined ? undefined : this.channelIdOf(this.myChannel.id);
  let key: string;
  const hereKey = here === undefined ? undefined : openerKey(here, sender, stream);
  if (hereKey !== undefined && this.keys.openers.get(hereKey)?.holds(generation) === true) {
    key = hereKey;
  } else {
    const mine = sortedEntries(this.keys.openers).filter(([k]) => {
      const [, s, st] = parseOpenerKey(k);
      return bytesEqual(s, sender) && st === stream;
    });
    const found = mine.find(([, o]) => o.holds(generation));
    if (found !== undefined) {
      key = found[0];
    } else if (
      mine.length > 0 &&
      mine.every(([, o]) => {
        const oldest = o.oldest();
        return oldest !== undefined && generation < oldest;
      })
    ) {
      throw new MediaRejected("stale");
    } else {
      throw new MediaRejected("no_key");
    }
  }
  const opener = this.keys.openers.get(key);
  if (opener === undefined) {
    throw new MediaRejected("no_key");
  }
  try {
    return opener.open(codec, frame);
  } catch {
    throw new MediaRejected("invalid");
  }
}

/** The methods of media.rs's `impl Core`. */
export function mediaMethods() {
  return { sealMedia, sealHere, mediaGeneration, openMedia, mediaFrameExpired, mediaFailed, tryOpenMedia };
}
export type MediaMethods = ReturnType<typeof mediaMethods>;
