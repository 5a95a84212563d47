// Attention backward on tensor cores: kc_attention_backward's path where dv feeds a bf16 GEMM (dv16 asked for) and
// head_dim is 16, 32, 64, 128 or 256 (kernels/cpu/attention.c k_attention_backward is the contract). The passes of
// attention_backward.cu after its delta, every product a wmma product of bf16 tiles (fp32 sums), the elementwise
// steps on the CUDA cores over a warp's staging area, two lanes to a row:
//   dq: a block per (64 queries, head), a warp per 16 of them, walks their key tiles of 32: S = Q·Kᵀ,
//       p = exp(s − lse), dP = dO·Vᵀ, ds = p·(dp − delta) (through the cap, times the scale), dQ += dS·K;
//   dk, dv: a block per (64 keys, kv head), a warp per 16 of them, walks the query tiles of 32 that see them, for
//       each head of its group: Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, dV += Pᵀ·dO, dK += dSᵀ·Q. For head_dim 256, where one warp
//       would hold 256 accumulator registers a lane for dk and dv, 8 warps: a pair to each 16 keys, one summing dV
//       (and making P), the other dK (and making dS).
// p and ds go into the products rounded to bf16. Going back no sum is rescaled (lse fixes every weight), so the
// gradients stay in the accumulators from the first tile to the last.
#include <math.h>

#include "attention_mma.cuh"
#include "common.cuh"

#define BWD_ROWS 64  // a block's own rows (queries for dq, keys for dk and dv)
#define BWD_TILE 32  // the rows it walks (keys for dq, queries for dk and dv)

// A block's shared memory: its own rows' two operands, a tile's two, each warp's staging, each 16 own rows' bf16
// weights, and per-row values (ranges, lse, delta: of the own rows for dq, of the tile's for dk and dv).
struct BwdSmem {
    __nv_bfloat16 *own_a, *own_b, *tile_a, *tile_b;  // [64][hd+8] twice, [32][hd+8] twice
    float *w;                                        // [warps][16][MMA_LDS]
    __nv_bfloat16 *p, *ds;                           // [4][16][MMA_LDP] each
    int *lo, *hi;                                    // [64]
    float *lse, *delta;                              // [64]
};

__host__ __device__ static inline size_t bwd_smem_bytes(int hd, int warps) {
    return 2 * (size_t)mma_ldh(hd) * 2 * (BWD_ROWS + BWD_TILE) + 4 * (size_t)warps * 16 * MMA_LDS + 2 * 2 * 4 * 16 * MMA_LDP +
           4 * 4 * BWD_ROWS;
}

__device__ static inline BwdSmem bwd_smem(float *base, int hd, int warps) {
    BwdSmem s;
    size_t own = (size_t)BWD_ROWS * mma_ldh(hd), tile = (size_t)BWD_TILE * mma_ldh(hd);
    s.own_a = (__nv_bfloat16 *)base, s.own_b = s.own_a + own, s.tile_a = s.own_b + own, s.tile_b = s.tile_a + tile;
    s.w = (float *)(s.tile_b + tile);
    s.p = (__nv_bfloat16 *)(s.w + (size_t)warps * 16 * MMA_LDS), s.ds = s.p + 4 * 16 * MMA_LDP;
    s.lo = (int *)(s.ds + 4 * 16 * MMA_LDP), s.hi = s.lo + BWD_ROWS;
    s.lse = (float *)(s.hi + BWD_ROWS), s.delta = s.lse + BWD_ROWS;
    return s;
}

// Queries t0 .. t0+n-1 of head h: their q and dout rows in bf16 into qs, dos [rows][hd+8], and their ranges, lse
// and delta (past n: zeros, and empty ranges) — the dq kernel's own rows, the dk/dv kernels' tiles.
template <int HD>
__device__ __forceinline__ static void bwd_load_queries(const BwdSmem &sm, __nv_bfloat16 *qs, __nv_bfloat16 *dos, int rows, const float *q,
                                                        const float *dout, const float *lse, const float *delta, const int *kv_lo,
                                                        const int *kv_hi, int Hq, int h, int t0, int n) {
    mma_load_rows<HD>(qs, rows, q, Hq * HD, h * HD, t0, n);
    mma_load_rows<HD>(dos, rows, dout, Hq * HD, h * HD, t0, n);
    for (int i = threadIdx.x; i < rows; i += blockDim.x) {
        size_t row = (size_t)(t0 + i) * Hq + h;
        sm.lo[i] = i < n ? kv_lo[t0 + i] : 1, sm.hi[i] = i < n ? kv_hi[t0 + i] : 0;
        sm.lse[i] = i < n ? lse[row] : INFINITY, sm.delta[i] = i < n ? delta[row] : 0.0f;
    }
}

