// One peer connection to the SFU that runs my session, with every transform in place (WEB.md
// "Media path", rules 1-3): every transceiver up front, a sealing transform on each sender and
// an opening one on each receive slot, all confirmed before the offer is made; tracks are given
// to senders only by `carry`, so only to senders whose transform is in place.
//
// A link lasts as long as its SFU. When my signalling connection resumes (in cluster mode, on the
// node the session moved to, whose SFU has its own address; or on the same node after a drop),
// the SDK makes a new link, offers it, closes the old one and gives the new one the same local
// tracks (no new getUserMedia). What carries on and what starts afresh:
// - the keys and frame counters are the core's (one sealer per stream, its counter carries on:
//   a new peer connection never restarts a nonce), so nothing of them is here;
// - the gate's entries for my senders and slots are made anew under the same names (the gate
//   calls them by name): fresh counters, because the watchdog compares them with this peer
//   connection's `getStats`; frames held for the old slots are dropped (`Gate.clear`), because
//   their transforms are gone;
// - the slot map starts empty: the new SFU assigns slots afresh (`media_slots`);
// - the watchdog starts afresh: its evidence is per RTP stream of one peer connection.

import type { Gate } from "../worker/gate.js";
import { ReceiveCounters, SendCounters } from "../worker/gate.js";

import { SENDERS, enrol } from "./enrol.js";
import type { SenderId } from "./enrol.js";
import { OfferExchange } from "./offer.js";
import { SLOTS, addTransceivers, applyAnswer, createPeer, makeOffer } from "./peer.js";
import type { TransformPath } from "./transform.js";
import { ScriptTransforms, insertableReceiver, insertableSender } from "./transform.js";
import { Watchdog } from "./watchdog.js";
import type { WatchedReceiver, WatchedSender } from "./watchdog.js";

/** True in the e2e build only (vite.config.ts); the production build drops what it guards. */
declare const __CONFER_TEST_BUILD__: boolean;

/** How long the transforms may take to report ready (ms). */
export const TRANSFORM_READY_MS = 5_000;

/** `p`, or a rejection after `ms`. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => {
      reject(new Error("timed out"));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export interface LinkOptions {
  path: TransformPath;
  iceServers: RTCIceServer[];
  gate: Gate;
  /** Test builds only: this sender gets no transform (the watchdog must catch it). */
  skipSenderTransform?: SenderId | undefined;
}

/** A receive slot of the link: its name in the gate, its m-line, its track. */
export interface LinkSlot {
  id: string;
  mid: string;
  kind: "audio" | "video";
  track: MediaStreamTrack;
  receiver: RTCRtpReceiver;
}

function kindOf(r: RTCRtpReceiver): "audio" | "video" {
  return r.track.kind === "audio" ? "audio" : "video";
}

export class MediaLink {
  readonly #pc: RTCPeerConnection;
  readonly #script: ScriptTransforms | undefined;
  readonly #senders: ReadonlyMap<SenderId, RTCRtpSender>;
  readonly #gate: Gate;
  /** The SDP of `media_offer`. */
  readonly offer: string;
  readonly exchange = new OfferExchange();
  readonly slots: readonly LinkSlot[];
  readonly watchedSenders: readonly WatchedSender[];
  readonly watchedReceivers: readonly WatchedReceiver[];
  readonly watchdog = new Watchdog();
  #closed = false;

  private constructor(pc: RTCPeerConnection, script: ScriptTransforms | undefined, senders: { id: SenderId; kind: "audio" | "video"; sender: RTCRtpSender }[], gate: Gate, offer: string, slots: LinkSlot[]) {
    this.#pc = pc;
    this.#script = script;
    this.#senders = new Map(senders.map((s) => [s.id, s.sender]));
    this.#gate = gate;
    this.offer = offer;
    this.slots = slots;
    this.watchedSenders = senders.map((s) => ({ ...s, counters: gate.sendCounters(s.id) ?? new SendCounters() }));
    this.watchedReceivers = slots.map((s) => ({
      id: s.id,
      kind: s.kind,
      receiver: s.receiver,
      counters: gate.receiveCounters(s.id) ?? new ReceiveCounters(),
    }));
  }

