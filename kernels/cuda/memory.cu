// Device memory and errors for C callers.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

static char g_error[512];

void kc_set_error(const char *what, cudaError_t e) { snprintf(g_error, sizeof g_error, "%s: %s", what, cudaGetErrorString(e)); }
void kc_set_error_msg(const char *what, const char *reason) { snprintf(g_error, sizeof g_error, "%s: %s", what, reason); }

extern "C" const char *kc_last_error(void) { return g_error; }

// Bytes held through kc_alloc, now and at most, for memory reports: a host table of live pointers (open
// addressing; the GPU path allocates from one thread).
static struct {
    void **ptr;
    size_t *bytes, cap, used, now, peak;
} g_mem;

static size_t mem_slot(const void *p) { return ((uintptr_t)p >> 8) * 0x9e3779b97f4a7c15ull % g_mem.cap; }

static void mem_insert(void *p, size_t bytes) {
    if (2 * (g_mem.used + 1) > g_mem.cap) {  // grow and rehash
        size_t old_cap = g_mem.cap;
        void **old_ptr = g_mem.ptr;
        size_t *old_bytes = g_mem.bytes;
        g_mem.cap = old_cap ? 2 * old_cap : 1024;
        g_mem.ptr = (void **)calloc(g_mem.cap, sizeof(void *)), g_mem.bytes = (size_t *)calloc(g_mem.cap, sizeof(size_t));
        g_mem.used = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old_ptr[i] && old_ptr[i] != (void *)1) {
                size_t j = mem_slot(old_ptr[i]);
                while (g_mem.ptr[j]) j = (j + 1) % g_mem.cap;
                g_mem.ptr[j] = old_ptr[i], g_mem.bytes[j] = old_bytes[i], g_mem.used++;
            }
        free(old_ptr), free(old_bytes);
    }
    size_t j = mem_slot(p);
    while (g_mem.ptr[j] && g_mem.ptr[j] != (void *)1) j = (j + 1) % g_mem.cap;
    if (!g_mem.ptr[j]) g_mem.used++;
    g_mem.ptr[j] = p, g_mem.bytes[j] = bytes;
    g_mem.now += bytes;
    if (g_mem.now > g_mem.peak) g_mem.peak = g_mem.now;
}

static void mem_remove(void *p) {
    if (!g_mem.cap) return;
    for (size_t j = mem_slot(p); g_mem.ptr[j]; j = (j + 1) % g_mem.cap)
        if (g_mem.ptr[j] == p) {
            g_mem.now -= g_mem.bytes[j];
            g_mem.ptr[j] = (void *)1;  // a tombstone keeps later probes reachable
            return;
        }
}

extern "C" void *kc_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        kc_set_error("cudaMalloc", e);
        return NULL;
    }
    mem_insert(p, bytes);
    return p;
}

extern "C" void kc_free(void *p) {
    if (!p) return;
    mem_remove(p);
    cudaFree(p);
}

extern "C" void kc_mem_stats(size_t *now, size_t *peak) {
    if (now) *now = g_mem.now;
    if (peak) *peak = g_mem.peak;
}

extern "C" void kc_mem_reset_peak(void) { g_mem.peak = g_mem.now; }

extern "C" int kc_upload(void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? 0 : (kc_set_error("upload", e), -1);
}

extern "C" int kc_download(void *dst, const void *src, size_t bytes) {
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? 0 : (kc_set_error("download", e), -1);
}

extern "C" int kc_sync(void) {
    cudaError_t e = cudaDeviceSynchronize();
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