// score x·scale through the cap
__device__ __forceinline__ static float bwd_score(float x, float scale, float softcap) {
    x *= scale;
    return softcap > 0.0f ? softcap * tanhf(x / softcap) : x;
}

// A warp's tile: p and ds for its 16 rows × 32 columns, the lane (rr, half) taking columns half·16 .. half·16+15 of
// row rr. S = a1·b1ᵀ and dP = a2·b2ᵀ (rows [16][hd], columns [32][hd]) go through the staging area W [16][MMA_LDS] in turn;
// seen[c], L[c], D[c]: whether the lane's pair c is seen, and its lse and delta. p into Pb (NULL: not wanted),
// ds into dSb, both bf16 [16][MMA_LDP].
template <int HD>
__device__ __forceinline__ static void bwd_tile(float *W, __nv_bfloat16 *Pb, __nv_bfloat16 *dSb, const __nv_bfloat16 *a1, const __nv_bfloat16 *b1,
                                                const __nv_bfloat16 *a2, const __nv_bfloat16 *b2, const int *seen, const float *L,
                                                const float *D, int rr, int half, float scale, float softcap) {
    FragC acc[BWD_TILE / 16];
    mma_zero<BWD_TILE>(acc);
    mma_abt<HD, BWD_TILE>(acc, a1, mma_ldh(HD), b1, mma_ldh(HD));
    mma_store<BWD_TILE>(W, MMA_LDS, acc);
    __syncwarp();
    float s[16], p[16];
#pragma unroll
    for (int c = 0; c < 16; c++) {
        s[c] = bwd_score(W[rr * MMA_LDS + half * 16 + c], scale, softcap);
        p[c] = seen[c] ? expf(s[c] - L[c]) : 0.0f;
    }
    __syncwarp();  // (every lane has read its scores)
    mma_zero<BWD_TILE>(acc);
    mma_abt<HD, BWD_TILE>(acc, a2, mma_ldh(HD), b2, mma_ldh(HD));
    mma_store<BWD_TILE>(W, MMA_LDS, acc);
    __syncwarp();
#pragma unroll
    for (int c = 0; c < 16; c++) {
        int at = rr * MMA_LDP + half * 16 + c;
        float ds = seen[c] ? att_dscore(s[c], p[c], W[rr * MMA_LDS + half * 16 + c], D[c], scale, softcap) : 0.0f;
        dSb[at] = __float2bfloat16_rn(ds);
        if (Pb) Pb[at] = __float2bfloat16_rn(p[c]);
    }
    __syncwarp();  // the weights are in
}

