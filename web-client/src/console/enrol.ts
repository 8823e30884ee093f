// Enrolment, from the link `confer user add` printed (`/console#enrol=TOKEN`): choose a
// password, add the account to an authenticator app (its otpauth:// link, or the secret typed
// in), confirm a code, then keep the ten recovery codes, shown once.

import { el } from "../app/dom.js";
import type { Api } from "./api.js";
import { ApiError } from "./api.js";
import type { Screen } from "./ui.js";
import { announce, codeField, errorBox, field, form, screen, submit } from "./ui.js";

interface Start {
  name: string;
  role: string;
  totp_secret: string;
  otpauth_uri: string;
  totp_required: boolean;
}

interface Finish {
  name: string;
  totp: boolean;
  recovery_codes: string[];
}

export async function showEnrol(s: Screen, api: Api, token: string, next: () => void): Promise<void> {
  const { doc, main } = s;
  screen(s, "Set up your account");
  let start: Start;
  try {
    start = await api.post<Start>("/console/api/enrol/start", { token });
  } catch (e) {
    const err = errorBox(doc, "enrol-error");
    main.append(err.box);
    err.show(e instanceof ApiError ? e.message : "The server could not do this. Try again.");
    return;
  }
  main.append(el(doc, "p", { text: `Account: ${start.name} (${start.role === "mediator" ? "mediator" : "co-mediator"}).` }));

  const f = form(doc, "enrol-form", async () => {
    err.clear();
    if (password.input.value !== again.input.value) {
      err.show("The two passwords differ. Type the same password twice.");
      again.input.focus();
      return;
    }
    try {
      const typed = code.input.value.replace(/\s/g, "");
      const body = typed === "" ? { token, password: password.input.value } : { token, password: password.input.value, code: typed };
      const done = await api.post<Finish>("/console/api/enrol/finish", body);
      showRecoveryCodes(s, done, next);
    } catch (e) {
      err.show(e instanceof ApiError ? e.message : "The server could not do this. Try again.");
      if (e instanceof ApiError && e.code === "totp_code_wrong") {
        code.input.focus();
      }
    }
  });
  const password = field(doc, "enrol-password", "Choose a password (at least 10 characters)", "password", "new-password");
  password.input.minLength = 10;
  const again = field(doc, "enrol-password-again", "Type the password again", "password", "new-password");

  const totp = el(doc, "fieldset", { id: "enrol-totp" });
  totp.append(el(doc, "legend", { text: start.totp_required ? "Authenticator app (required)" : "Authenticator app (optional)" }));
  totp.append(
    el(doc, "p", {
      text: "Add this account to an authenticator app on your phone (for example FreeOTP, Aegis or Google Authenticator): open the link below on the phone, or type the secret into the app.",
    }),
  );
  const link = el(doc, "a", { id: "enrol-otpauth", text: "Add to an authenticator app" });
  link.href = start.otpauth_uri;
  totp.append(el(doc, "p"));
  totp.lastElementChild?.append(link);
  const secretP = el(doc, "p", { text: "Secret: " });
  const secret = el(doc, "code", { id: "enrol-secret", className: "secret", text: groups(start.totp_secret) });
  secret.setAttribute("aria-label", `Secret, ${start.totp_secret.split("").join(" ")}`);
  secretP.append(secret);
  totp.append(secretP);
  totp.append(el(doc, "p", { text: "Time-based, 6 digits, every 30 seconds (SHA-1): the app's default." }));
  const code = codeField(doc, "enrol-code", "The 6-digit code the app shows now");
  code.input.required = start.totp_required;
  totp.append(code.label);

  const err = errorBox(doc, "enrol-error");
  f.append(password.label, again.label, totp, err.box, submit(doc, "enrol-submit", "Finish setting up"));
  main.append(f);
}

function showRecoveryCodes(s: Screen, done: Finish, next: () => void): void {
  const { doc, main } = s;
  screen(s, "Keep your recovery codes");
  main.append(
    el(doc, "p", {
      text: "Your account is set up. If you lose your phone, each of these codes logs you in once instead of the app's code. They are shown only now: print them or keep them in a password manager.",
    }),
  );
  const list = el(doc, "ol", { id: "recovery-codes", className: "recovery-codes" });
  for (const c of done.recovery_codes) {
    list.append(el(doc, "li", { text: c }));
  }
  main.append(list);
  const go = el(doc, "button", { id: "recovery-done", text: "I have kept them: log in" });
  go.type = "button";
  go.addEventListener("click", next);
  const actions = el(doc, "div", { className: "console-actions" });
  actions.append(go);
  main.append(actions);
  announce(doc, "Account set up. Ten recovery codes are shown.");
}

/** `ABCDEFGH…` as `ABCD EFGH …`, easier to type. */
function groups(secret: string): string {
  return secret.replace(/(.{4})(?=.)/g, "$1 ");
}
