// The logged-in console: start a session (the server mints its mediator invite, which opens
// the mediator's page) choosing how long its documents are kept, the account's live sessions,
// deleting everything about one of them (after an explicit confirmation), log out.

import { el } from "../app/dom.js";
import type { Account, Api } from "./api.js";
import { ApiError } from "./api.js";
import type { Screen } from "./ui.js";
import { announce, errorBox, screen } from "./ui.js";

interface Started {
  id: string;
  link: string;
}

interface SessionRow {
  id: string;
  created_at: number;
  state: "live" | "not_opened";
  /** 0: until the session ends; N: N hours after sharing. */
  docs_retention_hours: number;
}

interface SessionList {
  sessions: SessionRow[];
  docs_retention: { default_hours: number; max_hours: number };
}

/** Retention choices offered besides "until the session ends", in hours, when the server allows them. */
const RETENTION_PRESETS = [1, 24, 7 * 24, 30 * 24];

function duration(hours: number): string {
  if (hours === 1) {
    return "1 hour";
  }
  if (hours >= 48 && hours % 24 === 0) {
    return `${String(hours / 24)} days`;
  }
  return `${String(hours)} hours`;
}

/** How a session's retention reads in its row and in the choice. */
export function retentionText(hours: number, maxHours: number): string {
  return hours === 0 ? `until the session ends (at most ${duration(maxHours)} after sharing)` : `for ${duration(hours)} after sharing`;
}