template <int HD>
__global__ static void __launch_bounds__(MMA_THREADS)
    attention_dq_mma_kernel(float *dq, const float *dout, const float *q, const float *k, const float *v, const float *lse,
                            const float *delta, const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, float scale, float softcap) {
    extern __shared__ __align__(128) float smem[];
    BwdSmem sm = bwd_smem(smem, HD, 4);  // own_a Q, own_b dO; tile_a K, tile_b V
    int q0 = blockIdx.x * BWD_ROWS, h = blockIdx.y, kvh = h / (Hq / Hkv), stride = Hkv * HD;
    int nq = T - q0 < BWD_ROWS ? T - q0 : BWD_ROWS, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    bwd_load_queries<HD>(sm, sm.own_a, sm.own_b, BWD_ROWS, q, dout, lse, delta, kv_lo, kv_hi, Hq, h, q0, nq);
    int klo, khi;
    att_tile_range(kv_lo, kv_hi, q0, nq, &klo, &khi);
    int rr = lane >> 1, half = lane & 1;
    float *W = sm.w + (size_t)warp * 16 * MMA_LDS;
    __nv_bfloat16 *dSb = sm.ds + warp * 16 * MMA_LDP;
    const __nv_bfloat16 *Qw = sm.own_a + (size_t)warp * 16 * mma_ldh(HD), *dOw = sm.own_b + (size_t)warp * 16 * mma_ldh(HD);
    FragC acc[HD / 16];
    mma_zero<HD>(acc);
    for (int j0 = klo; j0 <= khi; j0 += BWD_TILE) {
        int nk = khi - j0 + 1 < BWD_TILE ? khi - j0 + 1 : BWD_TILE;
        __syncthreads();  // the previous tile is no longer read (and, the first time, the own rows are in)
        mma_load_rows<HD>(sm.tile_a, BWD_TILE, k, stride, kvh * HD, j0, nk);
        mma_load_rows<HD>(sm.tile_b, BWD_TILE, v, stride, kvh * HD, j0, nk);
        __syncthreads();
        int i = warp * 16 + rr, seen[16];
        float L[16], D[16];
#pragma unroll
        for (int c = 0; c < 16; c++) {
            int col = half * 16 + c, j = j0 + col;
            seen[c] = col < nk && j >= sm.lo[i] && j <= sm.hi[i], L[c] = sm.lse[i], D[c] = sm.delta[i];
        }
        bwd_tile<HD>(W, NULL, dSb, Qw, sm.tile_a, dOw, sm.tile_b, seen, L, D, rr, half, scale, softcap);
        mma_ab<BWD_TILE, HD>(acc, dSb, MMA_LDP, sm.tile_a, mma_ldh(HD));
    }
    int rows = nq - warp * 16 < 16 ? nq - warp * 16 : 16;
    mma_write_rows<HD>(dq, NULL, ((size_t)(q0 + warp * 16) * Hq + h) * HD, (size_t)Hq * HD, rows, W, acc);
}

template <int HD>
__global__ static void __launch_bounds__(MMA_THREADS)
    attention_dkv_mma_kernel(float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k, const float *v,
                             const float *lse, const float *delta, const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, float scale,
                             float softcap) {
    extern __shared__ __align__(128) float smem[];
    BwdSmem sm = bwd_smem(smem, HD, 4);  // own_a K, own_b V; tile_a Q, tile_b dO
    int j0 = blockIdx.x * BWD_ROWS, kvh = blockIdx.y, stride = Hkv * HD, group = Hq / Hkv;
    int nk = T - j0 < BWD_ROWS ? T - j0 : BWD_ROWS, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    mma_load_rows<HD>(sm.own_a, BWD_ROWS, k, stride, kvh * HD, j0, nk);
    mma_load_rows<HD>(sm.own_b, BWD_ROWS, v, stride, kvh * HD, j0, nk);
    // the queries that see a key of [j0, j0 + nk - 1] (every thread finds them: no static shared memory may come
    // before the dynamic, which wmma needs 32-byte aligned)
    int t_first = att_lower_bound(kv_hi, T, j0), t_last = att_lower_bound(kv_lo, T, j0 + nk) - 1;
    int rr = lane >> 1, half = lane & 1, jk = warp * 16 + rr;  // this lane's key row of the block's 64
    float *W = sm.w + (size_t)warp * 16 * MMA_LDS;
    __nv_bfloat16 *Pb = sm.p + warp * 16 * MMA_LDP, *dSb = sm.ds + warp * 16 * MMA_LDP;
    const __nv_bfloat16 *Kw = sm.own_a + (size_t)warp * 16 * mma_ldh(HD), *Vw = sm.own_b + (size_t)warp * 16 * mma_ldh(HD);
    FragC acc_k[HD / 16], acc_v[HD / 16];
    mma_zero<HD>(acc_k), mma_zero<HD>(acc_v);
    __syncthreads();
    for (int g = 0; g < group; g++) {
        int h = kvh * group + g;
        for (int t0 = t_first; t0 <= t_last; t0 += BWD_TILE) {
            int nq = t_last - t0 + 1 < BWD_TILE ? t_last - t0 + 1 : BWD_TILE;
            __syncthreads();  // the previous query tile is no longer read
            bwd_load_queries<HD>(sm, sm.tile_a, sm.tile_b, BWD_TILE, q, dout, lse, delta, kv_lo, kv_hi, Hq, h, t0, nq);
            __syncthreads();
            int j = j0 + jk, seen[16];
            float L[16], D[16];
#pragma unroll
            for (int c = 0; c < 16; c++) {
                int col = half * 16 + c;
                seen[c] = jk < nk && j >= sm.lo[col] && j <= sm.hi[col], L[c] = sm.lse[col], D[c] = sm.delta[col];
            }
            bwd_tile<HD>(W, Pb, dSb, Kw, sm.tile_a, Vw, sm.tile_b, seen, L, D, rr, half, scale, softcap);
            mma_ab<BWD_TILE, HD>(acc_v, Pb, MMA_LDP, sm.tile_b, mma_ldh(HD));
            mma_ab<BWD_TILE, HD>(acc_k, dSb, MMA_LDP, sm.tile_a, mma_ldh(HD));
        }
    }
    int rows = nk - warp * 16 < 16 ? nk - warp * 16 : 16;
    size_t first = (size_t)(j0 + warp * 16) * stride + (size_t)kvh * HD;
    mma_write_rows<HD>(dk, NULL, first, (size_t)stride, rows, W, acc_k);
    mma_write_rows<HD>(dv, dv16, first, (size_t)stride, rows, W, acc_v);
}

