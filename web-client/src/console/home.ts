// The logged-in console: start a session (the server mints its mediator invite, which opens
// the mediator's page), the account's live sessions, log out.

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
  const listHeading = el(doc, "h2", { text: "Live sessions" });
  const list = el(doc, "ul", { id: "console-sessions", className: "sessions" });

  const refresh = async (): Promise<void> => {
    try {
      const r = await api.get<{ sessions: SessionRow[] }>("/console/api/sessions");
      list.replaceChildren();
      if (r.sessions.length === 0) {
        list.append(el(doc, "li", { text: "None yet." }));
      }
      for (const row of r.sessions) {
        const when = new Date(row.created_at * 1000).toLocaleTimeString();
        const state = row.state === "live" ? "live" : "not opened yet";
        list.append(el(doc, "li", { text: `${row.id}, started ${when}: ${state}` }));
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
          const r = await api.post<Started>("/console/api/sessions");
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
