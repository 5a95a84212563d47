// defines: what the tiled attention kernels (forward over a packed batch, and the backward) share: tiles of 32
// queries or keys, 4 warps of 8 rows each, lanes owning head dims lane, lane + 32, ... (head_dim up to 256).
#pragma once
#include <math.h>

#include <cuda_bf16.h>

#include "common.cuh"
#include "kv_rows.h"

#define ATT_TILE 32
#define ATT_THREADS 128
#define ATT_ROWS 8  // rows (queries or keys) per warp: ATT_TILE / (ATT_THREADS / 32)
#define ATT_DIMS 8  // head dims per lane: 256 / 32
#define MAX_HD 256

__device__ static inline float att_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ static inline float att_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// scale·(a·b), soft-capped when softcap > 0 (a and b in shared memory)
__device__ static inline float att_score(const float *a, const float *b, int hd, float scale, float softcap) {
    float s = 0.0f;
    for (int d = 0; d < hd; d++) s += a[d] * b[d];
    s *= scale;
    return softcap > 0.0f ? softcap * tanhf(s / softcap) : s;
}

// rows j0 .. j0+n-1 of one head (column offset col) of a [rows, stride] buffer — k/v rows [T, Hkv·hd], or q /
// dout rows [T, Hq·hd] — into shared memory with row pitch `pitch`; rows past n are zeroed
__device__ static inline void att_load_rows(float *dst, int pitch, const float *src, int stride, int col, int j0, int n, int hd) {
    for (int e = threadIdx.x; e < ATT_TILE * hd; e += ATT_THREADS) {
        int j = e / hd, d = e % hd;
        dst[j * pitch + d] = j < n ? src[(size_t)(j0 + j) * stride + col + d] : 0.0f;
    }
}

// Element i of a KV buffer of type t (fp32 or bf16) as fp32.
__device__ static inline float att_kv_at(const void *src, LdDtype t, size_t i) {
    return t == LD_BF16 ? __bfloat162float(((const __nv_bfloat16 *)src)[i]) : ((const float *)src)[i];
}

// att_load_rows for one head of k or v (src, kv's type and pages: rows j0.. virtual where kv is paged); a row of a
// page not mapped is loaded as zeros (a tile may reach past a sequence's rows; no query sees them)
__device__ static inline void att_load_kv_rows(float *dst, int pitch, const void *src, const KvRows &kv, int stride, int col, int j0, int n,
                                               int hd) {
    for (int e = threadIdx.x; e < ATT_TILE * hd; e += ATT_THREADS) {
        int j = e / hd, d = e % hd;
        long long row = j < n ? kv_page_row(kv.pages, kv.page_shift, j0 + j) : -1;
        dst[j * pitch + d] = row >= 0 ? att_kv_at(src, kv.type, (size_t)row * stride + col + d) : 0.0f;
    }
}

// The keys any of queries q0 .. q0+nq-1 may see: from the lowest kv_lo to the highest kv_hi.
__device__ static inline void att_tile_range(const int *kv_lo, const int *kv_hi, int q0, int nq, int *klo, int *khi) {
    int lo = 0x7fffffff, hi = -1;
    for (int i = 0; i < nq; i++) lo = min(lo, kv_lo[q0 + i]), hi = max(hi, kv_hi[q0 + i]);
    *klo = lo, *khi = hi;
}

// The first key row at or after j that any of queries q0 .. q0+nq-1 sees (INT_MAX: none), so that a block walks
// only the rows its queries see: a prefill's tile over a KV cache may straddle two sequences' slots, and the rows
// between them are no one's (garbage, or a finished sequence's). The same answer in every thread of the block.
__device__ static inline int att_next_seen(const int *kv_lo, const int *kv_hi, int q0, int nq, int j) {
    int next = 0x7fffffff;
    for (int i = 0; i < nq; i++)
        if (kv_hi[q0 + i] >= j) next = min(next, max(kv_lo[q0 + i], j));
    return next;
}

// ds for score s (soft-capped already) given p and dp = dout·v: p (dp − delta), through the cap, times the scale
__device__ static inline float att_dscore(float s, float p, float dp, float delta, float scale, float softcap) {
    float ds = p * (dp - delta);
    if (softcap > 0.0f) ds *= 1.0f - (s / softcap) * (s / softcap);
    return ds * scale;
}

// The first index in [0, n) whose value is >= x (n when none), for a non-decreasing array
__device__ static inline int att_lower_bound(const int *a, int n, int x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}