// dk, dv for head_dim 256: 8 warps, a pair to each 16 keys of the block's 64 — warp g (< 4) makes the weights P and
// sums dV, warp g + 4 makes dS and sums dK — so that each holds 128 accumulator registers a lane, not 256. The
// pair's scores (warp g) and dP (warp g + 4) go through their staging areas, read by both.
template <int HD>
__global__ static void __launch_bounds__(2 * MMA_THREADS)
    attention_dkv_mma_pairs_kernel(float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k, const float *v,
                                   const float *lse, const float *delta, const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv,
                                   float scale, float softcap) {
    extern __shared__ __align__(128) float smem[];
    BwdSmem sm = bwd_smem(smem, HD, 8);  // own_a K, own_b V; tile_a Q, tile_b dO
    int j0 = blockIdx.x * BWD_ROWS, kvh = blockIdx.y, stride = Hkv * HD, group = Hq / Hkv;
    int nk = T - j0 < BWD_ROWS ? T - j0 : BWD_ROWS, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = warp & 3, sums_dk = warp >> 2;
    mma_load_rows<HD>(sm.own_a, BWD_ROWS, k, stride, kvh * HD, j0, nk);
    mma_load_rows<HD>(sm.own_b, BWD_ROWS, v, stride, kvh * HD, j0, nk);
    int t_first = att_lower_bound(kv_hi, T, j0), t_last = att_lower_bound(kv_lo, T, j0 + nk) - 1;  // (as above)
    int rr = lane >> 1, half = lane & 1, jk = g * 16 + rr;  // this lane's key row of the block's 64
    float *W = sm.w + (size_t)warp * 16 * MMA_LDS, *S = sm.w + (size_t)g * 16 * MMA_LDS, *dP = S + (size_t)4 * 16 * MMA_LDS;
    __nv_bfloat16 *Pb = sm.p + g * 16 * MMA_LDP, *dSb = sm.ds + g * 16 * MMA_LDP;
    FragC acc[HD / 16];  // dV (warps 0-3) or dK (warps 4-7)
    mma_zero<HD>(acc);
    __syncthreads();
    for (int hg = 0; hg < group; hg++) {
        int h = kvh * group + hg;
        for (int t0 = t_first; t0 <= t_last; t0 += BWD_TILE) {
            int nq = t_last - t0 + 1 < BWD_TILE ? t_last - t0 + 1 : BWD_TILE;
            __syncthreads();  // the previous query tile and the pairs' staging are no longer read
            bwd_load_queries<HD>(sm, sm.tile_a, sm.tile_b, BWD_TILE, q, dout, lse, delta, kv_lo, kv_hi, Hq, h, t0, nq);
            __syncthreads();
            FragC sd[BWD_TILE / 16];  // Sᵀ = K·Qᵀ (warp g) or dPᵀ = V·dOᵀ (warp g + 4)
            mma_zero<BWD_TILE>(sd);
            mma_abt<HD, BWD_TILE>(sd, (sums_dk ? sm.own_b : sm.own_a) + (size_t)g * 16 * mma_ldh(HD), mma_ldh(HD),
                                  sums_dk ? sm.tile_b : sm.tile_a, mma_ldh(HD));
            mma_store<BWD_TILE>(W, MMA_LDS, sd);
            __syncthreads();  // both halves of each pair are in
#pragma unroll
            for (int c = 0; c < 16; c++) {
                int col = half * 16 + c, j = j0 + jk, at = rr * MMA_LDP + col;
                int seen = jk < nk && j >= sm.lo[col] && j <= sm.hi[col];
                float s = bwd_score(S[rr * MMA_LDS + col], scale, softcap), p = seen ? expf(s - sm.lse[col]) : 0.0f;
                if (sums_dk)
                    dSb[at] = __float2bfloat16_rn(seen ? att_dscore(s, p, dP[rr * MMA_LDS + col], sm.delta[col], scale, softcap) : 0.0f);
                else
                    Pb[at] = __float2bfloat16_rn(p);
            }
            __syncthreads();  // the weights are in
            mma_ab<BWD_TILE, HD>(acc, sums_dk ? dSb : Pb, MMA_LDP, sums_dk ? sm.tile_a : sm.tile_b, mma_ldh(HD));
        }
    }
    __syncthreads();  // (the staging areas are the pairs' no longer)
    int rows = nk - g * 16 < 16 ? nk - g * 16 : 16;
    size_t first = (size_t)(j0 + g * 16) * stride + (size_t)kvh * HD;
    if (sums_dk) mma_write_rows<HD>(dk, NULL, first, (size_t)stride, rows, W, acc);
    else mma_write_rows<HD>(dv, dv16, first, (size_t)stride, rows, W, acc);
}

