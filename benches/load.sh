#!/usr/bin/env bash
# Load benchmark: starts a release tickcast-server on loopback, runs tickcast-bots swarms of
# increasing size against it (a fresh server per size), and prints one row per size:
#
#   bots, snapshots per bot per s, snapshot gap p99, rtt p99, server CPU seconds per second,
#   server CPU microseconds per player per tick, server peak RSS, bytes per bot per s, ok
#
# "ok" means every bot connected, >= 99% of the expected snapshots arrived, and the
# snapshot gap p99 stayed under two tick intervals.
#
# Usage: benches/load.sh [SIZES...]            e.g. benches/load.sh 100 200 500 1000
# Environment: ROOMS (1), NPCS (100), TICK_RATE (30), DURATION (15s), RAMP (3s),
#              PORT (18181), BEHAVIOUR (random-walk), VIEW_RADIUS (0),
#              TLS (0; 1 serves wss:// with a fresh self-signed certificate made by openssl)
# Only ever targets 127.0.0.1; every run is bounded by DURATION and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(50 100 200 500 1000)
ROOMS=${ROOMS:-1}
NPCS=${NPCS:-100}
TICK_RATE=${TICK_RATE:-30}
DURATION=${DURATION:-15s}
RAMP=${RAMP:-3s}
PORT=${PORT:-18181}
BEHAVIOUR=${BEHAVIOUR:-random-walk}
VIEW_RADIUS=${VIEW_RADIUS:-0}
TLS=${TLS:-0}

cargo build --release --bins --quiet
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
out=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$out"' EXIT

server_tls=()
bots_url="ws://127.0.0.1:$PORT/ws"
bots_tls=()
if [ "$TLS" = 1 ]; then
  # Not a CA certificate: rustls refuses a CA certificate as the server's own.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null
  server_tls=(--tls-cert "$out/cert.pem" --tls-key "$out/key.pem")
  bots_url="wss://localhost:$PORT/ws"
  bots_tls=(--ca-cert "$out/cert.pem")
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
clk=$(getconf CLK_TCK)

printf '# rooms=%s npcs=%s tick_rate=%s duration=%s ramp=%s behaviour=%s view_radius=%s tls=%s\n' \
  "$ROOMS" "$NPCS" "$TICK_RATE" "$DURATION" "$RAMP" "$BEHAVIOUR" "$VIEW_RADIUS" "$TLS"
printf '%6s %10s %9s %9s %9s %12s %8s %11s %4s\n' \
  bots snap/s gap_p99 rtt_p99 cpu_s/s us/plyr/tick rss_MB KiB/bot/s ok
for n in "${SIZES[@]}"; do
  per_room=$(( (n + ROOMS - 1) / ROOMS + 8 ))
  # Every bot connects from 127.0.0.1: lift the per-address caps (docs/HOSTING.md, Security).
  ./target/release/tickcast-server --listen "127.0.0.1:$PORT" --npcs "$NPCS" --tick-rate "$TICK_RATE" \
    --max-players "$per_room" --max-connections $(( n + 100 )) --view-radius "$VIEW_RADIUS" \
    --max-room-players $(( per_room > 1024 ? per_room : 1024 )) \
    --max-room-npcs $(( NPCS > 5000 ? NPCS : 5000 )) \
    --max-connections-per-ip 0 --room-creates-per-ip-per-min $(( ROOMS + 100 )) \
    "${server_tls[@]}" >"$out/server-$n.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  cpu0=$(cpu_ticks "$server")
  t0=$(date +%s.%N)
  ./target/release/tickcast-bots --url "$bots_url" "${bots_tls[@]}" --bots "$n" --rooms "$ROOMS" \
    --duration "$DURATION" --ramp "$RAMP" --behaviour "$BEHAVIOUR" --json "$out/bots-$n.json" \
    >/dev/null 2>"$out/bots-$n.err" || true
  t1=$(date +%s.%N)
  cpu1=$(cpu_ticks "$server")
  rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
  kill -INT "$server"
  wait "$server" || true
  python3 - "$out/bots-$n.json" "$n" "$cpu0" "$cpu1" "$clk" "$t0" "$t1" "$rss_kb" "$TICK_RATE" <<'PY'
import json, sys
path, n, cpu0, cpu1, clk, t0, t1, rss_kb, rate = sys.argv[1:]
n, rate = int(n), float(rate)
r = json.load(open(path))
wall = float(t1) - float(t0)
cpu = (float(cpu1) - float(cpu0)) / float(clk)
ticks = wall * rate
per_player_tick_us = cpu / (max(r["bots_connected"], 1) * ticks) * 1e6
ok = (r["bots_connected"] == n and r["snapshots_per_bot_per_s"] >= 0.99 * rate
      and r["snapshot_gap_ms"]["p99"] < 2 * 1000 / rate)
print(f'{n:6d} {r["snapshots_per_bot_per_s"]:10.2f} {r["snapshot_gap_ms"]["p99"]:9.1f} '
      f'{r["rtt_ms"]["p99"]:9.1f} {cpu / wall:9.2f} {per_player_tick_us:12.2f} '
      f'{int(rss_kb) / 1024:8.1f} {r["bytes_per_bot_per_s"] / 1024:11.1f} {"yes" if ok else "NO":>4}')
PY
done
