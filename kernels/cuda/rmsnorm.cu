// RMSNorm forward and backward (kernels/cpu/rmsnorm.c is the contract): one block per row.
#include "common.cuh"

// Sum over the block (blockDim.x a multiple of 32, at most 1024), broadcast to every thread.
__device__ static float block_sum(float v) {
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // part[] may still be read by a previous call
    if (lane == 0) part[warp] = v;
    __syncthreads();
    int n = (blockDim.x + 31) >> 5;
    v = lane < n ? part[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// y[T,D] = x / sqrt(mean(x²) + eps) * g (y16: rounded)
__global__ static void rmsnorm_fwd(float *y, uint16_t *y16, const float *x, const float *w, int D, float eps, int plus_one) {
    size_t row = (size_t)blockIdx.x * D;
    const float *xr = x + row;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
    float r = rsqrtf(block_sum(ss) / D + eps);
    for (int i = threadIdx.x; i < D; i += blockDim.x) kc_store(y, y16, row + i, xr[i] * r * (plus_one ? 1.0f + w[i] : w[i]));
}

// x += d, then y = rmsnorm(x): the residual stream read and written once. y may be d: each thread reads its own
// elements of d before it writes the same elements of y.
__global__ static void add_rmsnorm_fwd(float *y, uint16_t *y16, float *x, const float *d, const float *w, int D, float eps, int plus_one) {
    size_t row = (size_t)blockIdx.x * D;
    float *xr = x + row;
    const float *dr = d + row;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float v = xr[i] + dr[i];
        xr[i] = v;
        ss += v * v;
    }
    float r = rsqrtf(block_sum(ss) / D + eps);
    for (int i = threadIdx.x; i < D; i += blockDim.x) kc_store(y, y16, row + i, xr[i] * r * (plus_one ? 1.0f + w[i] : w[i]));
}

// dx_i = r·g_i·dy_i − r³/D · x_i · Σ_j g_j·dy_j·x_j
__global__ static void rmsnorm_bwd_dx(float *dx, uint16_t *dx16, float *rstd, const float *dy, const float *x, const float *w, int D,
                                      float eps, int plus_one) {
    size_t row = blockIdx.x;
    const float *xr = x + row * D, *dyr = dy + row * D;
    float ss = 0.0f, dot = 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float g = plus_one ? 1.0f + w[i] : w[i];
        ss += xr[i] * xr[i];
        dot += dyr[i] * g * xr[i];
    }
    ss = block_sum(ss);
    dot = block_sum(dot);
    float r = rsqrtf(ss / D + eps), c = dot * r * r * r / D;
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        kc_store(dx, dx16, row * D + i, r * (plus_one ? 1.0f + w[i] : w[i]) * dyr[i] - c * xr[i]);
    if (threadIdx.x == 0) rstd[row] = r;
}

// dw_i += Σ_t dy[t,i]·x[t,i]·r_t, one thread per column summing rows in order (deterministic)
__global__ static void rmsnorm_bwd_dw(float *dw, const float *rstd, const float *dy, const float *x, int T, int D) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= D) return;
    float s = 0.0f;
    for (int t = 0; t < T; t++) s += dy[(size_t)t * D + i] * x[(size_t)t * D + i] * rstd[t];
    dw[i] += s;
}

static int threads_for(int D) { return D >= 1024 ? 1024 : D >= 256 ? 256 : 64; }

extern "C" int kc_rmsnorm(float *y, uint16_t *y16, const float *x, const float *w, int T, int D, float eps, int plus_one) {
    if (T <= 0) return 0;
    rmsnorm_fwd<<<T, threads_for(D)>>>(y, y16, x, w, D, eps, plus_one);
    KC_CHECK_LAUNCH("rmsnorm");
    return 0;
}

extern "C" int kc_add_rmsnorm(float *y, uint16_t *y16, float *x, const float *d, const float *w, int T, int D, float eps, int plus_one) {
    if (T <= 0) return 0;
    add_rmsnorm_fwd<<<T, threads_for(D)>>>(y, y16, x, d, w, D, eps, plus_one);
    KC_CHECK_LAUNCH("add_rmsnorm");
    return 0;
}

extern "C" int kc_rmsnorm_backward(float *dx, uint16_t *dx16, float *dw, const float *dy, const float *x, const float *w, int T, int D,
                                   float eps, int plus_one) {
    if (T <= 0) return 0;
    float *rstd = (float *)kc_alloc(sizeof(float) * (size_t)T);
    if (!rstd) return -1;
    rmsnorm_bwd_dx<<<T, threads_for(D)>>>(dx, dx16, rstd, dy, x, w, D, eps, plus_one);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && dw) {
        rmsnorm_bwd_dw<<<kc_blocks((size_t)D, 128), 128>>>(dw, rstd, dy, x, T, D);
        e = cudaGetLastError();
    }
    kc_free(rstd);  // back to the cache: a later launch reusing it runs after these (one stream)
    if (e != cudaSuccess) return kc_set_error("rmsnorm_backward", e), -1;
    return 0;
}
