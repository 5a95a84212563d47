// Device memory and errors for C callers.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.cuh"

static char g_error[512];

void kc_set_error(const char *what, cudaError_t e) { snprintf(g_error, sizeof g_error, "%s: %s", what, cudaGetErrorString(e)); }
void kc_set_error_msg(const char *what, const char *reason) { snprintf(g_error, sizeof g_error, "%s: %s", what, reason); }

extern "C" const char *kc_last_error(void) { return g_error; }

// A caching allocator in front of cudaMalloc: a training step or a decode step allocates and frees the same
// buffers every time, and cudaFree waits for the whole device, so freed blocks are kept in size classes (see
// size_class) and handed out again; when cudaMalloc runs out, the cache is released and the call retried. Kernels
// run on the default stream, so a block reused by a later launch is only written after the earlier launches that
// read it; the one other stream, a communicator's (collective.cu), only ever reads and writes persistent buffers
// (the gradients), never blocks from here. One thread allocates at a time (the GPU path has one).
// The live table (open addressing, pointer -> class bytes) also gives the numbers for memory reports.
static struct {
    void **ptr;
    size_t *bytes, cap, used, now, peak;
} g_mem;
static struct {
    void **ptr;
    size_t *bytes, n, cap, total;  // free blocks held for reuse
} g_cache;

#define TOMBSTONE ((void *)1)

// Quarter octaves up to 64 MiB (buffers whose size follows the batch); above, 2 MiB steps (weights, KV caches,
// training activations: sizes that recur exactly, where 25% rounding would waste gigabytes).
static size_t size_class(size_t bytes) {
    if (bytes <= 4096) return 4096;
    if (bytes >= ((size_t)64 << 20)) return (bytes + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
    int k = 63 - __builtin_clzll((unsigned long long)bytes);  // 2^k <= bytes < 2^(k+1)
    size_t quarter = ((size_t)1 << k) / 4;
    return (bytes + quarter - 1) / quarter * quarter;
}

static size_t mem_slot(const void *p) { return ((uintptr_t)p >> 8) * 0x9e3779b97f4a7c15ull % g_mem.cap; }

static void mem_insert(void *p, size_t bytes) {
    if (2 * (g_mem.used + 1) > g_mem.cap) {  // grow and rehash (tombstones dropped)
        size_t old_cap = g_mem.cap;
        void **old_ptr = g_mem.ptr;
        size_t *old_bytes = g_mem.bytes;
        g_mem.cap = old_cap ? 2 * old_cap : 1024;
        g_mem.ptr = (void **)calloc(g_mem.cap, sizeof(void *)), g_mem.bytes = (size_t *)calloc(g_mem.cap, sizeof(size_t));
        g_mem.used = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old_ptr[i] && old_ptr[i] != TOMBSTONE) {
                size_t j = mem_slot(old_ptr[i]);
                while (g_mem.ptr[j]) j = (j + 1) % g_mem.cap;
                g_mem.ptr[j] = old_ptr[i], g_mem.bytes[j] = old_bytes[i], g_mem.used++;
            }
        free(old_ptr), free(old_bytes);
    }
    size_t j = mem_slot(p);
    while (g_mem.ptr[j] && g_mem.ptr[j] != TOMBSTONE) j = (j + 1) % g_mem.cap;
    if (!g_mem.ptr[j]) g_mem.used++;
    g_mem.ptr[j] = p, g_mem.bytes[j] = bytes;
    g_mem.now += bytes;
    if (g_mem.now > g_mem.peak) g_mem.peak = g_mem.now;
}

// The class bytes of a live block, removed from the table; 0 when p was not handed out here.
static size_t mem_remove(void *p) {
    if (!g_mem.cap) return 0;
    for (size_t j = mem_slot(p); g_mem.ptr[j]; j = (j + 1) % g_mem.cap)
        if (g_mem.ptr[j] == p) {
            g_mem.now -= g_mem.bytes[j];
            g_mem.ptr[j] = TOMBSTONE;  // keeps later probes reachable
            return g_mem.bytes[j];
        }
    return 0;
}

