#!/usr/bin/env bash
# llamaduo vs llama.cpp on the same GGUF, same threads, same workload; prints both JSON lines and the
# ratios. Needs tools/setup.sh and `pip install llama-cpp-python` (the reference, never a runtime dependency).
# Usage: benchmarks/run_engine_bench.sh [MODEL] [THREADS] [BATCH] [PROMPT_TOKENS] [DECODE_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}; T=${2:-$(nproc)}; B=${3:-16}; P=${4:-128}; D=${5:-32}
cmake --build build --target bench_engine -j"$(nproc)" >/dev/null
ours=$(build/benchmarks/bench_engine "$MODEL" --threads "$T" --batch "$B" --prompt-tokens "$P" --decode-tokens "$D")
ref=$(python3 benchmarks/bench_llamacpp.py "$MODEL" "$T" "$B" "$P" "$D" 2>/dev/null)
echo "$ours"; echo "$ref"
python3 - "$ours" "$ref" "$MODEL" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"\n{sys.argv[3]}, {a['threads']} threads, prompts of {a['prompt_tokens']} tokens, {a['decode_tokens']} decode steps")
print(f"| metric | llamaduo tok/s | llama.cpp tok/s | ratio |\n| --- | --- | --- | --- |")
for k, name in [("prefill_tps_b1", "prefill, batch 1"), ("decode_tps_b1", "decode, batch 1"),
                ("prefill_tps_bn", f"prefill, {a['batch']} sequences"), ("decode_tps_bn", f"decode, batch {a['batch']}")]:
    print(f"| {name} | {a[k]:.1f} | {b[k]:.1f} | {a[k] / b[k]:.2f} |")
PY
