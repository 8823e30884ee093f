#!/usr/bin/env bash
# The dependency rules of docs/ARCHITECTURE.md, checked with `cargo tree`:
# - confer-server and confer-sfu never depend on confer-e2ee (the server holds no key code);
# - the sans-IO cores (proto, room, sfu, e2ee) never depend on tokio, mio or axum;
# - proto, room and e2ee never depend on a randomness crate (rand, getrandom): randomness is
#   their input. The SFU's str0m draws its own ICE credentials and DTLS keys (a dependency's
#   randomness, not ours: confer-sfu's own code draws none, which clippy.toml cannot see but
#   review can), so sfu is exempt from the randomness rule only;
# - one crypto backend: no workspace crate pulls in ring or openssl (aws-lc-rs is the one;
#   webrtc-rs in confer-client uses it through its crypto-aws-lc-rs provider).
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
have() { [ -f "crates/$1/Cargo.toml" ]; }
deps() { cargo tree --quiet -p "$1" -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u; }

for crate in server sfu; do
  have "$crate" || continue
  if deps "confer-$crate" | grep -qx 'confer-e2ee'; then
    echo "check-deps: confer-$crate depends on confer-e2ee; the server must contain no key-handling code" >&2
    status=1
  fi
done

for crate in proto room sfu e2ee; do
  have "$crate" || continue
  banned_list="tokio mio axum rand getrandom"
  [ "$crate" = sfu ] && banned_list="tokio mio axum"
  for banned in $banned_list; do
    if deps "confer-$crate" | grep -qx "$banned"; then
      echo "check-deps: confer-$crate (a sans-IO core) depends on $banned" >&2
      status=1
    fi
  done
done

for crate in server sfu client e2ee; do
  have "$crate" || continue
  for banned in ring openssl openssl-sys; do
    if deps "confer-$crate" | grep -qx "$banned"; then
      echo "check-deps: confer-$crate depends on $banned; the workspace uses one crypto backend (aws-lc-rs)" >&2
      status=1
    fi
  done
done

[ "$status" -eq 0 ] && echo "check-deps: dependency rules hold"
exit "$status"
