// The speaker check of the pre-join screen: "Play a test sound" plays a short tone (a WebAudio
// oscillator) through the chosen output, then asks "Did you hear it?"; "I did not hear it" gives
// plain-words advice. Where the browser lets a page choose the output (`setSinkId` on an
// AudioContext or a media element, with the outputs `enumerateDevices` lists, or Firefox's
// `selectAudioOutput`), the person can pick one, and the call plays the others through it too;
// elsewhere the page says the system's default output is used. Nothing here holds up joining.
//
// The fieldset's `data-tone` ("playing", "played", "failed") and `data-audio-state` (the
// AudioContext's state while the tone played) say what happened, for the browser tests.

import { button, el } from "./dom.js";

/** `AudioContext.setSinkId` (Chromium 110+), not in TypeScript's DOM types yet. */
interface SinkableContext {
  setSinkId?: (sinkId: string) => Promise<void>;
}

/** `MediaDevices.selectAudioOutput` (Firefox), not in TypeScript's DOM types yet. */
interface OutputChooser {
  selectAudioOutput?: (options?: { deviceId?: string }) => Promise<MediaDeviceInfo>;
}

/** The tone: a gentle A4 for 0.7 s, faded in and out (no click). */
const TONE_HZ = 440;
const TONE_S = 0.7;
const FADE_S = 0.05;
const LEVEL = 0.25;
/** How long a suspended AudioContext gets to start, and the tone to end, before giving up. */
const START_MS = 1_500;
const END_MS = 3_000;

export interface SpeakerCheck {
  /** The "Speakers or headphones" fieldset, to place in the form. */
  readonly fieldset: HTMLFieldSetElement;
  /** Lists the outputs again (after the camera and microphone check, the browser names them). */
  refresh(): void;
  /** The output chosen (a device id), or `undefined` for the system's default. */
  chosen(): string | undefined;
  /** Stops listening for device changes (the form is gone). */
  close(): void;
}

type Picking = "list" | "choose" | "default";

function canRoute(): boolean {
  const ctx = typeof AudioContext === "function" && typeof (AudioContext.prototype as SinkableContext).setSinkId === "function";
  const media = typeof HTMLMediaElement === "function" && typeof HTMLMediaElement.prototype.setSinkId === "function";
  return ctx || media;
}

