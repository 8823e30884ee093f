// The page's entry point. A placeholder while the browser client is built: it imports nothing
// (no crypto, no core; the lint rules for the page forbid both) and only marks the page ready.

const statusLine = document.getElementById("status");
if (statusLine !== null) {
  statusLine.dataset["ready"] = "true";
}
