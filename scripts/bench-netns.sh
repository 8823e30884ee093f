#!/usr/bin/env bash
# Runs a command in a network namespace of its own, joined by a veth pair to a second one for
# Janus (confer-bench's `janus` section: Janus's ICE gathers no candidate on loopback, so it
# needs an interface that is not one). Needs root (or sudo). Creates, and removes on exit,
# even on failure:
#   confer-bench-janus-PID  with veth `cbj0` at 10.250.N.1/30 (where Janus runs),
#   confer-bench-load-PID   with veth `cbl0` at 10.250.N.2/30 (where COMMAND runs),
# N picked from this script's PID. Both ends of the pair are made inside the namespaces, so
# no interface, address or route of the machine's own namespace is touched. COMMAND gets
#   CONFER_BENCH_JANUS_NETNS, CONFER_BENCH_JANUS_ADDR, CONFER_BENCH_LOAD_ADDR
# (the command runs as root, as `ip netns exec` does).
#
#   usage: scripts/bench-netns.sh COMMAND [ARG...]
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  exec sudo -E "$0" "$@"
fi

janus_ns="confer-bench-janus-$$"
load_ns="confer-bench-load-$$"
n=$(($$ % 250 + 1))
janus_addr="10.250.$n.1"
load_addr="10.250.$n.2"

cleanup() {
  for ns in "$janus_ns" "$load_ns"; do
    if ip netns list | grep -qw "$ns"; then
      # Whatever the command left running inside its namespaces (by their process ids).
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$janus_ns"
ip netns add "$load_ns"
ip -n "$janus_ns" link add cbj0 type veth peer name cbl0 netns "$load_ns"
ip -n "$janus_ns" addr add "$janus_addr/30" dev cbj0
ip -n "$load_ns" addr add "$load_addr/30" dev cbl0
for ns in "$janus_ns" "$load_ns"; do
  ip -n "$ns" link set lo up
done
ip -n "$janus_ns" link set cbj0 up
ip -n "$load_ns" link set cbl0 up

export CONFER_BENCH_JANUS_NETNS="$janus_ns"
export CONFER_BENCH_JANUS_ADDR="$janus_addr"
export CONFER_BENCH_LOAD_ADDR="$load_addr"
# Not exec: the trap must run after the command.
ip netns exec "$load_ns" "$@"
