// defines: device memory for C callers (tests, the engine's CUDA backend): the caching allocator, copies, fills, the
// error of the last failure (kernels/cuda/memory.cu; each returns 0, or -1 with kc_last_error()).
#pragma once
#include <stddef.h>

const char *kc_last_error(void);
// Device memory for C callers (tests, the engine's GPU path).
// kc_alloc/kc_free cache freed blocks for reuse (a step allocates the same buffers every time, and cudaFree
// waits for the device); the cache is given back when cudaMalloc runs out.
void *kc_alloc(size_t bytes);  // NULL with an error
void kc_free(void *p);
// Bytes handed out by kc_alloc (in its size classes) now and at most since the start; the
// cache, cuBLAS's workspace and the bf16 scratch are outside it. For memory reports.
void kc_mem_stats(size_t *now, size_t *peak);
int kc_upload(void *dst, const void *src, size_t bytes);
int kc_download(void *dst, const void *src, size_t bytes);
int kc_fill(float *p, float value, size_t n);  // poisons outputs in tests
int kc_sync(void);
