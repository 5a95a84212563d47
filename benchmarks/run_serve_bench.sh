#!/usr/bin/env bash
# `llamaduo serve` vs llama.cpp's server (llama-cpp-python[server], the reference: never a runtime dependency)
# on the same GGUF and threads: aggregate output tokens/s at 1, 8 and 32 concurrent clients, one server at a
# time, and the ratios. Needs tools/setup.sh and `pip install 'llama-cpp-python[server]'`.
# Usage: benchmarks/run_serve_bench.sh [MODEL] [THREADS] [MAX_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}; T=${2:-$(nproc)}; N=${3:-64}
PORT_A=18431; PORT_B=18432; NAME=bench
wait_up() { for _ in $(seq 600); do curl -sf "http://127.0.0.1:$1/v1/models" >/dev/null && return 0; sleep 0.1; done; echo "server on $1 did not start" >&2; exit 1; }

build/llamaduo serve --model "$MODEL" --name "$NAME" --port $PORT_A --threads "$T" --parallel 32 --ctx 512 2>/tmp/bench-serve-a.log &
A=$!; trap 'kill $A $B 2>/dev/null || true' EXIT; B=
wait_up $PORT_A
ours=$(python3 benchmarks/bench_serve.py "http://127.0.0.1:$PORT_A/v1" "$NAME" "$N" 1 8 32)
kill -TERM $A; wait $A || true

python3 -m llama_cpp.server --model "$MODEL" --model_alias "$NAME" --port $PORT_B --n_threads "$T" --n_ctx 2048 >/tmp/bench-serve-b.log 2>&1 &
B=$!
wait_up $PORT_B
ref=$(python3 benchmarks/bench_serve.py "http://127.0.0.1:$PORT_B/v1" "$NAME" "$N" 1 8 32)
kill $B; wait $B 2>/dev/null || true

echo "llamaduo  $ours"; echo "llama.cpp $ref"
python3 - "$ours" "$ref" "$MODEL" "$T" "$N" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"\n{sys.argv[3]}, {sys.argv[4]} threads, greedy completions of up to {sys.argv[5]} tokens")
print("| clients | llamaduo tok/s | llama.cpp server tok/s | ratio | llamaduo p50 / p90 ms | llama.cpp p50 / p90 ms |")
print("| --- | --- | --- | --- | --- | --- |")
for k in a:
    print(f"| {k} | {a[k]['tps']} | {b[k]['tps']} | {a[k]['tps'] / b[k]['tps']:.2f} | {a[k]['p50_ms']} / {a[k]['p90_ms']} | "
          f"{b[k]['p50_ms']} / {b[k]['p90_ms']} |")
PY
