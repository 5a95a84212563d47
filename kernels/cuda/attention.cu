// Attention forward in the flash manner (kernels/cpu/attention.c is the contract): one block per (token, head)
// streams the token's key range through shared memory, TILE keys at a time, keeping a running max, running sum
// and running weighted sum of values (online softmax), so no score matrix ever exists in memory.
#include <math.h>

#include "common.cuh"

#define TILE 16
#define THREADS 128
#define MAX_HD 256

__global__ static void attention_kernel(float *out, const float *q, const float *k, const float *v, const int *kv_base,
                                        const int *kv_lo, const int *kv_hi, int Hq, int Hkv, int hd, float scale, float softcap) {
    __shared__ float qs[MAX_HD], ks[TILE][MAX_HD], vs[TILE][MAX_HD], p[TILE];
    int t = blockIdx.x / Hq, h = blockIdx.x % Hq, kvh = h / (Hq / Hkv);
    int lo = kv_lo[t], hi = kv_hi[t], stride = Hkv * hd;
    const float *kb = k + ((size_t)kv_base[t]) * stride + (size_t)kvh * hd, *vb = v + ((size_t)kv_base[t]) * stride + (size_t)kvh * hd;
    for (int d = threadIdx.x; d < hd; d += THREADS) qs[d] = q[((size_t)t * Hq + h) * hd + d];
    float acc[MAX_HD / THREADS] = {0};  // this thread's output dims: d = threadIdx.x + i·THREADS
    float m = -INFINITY, l = 0.0f;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int j0 = lo; j0 <= hi; j0 += TILE) {
        int n = hi - j0 + 1 < TILE ? hi - j0 + 1 : TILE;
        __syncthreads();  // the previous tile is no longer read
        for (int e = threadIdx.x; e < n * hd; e += THREADS) {
            int j = e / hd, d = e % hd;
            ks[j][d] = kb[(size_t)(j0 + j) * stride + d];
            vs[j][d] = vb[(size_t)(j0 + j) * stride + d];
        }
        __syncthreads();
        for (int j = warp; j < n; j += THREADS / 32) {  // a warp per key: lanes split the dot product
            float s = 0.0f;
            for (int d = lane; d < hd; d += 32) s += qs[d] * ks[j][d];
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            s *= scale;
            if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
            if (lane == 0) p[j] = s;
        }
        __syncthreads();
        float tile_max = -INFINITY;
        for (int j = 0; j < n; j++) tile_max = fmaxf(tile_max, p[j]);
        float m_new = fmaxf(m, tile_max), correction = expf(m - m_new);  // exp(-inf) = 0 on the first tile
        l *= correction;
        for (int i = 0; i < MAX_HD / THREADS; i++) acc[i] *= correction;
        for (int j = 0; j < n; j++) {
            float w = expf(p[j] - m_new);
            l += w;
            for (int i = 0; i < MAX_HD / THREADS; i++) {
                int d = threadIdx.x + i * THREADS;
                if (d < hd) acc[i] += w * vs[j][d];
            }
        }
        m = m_new;
    }
    for (int i = 0; i < MAX_HD / THREADS; i++) {
        int d = threadIdx.x + i * THREADS;
        if (d < hd) out[((size_t)t * Hq + h) * hd + d] = l > 0.0f ? acc[i] / l : 0.0f;
    }
}

extern "C" int kc_attention(float *out, const float *q, const float *k, const float *v, const int *kv_base, const int *kv_lo,
                            const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    if (hd > MAX_HD || hd <= 0 || Hkv <= 0 || Hq % Hkv) {
        kc_set_error("attention", cudaErrorInvalidValue);
        return -1;
    }
    if (T <= 0) return 0;
    attention_kernel<<<(unsigned)T * Hq, THREADS>>>(out, q, k, v, kv_base, kv_lo, kv_hi, Hq, Hkv, hd, scale, softcap);
    KC_CHECK_LAUNCH("attention");
    return 0;
}
