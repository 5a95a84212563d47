#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for a GPU machine that has the CUDA toolkit but none of the project's Debian
# libraries (the lent GPU machines): the gpu-labelled tests and the GPU benchmarks linked with OpenBLAS, PCRE2 and
# utf8proc statically (the kernels' CPU references multiply with OpenBLAS),
# plus the few shared libraries they still need. Run here after tools/setup.sh (needs nvcc), then carry .gpu
# to the GPU machine and run tools/gpu_check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target test_cuda_kernels test_gpu_train test_gpu_generate llamaduo bench_gpu bench_kernels >/dev/null
rm -rf .gpu && mkdir -p .gpu/stage/lib
CUDA_LIB=$(dirname "$(find / -name 'libcublas.so.1*' -path '*cuda*' 2>/dev/null | head -1)")
STATIC=(-Wl,-Bstatic -lopenblas -lpcre2-8 -lutf8proc -Wl,-Bdynamic)
CUDA=(-L"$CUDA_LIB" -L/usr/local/lib -lcudart -lcublas -lcublasLt -lnccl -lstdc++ -lpthread)
MPI=($(mpicc --showme:link))  # engine/dist.c; MPI starts only with more than one rank
for t in test_cuda_kernels test_gpu_train test_gpu_generate; do
  gcc -o .gpu/stage/$t build/tests/CMakeFiles/$t.dir/$t.c.o build/tests/CMakeFiles/$t.dir/test_util.c.o build/libllamaduo_core.a \
      build/libllamaduo_cuda.a build/libllamaduo_train_options.a build/libllamaduo_base.a "${STATIC[@]}" -lcjson -lgfortran -fopenmp -lm "${MPI[@]}" "${CUDA[@]}"
done
gcc -o .gpu/stage/bench_gpu build/benchmarks/CMakeFiles/bench_gpu.dir/bench_gpu.c.o build/libllamaduo_core.a build/libllamaduo_cuda.a \
    build/libllamaduo_train_options.a build/libllamaduo_base.a "${STATIC[@]}" -lcjson -lgfortran -fopenmp -lm "${MPI[@]}" "${CUDA[@]}"
gcc -o .gpu/stage/bench_kernels build/benchmarks/CMakeFiles/bench_kernels.dir/bench_kernels.c.o build/libllamaduo_core.a \
    build/libllamaduo_cuda.a build/libllamaduo_base.a "${STATIC[@]}" -lgfortran -fopenmp -lm "${CUDA[@]}"
(cd build && gcc -o ../.gpu/stage/llamaduo $(cat CMakeFiles/llamaduo.dir/objects1) libllamaduo_core.a libllamaduo_host.a \
    libllamaduo_core.a libllamaduo_cuda.a libllamaduo_train_options.a libllamaduo_base.a "${STATIC[@]}" -lcjson -lgfortran -fopenmp -lm -lcurl -lsqlite3 -lcrypto -lyaml \
    -lmicrohttpd "${MPI[@]}" "${CUDA[@]}")
# every shared library they need beyond glibc and CUDA's own (found on the GPU machine)
for b in .gpu/stage/test_cuda_kernels .gpu/stage/test_gpu_train .gpu/stage/test_gpu_generate .gpu/stage/llamaduo .gpu/stage/bench_gpu \
    .gpu/stage/bench_kernels; do
  ldd "$b" | awk '/=> \//{print $3}' | { grep -v -E 'lib(c|m|dl|pthread|rt|gcc_s|stdc\+\+)\.so|cuda|cublas|cudart' || true; } |
    xargs -r -I{} cp -Ln {} .gpu/stage/lib/  # (none at all for some)
done
# (NCCL not carried: CUDA 13's is 218 MB, and the GPU machines have it beside PyTorch; gpu_check.sh finds it there)
tar -C .gpu/stage -cJf .gpu/bundle.tar.xz . && rm -rf .gpu/stage  # compressed: the carried tree is limited to 64 MiB
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
du -sh .gpu
