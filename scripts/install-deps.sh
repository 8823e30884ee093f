#!/usr/bin/env bash
# Installs what `make test` needs when it is missing. Safe to run again and again.
set -euo pipefail

# Installs Debian packages (as root, or through sudo).
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "$@" \
    || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "$@"; }
}

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "install-deps: adding rustfmt and clippy" >&2
  rustup component add rustfmt clippy
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-nextest (a few minutes, once)" >&2
  cargo install cargo-nextest --locked
fi

# coturn: the TURN server the media relay test runs (tests/e2e/e2ee/turn.rs). Installed, not
# started as a service; the test starts its own on 127.0.0.1.
if ! command -v turnserver >/dev/null 2>&1; then
  echo "install-deps: installing coturn (Debian package) for the TURN test" >&2
  apt_install coturn
fi

# Redis: cluster mode's tests (tests/e2e/cluster.rs) start their own redis-server processes on
# 127.0.0.1. Installed, not started as a service.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "install-deps: installing redis-server (Debian package) for the cluster tests" >&2
  apt_install redis-server
fi

# Node.js and npm: the web client's lint and suites (web-client/, `make web`). Debian's
# packages, only when node is missing. web-client needs Node >= 20.19 (Vite 8, noble 2);
# `make web` installs its npm packages itself (npm ci, when package-lock.json changed).
if ! command -v node >/dev/null 2>&1; then
  echo "install-deps: installing nodejs and npm (Debian packages) for the web client" >&2
  apt_install nodejs npm
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "install-deps: warning: web-client needs Node >= 20.19, this is $(node --version); \`make web\` will fail" >&2
fi

# Browsers for web-client's browser tests (web-client/e2e, `make browsers`): Debian's chromium
# (driven by playwright-core) and firefox-esr (driven by puppeteer-core over WebDriver BiDi).
# Never a browser build downloaded by a test tool.
browsers=()
command -v chromium >/dev/null 2>&1 || browsers+=(chromium)
command -v firefox-esr >/dev/null 2>&1 || browsers+=(firefox-esr)
if [ "${#browsers[@]}" -gt 0 ]; then
  echo "install-deps: installing ${browsers[*]} (Debian packages) for the browser tests" >&2
  apt_install "${browsers[@]}"
fi
