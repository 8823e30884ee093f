// The page's entry point. It reads the invite fragment once (and removes it from the address
// bar); with an invite, it shows the agreement and joins when the person asks, then shows the
// call. It imports no crypto and no core/ (the lint rules for the page forbid both): it talks
// to the SDK.

import { mountAbout } from "./app/about.js";
import { Board } from "./app/board.js";
import { CallView } from "./app/call.js";
import { DocumentsView } from "./app/documents.js";
import { NotesView } from "./app/notes.js";
import { parseFragment, takeInviteFragment } from "./app/invite.js";
import type { InviteFields, InviteReading } from "./app/invite.js";
import { askToJoin } from "./app/join.js";
import type { JoinChoice } from "./app/join.js";
import { clearResume, readResume, saveResume, tabStore } from "./app/resume.js";
import { Shell } from "./app/shell.js";
import { Role, Side } from "./proto/ids.js";
import type { ChannelId, ParticipantId } from "./proto/ids.js";
import { ConferSession, DEMO_AGREEMENT, transformPaths } from "./sdk.js";
import type { JoinOptions, View } from "./sdk.js";

/** Set by the e2e build only (vite.config.ts). */
declare const __CONFER_TEST_BUILD__: boolean;

/** The browser tests' hook (test builds only): join options to add, and the session to drive. */
interface TestHook {
  join?: Partial<JoinOptions>;
  session?: ConferSession;
}

// First, before anything else runs: the fragment leaves the address bar.
const reading = takeInviteFragment(window);
const shell = Shell.mount(document);
const main = document.getElementById("main");
const store = tabStore(window);
let joining = false;
// A page that reloaded during a session (no fragment: it left the address bar) resumes into
// its room with new keys; the mediator lets them in (resume.ts). A new invite link wins.
const kept = reading.kind === "none" ? readResume(store) : undefined;
const keptLink = kept === undefined ? undefined : parseFragment(kept.link.slice(1));
if (kept !== undefined && keptLink?.kind === "invite" && main !== null && transformPaths().length > 0) {
  const fields = keptLink.invite.take();
  if (fields !== undefined) {
    joining = true;
    document.documentElement.dataset["invite"] = "resume";
    shell.setStatus("Reconnecting you to your mediation.");
    start(main, fields, { name: kept.name, speaker: kept.speaker });
  }
} else {
  clearResume(store);
}
if (!joining) {
  show(reading);
}
// A link opened in a tab that already shows the page changes only the fragment (no new page
// load): that fragment leaves the address bar too.
window.addEventListener("hashchange", () => {
  const next = takeInviteFragment(window);
  if (next.kind !== "none") {
    show(next);
  }
});
const footer = document.getElementById("footer");
if (footer !== null) {
  mountAbout(document, footer);
}
document.documentElement.dataset["ready"] = "true";

function show(r: InviteReading): void {
  shell.setStatus(statusFor(r));
  document.documentElement.dataset["invite"] = r.kind;
  if (r.kind === "invite" && main !== null && !joining) {
    joining = true;
    const fields = r.invite.take();
    if (fields !== undefined) {
      void join(main, fields);
    }
  }
}

async function join(main: HTMLElement, fields: InviteFields): Promise<void> {
  if (transformPaths().length === 0) {
    shell.setStatus(
      "This browser cannot encrypt a video call end to end (it lacks WebRTC encoded transforms). Open this link in a current Chrome, Edge, Chromium or Firefox.",
    );
    document.documentElement.dataset["phase"] = "unsupported";
    return;
  }
  const choice = await askToJoin(document, main, DEMO_AGREEMENT);
  start(main, fields, choice);
}

