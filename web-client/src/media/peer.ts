// The media path's peer connection (WEB.md "Media path", rules 1-3), a first building block:
// ONE RTCPeerConnection to the SFU, every transceiver created up front (sendonly audio, camera
// and screen, N recvonly slots per kind, never sendrecv), Opus/VP8 by setCodecPreferences (no SDP
// munging), no trickle (the offer goes out after ICE gathering completes, bounded), and the
// slot map of `media_slots` (mid -> publisher).
//
// Nothing here ever gives a sender a track: that is the caller's, after its transform is
// attached (rule 3).

import type { ParticipantId } from "../proto/ids.js";
import type { MediaSlot } from "../proto/message.js";

/**
 * How many receive slots of each kind are created up front: enough for a mediation of six
 * (five others, each with a microphone, and a camera and a screen: the SFU gives a publisher's
 * screen a slot even while it is not shared).
 */
export const SLOTS = { audio: 5, video: 10 } as const;
/** The longest wait for ICE gathering before the offer goes out anyway (ms). */
export const ICE_GATHER_LIMIT_MS = 3000;

/** Chromium's legacy encoded-transform switch (fail closed: frames drop until a transform is attached). */
interface InsertableConfig extends RTCConfiguration {
  encodedInsertableStreams?: boolean;
}

/** The transceivers of the one peer connection. */
export interface MediaTransceivers {
  readonly audio: RTCRtpTransceiver;
  readonly camera: RTCRtpTransceiver;
  readonly screen: RTCRtpTransceiver;
  readonly slots: readonly RTCRtpTransceiver[];
}

/** Creates the peer connection (legacy insertable streams on when `insertable`). */
export function createPeer(insertable: boolean, iceServers: RTCIceServer[] = []): RTCPeerConnection {
  const cfg: InsertableConfig = { iceServers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" };
  if (insertable) {
    cfg.encodedInsertableStreams = true;
  }
  return new RTCPeerConnection(cfg);
}

/** Keeps only `mime` (and no RED, ULPFEC or RTX) among the codecs a transceiver may use. */
function preferCodec(t: RTCRtpTransceiver, kind: "audio" | "video", mime: string): void {
  const caps = RTCRtpReceiver.getCapabilities(kind);
  if (caps === null) {
    return;
  }
  const wanted = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
  if (wanted.length > 0) {
    t.setCodecPreferences(wanted);
  }
}

/** Every transceiver, up front: sendonly audio, camera and screen, then the recvonly slots. */
export function addTransceivers(pc: RTCPeerConnection, counts: { audio: number; video: number } = SLOTS): MediaTransceivers {
  const audio = pc.addTransceiver("audio", { direction: "sendonly" });
  preferCodec(audio, "audio", "audio/opus");
  const camera = pc.addTransceiver("video", { direction: "sendonly" });
  preferCodec(camera, "video", "video/vp8");
  const screen = pc.addTransceiver("video", { direction: "sendonly" });
  preferCodec(screen, "video", "video/vp8");
  const slots: RTCRtpTransceiver[] = [];
  for (const kind of ["audio", "video"] as const) {
    for (let i = 0; i < counts[kind]; i++) {
      const t = pc.addTransceiver(kind, { direction: "recvonly" });
      preferCodec(t, kind, kind === "audio" ? "audio/opus" : "video/vp8");
      slots.push(t);
    }
  }
  return { audio, camera, screen, slots };
}

/** Resolves when ICE gathering is complete, or after `limitMs` (no trickle). */
export function iceGathered(pc: RTCPeerConnection, limitMs = ICE_GATHER_LIMIT_MS): Promise<void> {
  if (pc.iceGatheringState === "complete") {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = (): void => {
      if (pc.iceGatheringState === "complete") {
        done();
      }
    };
    const timer = setTimeout(done, limitMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/** The SDP of `media_offer`: the local offer once gathering is done (bounded). */
export async function makeOffer(pc: RTCPeerConnection, limitMs = ICE_GATHER_LIMIT_MS): Promise<string> {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc, limitMs);
  const sdp = pc.localDescription?.sdp;
  if (sdp === undefined) {
    throw new Error("no local description");
  }
  return sdp;
}

/** Applies `media_answer`. */
export async function applyAnswer(pc: RTCPeerConnection, sdp: string): Promise<void> {
  await pc.setRemoteDescription({ type: "answer", sdp });
}

/** Which publisher each receive slot carries (mid -> publisher), as `media_slots` says. */
export class SlotMap {
  readonly #byMid = new Map<string, ParticipantId>();

  /** Replaces the map with the server's latest word. */
  update(slots: readonly MediaSlot[]): void {
    this.#byMid.clear();
    for (const s of slots) {
      if (s.participant_id !== undefined) {
        this.#byMid.set(s.mid, s.participant_id);
      }
    }
  }

  /** The publisher in slot `mid`, if known: frames of a slot without one are not opened. */
  publisher(mid: string): ParticipantId | undefined {
    return this.#byMid.get(mid);
  }
}
