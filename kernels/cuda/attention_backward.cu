// Attention backward in the flash manner (kernels/cpu/attention.c k_attention_backward is the contract): one block
// per (token, head) recomputes its scores tile by tile — a pass for the log-sum-exp, a pass for Σ p·dp, a pass for
// the gradients — so no probability matrix is stored. dq is written; dk and dv rows are shared by every query (and
// head of a GQA group) that sees them and are accumulated with atomics.
#include <math.h>

#include "common.cuh"

#define TILE 16
#define THREADS 128
#define MAX_HD 256

__device__ static float score(const float *qs, const float *kr, int hd, float scale, float softcap, int lane) {
    float s = 0.0f;
    for (int d = lane; d < hd; d += 32) s += qs[d] * kr[d];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    s *= scale;
    return softcap > 0.0f ? softcap * tanhf(s / softcap) : s;
}

__global__ static void attention_bwd_kernel(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                            const float *v, const int *kv_lo, const int *kv_hi, int Hq, int Hkv, int hd, float scale,
                                            float softcap) {
    __shared__ float qs[MAX_HD], dos[MAX_HD], dqs[MAX_HD], red[THREADS / 32];
    int t = blockIdx.x / Hq, h = blockIdx.x % Hq, kvh = h / (Hq / Hkv), stride = Hkv * hd;
    int lo = kv_lo[t], hi = kv_hi[t], lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = THREADS / 32;
    size_t qrow = ((size_t)t * Hq + h) * hd;
    for (int d = threadIdx.x; d < hd; d += THREADS) qs[d] = q[qrow + d], dos[d] = dout[qrow + d], dqs[d] = 0.0f;
    __syncthreads();
    // pass 1: the row's max and sum (each warp takes keys j ≡ warp mod nw, then the warps combine)
    float m = -INFINITY, l = 0.0f;
    for (int j = lo + warp; j <= hi; j += nw) {
        float s = score(qs, k + (size_t)j * stride + (size_t)kvh * hd, hd, scale, softcap, lane);
        float mn = fmaxf(m, s);
        l = l * expf(m - mn) + expf(s - mn);
        m = mn;
    }
    __shared__ float wm[THREADS / 32], wl[THREADS / 32];
    if (lane == 0) wm[warp] = m, wl[warp] = l;
    __syncthreads();
    float M = -INFINITY, L = 0.0f;
    for (int w = 0; w < nw; w++) M = fmaxf(M, wm[w]);
    for (int w = 0; w < nw; w++) L += wl[w] * expf(wm[w] - M);  // a warp with no keys has l 0 and m -inf: adds 0
    float lse = M + logf(L);
    // pass 2: D = Σ_j p_j · (dout · v_j)
    float dsum = 0.0f;
    for (int j = lo + warp; j <= hi; j += nw) {
        float p = expf(score(qs, k + (size_t)j * stride + (size_t)kvh * hd, hd, scale, softcap, lane) - lse);
        const float *vr = v + (size_t)j * stride + (size_t)kvh * hd;
        float dp = 0.0f;
        for (int d = lane; d < hd; d += 32) dp += dos[d] * vr[d];
        for (int o = 16; o > 0; o >>= 1) dp += __shfl_xor_sync(0xffffffffu, dp, o);
        dsum += p * dp;
    }
    if (lane == 0) red[warp] = dsum;
    __syncthreads();
    float D = 0.0f;
    for (int w = 0; w < nw; w++) D += red[w];
    // pass 3: ds_j = p_j (dp_j − D), through the soft-cap and the scale; into dq (shared), dk, dv (atomics)
    for (int j = lo + warp; j <= hi; j += nw) {
        const float *kr = k + (size_t)j * stride + (size_t)kvh * hd, *vr = v + (size_t)j * stride + (size_t)kvh * hd;
        float z = score(qs, kr, hd, scale, softcap, lane), p = expf(z - lse);
        float dp = 0.0f;
        for (int d = lane; d < hd; d += 32) dp += dos[d] * vr[d];
        for (int o = 16; o > 0; o >>= 1) dp += __shfl_xor_sync(0xffffffffu, dp, o);
        float ds = p * (dp - D);
        if (softcap > 0.0f) {
            float tz = z / softcap;
            ds *= 1.0f - tz * tz;
        }
        ds *= scale;
        float *dkr = dk + (size_t)j * stride + (size_t)kvh * hd, *dvr = dv + (size_t)j * stride + (size_t)kvh * hd;
        for (int d = lane; d < hd; d += 32) {
            atomicAdd(&dqs[d], ds * kr[d]);
            atomicAdd(&dkr[d], ds * qs[d]);
            atomicAdd(&dvr[d], p * dos[d]);
        }
    }
    __syncthreads();
    for (int d = threadIdx.x; d < hd; d += THREADS) dq[qrow + d] = dqs[d];
}

extern "C" int kc_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                                     const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    if (hd > MAX_HD || hd <= 0 || Hkv <= 0 || Hq % Hkv) {
        kc_set_error("attention_backward", cudaErrorInvalidValue);
        return -1;
    }
    if (T <= 0) return 0;
    attention_bwd_kernel<<<(unsigned)T * Hq, THREADS>>>(dq, dk, dv, dout, q, k, v, kv_lo, kv_hi, Hq, Hkv, hd, scale, softcap);
    KC_CHECK_LAUNCH("attention_backward");
    return 0;
}
