#!/usr/bin/env bash
# Cluster load (issue 12): one redis-server and three release tickcast-server nodes on
# loopback, sharing the room directory, and BOTS tickcast-bots (default 1,500) that all
# matchmake at node 1 (`--matchmake`) and join wherever they are sent with their ticket.
# Prints the bots' report (bots per node included), the snapshot ratio and gap p99, and
# the directory's cost from Redis' own counters (`INFO commandstats`):
#   - at rest: Redis round trips and commands per second with the nodes idle;
#   - per join: round trips and commands during the run, divided by the bots (this
#     includes each join's reserve, its player count update, the release of its seat,
#     the leave at the end, and the heartbeats during the run).
#
# Usage: benches/cluster.sh
# Environment: BOTS (1500), PER_ROOM (50 seats per room), NPCS (16), TICK_RATE (30),
#              INPUT_RATE (inputs per bot per s; default: the tick rate),
#              DURATION (30s), RAMP (10s), REST (10: seconds measured at rest),
#              PORT (18281: nodes on PORT..PORT+2, Redis on PORT+10)
# Only ever targets 127.0.0.1; every run is bounded by DURATION and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

BOTS=${BOTS:-1500}
PER_ROOM=${PER_ROOM:-50}
NPCS=${NPCS:-16}
TICK_RATE=${TICK_RATE:-30}
DURATION=${DURATION:-30s}
RAMP=${RAMP:-10s}
REST=${REST:-10}
INPUT_RATE=${INPUT_RATE:-}
PORT=${PORT:-18281}
REDIS_PORT=$((PORT + 10))

command -v redis-server >/dev/null || { echo "redis-server not found: apt-get install -y redis-server" >&2; exit 1; }
cargo build --release --bins --quiet
bin=${CARGO_TARGET_DIR:-target}/release
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
out=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$out" >"$out/redis.log" 2>&1 &
pids+=($!)
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
for _ in $(seq 100); do rcli ping >/dev/null 2>&1 && break; sleep 0.1; done

head -c 48 /dev/urandom | base64 >"$out/secret"
for i in 0 1 2; do
  p=$((PORT + i))
  # Every bot connects from 127.0.0.1: lift the per-address caps (docs/HOSTING.md).
  "$bin"/tickcast-server --listen "127.0.0.1:$p" --npcs "$NPCS" \
    --tick-rate "$TICK_RATE" --max-players "$PER_ROOM" --max-connections $((BOTS + 100)) \
    --max-connections-per-ip 0 --matchmake-per-ip-per-sec 100000 \
    --room-creates-per-ip-per-min 100000 \
    --redis "redis://127.0.0.1:$REDIS_PORT/" --node-id "node-$((i + 1))" \
    --public-url "ws://127.0.0.1:$p" --cluster-secret-file "$out/secret" \
    >"$out/node-$i.log" 2>&1 &
  pids+=($!)
done
for i in 0 1 2; do
  for _ in $(seq 100); do
    [ "$(curl -s "http://127.0.0.1:$((PORT + i))/readyz" 2>/dev/null)" = ready ] && break
    sleep 0.1
  done
done

stats() { rcli info commandstats | tr -d '\r' | grep '^cmdstat_'; }
# Every command Redis ran, those inside the scripts included.
cmds() { stats | awk -F'[:=,]' '$1 != "cmdstat_config" && $1 != "cmdstat_info" {n += $3} END {print n + 0}'; }

sleep 2
rcli config resetstat >/dev/null
sleep "$REST"
rest_trips=$(stats | awk -F'[:=,]' '$1 ~ /^cmdstat_(evalsha|eval)$/ {n += $3} END {print n + 0}')
rest_cmds=$(cmds)
echo "# at rest, 3 nodes, ${REST} s:"
stats | grep -v -e cmdstat_config -e cmdstat_info | sed 's/^/#   /'

rcli config resetstat >/dev/null
"$bin"/tickcast-bots --url "ws://127.0.0.1:$PORT/ws" --bots "$BOTS" \
  --matchmake "http://127.0.0.1:$PORT" --duration "$DURATION" --ramp "$RAMP" \
  ${INPUT_RATE:+--input-rate "$INPUT_RATE"} \
  --json "$out/bots.json" 2>"$out/bots.err" || true
echo "# during the run:"
stats | grep -v -e cmdstat_config -e cmdstat_info | sed 's/^/#   /'
run_trips=$(stats | awk -F'[:=,]' '$1 ~ /^cmdstat_(evalsha|eval|zrem)$/ {n += $3} END {print n + 0}')
run_cmds=$(cmds)

python3 - "$out/bots.json" "$BOTS" "$TICK_RATE" "$REST" "$rest_trips" "$rest_cmds" \
  "$run_trips" "$run_cmds" <<'PY'
import json, sys
path, bots, rate, rest, rest_trips, rest_cmds, run_trips, run_cmds = sys.argv[1:]
bots, rate, rest = int(bots), float(rate), float(rest)
r = json.load(open(path))
print(f'bots            {bots} requested, {r["bots_connected"]} connected, {r["bots_failed"]} failed')
for node, n in sorted(r.get("per_node", {}).items()):
    print(f'  {node:28s} {n}')
ratio = r["snapshots_per_bot_per_s"] / rate
print(f'snapshots       {r["snapshots_per_bot_per_s"]:.2f} per bot per s of {rate:.0f} ({ratio:.2%}), {r["snapshots_missed"]} missed')
print(f'gap p99         {r["snapshot_gap_ms"]["p99"]:.1f} ms; rtt p99 {r["rtt_ms"]["p99"]:.1f} ms; connect p99 {r["connect_ms"]["p99"]:.1f} ms')
print(f'errors          {r["errors"]}')
print(f'redis at rest   {int(rest_trips) / rest:.2f} round trips/s, {int(rest_cmds) / rest:.2f} commands/s (3 nodes)')
print(f'redis per join  {int(run_trips) / bots:.2f} round trips, {int(run_cmds) / bots:.1f} commands (whole run / bots)')
ok = r["bots_connected"] == bots and ratio >= 0.99
print("ok" if ok else "NOT ok")
PY
