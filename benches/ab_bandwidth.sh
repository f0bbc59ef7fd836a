#!/usr/bin/env bash
# A/B of what a player receives: two builds' release binaries alternating on the same
# scene, so both are measured in one run on a noisy machine. Prints, per run, the bytes
# per bot per second received, the naive full-snapshot figure and snapshots per bot per s.
#
# Usage: benches/ab_bandwidth.sh OLD_BIN_DIR NEW_BIN_DIR
#   each directory holds a tickcast-server and a tickcast-bots, e.g. copied from
#   target/release of a checkout of each commit.
# Environment: ROUNDS (3), BOTS (50), NPCS (1000), RADII ("0 250"), DURATION (15s),
#              PORT (18291).
# Only ever targets 127.0.0.1; every run is bounded by DURATION and stops by itself.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OLD_BIN_DIR NEW_BIN_DIR" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
BOTS=${BOTS:-50}
NPCS=${NPCS:-1000}
RADII=${RADII:-"0 250"}
DURATION=${DURATION:-15s}
PORT=${PORT:-18291}
out=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$out"' EXIT

run() { # label bin_dir view_radius
  # Every bot connects from 127.0.0.1: lift the per-address caps and room bounds, on
  # binaries that have them (an A/B run may compare a build from before they existed).
  local edge=()
  if "$2/tickcast-server" --help | grep -q -- --max-connections-per-ip; then
    edge=(--max-connections-per-ip 0 --room-creates-per-ip-per-min 100000
      --max-room-npcs $(( NPCS > 5000 ? NPCS : 5000 )))
  fi
  "$2/tickcast-server" --listen "127.0.0.1:$PORT" --npcs "$NPCS" --view-radius "$3" \
    "${edge[@]}" >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.1
  done
  "$2/tickcast-bots" --url "ws://127.0.0.1:$PORT/ws" --bots "$BOTS" --duration "$DURATION" \
    --json "$out/report.json" >/dev/null 2>&1
  kill -INT "$server"
  wait "$server" 2>/dev/null || true
  python3 - "$1" "$3" "$out/report.json" <<'PY'
import json, sys
label, radius, path = sys.argv[1:]
r = json.load(open(path))
print(f"{label:4} radius {radius:>4}  bytes/bot/s {r['bytes_per_bot_per_s']:8.1f}  "
      f"naive {r['naive_bytes_per_bot_per_s']:9.1f}  snapshots/bot/s {r['snapshots_per_bot_per_s']:.2f}")
PY
}

for _ in $(seq "$ROUNDS"); do
  for r in $RADII; do
    run old "$1" "$r"
    run new "$2" "$r"
  done
done
