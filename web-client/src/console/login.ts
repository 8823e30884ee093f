// Logging in: name and password, then the authenticator app's code, or a recovery code.

import { el } from "../app/dom.js";
import type { Account, Api } from "./api.js";
import { ApiError } from "./api.js";
import type { Screen } from "./ui.js";
import { codeField, errorBox, field, form, screen, submit } from "./ui.js";

interface LoginReply {
  next: "second_factor" | "done";
  account?: Account;
}

export function showLogin(s: Screen, api: Api, done: (a: Account) => void, note?: string): void {
  const { doc, main } = s;
  screen(s, "Log in");
  if (note !== undefined) {
    main.append(el(doc, "p", { text: note }));
  }
  const name = field(doc, "login-name", "Name", "text", "username");
  const password = field(doc, "login-password", "Password", "password", "current-password");
  const err = errorBox(doc, "login-error");
  const f = form(doc, "login-form", async () => {
    err.clear();
    try {
      const r = await api.post<LoginReply>("/console/api/login", { name: name.input.value, password: password.input.value });
      if (r.next === "done" && r.account !== undefined) {
        done(r.account);
      } else {
        showSecondFactor(s, api, done);
      }
    } catch (e) {
      err.show(e instanceof ApiError ? e.message : "The server could not do this. Try again.");
      password.input.value = "";
      password.input.focus();
    }
  });
  f.append(name.label, password.label, err.box, submit(doc, "login-submit", "Continue"));
  main.append(f);
  name.input.focus();
}

function showSecondFactor(s: Screen, api: Api, done: (a: Account) => void): void {
  const { doc, main } = s;
  screen(s, "Second step");
  main.append(el(doc, "p", { text: "Enter the 6-digit code your authenticator app shows for Confer." }));
  const code = codeField(doc, "login-code", "Code from your authenticator app");
  const recovery = field(doc, "login-recovery", "Recovery code", "text", "off");
  recovery.label.hidden = true;
  recovery.input.required = false;
  const err = errorBox(doc, "second-factor-error");
  let useRecovery = false;
  const toggle = el(doc, "button", { id: "login-use-recovery", text: "Use a recovery code instead" });
  toggle.type = "button";
  toggle.addEventListener("click", () => {
    useRecovery = !useRecovery;
    recovery.label.hidden = !useRecovery;
    recovery.input.required = useRecovery;
    code.label.hidden = useRecovery;
    code.input.required = !useRecovery;
    toggle.textContent = useRecovery ? "Use the app's code instead" : "Use a recovery code instead";
    (useRecovery ? recovery.input : code.input).focus();
  });
  const f = form(doc, "second-factor-form", async () => {
    err.clear();
    const body = useRecovery ? { recovery_code: recovery.input.value.trim() } : { code: code.input.value.replace(/\s/g, "") };
    try {
      const r = await api.post<LoginReply>("/console/api/login/second-factor", body);
      if (r.account !== undefined) {
        done(r.account);
      }
    } catch (e) {
      if (e instanceof ApiError && e.code === "login_expired") {
        showLogin(s, api, done, e.message);
        return;
      }
      err.show(e instanceof ApiError ? e.message : "The server could not do this. Try again.");
      (useRecovery ? recovery.input : code.input).select();
    }
  });
  f.append(code.label, recovery.label, err.box, submit(doc, "second-factor-submit", "Log in"), toggle);
  main.append(f);
  code.input.focus();
}
