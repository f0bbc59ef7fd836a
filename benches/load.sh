#!/usr/bin/env bash
# Load benchmark: starts a release tickcast-server on loopback, runs tickcast-bots swarms of
# increasing size against it (a fresh server per size), and prints one row per size:
#
#   bots, snapshots per bot per s, snapshot gap p99, rtt p99, server CPU seconds per second,
#   server CPU microseconds per player per tick, server peak RSS, bytes per bot per s,
#   input->ack p99, ok, and with PERF=1 context switches and syscalls per player per tick
#
# A "player tick" is one snapshot the server produced for one player (sent or skipped, from
# its /metrics), so the ramp, when fewer players are connected, is not counted as if every
# bot were there.
#
# "ok" means every bot connected, >= 99% of the expected snapshots arrived, and the
# snapshot gap p99 stayed under two tick intervals.
#
# Usage: benches/load.sh [SIZES...]            e.g. benches/load.sh 100 200 500 1000
# Environment: ROOMS (1), NPCS (100), TICK_RATE (30), DURATION (15s), RAMP (3s),
#              PORT (18181), BEHAVIOUR (random-walk), VIEW_RADIUS (0),
#              TLS (0; 1 serves wss:// with a fresh self-signed certificate made by openssl),
#              VERIFY (0.02: the bots' --verify-fraction),
#              SERVER_CPU / BOTS_CPU (cpu lists for taskset, e.g. 0 and 1: the issue 11 set-up
#              pins the server to one core and the bots to the other; unset: no pinning),
#              SERVER_BIN / BOTS_BIN (binaries to run instead of ./target/release's, for A/B
#              runs of an old and a new build), PERF (1: `perf stat` the server during the
#              swarm and add context switches and syscalls per player per tick)
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
VERIFY=${VERIFY:-0.02}

SERVER_BIN=${SERVER_BIN:-./target/release/tickcast-server}
BOTS_BIN=${BOTS_BIN:-./target/release/tickcast-bots}
PERF=${PERF:-0}
server_pin=()
bots_pin=()
[ -z "${SERVER_CPU:-}" ] || server_pin=(taskset -c "$SERVER_CPU")
[ -z "${BOTS_CPU:-}" ] || bots_pin=(taskset -c "$BOTS_CPU")

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

printf '# rooms=%s npcs=%s tick_rate=%s duration=%s ramp=%s behaviour=%s view_radius=%s tls=%s server=%s bots=%s\n' \
  "$ROOMS" "$NPCS" "$TICK_RATE" "$DURATION" "$RAMP" "$BEHAVIOUR" "$VIEW_RADIUS" "$TLS" "$SERVER_BIN" "$BOTS_BIN"
printf '%6s %10s %9s %9s %9s %12s %8s %11s %8s %4s %9s %9s %11s\n' \
  bots snap/s gap_p99 rtt_p99 cpu_s/s us/plyr/tick rss_MB KiB/bot/s ack_p99 ok cs/pl/tk sys/pl/tk bots_us/tick
for n in "${SIZES[@]}"; do
  per_room=$(( (n + ROOMS - 1) / ROOMS + 8 ))
  # Every bot connects from 127.0.0.1: lift the per-address caps (docs/HOSTING.md, Security).
  "${server_pin[@]}" "$SERVER_BIN" --listen "127.0.0.1:$PORT" --npcs "$NPCS" --tick-rate "$TICK_RATE" \
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
  perf_pid=
  if [ "$PERF" = 1 ]; then
    perf stat -x, -e context-switches,raw_syscalls:sys_enter -p "$server" -o "$out/perf-$n.csv" &
    perf_pid=$!
  fi
  cpu0=$(cpu_ticks "$server")
  t0=$(date +%s.%N)
  # Run through python to read the bots' own CPU time (user + system) when they exit.
  python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{r.ru_utime + r.ru_stime}\n")' "$out/bots-cpu-$n.txt" \
    "${bots_pin[@]}" "$BOTS_BIN" --url "$bots_url" "${bots_tls[@]}" --bots "$n" --rooms "$ROOMS" \
    --duration "$DURATION" --ramp "$RAMP" --behaviour "$BEHAVIOUR" --json "$out/bots-$n.json" \
    --verify-fraction "$VERIFY" >/dev/null 2>"$out/bots-$n.err" || true
  t1=$(date +%s.%N)
  cpu1=$(cpu_ticks "$server")
  metrics_url=$(echo "$bots_url" | sed -e 's#^ws://#http://#' -e 's#^wss://#https://#' -e 's#/ws$#/metrics#')
  curl -sk "$metrics_url" >"$out/metrics-$n.txt" 2>/dev/null || true
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
  fi
  rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
  kill -INT "$server"
  wait "$server" || true
  python3 - "$out/bots-$n.json" "$n" "$cpu0" "$cpu1" "$clk" "$t0" "$t1" "$rss_kb" "$TICK_RATE" "$out/perf-$n.csv" "$out/metrics-$n.txt" "$out/bots-cpu-$n.txt" <<'PY'
import json, os, sys
path, n, cpu0, cpu1, clk, t0, t1, rss_kb, rate, perf, metrics, bots_cpu = sys.argv[1:]
n, rate = int(n), float(rate)
r = json.load(open(path))
wall = float(t1) - float(t0)
cpu = (float(cpu1) - float(cpu0)) / float(clk)
ticks = wall * rate
player_ticks = max(r["bots_connected"], 1) * ticks
offered = 0.0
if os.path.exists(metrics):
    for line in open(metrics):
        f = line.split()
        if len(f) == 2 and f[0] in ("tickcast_snapshots_sent_total", "tickcast_snapshots_skipped_total"):
            offered += float(f[1])
if offered > 0:
    player_ticks = offered
per_player_tick_us = cpu / player_ticks * 1e6
counts = {}
if os.path.exists(perf):
    for line in open(perf):
        f = line.strip().split(",")
        if len(f) > 2 and f[0].replace(".", "").isdigit():
            counts[f[2]] = float(f[0])
def per(event):
    return f'{counts[event] / player_ticks:9.2f}' if event in counts else f'{"-":>9}'
ack = r.get("input_ack_ms", {}).get("p99", float("nan"))
bots_us = float(open(bots_cpu).read()) / player_ticks * 1e6 if os.path.exists(bots_cpu) else float("nan")
ok = (r["bots_connected"] == n and r["snapshots_per_bot_per_s"] >= 0.99 * rate
      and r["snapshot_gap_ms"]["p99"] < 2 * 1000 / rate)
print(f'{n:6d} {r["snapshots_per_bot_per_s"]:10.2f} {r["snapshot_gap_ms"]["p99"]:9.1f} '
      f'{r["rtt_ms"]["p99"]:9.1f} {cpu / wall:9.2f} {per_player_tick_us:12.2f} '
      f'{int(rss_kb) / 1024:8.1f} {r["bytes_per_bot_per_s"] / 1024:11.1f} {ack:8.1f} '
      f'{"yes" if ok else "NO":>4} {per("context-switches")} {per("raw_syscalls:sys_enter")} '
      f'{bots_us:11.2f}')
PY
done
