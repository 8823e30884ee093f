#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make test` when it is missing. Safe to run again and
# again; not on the `make test` path.
set -euo pipefail

# Installs Debian packages (as root, or through sudo).
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "$@" \
    || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "$@"; }
}

# Janus (Debian's janus, 1.1.2 on bookworm): the VideoRoom baseline of `confer-bench janus`.
# Installed, not started as a service (the benchmark starts its own, with a config it writes,
# inside a network namespace of scripts/bench-netns.sh). `ip` (iproute2) makes the namespaces,
# `taskset` (util-linux) pins Janus to the forwarder's core.
# `--no-janus` (make bench BENCH_JANUS=0): only what the sections without root need.
janus=1
if [ "${1:-}" = "--no-janus" ]; then janus=0; fi
pkgs=()
if [ "$janus" = 1 ]; then
command -v janus >/dev/null 2>&1 || pkgs+=(janus)
command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
command -v taskset >/dev/null 2>&1 || pkgs+=(util-linux)
fi
if [ "${#pkgs[@]}" -gt 0 ]; then
  echo "install-bench-deps: installing ${pkgs[*]} (Debian packages) for the Janus baseline" >&2
  apt_install "${pkgs[@]}"
fi

# valgrind (callgrind, callgrind_annotate): the `callgrind` section of `confer-bench` counts the
# SFU's instructions per forwarded copy on a fixed trace with it.
if ! command -v valgrind >/dev/null 2>&1 || ! command -v callgrind_annotate >/dev/null 2>&1; then
  echo "install-bench-deps: installing valgrind (Debian package) for the callgrind section" >&2
  # Not fatal: without it the callgrind section says it was skipped and why.
  apt_install valgrind || echo "install-bench-deps: could not install valgrind; the callgrind section will be skipped" >&2
fi