  /**
   * Makes the peer connection, its transceivers and transforms, and its offer (ICE gathered,
   * bounded). The gate's entries for the senders and slots are replaced at once (the call's
   * synchronous part), so frames of an older link still in flight land in counted entries.
   * `undefined` when a transform did not come in time (the browser cannot do this); nothing is
   * left open then.
   */
  static async open(o: LinkOptions): Promise<MediaLink | undefined> {
    const pc = createPeer(o.path === "insertable", o.iceServers);
    const script = o.path === "script" ? new ScriptTransforms(o.gate) : undefined;
    try {
      const t = addTransceivers(pc, SLOTS);
      const transceivers = { microphone: t.audio, camera: t.camera, screen: t.screen };
      const ids = enrol(o.gate, t.slots.map((tr) => kindOf(tr.receiver)));
      const placed: Promise<boolean>[] = SENDERS.map(async (s) => {
        const sender = transceivers[s.id].sender;
        // A test build's hook only (the production build drops this test and its field).
        if (__CONFER_TEST_BUILD__ && s.id === o.skipSenderTransform) {
          return true;
        }
        if (script !== undefined) {
          await script.sender(sender, s.id);
          return true;
        }
        return insertableSender(sender, s.id, o.gate);
      });
      // Receive slots: mids are known only after the offer; transforms go on before it, under
      // a name fixed now (the slot's index) that the mid is bound to once the link is current.
      const receiverPlaced = t.slots.map(async (tr, i) => {
        const id = ids[i] ?? "";
        if (script !== undefined) {
          await script.receiver(tr.receiver, id);
          return true;
        }
        return insertableReceiver(tr.receiver, id, o.gate);
      });
      // A transform that never reports ready (the worker did not load, the browser never fired
      // `rtctransform`) fails the link within TRANSFORM_READY_MS instead of hanging.
      const ok = (await withTimeout(Promise.all([...placed, ...receiverPlaced]), TRANSFORM_READY_MS)).every((x) => x);
      if (!ok) {
        throw new Error("a transform is missing");
      }
      const offer = await makeOffer(pc);
      const slots = t.slots.map((tr, i) => ({
        id: ids[i] ?? "",
        mid: tr.mid ?? "",
        kind: kindOf(tr.receiver),
        track: tr.receiver.track,
        receiver: tr.receiver,
      }));
      const senders = SENDERS.map((s) => ({ id: s.id, kind: s.kind, sender: transceivers[s.id].sender }));
      return new MediaLink(pc, script, senders, o.gate, offer, slots);
    } catch {
      pc.close();
      script?.close();
      return undefined;
    }
  }

  /** The link is the SDK's current one: the gate learns which m-line each slot name is. */
  bind(): void {
    for (const s of this.slots) {
      this.#gate.bindMid(s.id, s.mid);
    }
  }

  /** Applies `media_answer`. False if the browser refused it. */
  async answer(sdp: string): Promise<boolean> {
    try {
      await applyAnswer(this.#pc, sdp);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Gives each sender the track it should carry (`undefined` or an ended track: none). Every
   * sender's transform is in place (`open`). A closed link carries nothing.
   */
  async carry(tracks: ReadonlyMap<SenderId, MediaStreamTrack>): Promise<void> {
    for (const [id, sender] of this.#senders) {
      if (this.#closed) {
        return;
      }
      const want = tracks.get(id);
      const track = want?.readyState === "live" ? want : null;
      if (sender.track !== track) {
        try {
          await sender.replaceTrack(track);
        } catch {
          // Closed meanwhile (a newer link carries the tracks).
        }
      }
    }
  }

  /** The sender's current track. */
  track(id: SenderId): MediaStreamTrack | null {
    return this.#senders.get(id)?.track ?? null;
  }

  /** Takes the sender's track off (the watchdog found its frames bypassing the transform). */
  async takeOff(id: SenderId): Promise<void> {
    try {
      await this.#senders.get(id)?.replaceTrack(null);
    } catch {
      // Closed meanwhile.
    }
  }

  /**
   * Closes the peer connection and its transforms. The local tracks are not stopped (the next
   * link carries them); the remote tracks end.
   */
  close(): void {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    this.#pc.close();
    this.#script?.close();
  }

  get closed(): boolean {
    return this.#closed;
  }
}
