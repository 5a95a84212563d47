#!/usr/bin/env bash
# What `llamaduo proxy` adds to a request in forward mode: the fault server (tests/fault_server.py) as the service,
# called directly and through the proxy (capture on, every pair stored), open-loop at RATE requests/s for SECONDS
# each, in the same call on the same machine: p50 / p90 / p99 latency and the proxy's added share. Writes
# benchmarks/results/proxy.json. Usage: benchmarks/run_proxy_bench.sh [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-200}; SECONDS_EACH=${2:-20}
D=$(mktemp -d); trap 'kill $FS $PX 2>/dev/null || true; rm -rf "$D"' EXIT; PX=
python3 tests/fault_server.py --port-file "$D/port" --log "$D/fault.log" &
FS=$!
for _ in $(seq 100); do [ -f "$D/port" ] && break; sleep 0.05; done
SERVICE="http://127.0.0.1:$(cat "$D/port")/v1"
printf 'proxy:\n  port: 0\nservice:\n  base_url: %s\ncapture:\n  db: %s/capture.sqlite\n' "$SERVICE" "$D" >"$D/proxy.yaml"
build/llamaduo proxy "$D/proxy.yaml" 2>"$D/proxy.log" &
PX=$!
for _ in $(seq 100); do grep -q "proxy: on" "$D/proxy.log" && break; sleep 0.05; done
PROXY=$(grep -o "http://127.0.0.1:[0-9]*/v1" "$D/proxy.log" | head -1)
python3 benchmarks/bench_proxy.py "$SERVICE" 50 2 >/dev/null  # warm-up of both: connections, threads, caches
python3 benchmarks/bench_proxy.py "$PROXY" 50 2 >/dev/null
direct=$(python3 benchmarks/bench_proxy.py "$SERVICE" "$RATE" "$SECONDS_EACH")
proxied=$(python3 benchmarks/bench_proxy.py "$PROXY" "$RATE" "$SECONDS_EACH")
captured=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from captures').fetchone()[0])" "$D/capture.sqlite")
mkdir -p benchmarks/results
python3 - "$direct" "$proxied" "$RATE" "$SECONDS_EACH" "$captured" "$(git rev-parse --short HEAD)" <<'PY'
import json, sys
d, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {"rate": float(sys.argv[3]), "seconds": float(sys.argv[4]), "direct": d, "proxy": p, "captured": int(sys.argv[5]),
       "commit": sys.argv[6], "added_p50_ms": round(p["p50_ms"] - d["p50_ms"], 2), "added_p99_ms": round(p["p99_ms"] - d["p99_ms"], 2)}
json.dump(out, open("benchmarks/results/proxy.json", "w"), indent=1)
print(f"forward mode at {out['rate']:.0f} requests/s for {out['seconds']:.0f} s each (capture on: {out['captured']} pairs stored)")
print("| | sent | errors | p50 ms | p90 ms | p99 ms |\n| --- | --- | --- | --- | --- | --- |")
for name, r in (("fault server directly", d), ("through llamaduo proxy", p)):
    print(f"| {name} | {r['sent']} | {r['errors']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} |")
print(f"added by the proxy: p50 {out['added_p50_ms']} ms, p99 {out['added_p99_ms']} ms (ratio p50 {p['p50_ms'] / d['p50_ms']:.2f})")
PY
