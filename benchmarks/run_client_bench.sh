#!/usr/bin/env bash
# Service-LLM client throughput against the local fault server with 200 ms latency: requests per window at
# concurrency 64 against the configured limit (the window is shortened from 60 s so a run takes seconds; the
# limit scales with it), and the client's CPU time per request.
# Usage: benchmarks/run_client_bench.sh [REQUESTS] [CONCURRENCY] [LIMIT] [WINDOW_S]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-900}; C=${2:-64}; R=${3:-300}; W=${4:-2}
cmake --build build --target bench_client -j"$(nproc)" >/dev/null
T=$(mktemp -d); trap 'kill $pid 2>/dev/null; rm -rf "$T"' EXIT
python3 tests/fault_server.py --port-file "$T/port" --log "$T/log" --latency 0.2 & pid=$!
for _ in $(seq 100); do [ -f "$T/port" ] && break; sleep 0.1; done
build/benchmarks/bench_client "http://127.0.0.1:$(cat "$T/port")/v1" --requests "$N" --concurrency "$C" --rpm "$R" --window "$W"
python3 - "$T/log" "$R" "$W" <<'PY'
import json, sys
t = sorted(json.loads(l)["t"] for l in open(sys.argv[1]))
lim, w = int(sys.argv[2]), float(sys.argv[3])
busiest = max(sum(1 for u in t if s <= u < s + w) for s in t)
print(f"server side: {len(t)} requests, busiest {w:g}s window held {busiest} (limit {lim})")
PY
