// Small elementwise ops the GPU training step strings together: residual adds, bias rows, scaling, and the sum of
// squares for the global gradient norm (reduced in a fixed order: deterministic); row scatters, the KV cache's writes.
#include <cuda_bf16.h>

#include "common.cuh"
#include "dropout_mask.h"

__global__ static void add_kernel(float *x, uint16_t *x16, const float *y, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) kc_store(x, x16, i, x[i] + y[i]);
}

__global__ static void add_bias_kernel(float *y, const float *b, int N, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] += b[i % N];
}

// one thread per column: b[j] + y[0,j] + y[1,j] + ... in row order, the CPU's k_matmul_backward dbias order
__global__ static void col_sums_kernel(float *b, const float *y, int T, int N) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N) return;
    float s = b[j];
    for (int t = 0; t < T; t++) s += y[(size_t)t * N + j];
    b[j] = s;
}

__global__ static void scale_kernel(float *x, size_t n, float s) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}

// Block b sums elements [b·per, (b+1)·per) of xf squared (or of xd as they are) into out[b]: each thread a strided
// partial in double, then a fixed-order tree. The same n gives the same blocks and order: deterministic.
__global__ static void sum_blocks_kernel(double *out, const float *xf, const double *xd, size_t n, size_t per) {
    __shared__ double part[256];
    size_t lo = blockIdx.x * per, hi = lo + per < n ? lo + per : n;
    double s = 0;
    for (size_t i = lo + threadIdx.x; i < hi; i += 256) s += xf ? (double)xf[i] * xf[i] : xd[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = part[0];
}

extern "C" int kc_add(float *x, uint16_t *x16, const float *y, size_t n) {
    if (!n) return 0;
    add_kernel<<<kc_blocks(n, 256), 256>>>(x, x16, y, n);
    KC_CHECK_LAUNCH("add");
    return 0;
}

extern "C" int kc_add_bias(float *y, const float *b, int T, int N) {
    size_t n = (size_t)T * N;
    if (!n || !b) return 0;
    add_bias_kernel<<<kc_blocks(n, 256), 256>>>(y, b, N, n);
    KC_CHECK_LAUNCH("add_bias");
    return 0;
}

extern "C" int kc_add_col_sums(float *b, const float *y, int T, int N) {
    if (T <= 0 || N <= 0) return 0;
    col_sums_kernel<<<kc_blocks((size_t)N, 256), 256>>>(b, y, T, N);
    KC_CHECK_LAUNCH("add_col_sums");
    return 0;
}

extern "C" int kc_scale(float *x, size_t n, float s) {
    if (!n) return 0;
    scale_kernel<<<kc_blocks(n, 256), 256>>>(x, n, s);
    KC_CHECK_LAUNCH("scale");
    return 0;
}

// Up to 1,024 blocks of at least 64K elements each (a whole model's gradient norm every step), then one block
// sums their partials.
extern "C" int kc_sumsq(const float *x, size_t n, double *out) {
    size_t per = (size_t)1 << 16, blocks = (n + per - 1) / per;
    if (blocks > 1024) blocks = 1024, per = (n + blocks - 1) / blocks;
    if (!blocks) blocks = 1;
    double *d = (double *)kc_alloc(sizeof(double) * (blocks + 1));
    if (!d) return -1;
    sum_blocks_kernel<<<(unsigned)blocks, 256>>>(d + 1, x, NULL, n, per);
    sum_blocks_kernel<<<1, 256>>>(d, NULL, d + 1, blocks, blocks);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaMemcpy(out, d, sizeof(double), cudaMemcpyDeviceToHost);
    kc_free(d);
    if (e != cudaSuccess) return kc_set_error("sumsq", e), -1;
    return 0;
}

extern "C" int kc_copy(float *dst, const float *src, size_t n) {
    cudaError_t e = cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice);
    return e == cudaSuccess ? 0 : (kc_set_error("copy", e), -1);
}

__global__ static void scatter_rows_kernel(float *dst, const float *src, const int *rows, int width, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) dst[(size_t)rows[i / width] * width + i % width] = src[i];
}

__global__ static void gather_rows_kernel(float *dst, uint16_t *dst16, const float *src, const int *rows, int width, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) kc_store(dst, dst16, i, src[(size_t)rows[i / width] * width + i % width]);
}

extern "C" int kc_scatter_rows(float *dst, const float *src, const int *dst_rows, int n, int width) {
    size_t total = (size_t)n * width;
    if (!total) return 0;
    scatter_rows_kernel<<<kc_blocks(total, 256), 256>>>(dst, src, dst_rows, width, total);
    KC_CHECK_LAUNCH("scatter_rows");
    return 0;
}

extern "C" int kc_gather_rows(float *dst, uint16_t *dst16, const float *src, const int *src_rows, int n, int width) {
    size_t total = (size_t)n * width;
    if (!total) return 0;
    gather_rows_kernel<<<kc_blocks(total, 256), 256>>>(dst, dst16, src, src_rows, width, total);
    KC_CHECK_LAUNCH("gather_rows");
    return 0;
}

// LoRA dropout (dropout_mask.h, the CPU reference's mask bit for bit), scaled by 1/(1-p). y may be x.
__global__ static void dropout_kernel(float *y, const float *x, size_t n, float p, float k, uint64_t stream, uint64_t e0) {
    size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (e >= n) return;
    y[e] = ld_dropout_keep(stream, e0 + e, p) ? x[e] * k : 0.0f;
}

extern "C" int kc_dropout(float *y, const float *x, size_t n, float p, uint64_t stream, uint64_t e0) {
    if (!n) return 0;
    dropout_kernel<<<kc_blocks(n, 256), 256>>>(y, x, n, p, 1.0f / (1.0f - p), stream, e0);
    KC_CHECK_LAUNCH("dropout");
    return 0;
}