// Joins with the link (kept in memory only) and shows the call; a page refused because the
// session is locked offers to try again with the same link. The waiting-room message stays in
// the page: the SDK gets the link without it.
function start(main: HTMLElement, fields: InviteFields, choice: JoinChoice): void {
  const { token, secret, mediatorKey, waitingMessage } = fields;
  const name = choice.name;
  let link = `#t=${token}`;
  if (secret !== undefined) {
    link += `&k=${secret}`;
  }
  if (mediatorKey !== undefined) {
    link += `&m=${mediatorKey}`;
  }
  const hook = __CONFER_TEST_BUILD__ ? (globalThis as { __conferE2E?: TestHook }).__conferE2E : undefined;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const session = ConferSession.join({
    ...hook?.join,
    wsUrl: `${scheme}//${location.host}/ws`,
    invite: link,
    agreement: DEMO_AGREEMENT,
    displayName: name === "" ? undefined : name,
    linkBase: location.origin,
  });
  if (hook !== undefined) {
    hook.session = session;
  }
  const actions = {
    shareScreen: () => session.shareScreen(),
    stopScreen: () => session.stopScreen(),
    sendChat: (text: string) => session.sendChat(text),
    leave: () => {
      clearResume(store);
      return session.leave();
    },
    createInvite: (role: "party" | "counsel" | "co_mediator", side: "A" | "B" | undefined) => {
      const r = Role.fromStr(role);
      const sd = side === undefined ? undefined : Side.fromStr(side);
      return r === undefined || (side !== undefined && sd === undefined) ? Promise.reject(new Error("no such role")) : session.createInvite(r, sd);
    },
  };
  const announce = (text: string): void => {
    shell.announce(text);
  };
  const call = new CallView(document, main, actions, announce, { waitingMessage, speaker: choice.speaker });
  const documents = new DocumentsView(
    document,
    document.getElementById("call") ?? main,
    {
      share: async (file) => {
        await session.shareDocument(file.name, file.type, new Uint8Array(await file.arrayBuffer()));
      },
      open: (docId) => session.openDocument(docId),
      acknowledge: (docId) => session.acknowledgeDocument(docId),
      carry: async (docId, room) => {
        const d = session.view().documents.find((x) => x.docId === docId);
        if (d === undefined) {
          throw new Error("no such document");
        }
        const bytes = await session.openDocument(docId);
        try {
          await session.shareDocument(d.name, d.mediaType, bytes, room as ChannelId);
        } finally {
          bytes.fill(0);
        }
      },
    },
    announce,
  );
  const board = new Board(
    document,
    main,
    {
      admit: (p) => session.admit(p as ParticipantId),
      setAutoAdmit: (on) => session.setAutoAdmit(on),
      move: (p, ch) => session.command({ type: "move", participant_id: p as ParticipantId, channel_id: ch as ChannelId }),
      breakout: (members) => session.command({ type: "create_breakout", members: members as ParticipantId[] }),
      returnAll: () => session.command({ type: "return_all" }),
      lock: (locked) => session.command(locked ? { type: "lock" } : { type: "unlock" }),
      kick: (p) => session.command({ type: "kick", participant_id: p as ParticipantId }),
      end: () => session.leave(),
    },
    announce,
  );
  const notes = new NotesView(document, main, { save: (text) => session.saveNotes(text), open: (docId) => session.openNotes(docId) });
  let last = "";
  let saved = kept?.link;
  let retry: HTMLButtonElement | undefined;
  // Focus moves from the join button (now gone) to the room's heading.
  document.getElementById("room")?.focus();
  session.subscribe((v) => {
    call.render(v);
    documents.render(v);
    board.render(v);
    notes.render(v);
    // Keep what a reload needs (the newest resume token) once admitted to a room, and nothing
    // once it is over. (Before the welcome there is no new token yet: the one kept stays. In
    // the waiting room a reload cannot resume: the mediator keeps the first key it saw.)
    const resume =
      v.phase === "ended" || v.keysDeleted || (v.phase !== "connecting" && v.channel === undefined) ? undefined : (session.resumeLink() ?? saved);
    if (resume !== saved) {
      saved = resume;
      if (resume === undefined) {
        clearResume(store);
      } else {
        saveResume(store, { link: resume, name, speaker: choice.speaker });
      }
    }
    if (v.phase === "ended" && v.ended === "locked" && retry === undefined) {
      retry = document.createElement("button");
      retry.type = "button";
      retry.id = "try-again";
      retry.textContent = "Try again";
      retry.addEventListener("click", () => {
        document.getElementById("call")?.remove();
        document.getElementById("board")?.remove();
        document.getElementById("notes")?.remove();
        retry?.remove();
        start(main, fields, choice);
      });
      main.append(retry);
      retry.focus();
    }
    document.documentElement.dataset["phase"] = v.phase;
    const status = statusOf(v, waitingMessage !== undefined);
    if (status !== last) {
      last = status;
      shell.setStatus(status);
    }
  });
}

function statusOf(v: View, hasMessage: boolean): string {
  if (v.alarms.length > 0 && v.phase !== "ended") {
    return "Security alarm: read the message below before you say anything confidential.";
  }
  switch (v.phase) {
    case "connecting":
      return "Connecting to the mediation.";
    case "waiting":
      return `You are in the waiting room. The mediator will let you in.${hasMessage ? " The mediator left you a message below." : ""}${v.myFingerprint === undefined ? "" : ` If the mediator asks, your key is ${v.myFingerprint}.`}`;
    case "securing":
      if (v.rejoining) {
        return `You are back after your page reloaded. Your encryption keys are new, so the mediator will check them and let you back in. Your microphone and camera stay off until then.${v.myFingerprint === undefined ? "" : ` If the mediator asks, your key is ${v.myFingerprint}.`}`;
      }
      return "Securing the room. Your microphone and camera stay off until it is secured.";
    case "secured":
      return "Connected. Everything you say and show is end-to-end encrypted.";
    case "ended":
      if (v.ended === "locked") {
        return "The mediator has locked this session, so nobody new can join right now. Ask them to unlock it, then choose Try again.";
      }
      return v.ended === "removed" ? "The mediator removed you from the session." : "The session has ended.";
  }
}

function statusFor(r: InviteReading): string {
  switch (r.kind) {
    case "none":
      return "To join a mediation, open the invitation link your mediator sent you.";
    case "invite":
      return "Invitation received. Read the agreement below, then join.";
    case "invalid":
      return "This invitation link is incomplete. Ask your mediator to send it again.";
  }
}
