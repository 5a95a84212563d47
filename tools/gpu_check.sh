#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with an NVIDIA GPU, nvcc and gcc but none of the project's
# Debian libraries (the lent GPU machines): compiles every CUDA kernel for the card's architecture (warnings as
# errors); then, from the bundle tools/gpu_pack.sh prepared in .gpu/ on a dev machine (carry it), the kernel test
# (each kernel against its CPU reference), the GPU training and generation tests (fp32 and bf16 against the CPU path, every architecture) and
# `llamaduo train` on the GPU (fp32, bf16) against the CPU. With --bench, also the per-kernel rates against the
# card's ceilings (benchmarks/bench_kernels.c) and the GPU benchmark against HF transformers + PEFT on the same card
# (benchmarks/gpu_bench.py; minutes). Every step runs even when an earlier
# one fails (one device call should tell everything); the exit status counts the failed steps.
# Where the project's dependencies are installed, `cd build && ctest -L gpu` runs the same tests.
# Usage: bash tools/gpu_check.sh [--bench] [ARCH (default: the device's, e.g. 90)]
set -uo pipefail
cd "$(dirname "$0")/.."
BENCH=0
if [ "${1:-}" = "--bench" ]; then BENCH=1; shift; fi
ARCH=${1:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}
FAILED=()
step() {  # step NAME COMMAND...: runs it, remembers a failure
  local name=$1; shift
  echo "== $name"
  "$@" || { echo "== FAILED: $name"; FAILED+=("$name"); }
}
B=$(mktemp -d)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

