#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with an NVIDIA GPU, nvcc and gcc but none of the project's
# Debian libraries (the lent GPU machines): builds the CUDA kernels and their CPU references (kernels/ needs
# nothing else) with the kernel test and runs it; then, when tools/gpu_pack.sh prepared .gpu/ on a dev machine
# (carry it), runs the GPU training test (ten LoRA steps on the GPU against the CPU path, every architecture).
# Where the project's dependencies are installed, `cd build && ctest -L gpu` runs the same tests.
# Usage: bash tools/gpu_check.sh [ARCH (default: the device's, e.g. 90)]
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}
B=$(mktemp -d)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
for f in kernels/cuda/*.cu; do
  nvcc -std=c++17 -O2 -arch=sm_"$ARCH" -Ikernels -Werror all-warnings -c "$f" -o "$B/$(basename "$f").o" &
done
for f in kernels/cpu/rmsnorm.c kernels/cpu/rope.c kernels/cpu/activations.c kernels/cpu/adamw.c kernels/cpu/attention.c kernels/cpu/sample.c \
         tests/test_cuda_kernels.c; do
  gcc -std=c11 -O2 -fopenmp -Wall -Wextra -Werror -Ikernels -c "$f" -o "$B/$(basename "$f").o" &
done
wait
nvcc -o "$B/test_cuda_kernels" "$B"/*.o -lcublas -lcublasLt -lgomp -lm
"$B/test_cuda_kernels"
if [ -f .gpu/bundle.tar.xz ]; then
  G=$(mktemp -d); tar -C "$G" -xJf .gpu/bundle.tar.xz
  CUDA_LIB=$(dirname "$(find / -name 'libcublas.so.1*' -path '*cuda*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH="$G/lib:$CUDA_LIB:${LD_LIBRARY_PATH:-}"
  LLAMADUO_FIXTURES="$PWD/tests/fixtures" "$G/test_gpu_train"
  LLAMADUO_FIXTURES="$PWD/tests/fixtures" LLAMADUO_MODELS="$PWD/models" "$G/test_gpu_generate"
  # the trainer end to end: the same LoRA run on the GPU and on the CPU, their loss curves side by side
  D=configs/data
  for dev in cuda cpu; do
    "$G/llamaduo" train --model tests/fixtures/tiny/llama.gguf --train $D/dates.train.jsonl --val $D/dates.val.jsonl --epochs 1 \
      --lr 1e-2 --dropout 0.1 --tokens-per-step 256 --save-every 5 --device $dev --threads 8 --out "$G/run-$dev" 2>&1 | grep -E "^train: (on|done)|validation"
  done
  python3 - "$G/run-cuda/metrics.jsonl" "$G/run-cpu/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
la, lb = [r.get("loss", r.get("val_loss")) for r in a], [r.get("loss", r.get("val_loss")) for r in b]
worst = max(abs(x - y) / abs(y) for x, y in zip(la, lb))
print(f"llamaduo train --device cuda vs cpu: {len(la)} metric lines, loss {la[1]:.4f} -> {la[-1]:.4f} (cpu {lb[1]:.4f} -> {lb[-1]:.4f}), worst rel diff {worst:.2e}")
sys.exit(0 if worst < 1e-3 and len(la) == len(lb) else 1)
PY
else
  echo "gpu_check: no .gpu/bundle.tar.xz (tools/gpu_pack.sh on a dev machine, then carry .gpu): GPU training tests not run"
fi
