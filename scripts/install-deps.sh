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
