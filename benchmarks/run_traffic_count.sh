#!/usr/bin/env bash
# What a GPU step costs in launches and device memory, where there is no GPU: bench_gpu_emu --count (the CUDA
# emulator's traffic counter, tests/cuda_emu/emu_count.h) on the packaged SmolLM2's real shapes — one LoRA r16
# training step (seq 64 x batch 2) and one decode step (8 sequences at about 76 tokens of context), with bf16 and
# fp32 base weights — each against the least traffic such a step could have. Prints each per-kernel table and
# writes the JSON lines to benchmarks/results/traffic.COMMIT.jsonl. Takes about 10 minutes on 2 cores.
# Usage: benchmarks/run_traffic_count.sh [MODEL] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}; B=${2:-build}
cmake --build "$B" --target bench_gpu_emu -j"$(nproc)" >/dev/null
out=benchmarks/results/traffic.$(git rev-parse --short HEAD).jsonl; : >"$out"
for p in bf16 fp32; do
  "$B/benchmarks/bench_gpu_emu" "$MODEL" train 64 2 --steps 1 --warmup 1 --count 1 --precision "$p" | tee /dev/stderr | grep '"count"' >>"$out"
  "$B/benchmarks/bench_gpu_emu" "$MODEL" generate 8 64 16 --count 1 --precision "$p" | tee /dev/stderr | grep '"count"' >>"$out"
done
echo "wrote $out"
