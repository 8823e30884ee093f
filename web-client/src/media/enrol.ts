// The gate's entries of a link to the SFU (link.ts): my senders by name, and the receive slots
// by index. Every link uses the same names, so the gate (src/worker/gate.ts), which calls its
// entries by name, needs no other word of a new link than this. Plain ES2022 (no WebRTC), so
// the unit tests drive it with the gate (test/relink.test.ts).

import { STREAM_AUDIO, STREAM_CAMERA, STREAM_SCREEN } from "../core/frame.js";
import type { Gate } from "../worker/gate.js";

/** The names of my senders, and their confer/1 streams. */
export const SENDERS = [
  { id: "microphone", kind: "audio", stream: STREAM_AUDIO },
  { id: "camera", kind: "video", stream: STREAM_CAMERA },
  { id: "screen", kind: "video", stream: STREAM_SCREEN },
] as const;
export type SenderId = (typeof SENDERS)[number]["id"];

/**
 * The gate's entries for a new link: my senders by name, and one receive slot per kind given,
 * named by index (`slot0`, ...), the names every link uses. Frames held for the slots of the
 * link before are dropped first (their transforms are gone), so the hold bound stays exact;
 * every counter starts at zero. Returns the slots' names.
 */
export function enrol(gate: Gate, slotKinds: readonly ("audio" | "video")[]): string[] {
  gate.clear();
  for (const s of SENDERS) {
    gate.addSender(s.id, s.stream);
  }
  return slotKinds.map((kind, i) => {
    const id = `slot${String(i)}`;
    gate.addReceiver(id, kind === "audio" ? STREAM_AUDIO : STREAM_CAMERA);
    return id;
  });
}
