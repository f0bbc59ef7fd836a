#!/usr/bin/env bash
# Autobahn (RFC 6455) server cases against examples/echo.rs, which reads frames with the
# same code as game connections. Runs every case but the compression ones (12.*, 13.*:
# tickcast negotiates no extension) with kosoku, and fails listing every case whose
# behaviour is not OK, NON-STRICT or INFORMATIONAL. docs/AUTOBAHN.md has the results.
#
#   bash .ci/autobahn.sh [REPORT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
out="${1:-$CARGO_TARGET_DIR/autobahn}"

# The runner: on PATH, or installed now from PyPI into python3's scripts folder (which
# need not be on PATH, e.g. under pyenv before a rehash).
kosoku="$(command -v kosoku || true)"
if [ -z "$kosoku" ]; then
    python3 -m pip install --quiet kosoku
    kosoku="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/kosoku"
fi
# The debug build by default: CI has just built the server for the tests, so this costs
# seconds, where a release build would cost minutes; AUTOBAHN_PROFILE=release for speed.
profile="${AUTOBAHN_PROFILE:-debug}"
if [ "$profile" = release ]; then
    cargo build --locked --release --example echo
else
    cargo build --locked --example echo
fi

# A free loopback port: bind port 0, read what the kernel gave, let it go.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$CARGO_TARGET_DIR/$profile/examples/echo" "127.0.0.1:$port" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
# Wait (at most 10 s) for the port to accept.
for _ in $(seq 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then
        break
    fi
    sleep 0.1
done

rm -rf "$out"
start=$(date +%s)
"$kosoku" -m fuzzingclient -x '12.*' -x '13.*' -p 2 -o "$out" "127.0.0.1:$port" >"$out.log" 2>&1 || {
    echo "autobahn: kosoku failed; its output:" >&2
    tail -n 30 "$out.log" >&2
    exit 1
}
echo "autobahn: cases ran in $(( $(date +%s) - start )) s; report in $out/index.html"

python3 - "$out/index.json" <<'PY'
import json, sys
from collections import Counter, defaultdict

with open(sys.argv[1]) as f:
    index = json.load(f)
ok = {"OK", "NON-STRICT", "INFORMATIONAL"}
bad, groups = [], defaultdict(Counter)
for agent, cases in index.items():
    for case, result in cases.items():
        behaviour = result["behavior"]
        groups[case.split(".")[0]][behaviour] += 1
        if behaviour not in ok:
            bad.append(f"{case}: {behaviour} (close: {result.get('behaviorClose')})")
key = lambda g: int(g)
print("| Group | OK | NON-STRICT | INFORMATIONAL | FAILED | other |")
print("| --- | --- | --- | --- | --- | --- |")
for g in sorted(groups, key=key):
    c = groups[g]
    other = sum(n for b, n in c.items() if b not in ok | {"FAILED"})
    print(f"| {g}.* | {c['OK']} | {c['NON-STRICT']} | {c['INFORMATIONAL']} | {c['FAILED']} | {other} |")
total = sum(sum(c.values()) for c in groups.values())
print(f"autobahn: {total} cases, {len(bad)} not OK, NON-STRICT or INFORMATIONAL")
if bad:
    print("\n".join(bad))
    sys.exit(1)
PY
