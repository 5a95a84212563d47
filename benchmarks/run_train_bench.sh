#!/usr/bin/env bash
# CPU LoRA training throughput: llamaduo train against HF transformers + PEFT on torch CPU, same model (the
# packaged SmolLM2 GGUF), same data (the date task), same threads, LoRA r=8 alpha=16 on every linear layer,
# AdamW, steps of 512 tokens. Prints both and the ratio. Needs torch, transformers, peft, gguf (reference only).
# Usage: benchmarks/run_train_bench.sh [MODEL] [THREADS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}; T=${2:-$(nproc)}; STEPS=${3:-12}
DATA=configs/data/dates.train.jsonl
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
cmake --build build --target llamaduo -j"$(nproc)" >/dev/null
head -n $((STEPS * 9)) "$DATA" >"$OUT/data.jsonl"  # ~60 tokens a record: about STEPS steps of 512 tokens
build/llamaduo train --model "$MODEL" --train "$OUT/data.jsonl" --out "$OUT/run" --epochs 1 --rank 8 --alpha 16 \
  --tokens-per-step 512 --dropout 0 --threads "$T" --save-every 0 2>/dev/null
ours=$(python3 - "$OUT/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
# steady state: tokens and time between the 3rd step and the last
t = [r["tokens"] / r["tokens_per_s"] for r in rows]
tps = (rows[-1]["tokens"] - rows[1]["tokens"]) / (t[-1] - t[1])
print(json.dumps({"engine": "llamaduo", "steps": len(rows) - 2, "tokens_per_s": round(tps, 1)}))
PY
)
ref=$(python3 benchmarks/bench_train_hf.py "$MODEL" "$OUT/data.jsonl" "$T" 512 "$STEPS" 2>/dev/null | tail -1)
echo "$ours"; echo "$ref"
python3 -c "import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print(f'CPU LoRA training, {sys.argv[3]} threads: llamaduo {a[\"tokens_per_s\"]} tok/s, HF+PEFT {b[\"tokens_per_s\"]} tok/s, ratio {a[\"tokens_per_s\"]/b[\"tokens_per_s\"]:.2f}')" "$ours" "$ref" "$T"