template <int HD>
static int backward_mma(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k, const float *v,
                        const float *lse, const float *delta, const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, float scale,
                        float softcap) {
    size_t smem = bwd_smem_bytes(HD, 4), smem_pairs = bwd_smem_bytes(HD, 8);
    dim3 grid_q((unsigned)(T + BWD_ROWS - 1) / BWD_ROWS, (unsigned)Hq), grid_k((unsigned)(T + BWD_ROWS - 1) / BWD_ROWS, (unsigned)Hkv);
    cudaFuncSetAttribute(attention_dq_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    attention_dq_mma_kernel<HD><<<grid_q, MMA_THREADS, smem>>>(dq, dout, q, k, v, lse, delta, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
    KC_CHECK_LAUNCH("attention_backward (dq, tensor cores)");
    if constexpr (HD > 128) {  // (the other kernel is never made for it)
        cudaFuncSetAttribute(attention_dkv_mma_pairs_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_pairs);
        attention_dkv_mma_pairs_kernel<HD><<<grid_k, 2 * MMA_THREADS, smem_pairs>>>(dk, dv, dv16, dout, q, k, v, lse, delta, kv_lo, kv_hi, T,
                                                                                      Hq, Hkv, scale, softcap);
    } else {
        cudaFuncSetAttribute(attention_dkv_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        attention_dkv_mma_kernel<HD><<<grid_k, MMA_THREADS, smem>>>(dk, dv, dv16, dout, q, k, v, lse, delta, kv_lo, kv_hi, T, Hq, Hkv, scale,
                                                                     softcap);
    }
    KC_CHECK_LAUNCH("attention_backward (dk, dv, tensor cores)");
    return 0;
}

extern "C" int kc_attention_backward_mma_fits(int hd) {
    return (hd == 16 || hd == 32 || hd == 64 || hd == 128 || hd == 256) && kc_smem_fits(bwd_smem_bytes(hd, hd > 128 ? 8 : 4));
}

extern "C" int kc_attention_backward_mma(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k,
                                         const float *v, const float *lse, const float *delta, const int *kv_lo, const int *kv_hi, int T,
                                         int Hq, int Hkv, int hd, float scale, float softcap) {
    if (!kc_attention_backward_mma_fits(hd) || Hkv <= 0 || Hq % Hkv) {
        kc_set_error("attention_backward (tensor cores)", cudaErrorInvalidValue);
        return -1;
    }
    if (T <= 0) return 0;
    switch (hd) {
        case 16: return backward_mma<16>(dq, dk, dv, dv16, dout, q, k, v, lse, delta, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
        case 32: return backward_mma<32>(dq, dk, dv, dv16, dout, q, k, v, lse, delta, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
        case 64: return backward_mma<64>(dq, dk, dv, dv16, dout, q, k, v, lse, delta, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
        case 128: return backward_mma<128>(dq, dk, dv, dv16, dout, q, k, v, lse, delta, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
        default: return backward_mma<256>(dq, dk, dv, dv16, dout, q, k, v, lse, delta, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
    }
}
