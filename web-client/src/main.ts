// The page's entry point. It reads the invite fragment once (and removes it from the address
// bar), then shows where things stand. It imports no crypto and no core/ (the lint rules for
// the page forbid both); joining comes with the SDK.

import { takeInviteFragment } from "./app/invite.js";
import type { InviteReading } from "./app/invite.js";
import { Shell } from "./app/shell.js";

// First, before anything else runs: the fragment leaves the address bar.
const reading = takeInviteFragment(window);
const shell = Shell.mount(document);
show(reading);
// A link opened in a tab that already shows the page changes only the fragment (no new page
// load): that fragment leaves the address bar too.
window.addEventListener("hashchange", () => {
  const next = takeInviteFragment(window);
  if (next.kind !== "none") {
    show(next);
  }
});
document.documentElement.dataset["ready"] = "true";

function show(r: InviteReading): void {
  shell.setStatus(statusFor(r));
  document.documentElement.dataset["invite"] = r.kind;
}

function statusFor(r: InviteReading): string {
  switch (r.kind) {
    case "none":
      return "To join a mediation, open the invitation link your mediator sent you.";
    case "invite":
      return "Invitation received. Joining from the browser is not available yet.";
    case "invalid":
      return "This invitation link is incomplete. Ask your mediator to send it again.";
  }
}
