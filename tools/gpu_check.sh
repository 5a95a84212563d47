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
for f in kernels/cpu/rmsnorm.c kernels/cpu/rope.c kernels/cpu/activations.c kernels/cpu/adamw.c kernels/cpu/attention.c \
         tests/test_cuda_kernels.c; do
  gcc -std=c11 -O2 -fopenmp -Wall -Wextra -Werror -Ikernels -c "$f" -o "$B/$(basename "$f").o" &
done
wait
nvcc -o "$B/test_cuda_kernels" "$B"/*.o -lcublas -lgomp -lm
"$B/test_cuda_kernels"
if [ -x .gpu/test_gpu_train ]; then
  CUDA_LIB=$(dirname "$(find / -name 'libcublas.so.1*' -path '*cuda*' 2>/dev/null | head -1)")
  LD_LIBRARY_PATH="$PWD/.gpu/lib:$CUDA_LIB:${LD_LIBRARY_PATH:-}" LLAMADUO_FIXTURES="$PWD/tests/fixtures" .gpu/test_gpu_train
else
  echo "gpu_check: .gpu/test_gpu_train not here (tools/gpu_pack.sh on a dev machine, then carry .gpu): GPU training test not run"
fi
