#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with an NVIDIA GPU, nvcc and gcc but none of the project's
# Debian libraries (the lent GPU machines): builds the CUDA kernels and their CPU references (kernels/ needs
# nothing else) with the gpu-labelled test, runs it, and prints its summary. Where the project's dependencies are
# installed, `cd build && ctest -L gpu` runs the same test.
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