function after(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function speakerCheck(doc: Document): SpeakerCheck {
  const fieldset = el(doc, "fieldset", { id: "speaker-check" });
  fieldset.append(el(doc, "legend", { text: "Speakers or headphones" }));
  const routable = canRoute();
  const devices = (navigator as Partial<Navigator>).mediaDevices as (MediaDevices & OutputChooser) | undefined;
  let picking: Picking = "default";

  // The output picker: a list, a "choose" button (Firefox), or a note that the default is used.
  const pickLabel = el(doc, "label", { text: "Play sound through" });
  pickLabel.htmlFor = "speaker-output";
  const select = el(doc, "select", { id: "speaker-output" });
  const pickBox = el(doc, "div");
  pickBox.append(pickLabel, select);
  const note = el(doc, "p", { id: "speaker-output-note" });
  let chosenByBrowser: MediaDeviceInfo | undefined;
  const choose = button(doc, "speaker-choose", "Choose speakers or headphones", () => {
    devices?.selectAudioOutput?.().then(
      (d) => {
        chosenByBrowser = d;
        note.textContent = `Sound plays through: ${d.label === "" ? "the output you chose" : d.label}.`;
      },
      () => {
        note.textContent = "No output was chosen: sound plays through your system's default output.";
      },
    );
  });

  const play = button(doc, "speaker-test", "Play a test sound", () => {
    void playTone();
  });
  const status = el(doc, "div", { id: "speaker-status" });
  status.setAttribute("role", "status");
  const question = el(doc, "div", { id: "speaker-question" });
  question.setAttribute("role", "group");
  question.setAttribute("aria-labelledby", "speaker-question-text");
  question.hidden = true;
  const heard = button(doc, "speaker-heard", "I heard it", () => {
    say("Good: your sound works. You will hear the others through the same output.");
  });
  const notHeard = button(doc, "speaker-not-heard", "I did not hear it", () => {
    say("No sound reached you. Things to try:", advice());
  });
  question.append(el(doc, "p", { id: "speaker-question-text", text: "Did you hear the tone?" }), heard, notHeard);
  fieldset.append(pickBox, choose, note, play, question, status);

  function say(text: string, steps: string[] = []): void {
    const p = el(doc, "p", { text });
    if (steps.length === 0) {
      status.replaceChildren(p);
      return;
    }
    const ul = el(doc, "ul", { id: "speaker-advice" });
    for (const s of steps) {
      ul.append(el(doc, "li", { text: s }));
    }
    status.replaceChildren(p, ul);
  }

  function advice(): string[] {
    const output =
      picking === "list"
        ? "Choose another output under \u201cPlay sound through\u201d above, then play the sound again."
        : picking === "choose"
          ? "Choose your speakers or headphones with the button above, then play the sound again."
          : "This browser plays sound through your system's default output: choose your speakers or headphones in your computer's or phone's sound settings, then play the sound again.";
    return [
      "Check that your speakers or headphones are switched on and connected to this device (wireless headphones: paired with this device).",
      "Turn the volume up, on the speakers or headphones and in your computer's or phone's sound settings, and check that sound is not muted.",
      output,
      "Another program using sound (a call, music) may hold the speakers: close it, then play the sound again.",
      "You can join anyway. If you cannot hear the others, write to the mediator in the chat.",
    ];
  }

  function show(mode: Picking, unnamed: boolean): void {
    picking = mode;
    pickBox.hidden = mode !== "list";
    choose.hidden = mode !== "choose";
    if (mode === "list") {
      note.textContent = "";
    } else if (mode === "choose") {
      if (chosenByBrowser === undefined) {
        note.textContent = "Sound plays through your system's default output unless you choose another.";
      }
    } else {
      note.textContent = routable && unnamed
        ? "Sound plays through your system's default output. To choose another, check your camera and microphone first: the browser then lists your speakers and headphones."
        : "Sound plays through your system's default output (this browser does not let a page choose another).";
    }
    note.hidden = note.textContent === "";
  }

  function refresh(): void {
    if (!routable || devices?.enumerateDevices === undefined) {
      show(devices?.selectAudioOutput !== undefined && routable ? "choose" : "default", false);
      return;
    }
    devices.enumerateDevices().then(
      (all) => {
        const outputs = all.filter((d) => d.kind === "audiooutput");
        // "" (no permission yet) and "default" are the system's default output.
        const named = outputs.filter((d) => d.deviceId !== "" && d.deviceId !== "default");
        if (named.length === 0) {
          show(devices.selectAudioOutput !== undefined ? "choose" : "default", outputs.some((d) => d.deviceId === ""));
          return;
        }
        const keep = select.value;
        const fallback = el(doc, "option", { text: "System default output" });
        fallback.value = "";
        const options = [fallback];
        named.forEach((d, i) => {
          const o = el(doc, "option", { text: d.label === "" ? `Output ${String(i + 1)}` : d.label });
          o.value = d.deviceId;
          options.push(o);
        });
        select.replaceChildren(...options);
        select.value = named.some((d) => d.deviceId === keep) ? keep : "";
        show("list", false);
      },
      () => {
        show("default", false);
      },
    );
  }

  function chosen(): string | undefined {
    if (picking === "list") {
      return select.value === "" ? undefined : select.value;
    }
    return picking === "choose" ? chosenByBrowser?.deviceId : undefined;
  }

  let playing = false;
  async function playTone(): Promise<void> {
    if (playing) {
      return;
    }
    playing = true;
    fieldset.dataset["tone"] = "playing";
    say("Playing a test sound.");
    let ctx: (AudioContext & SinkableContext) | undefined;
    let sinkElement: HTMLAudioElement | undefined;
    try {
      ctx = new AudioContext();
      let out: AudioNode = ctx.destination;
      const sink = chosen();
      if (sink !== undefined) {
        if (ctx.setSinkId !== undefined) {
          await ctx.setSinkId(sink);
        } else {
          // Through a media element, which can be pointed at an output (Firefox).
          const dest = ctx.createMediaStreamDestination();
          sinkElement = doc.createElement("audio");
          sinkElement.srcObject = dest.stream;
          await sinkElement.setSinkId(sink);
          void sinkElement.play().catch(() => undefined);
          out = dest;
        }
      }
      if (ctx.state !== "running") {
        await Promise.race([ctx.resume(), after(START_MS)]);
      }
      fieldset.dataset["audioState"] = ctx.state;
      if (ctx.state !== "running") {
        throw new Error("the AudioContext did not start");
      }
      const osc = ctx.createOscillator();
      osc.frequency.value = TONE_HZ;
      const gain = ctx.createGain();
      const t = ctx.currentTime;
      gain.gain.setValueAtTime(0, t);
      gain.gain.linearRampToValueAtTime(LEVEL, t + FADE_S);
      gain.gain.setValueAtTime(LEVEL, t + TONE_S - FADE_S);
      gain.gain.linearRampToValueAtTime(0, t + TONE_S);
      osc.connect(gain).connect(out);
      const ended = new Promise<void>((resolve) => {
        osc.addEventListener("ended", () => {
          resolve();
        });
      });
      osc.start(t);
      osc.stop(t + TONE_S);
      await Promise.race([ended, after(END_MS)]);
      fieldset.dataset["tone"] = "played";
      question.hidden = false;
      say("The test sound has played. Did you hear the tone?");
    } catch {
      fieldset.dataset["tone"] = "failed";
      question.hidden = false;
      say("The browser could not play a sound here. Things to try:", advice());
    } finally {
      sinkElement?.pause();
      void ctx?.close().catch(() => undefined);
      playing = false;
    }
  }

  const onChange = (): void => {
    refresh();
  };
  devices?.addEventListener("devicechange", onChange);
  refresh();
  return {
    fieldset,
    refresh,
    chosen,
    close: () => {
      devices?.removeEventListener("devicechange", onChange);
    },
  };
}
