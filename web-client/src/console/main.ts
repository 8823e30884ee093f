// The console page (console.html, served at /console): enrolment from a `#enrol=` link, login
// with a second factor, and the logged-in mediator's sessions. Plain DOM; the page never
// touches a session's keys: the session itself runs on the mediator's page (/join).

import { Api, ApiError } from "./api.js";
import type { Account } from "./api.js";
import { showEnrol } from "./enrol.js";
import { showHome } from "./home.js";
import { showLogin } from "./login.js";
import type { Screen } from "./ui.js";

async function start(): Promise<void> {
  const main = document.getElementById("main");
  if (main === null) {
    return;
  }
  const s: Screen = { doc: document, main };
  const api = new Api();
  // The enrolment token is read once and taken out of the address bar and history.
  const hash = location.hash;
  const token = hash.startsWith("#enrol=") ? decodeURIComponent(hash.slice("#enrol=".length)) : undefined;
  if (hash !== "") {
    history.replaceState(null, "", location.pathname);
  }
  const home = (a: Account): void => {
    showHome(s, api, a, login);
  };
  const login = (): void => {
    void api.me().then(() => {
      showLogin(s, api, home);
    });
  };
  let me;
  try {
    me = await api.me();
  } catch (e) {
    const status = document.getElementById("status");
    if (status !== null) {
      status.textContent = e instanceof ApiError ? e.message : "The console could not start. Reload the page.";
    }
    return;
  }
  if (token !== undefined && token !== "") {
    await showEnrol(s, api, token, login);
  } else if (me.account !== null) {
    home(me.account);
  } else {
    showLogin(s, api, home);
  }
}

void start();
