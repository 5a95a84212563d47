#!/usr/bin/env bash
# Runs the whole test suite: the release build, then the same suite built with AddressSanitizer +
# UndefinedBehaviorSanitizer, then each fuzz target for a short while. Needs tools/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

echo "== release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS" >/dev/null
# the end-to-end suites (label e2e) run once, in the sanitizer build below. Two at a time: the emulator's suites
# use one core each and the load tests run for a fixed time (test_dist_emu, whose ranks use both, runs alone).
(cd build && ctest --output-on-failure -j"$JOBS" -LE e2e)

echo "== ASan + UBSan build"
# (the CUDA emulator switches stacks with ucontext, which ASan cannot follow: its tests run in the release build)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLLAMADUO_SANITIZE=ON -DLLAMADUO_CUDA=OFF -DLLAMADUO_CUDA_EMU=OFF >/dev/null
cmake --build build-asan -j"$JOBS" >/dev/null
# leak checks stay on; OpenMP's runtime keeps thread pools alive at exit, which LSan does not report. Two at a time:
# most of the end-to-end suites wait on the fault server's latency, not on the CPU
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j"$JOBS" -LE "slow|mpi")
# the MPI suites: memory errors and undefined behaviour checked in every rank, leaks not (OpenMPI's plugins keep
# allocations it unloads with them, which LeakSanitizer cannot tell from ours). One at a time: OpenMPI's ranks spin
# while they wait, and the two suites side by side took 407 s against about 220 s in turn
(cd build-asan && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j1 -L mpi)

echo "== fuzz targets (libFuzzer, ${FUZZ_SECONDS:-10}s each)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLLAMADUO_FUZZ=ON -DLLAMADUO_CUDA=OFF -DLLAMADUO_CUDA_EMU=OFF >/dev/null
cmake --build build-fuzz -j"$JOBS" --target fuzz_all >/dev/null
for f in build-fuzz/tests/fuzz/fuzz_*; do
  name=$(basename "$f")
  mkdir -p "build-fuzz/corpus-$name"
  # tests/fuzz/regressions: inputs that once crashed a target, run every time
  "$f" -max_total_time="${FUZZ_SECONDS:-10}" -rss_limit_mb=2048 -print_final_stats=0 \
     "build-fuzz/corpus-$name" tests/fuzz/seeds/"${name#fuzz_}" $(ls -d tests/fuzz/regressions/"${name#fuzz_}" 2>/dev/null) \
     >"build-fuzz/$name.log" 2>&1 ||
    { tail -40 "build-fuzz/$name.log"; echo "$name: FOUND A CRASH"; exit 1; }
  echo "$name: $(grep -c . "build-fuzz/$name.log") log lines, no finding"
done
echo "all test stages passed"