export function showHome(s: Screen, api: Api, account: Account, loggedOut: () => void): void {
  const { doc, main } = s;
  screen(s, "Your sessions");
  const role = account.role === "mediator" ? "mediator" : "co-mediator";
  main.append(el(doc, "p", { id: "console-account", text: `Logged in as ${account.name} (${role}).` }));
  const err = errorBox(doc, "console-error");
  const actions = el(doc, "div", { className: "console-actions" });
  const started = el(doc, "section", { id: "console-started" });
  started.setAttribute("aria-label", "The session you started");
  const listHeading = el(doc, "h2", { id: "console-sessions-heading", text: "Live sessions" });
  listHeading.tabIndex = -1;
  const list = el(doc, "ul", { id: "console-sessions", className: "sessions" });
  list.setAttribute("aria-labelledby", "console-sessions-heading");
  let maxHours = 0;

  // The retention choice: filled from the server's limits at the first refresh.
  const retentionLabel = el(doc, "label", { text: "Keep the documents shared in the session" });
  retentionLabel.htmlFor = "console-retention";
  const retention = el(doc, "select", { id: "console-retention" });
  retention.name = "console-retention";
  const retentionHint = el(doc, "p", {
    id: "console-retention-hint",
    className: "hint",
    text: "Whatever you choose, the server deletes a session's documents when it ends.",
  });
  retention.setAttribute("aria-describedby", "console-retention-hint");
  retentionLabel.append(retention);
  const fillRetention = (limits: SessionList["docs_retention"]): void => {
    maxHours = limits.max_hours;
    if (retention.options.length > 0) {
      return;
    }
    const hours = [...new Set([...RETENTION_PRESETS, limits.default_hours])].filter((h) => h > 0 && h <= limits.max_hours).sort((a, b) => a - b);
    for (const h of [0, ...hours]) {
      const text = retentionText(h, limits.max_hours);
      const o = el(doc, "option", { text: text.charAt(0).toUpperCase() + text.slice(1) });
      o.value = String(h);
      o.selected = h === limits.default_hours;
      retention.append(o);
    }
  };

  // One confirmation open at a time: the row it belongs to, and how to close it.
  let closeConfirm: (() => void) | undefined;

  const purge = async (row: SessionRow): Promise<void> => {
    err.clear();
    try {
      await api.post(`/console/api/sessions/${encodeURIComponent(row.id)}/purge`);
      closeConfirm = undefined;
      await refresh();
      listHeading.focus();
      announce(doc, `Session ${row.id} is ended and everything the server held about it is deleted.`);
    } catch (e) {
      if (e instanceof ApiError && e.code === "not_logged_in") {
        loggedOut();
        return;
      }
      err.show(e instanceof ApiError ? e.message : "The session could not be deleted.");
    }
  };

  const sessionItem = (row: SessionRow): HTMLLIElement => {
    const li = el(doc, "li");
    const when = new Date(row.created_at * 1000).toLocaleTimeString();
    const state = row.state === "live" ? "live" : "not opened yet";
    const textId = `console-row-${row.id}`;
    li.append(
      el(doc, "span", {
        id: textId,
        text: `${row.id}, started ${when}: ${state}. Documents kept ${retentionText(row.docs_retention_hours, maxHours)}.`,
      }),
    );
    if (account.role !== "mediator") {
      return li;
    }
    const del = el(doc, "button", { id: `console-purge-${row.id}`, className: "danger", text: "Delete everything about this session" });
    del.type = "button";
    del.setAttribute("aria-describedby", textId);
    del.setAttribute("aria-expanded", "false");
    li.append(del);
    del.addEventListener("click", () => {
      closeConfirm?.();
      const box = el(doc, "div", { id: "console-purge-confirm-box", className: "confirm" });
      box.setAttribute("role", "group");
      box.setAttribute("aria-labelledby", "console-purge-question");
      const question = el(doc, "p", {
        id: "console-purge-question",
        text: `Delete everything about session ${row.id}? ${row.state === "live" ? "It ends now for everyone in it, and its" : "Its invitation stops working, and its"} shared documents are deleted. This cannot be undone. The audit log keeps its content-free record.`,
      });
      question.tabIndex = -1;
      const yes = el(doc, "button", { id: "console-purge-confirm", className: "danger", text: "Yes, delete everything" });
      yes.type = "button";
      const no = el(doc, "button", { id: "console-purge-cancel", text: "Cancel" });
      no.type = "button";
      box.append(question, yes, no);
      del.setAttribute("aria-controls", box.id);
      del.setAttribute("aria-expanded", "true");
      li.append(box);
      const close = (): void => {
        box.remove();
        del.setAttribute("aria-expanded", "false");
        del.removeAttribute("aria-controls");
        closeConfirm = undefined;
      };
      closeConfirm = close;
      const cancel = (): void => {
        close();
        del.focus();
      };
      no.addEventListener("click", cancel);
      box.addEventListener("keydown", (e) => {
        if (e.key === "Escape") {
          e.preventDefault();
          cancel();
        }
      });
      let busy = false;
      yes.addEventListener("click", () => {
        if (busy) {
          return;
        }
        busy = true;
        yes.disabled = true;
        void purge(row).finally(() => {
          busy = false;
          yes.disabled = false;
        });
      });
      question.focus();
    });
    return li;
  };

  const refresh = async (): Promise<void> => {
    try {
      const r = await api.get<SessionList>("/console/api/sessions");
      fillRetention(r.docs_retention);
      closeConfirm?.();
      list.replaceChildren();
      if (r.sessions.length === 0) {
        list.append(el(doc, "li", { text: "None yet." }));
      }
      for (const row of r.sessions) {
        list.append(sessionItem(row));
      }
    } catch (e) {
      if (e instanceof ApiError && e.code === "not_logged_in") {
        loggedOut();
        return;
      }
      err.show(e instanceof ApiError ? e.message : "The list could not be loaded.");
    }
  };

  if (account.role === "mediator") {
    const start = el(doc, "button", { id: "console-start", text: "Start a session" });
    start.type = "button";
    start.addEventListener("click", () => {
      void (async () => {
        err.clear();
        try {
          const body = retention.value === "" ? {} : { docs_retention_hours: Number(retention.value) };
          const r = await api.post<Started>("/console/api/sessions", body);
          const url = `${location.origin}${r.link}`;
          started.replaceChildren();
          started.append(el(doc, "h2", { text: `Session ${r.id} is ready` }));
          started.append(
            el(doc, "p", {
              text: "Open it to mediate; from that page you invite the parties. The link works once and holds your invitation: do not share it.",
            }),
          );
          const a = el(doc, "a", { id: "console-open", text: `Open session ${r.id} as mediator` });
          a.href = url;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
          started.append(a);
          a.focus();
          announce(doc, `Session ${r.id} is ready. A link to open it follows.`);
          await refresh();
        } catch (e) {
          if (e instanceof ApiError && e.code === "not_logged_in") {
            loggedOut();
            return;
          }
          err.show(e instanceof ApiError ? e.message : "The session could not be started.");
        }
      })();
    });
    const choice = el(doc, "div", { className: "console-form" });
    choice.append(retentionLabel, retentionHint);
    main.append(choice);
    actions.append(start);
  } else {
    main.append(el(doc, "p", { text: "Co-mediators join a session with the invite link its mediator makes in the session." }));
  }
  const again = el(doc, "button", { id: "console-refresh", text: "Refresh the list" });
  again.type = "button";
  again.addEventListener("click", () => {
    void refresh().then(() => {
      announce(doc, "The list of sessions is up to date.");
    });
  });
  const out = el(doc, "button", { id: "console-logout", text: "Log out" });
  out.type = "button";
  out.addEventListener("click", () => {
    void api
      .post("/console/api/logout")
      .catch(() => undefined)
      .then(() => {
        loggedOut();
      });
  });
  actions.append(again, out);
  main.append(actions, err.box, started, listHeading, list);
  void refresh();
}
