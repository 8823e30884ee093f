#!/usr/bin/env bash
# Installs what `make test` needs when it is missing. Safe to run again and again.
set -euo pipefail

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
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends coturn \
    || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends coturn; }
fi
