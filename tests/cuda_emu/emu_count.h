// defines: the emulator's traffic counter (benchmarks/bench_gpu --count): per kernel name, the launches and the
// bytes each launch reads and writes in device memory. A kernel's bytes are measured: while it runs, every device
// page is protected, and the first read and the first write of each page fault once and mark it, so a launch
// counts the distinct bytes it touches (the traffic of a kernel that reads each input and writes each output
// once, as the real card's caches let the good ones). cuBLAS calls count their operands (each matrix once, C also
// read when beta != 0); copies and fills count what they move. x86-64 Linux only.
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;  // the kernel's name, or the cuBLAS call's, or "memcpy D2D" / "memset" / "upload" / "download"
    long launches;
    double read, written;  // bytes
} EmuCount;

// Turns counting on: before the first cudaMalloc (device memory then comes from one reserved region). 0, or -1
// with the reason on stderr (not x86-64, or the region cannot be reserved).
int emu_count_enable(void);
void emu_count_reset(void);  // zeroes every row
// Fills up to max rows (most bytes first) and returns how many there are.
int emu_count_rows(EmuCount *rows, int max);

#ifdef __cplusplus
}
#endif
