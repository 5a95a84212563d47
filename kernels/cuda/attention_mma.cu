// Attention forward over a packed batch on tensor cores: kc_attention_packed's path where its output feeds a bf16
// GEMM (kernels/cpu/attention.c is the contract). One block per (64 consecutive queries, head), 4 warps of 16 query
// rows each. Every tile of 32 keys and values goes to shared memory in bf16 once for the block; a warp's scores
// S = Q·Kᵀ [16, 32] and its output O += P·V [16, hd] are wmma products (bf16 in, fp32 sums), and the online
// softmax between them runs on the CUDA cores over S in shared memory, two lanes to a row. O stays in the
// accumulators across tiles; a row is rescaled (by a fragment of the rows' factors, mma_scale_rows) only when its
// max grows by more than MMA_LAZY over the max its sums are taken against (most tiles leave every row alone): its
// weights exp(s - m) then stay at most e^8, well inside fp32 and bf16.
#include <math.h>

#include "attention_mma.cuh"
#include "common.cuh"

#define MMA_Q 64  // queries per block
#define MMA_K 32  // keys per tile
#define MMA_WARPS (MMA_THREADS / 32)
#define MMA_LAZY 8.0f

// Shared memory for head_dim hd: a warp's staging area holds its scores, and the rows' factors.
struct MmaSmem {
    __nv_bfloat16 *q, *k, *v, *p;  // [64][hd+8], [32][hd+8], [32][hd+8], [4][16][MMA_LDP]
    float *w;                      // [4][16][MMA_LDS]
    int *lo, *hi;                  // [64]: the block's queries' key ranges (past the batch: empty)
    int *seen;                     // [32]: whether any of them sees the tile's row
};

__host__ __device__ static inline size_t mma_smem_bytes(int hd) {
    return 2 * (size_t)mma_ldh(hd) * (MMA_Q + 2 * MMA_K) + 4 * (size_t)MMA_WARPS * 16 * MMA_LDS + 2 * MMA_WARPS * 16 * MMA_LDP +
           4 * (2 * MMA_Q + MMA_K);
}

__device__ static inline MmaSmem mma_smem(float *base, int hd) {
    MmaSmem s;
    s.q = (__nv_bfloat16 *)base;
    s.k = s.q + (size_t)MMA_Q * mma_ldh(hd);
    s.v = s.k + (size_t)MMA_K * mma_ldh(hd);
    s.w = (float *)(s.v + (size_t)MMA_K * mma_ldh(hd));
    s.p = (__nv_bfloat16 *)(s.w + (size_t)MMA_WARPS * 16 * MMA_LDS);
    s.lo = (int *)(s.p + MMA_WARPS * 16 * MMA_LDP);
    s.hi = s.lo + MMA_Q;
    s.seen = s.hi + MMA_Q;
    return s;
}

// Rows j0 .. j0+MMA_K-1 of one kv head of k or v (fp32 or bf16, virtual rows where kv is paged) into dst [32][hd+8]
// in bf16; a row none of the block's queries sees is zeros (it may lie between two sequences' slots, where
// anything can be, and its weights of 0 would still carry a NaN into the products).
template <int HD>
__device__ static inline void mma_load_kv(__nv_bfloat16 *dst, const void *src, const KvRows &kv, const int *seen, int stride, int col,
                                          int j0) {
    for (int e = threadIdx.x; e < MMA_K * HD; e += MMA_THREADS) {
        int j = e / HD, d = e % HD;
        long long row = seen[j] ? kv_page_row(kv.pages, kv.page_shift, j0 + j) : -1;
        dst[j * mma_ldh(HD) + d] = __float2bfloat16_rn(row >= 0 ? att_kv_at(src, kv.type, (size_t)row * stride + col + d) : 0.0f);
    }
}

