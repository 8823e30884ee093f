// What a party's page keeps so that a reload resumes it into the room it was in (e2ee §15.12):
// the newest resume token, the mediator's public key the invite pinned, the display name and the
// chosen speaker, in this tab's sessionStorage only (gone when the tab closes). Never a secret
// key or the invite secret: the reloaded page makes new keys, and the mediator lets them in after
// comparing their fingerprint. Cleared at the end, on leaving and on quick exit. Managers keep
// nothing (participants pin the mediator's key, so the mediator's page cannot resume).

const KEY = "confer.resume";

/** What a reload needs. */
export interface Resume {
  /** `#t=<resume token>&m=<mediator key>`: the SDK's `resumeLink()`. */
  link: string;
  name: string;
  speaker: string | undefined;
}

/** The minimal Storage this needs (tests pass a Map-backed one). */
export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The tab's sessionStorage, or undefined where the browser refuses it (privacy modes). */
export function tabStore(w: { sessionStorage?: KeyValueStore }): KeyValueStore | undefined {
  try {
    return w.sessionStorage;
  } catch {
    return undefined;
  }
}

/** Keeps what a reload needs (only a well-formed resume link). */
export function saveResume(store: KeyValueStore | undefined, r: Resume): void {
  if (store === undefined || !/^#t=[A-Za-z0-9._-]+(&m=[A-Za-z0-9_-]+)?$/.test(r.link)) {
    return;
  }
  try {
    store.setItem(KEY, JSON.stringify({ v: 1, link: r.link, name: r.name.slice(0, 128), speaker: r.speaker }));
  } catch {
    // A full or refused store: a reload then starts over, as without this.
  }
}

/** What was kept, if anything well-formed. */
export function readResume(store: KeyValueStore | undefined): Resume | undefined {
  let raw: string | null;
  try {
    raw = store?.getItem(KEY) ?? null;
  } catch {
    return undefined;
  }
  if (raw === null) {
    return undefined;
  }
  try {
    const v = JSON.parse(raw) as { v?: unknown; link?: unknown; name?: unknown; speaker?: unknown };
    if (v.v !== 1 || typeof v.link !== "string" || typeof v.name !== "string" || !v.link.startsWith("#t=")) {
      return undefined;
    }
    return { link: v.link, name: v.name, speaker: typeof v.speaker === "string" ? v.speaker : undefined };
  } catch {
    return undefined;
  }
}

/** Forgets it (the end, leaving, quick exit). */
export function clearResume(store: KeyValueStore | undefined): void {
  try {
    store?.removeItem(KEY);
  } catch {
    // Nothing kept, or nothing to do.
  }
}
