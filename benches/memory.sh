#!/usr/bin/env bash
# Memory per connected player: starts a release tickcast-server on loopback, reads its
# resident set size (VmRSS) idle, connects N bots (a separate tickcast-bots process) and
# reads it again once the server counts N players, then prints
#
#   players, idle RSS, loaded RSS (median of 5 samples a second apart), KiB per player
#
# KiB per player = (loaded - idle) / N: everything a player costs the server, its socket
# buffers in user space, its tasks, its snapshot baseline and its share of the room.
# The kernel's socket buffers are not in the process's RSS.
#
# Usage: benches/memory.sh [N...]                 e.g. benches/memory.sh 2000
# Environment: BIN (target/release), ROOMS (16), NPCS (64), TICK_RATE (30), PORT (18282),
#              SERVER_ARGS (extra server flags), BOTS_ARGS (extra bot flags)
# Only ever targets 127.0.0.1; every run stops by itself (the bots run for a bounded time).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(2000)
BIN=${BIN:-target/release}
ROOMS=${ROOMS:-16}
NPCS=${NPCS:-64}
TICK_RATE=${TICK_RATE:-30}
PORT=${PORT:-18282}
read -r -a server_args <<<"${SERVER_ARGS:-}"
read -r -a bots_args <<<"${BOTS_ARGS:-}"

if [ "$BIN" = target/release ]; then cargo build --release --bins --quiet; fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
out=$(mktemp -d)
trap 'kill "${bots:-0}" "${server:-0}" 2>/dev/null || true; rm -rf "$out"' EXIT

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
players() {
  { exec 3<>"/dev/tcp/127.0.0.1/$PORT" &&
    printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 &&
    awk '/^tickcast_players(_total)? / {print $2} /^players / {print $2}' <&3; } 2>/dev/null |
    head -n 1
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '# bin=%s rooms=%s npcs=%s tick_rate=%s\n' "$BIN" "$ROOMS" "$NPCS" "$TICK_RATE"
printf '%8s %10s %10s %12s\n' players idle_MiB loaded_MiB KiB/player
for n in "${SIZES[@]}"; do
  per_room=$(( (n + ROOMS - 1) / ROOMS + 8 ))
  "$BIN/tickcast-server" --listen "127.0.0.1:$PORT" --npcs "$NPCS" --tick-rate "$TICK_RATE" \
    --max-players "$per_room" --max-connections $(( n + 100 )) "${server_args[@]}" \
    >"$out/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  sleep 1
  idle=$(rss_kb "$server")
  "$BIN/tickcast-bots" --url "ws://127.0.0.1:$PORT/ws" --bots "$n" --rooms "$ROOMS" \
    --duration 60s --ramp 10s "${bots_args[@]}" >"$out/bots.log" 2>&1 &
  bots=$!
  for _ in $(seq 300); do
    [ "$(players)" = "$n" ] && break
    sleep 0.2
  done
  seen=$(players)
  samples=()
  for _ in 1 2 3 4 5; do sleep 1; samples+=("$(rss_kb "$server")"); done
  loaded=$(printf '%s\n' "${samples[@]}" | median)
  kill "$bots" 2>/dev/null || true
  wait "$bots" 2>/dev/null || true
  kill -INT "$server"
  wait "$server" || true
  if [ "$seen" != "$n" ]; then
    echo "only ${seen:-?} of $n players connected; see the bots' log:" >&2
    tail -n 5 "$out/bots.log" >&2
  fi
  awk -v n="$n" -v i="$idle" -v l="$loaded" \
    'BEGIN { printf "%8d %10.1f %10.1f %12.1f\n", n, i / 1024, l / 1024, (l - i) / n }'
done