template <int HD>
__global__ static void __launch_bounds__(MMA_THREADS)
    attention_mma_kernel(float *out, uint16_t *out16, float *lse, const float *q, KvRows kv, const int *kv_lo, const int *kv_hi, int T,
                         int Hq, int Hkv, float scale, float softcap) {
    extern __shared__ __align__(128) float smem[];
    MmaSmem sm = mma_smem(smem, HD);
    int q0 = blockIdx.x * MMA_Q, h = blockIdx.y, kvh = h / (Hq / Hkv), stride = Hkv * HD;
    int nq = T - q0 < MMA_Q ? T - q0 : MMA_Q, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    mma_load_rows<HD>(sm.q, MMA_Q, q, Hq * HD, h * HD, q0, nq);
    for (int i = threadIdx.x; i < MMA_Q; i += MMA_THREADS) sm.lo[i] = i < nq ? kv_lo[q0 + i] : 1, sm.hi[i] = i < nq ? kv_hi[q0 + i] : 0;
    int klo, khi;
    att_tile_range(kv_lo, kv_hi, q0, nq, &klo, &khi);
    int rr = lane >> 1, half = lane & 1, i = warp * 16 + rr;  // this lane's row of the warp's 16, and its half of the tile
    float *W = sm.w + (size_t)warp * 16 * MMA_LDS;
    __nv_bfloat16 *P = sm.p + warp * 16 * MMA_LDP;
    float m = -INFINITY, l = 0.0f;  // the max the row's sums are taken against, and the sum of its weights
    FragC o[HD / 16];
    mma_zero<HD>(o);
    for (int j0 = klo; j0 <= khi; j0 = att_next_seen(kv_lo, kv_hi, q0, nq, j0 + MMA_K)) {
        int nk = khi - j0 + 1 < MMA_K ? khi - j0 + 1 : MMA_K;
        __syncthreads();  // the previous tile is no longer read (and, the first time, the ranges are in)
        if (threadIdx.x < MMA_K) {
            int j = j0 + threadIdx.x, any = 0;
            for (int t = 0; t < nq; t++) any |= j >= sm.lo[t] && j <= sm.hi[t];
            sm.seen[threadIdx.x] = (int)threadIdx.x < nk && any;
        }
        __syncthreads();
        mma_load_kv<HD>(sm.k, kv.k, kv, sm.seen, stride, kvh * HD, j0);
        mma_load_kv<HD>(sm.v, kv.v, kv, sm.seen, stride, kvh * HD, j0);
        __syncthreads();
        FragC sc16[MMA_K / 16];  // the warp's scores for the tile, unscaled, into its staging area
        mma_zero<MMA_K>(sc16);
        mma_abt<HD, MMA_K>(sc16, sm.q + (size_t)warp * 16 * mma_ldh(HD), mma_ldh(HD), sm.k, mma_ldh(HD));
        mma_store<MMA_K>(W, MMA_LDS, sc16);
        __syncwarp();
        int qlo = sm.lo[i], qhi = sm.hi[i];
        float sc[16], tile_max = -INFINITY;
#pragma unroll
        for (int c = 0; c < 16; c++) {
            int col = half * 16 + c, j = j0 + col;
            float s = -INFINITY;
            if (col < nk && j >= qlo && j <= qhi) {
                s = W[rr * MMA_LDS + col] * scale;
                if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
            }
            sc[c] = s, tile_max = fmaxf(tile_max, s);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        float m_new = tile_max > m + MMA_LAZY ? tile_max : m;  // (m -inf: the first keys the row sees set it)
        float corr = m_new == m ? 1.0f : expf(m - m_new), sum = 0.0f;
#pragma unroll
        for (int c = 0; c < 16; c++) {
            __nv_bfloat16 p = __float2bfloat16_rn(sc[c] == -INFINITY ? 0.0f : expf(sc[c] - m_new));
            P[rr * MMA_LDP + half * 16 + c] = p;
            sum += __bfloat162float(p);  // (the weights the products use)
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * corr + sum;
        if (mma_warp_any(m_new != m && m != -INFINITY)) mma_scale_rows<HD>(o, W, corr);  // (a row at -inf holds zeros)
        m = m_new;
        __syncwarp();  // the weights are in
        mma_ab<MMA_K, HD>(o, P, MMA_LDP, sm.v, mma_ldh(HD));
    }
    mma_scale_rows<HD>(o, W, l > 0.0f ? 1.0f / l : 0.0f);  // (l NaN: 0, as the fp32 kernel)
    int rows = nq - warp * 16 < 16 ? nq - warp * 16 : 16;
    mma_write_rows<HD>(out, out16, ((size_t)(q0 + warp * 16) * Hq + h) * HD, (size_t)Hq * HD, rows, W, o);
    if (lse && !half && i < nq) lse[(size_t)(q0 + i) * Hq + h] = l > 0.0f ? m + logf(l) : INFINITY;
}

template <int HD>
static int attention_mma(float *out, uint16_t *out16, float *lse, const float *q, KvRows kv, const int *kv_lo, const int *kv_hi, int T,
                         int Hq, int Hkv, float scale, float softcap) {
    size_t smem = mma_smem_bytes(HD);
    cudaFuncSetAttribute(attention_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    attention_mma_kernel<HD><<<dim3((unsigned)(T + MMA_Q - 1) / MMA_Q, (unsigned)Hq), MMA_THREADS, smem>>>(out, out16, lse, q, kv, kv_lo,
                                                                                                          kv_hi, T, Hq, Hkv, scale, softcap);
    KC_CHECK_LAUNCH("attention_packed (tensor cores)");
    return 0;
}

extern "C" int kc_attention_packed_mma_fits(int hd) {
    return (hd == 16 || hd == 32 || hd == 64 || hd == 128 || hd == 256) && kc_smem_fits(mma_smem_bytes(hd));
}

extern "C" int kc_attention_packed_mma(float *out, uint16_t *out16, float *lse, const float *q, KvRows kv, const int *kv_lo,
                                       const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    if (!kc_attention_packed_mma_fits(hd) || Hkv <= 0 || Hq % Hkv || (kv.type != LD_F32 && kv.type != LD_BF16)) {
        kc_set_error("attention_packed (tensor cores)", cudaErrorInvalidValue);
        return -1;
    }
    if (T <= 0) return 0;
    switch (hd) {
        case 16: return attention_mma<16>(out, out16, lse, q, kv, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
        case 32: return attention_mma<32>(out, out16, lse, q, kv, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
        case 64: return attention_mma<64>(out, out16, lse, q, kv, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
        case 128: return attention_mma<128>(out, out16, lse, q, kv, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
        default: return attention_mma<256>(out, out16, lse, q, kv, kv_lo, kv_hi, T, Hq, Hkv, scale, softcap);
    }
}