static void *cache_take(size_t bytes) {
    for (size_t i = g_cache.n; i-- > 0;)  // the most recently freed first: likeliest still in L2
        if (g_cache.bytes[i] == bytes) {
            void *p = g_cache.ptr[i];
            g_cache.ptr[i] = g_cache.ptr[g_cache.n - 1], g_cache.bytes[i] = g_cache.bytes[g_cache.n - 1];
            g_cache.n--, g_cache.total -= bytes;
            return p;
        }
    return NULL;
}

static void cache_put(void *p, size_t bytes) {
    if (g_cache.n == g_cache.cap) {
        g_cache.cap = g_cache.cap ? 2 * g_cache.cap : 256;
        g_cache.ptr = (void **)realloc(g_cache.ptr, sizeof(void *) * g_cache.cap);
        g_cache.bytes = (size_t *)realloc(g_cache.bytes, sizeof(size_t) * g_cache.cap);
    }
    g_cache.ptr[g_cache.n] = p, g_cache.bytes[g_cache.n++] = bytes, g_cache.total += bytes;
}

static struct {  // one communicator's (the trainer has one)
    cudaStream_t stream;
    double timeout_s;
    int busy;
} g_side;

void kc_side_stream(cudaStream_t s, double timeout_s, int busy) { g_side.stream = s, g_side.timeout_s = timeout_s, g_side.busy = busy; }

// Whether the side stream's work is done (at once when there is none), polled up to its deadline: a peer that
// died would otherwise hold cudaFree forever.
static int side_done(void) {
    struct timespec t0, now, nap = {0, 100000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (!g_side.busy || cudaStreamQuery(g_side.stream) != cudaErrorNotReady) return 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) * 1e-9 > g_side.timeout_s) return 0;
        nanosleep(&nap, NULL);
    }
}

static void release_cached(void) {
    for (size_t i = 0; i < g_cache.n; i++) cudaFree(g_cache.ptr[i]);
    g_cache.n = 0, g_cache.total = 0;
}

extern "C" void *kc_alloc(size_t bytes) {
    size_t c = size_class(bytes);
    void *p = cache_take(c);
    if (!p) {
        cudaError_t e = cudaMalloc(&p, c);
        if (e == cudaErrorMemoryAllocation && g_cache.n && !side_done()) {
            cudaGetLastError();
            kc_set_error_msg("cudaMalloc",
                             "out of memory, and the cache cannot be given back: the collectives on the communicator's "
                             "stream did not finish before their deadline (another rank died or stopped answering)");
            return NULL;
        }
        if (e == cudaErrorMemoryAllocation && g_cache.n) {  // out of memory: give the cache back and try again
            cudaGetLastError();
            release_cached();
            e = cudaMalloc(&p, c);
        }
        if (e != cudaSuccess) {
            cudaGetLastError();
            kc_set_error("cudaMalloc", e);
            return NULL;
        }
    }
    mem_insert(p, c);
    return p;
}

extern "C" void kc_free(void *p) {
    if (!p) return;
    size_t c = mem_remove(p);
    if (c)
        cache_put(p, c);
    else
        cudaFree(p);  // not from kc_alloc: nothing to keep
}

extern "C" void kc_mem_stats(size_t *now, size_t *peak) {
    if (now) *now = g_mem.now;
    if (peak) *peak = g_mem.peak;
}

extern "C" int kc_upload(void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? 0 : (kc_set_error("upload", e), -1);
}

extern "C" int kc_download(void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? 0 : (kc_set_error("download", e), -1);
}

// The default stream only: a collective started on a communicator's own stream (collective.h) is waited for with
// its deadline by kc_comm_wait, never here, where a peer that died would hold the wait forever (as it would hold
// cudaFree: see side_done).
extern "C" int kc_sync(void) {
    cudaError_t e = cudaStreamSynchronize(0);
    return e == cudaSuccess ? 0 : (kc_set_error("synchronize", e), -1);
}

__global__ void fill_kernel(float *p, float value, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) p[i] = value;
}

extern "C" int kc_fill(float *p, float value, size_t n) {
    if (!n) return 0;
    fill_kernel<<<kc_blocks(n, 256), 256>>>(p, value, n);
    KC_CHECK_LAUNCH("fill");
    return 0;
}