compile_kernels() {  # every kernel for this card's architecture, as a build would (the bundle's are sm_80 + sm_90)
  local pids=() f
  for f in kernels/cuda/*.cu; do
    nvcc -std=c++17 -O2 -arch=sm_"$ARCH" -Ikernels -Werror all-warnings -c "$f" -o "$B/$(basename "$f").o" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || return 1; done
}
step "compile the kernels (sm_$ARCH, warnings are errors)" compile_kernels

# The trainer end to end: the same run on the GPU and on the CPU, loss curves compared.
same_losses() {  # same_losses GPU_METRICS CPU_METRICS LABEL BOUND
  python3 - "$@" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
la, lb = [r.get("loss", r.get("val_loss")) for r in a], [r.get("loss", r.get("val_loss")) for r in b]
worst = max(abs(x - y) / abs(y) for x, y in zip(la, lb))
print(f"llamaduo train --device cuda {sys.argv[3]} vs cpu: {len(la)} metric lines, loss {la[1]:.4f} -> {la[-1]:.4f} "
      f"(cpu {lb[1]:.4f} -> {lb[-1]:.4f}), worst rel diff {worst:.2e} (bound {sys.argv[4]})")
sys.exit(0 if worst < float(sys.argv[4]) and len(la) == len(lb) else 1)
PY
}
train_vs_cpu() {  # train_vs_cpu PRECISION BOUND: LoRA, the base in PRECISION
  local D=configs/data
  "$G/llamaduo" train --model tests/fixtures/tiny/llama.gguf --train $D/dates.train.jsonl --val $D/dates.val.jsonl --epochs 1 \
    --lr 1e-2 --dropout 0.1 --tokens-per-step 256 --save-every 5 --device cuda --precision "$1" --out "$G/run-$1" 2>&1 |
    grep -E "^train: (on|done)|validation|error"
  same_losses "$G/run-$1/metrics.jsonl" "$G/run-cpu/metrics.jsonl" "--precision $1" "$2"
}
full_vs_cpu() {  # full_vs_cpu PRECISION BOUND: full fine-tuning (every weight's gradient on the device)
  local A=(--model tests/fixtures/tiny/llama --method full --train configs/data/dates.train.jsonl --val
                 configs/data/dates.val.jsonl --epochs 1 --lr 1e-3 --tokens-per-step 256 --save-every 5)
  [ -f "$G/full-cpu/metrics.jsonl" ] || "$G/llamaduo" train "${A[@]}" --device cpu --threads 8 --out "$G/full-cpu" 2>&1 | grep -E "error"
  "$G/llamaduo" train "${A[@]}" --device cuda --precision "$1" --out "$G/full-$1" 2>&1 | grep -E "^train: (on|done)|error"
  same_losses "$G/full-$1/metrics.jsonl" "$G/full-cpu/metrics.jsonl" "--method full --precision $1" "$2"
}

# NCCL with one rank gives the run without NCCL exactly, and costs little: tokens/s of each (the same run, twice).
NCCL_A=(--model tests/fixtures/tiny/llama.gguf --train configs/data/dates.train.jsonl --epochs 3 --lr 1e-3 --tokens-per-step 1024
        --save-every 0 --device cuda)
nccl_one_rank() {
  local A=("${NCCL_A[@]}")
  "$G/llamaduo" train "${A[@]}" --out "$G/nccl-off" 2>/dev/null && "$G/llamaduo" train "${A[@]}" --gpus 1 --out "$G/nccl-on" 2>&1 |
    grep -E "data-parallel|error"
  python3 - "$G/nccl-off/metrics.jsonl" "$G/nccl-on/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
same = [x["loss"] for x in a] == [x["loss"] for x in b]
ta, tb = a[-1]["tokens_per_s"], b[-1]["tokens_per_s"]
print(f"--gpus 1 vs --device cuda: losses {'identical' if same else 'DIFFER'}; {tb:.0f} vs {ta:.0f} tokens/s ({(1 - tb / ta) * 100:+.1f}% cost)")
sys.exit(0 if same else 1)
PY
}
# A setting that must keep the result (within BOUND): its losses against nccl_one_rank's plain run, and its cost.
variant() {  # variant NAME BOUND FLAG...
  local name=$1 bound=$2; shift 2
  "$G/llamaduo" train "${NCCL_A[@]}" "$@" --out "$G/var-$name" 2>&1 | grep -E "backward pass|error"
  python3 - "$G/nccl-off/metrics.jsonl" "$G/var-$name/metrics.jsonl" "$*" "$bound" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
worst = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b))
ta, tb = a[-1]["tokens_per_s"], b[-1]["tokens_per_s"]
print(f"{sys.argv[3]} vs the plain run: losses within {worst:.2e} (bound {sys.argv[4]}); {tb:.0f} vs {ta:.0f} tokens/s "
      f"({(1 - tb / ta) * 100:+.1f}% cost)")
sys.exit(0 if worst <= float(sys.argv[4]) and len(a) == len(b) else 1)
PY
}

if [ -f .gpu/bundle.tar.xz ]; then
  G=$(mktemp -d); tar -C "$G" -xJf .gpu/bundle.tar.xz
  CUDA_LIB=$(dirname "$(find / -name 'libcublas.so.1*' -path '*cuda*' 2>/dev/null | head -1)")
  NCCL_LIB=$(dirname "$(find / -name 'libnccl.so.2' -not -path '/proc/*' 2>/dev/null | head -1)")  # the toolkit's or PyTorch's
  export LD_LIBRARY_PATH="$G/lib:$CUDA_LIB:$NCCL_LIB:${LD_LIBRARY_PATH:-}"
  export LLAMADUO_FIXTURES="$PWD/tests/fixtures" LLAMADUO_MODELS="$PWD/models"
  step "test_cuda_kernels" "$G/test_cuda_kernels"
  # per-kernel rates against the card's GEMM and copy ceilings (benchmarks/bench_kernels.c; seconds)
  if [ "$BENCH" = 1 ]; then step "per-kernel rates vs the card's ceilings" "$G/bench_kernels"; fi
  step "test_gpu_train" "$G/test_gpu_train"
  step "test_gpu_generate" "$G/test_gpu_generate"
  D=configs/data
  "$G/llamaduo" train --model tests/fixtures/tiny/llama.gguf --train $D/dates.train.jsonl --val $D/dates.val.jsonl --epochs 1 \
    --lr 1e-2 --dropout 0.1 --tokens-per-step 256 --save-every 5 --device cpu --threads 8 --out "$G/run-cpu" 2>&1 |
    grep -E "^train: (on|done)|validation|error"
  step "train on the GPU, fp32, vs the CPU" train_vs_cpu fp32 1e-3
  step "train on the GPU, bf16 base, vs the CPU" train_vs_cpu bf16 5e-2
  step "full fine-tuning on the GPU, fp32, vs the CPU" full_vs_cpu fp32 1e-3
  step "full fine-tuning on the GPU, bf16 copies of fp32 masters, vs the CPU" full_vs_cpu bf16 5e-2
  step "train --gpus 1 (NCCL, one rank) vs no NCCL: the same, and its cost" nccl_one_rank
  step "train --gpus 1 --bucket-mb 0 (a bucket a layer, summed during the backward pass) vs no NCCL" variant overlap 0 --gpus 1 --bucket-mb 0
  step "train --activation-checkpointing (bf16: the recomputed block is not rounded) vs without" variant ckpt 5e-2 --activation-checkpointing
  if [ "$BENCH" = 1 ]; then step "GPU benchmark vs HF + PEFT" python3 benchmarks/gpu_bench.py "$G/bench_gpu" all; fi
else
  echo "gpu_check: no .gpu/bundle.tar.xz (tools/gpu_pack.sh on a dev machine, then carry .gpu): the GPU tests not run"
  FAILED+=("no bundle: the GPU tests did not run")
fi
if [ ${#FAILED[@]} -gt 0 ]; then
  printf 'gpu_check: %d step(s) failed:\n' "${#FAILED[@]}"; printf '  %s\n' "${FAILED[@]}"
  exit 1
fi
echo "gpu_check: every step passed"
