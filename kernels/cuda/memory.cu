// Device memory and errors for C callers.
#include <string.h>

#include "common.cuh"

static char g_error[512];

void kc_set_error(const char *what, cudaError_t e) { snprintf(g_error, sizeof g_error, "%s: %s", what, cudaGetErrorString(e)); }
void kc_set_error_msg(const char *what, const char *reason) { snprintf(g_error, sizeof g_error, "%s: %s", what, reason); }

extern "C" const char *kc_last_error(void) { return g_error; }

extern "C" void *kc_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        kc_set_error("cudaMalloc", e);
        return NULL;
    }
    return p;
}

extern "C" void kc_free(void *p) { cudaFree(p); }

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
