// Attention forward in the flash manner (kernels/cpu/attention.c is the contract), no score matrix ever in memory.
// Two shapes of work: token by token (kc_attention: decoding, tokens of different sequences of a KV cache, each
// against its own rows), one block per (token, head) streams the token's key range through shared memory with an
// online softmax; in tiles (kc_attention_packed: a packed training batch, or a prefill's rows of the cache), one
// block per (32 consecutive queries, head) shares each tile of 32 keys among its queries (see attention_tile.cuh).
#include <math.h>

#include "attention_tile.cuh"
#include "common.cuh"

#define TILE 16
#define THREADS 128
#define MAX_HD 256

__global__ static void attention_kernel(float *out, const float *q, const float *k, const float *v, const int *kv_base, const int *kv_lo,
                                        const int *kv_hi, int Hq, int Hkv, int hd, float scale, float softcap) {
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

// One block: queries q0..q0+31 of head h; warp w owns queries q0 + 8w .. q0 + 8w + 7, lane l owns output dims
// l, l + 32, ... Each tile of 32 keys is loaded once for all 32 queries; lane j scores key j for each of its
// warp's queries, then the tile's probabilities are broadcast lane by lane into the running outputs.
__global__ static void __launch_bounds__(ATT_THREADS)
    attention_packed_kernel(float *out, float *lse, const float *q, const float *k, const float *v, const int *kv_lo, const int *kv_hi,
                            int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    extern __shared__ float smem[];
    float *Qs = smem, *Ks = Qs + ATT_TILE * hd, *Vs = Ks + ATT_TILE * (hd + 1);  // [32][hd], [32][hd+1], [32][hd]
    int q0 = blockIdx.x * ATT_TILE, h = blockIdx.y, kvh = h / (Hq / Hkv), stride = Hkv * hd;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nq = T - q0 < ATT_TILE ? T - q0 : ATT_TILE;
    att_load_rows(Qs, hd, q, Hq * hd, h * hd, q0, nq, hd);
    int klo, khi;
    att_tile_range(kv_lo, kv_hi, q0, nq, &klo, &khi);
    int qlo[ATT_ROWS], qhi[ATT_ROWS];
    float m[ATT_ROWS], l[ATT_ROWS], acc[ATT_ROWS][ATT_DIMS];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int i = warp * ATT_ROWS + r;
        qlo[r] = i < nq ? kv_lo[q0 + i] : 1, qhi[r] = i < nq ? kv_hi[q0 + i] : 0;  // an empty range past the end
        m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < ATT_DIMS; c++) acc[r][c] = 0.0f;
    }
    for (int j0 = klo; j0 <= khi; j0 = att_next_seen(kv_lo, kv_hi, q0, nq, j0 + ATT_TILE)) {
        int nk = khi - j0 + 1 < ATT_TILE ? khi - j0 + 1 : ATT_TILE;
        __syncthreads();  // the previous tile is no longer read
        att_load_rows(Ks, hd + 1, k, stride, kvh * hd, j0, nk, hd);
        att_load_rows(Vs, hd, v, stride, kvh * hd, j0, nk, hd);
        __syncthreads();
        int j = j0 + lane;
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            const float *qr = Qs + (warp * ATT_ROWS + r) * hd;
            float s = -INFINITY;
            if (lane < nk && j >= qlo[r] && j <= qhi[r]) s = att_score(qr, Ks + lane * (hd + 1), hd, scale, softcap);
            float m_new = fmaxf(m[r], att_warp_max(s));
            if (m_new == -INFINITY) continue;  // nothing seen yet by this query
            float corr = expf(m[r] - m_new), p = s == -INFINITY ? 0.0f : expf(s - m_new);
            l[r] = l[r] * corr + att_warp_sum(p);
            m[r] = m_new;
#pragma unroll
            for (int c = 0; c < ATT_DIMS; c++) acc[r][c] *= corr;
            for (int jj = 0; jj < nk; jj++) {
                float pj = __shfl_sync(0xffffffffu, p, jj);
                // the same for every lane: no divergence; and a key no query sees (pj 0) may hold NaN garbage
                if (pj == 0.0f) continue;
#pragma unroll
                for (int c = 0; c < ATT_DIMS; c++) {
                    int d = lane + 32 * c;
                    if (d < hd) acc[r][c] += pj * Vs[jj * hd + d];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int i = warp * ATT_ROWS + r;
        if (i >= nq) continue;
        float *o = out + ((size_t)(q0 + i) * Hq + h) * hd;
#pragma unroll
        for (int c = 0; c < ATT_DIMS; c++) {
            int d = lane + 32 * c;
            if (d < hd) o[d] = l[r] > 0.0f ? acc[r][c] / l[r] : 0.0f;
        }
        if (lse && lane == 0) lse[(size_t)(q0 + i) * Hq + h] = l[r] > 0.0f ? m[r] + logf(l[r]) : INFINITY;
    }
}

extern "C" int kc_attention_packed(float *out, float *lse, const float *q, const float *k, const float *v, const int *kv_lo,
                                   const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    if (hd > MAX_HD || hd <= 0 || Hkv <= 0 || Hq % Hkv) {
        kc_set_error("attention_packed", cudaErrorInvalidValue);
        return -1;
    }
    if (T <= 0) return 0;
    size_t smem = sizeof(float) * ATT_TILE * (3 * (size_t)hd + 1);
    cudaFuncSetAttribute(attention_packed_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    attention_packed_kernel<<<dim3((unsigned)(T + ATT_TILE - 1) / ATT_TILE, (unsigned)Hq), ATT_THREADS, smem>>>(
        out, lse, q, k, v, kv_lo, kv_hi, T, Hq, Hkv, hd, scale, softcap);
    KC_CHECK_LAUNCH("attention_packed");
    return 0;
}
