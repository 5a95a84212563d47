#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for a GPU machine that has the CUDA toolkit but none of the project's Debian
# libraries (the lent GPU machines): the gpu-labelled tests linked with OpenBLAS, PCRE2 and utf8proc statically,
# plus the few shared libraries they still need. Run here after tools/setup.sh (needs nvcc), then carry .gpu
# to the GPU machine and run tools/gpu_check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target test_cuda_kernels test_gpu_train >/dev/null
rm -rf .gpu && mkdir -p .gpu/lib
CUDA_LIB=$(dirname "$(find / -name 'libcublas.so.1*' -path '*cuda*' 2>/dev/null | head -1)")
for t in test_cuda_kernels test_gpu_train; do
  gcc -o .gpu/$t build/tests/CMakeFiles/$t.dir/$t.c.o build/tests/CMakeFiles/$t.dir/test_util.c.o build/libllamaduo_core.a \
      build/libllamaduo_cuda.a -Wl,-Bstatic -lopenblas -lpcre2-8 -lutf8proc -Wl,-Bdynamic -lcjson -lgfortran -fopenmp -lm \
      -L"$CUDA_LIB" -L/usr/local/lib -lcudart -lcublas -lstdc++ -lpthread
done
for l in libcjson.so.1 libgfortran.so.5 libquadmath.so.0 libgomp.so.1; do cp -L "/lib/x86_64-linux-gnu/$l" .gpu/lib/; done
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
du -sh .gpu
