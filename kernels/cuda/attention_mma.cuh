// defines: what the tensor-core attention kernels (the forward in attention_mma.cu, the backward in
// attention_backward_mma.cu) share: a warp's 16-row products of bf16 tiles in shared memory (wmma, fp32 sums),
// the pitches that keep wmma's alignment, and the bf16 loads of a tile's rows.
#pragma once
#include <mma.h>

#include <type_traits>

#include "attention_tile.cuh"

#define MMA_THREADS 128  // 4 warps, 16 rows each
#define MMA_LDP 40       // pitch of a warp's [16][32] bf16 weights (a multiple of 8, against bank conflicts)
#define MMA_LDS 36       // pitch of a warp's [16][32] fp32 staging (scores; the output 16 columns at a time)

typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> FragC;

// Pitch of rows of head_dim hd in bf16 (hd + 8); wmma wants 16-byte multiples, and 32-byte aligned pointers: the
// kernels' dynamic shared memory is declared __align__(128), with no static shared memory before it, and every
// region they carve from it is a multiple of 32 bytes long.
__host__ __device__ static inline int mma_ldh(int hd) { return hd + 8; }

// acc[n] += A·op(B) for n < NC/16, A [16][KD] at a (pitch lda): with BT, B [NC][KD] at b (pitch ldb) and op(B) = Bᵀ
// (scores from query and key rows), else B [KD][NC] (weights times value rows).
template <int KD, int NC, bool BT>
__device__ __forceinline__ static void mma_acc(FragC *acc, const __nv_bfloat16 *a, int lda, const __nv_bfloat16 *b, int ldb) {
    using namespace nvcuda;
    typedef typename std::conditional<BT, wmma::col_major, wmma::row_major>::type LayoutB;
#pragma unroll
    for (int kk = 0; kk < KD / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
        wmma::load_matrix_sync(fa, a + kk * 16, lda);
#pragma unroll
        for (int n = 0; n < NC / 16; n++) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LayoutB> fb;
            wmma::load_matrix_sync(fb, b + (BT ? (size_t)n * 16 * ldb + kk * 16 : (size_t)kk * 16 * ldb + n * 16), ldb);
            wmma::mma_sync(acc[n], fa, fb, acc[n]);
        }
    }
}
template <int KD, int NC>
__device__ __forceinline__ static void mma_abt(FragC *acc, const __nv_bfloat16 *a, int lda, const __nv_bfloat16 *b, int ldb) {
    mma_acc<KD, NC, true>(acc, a, lda, b, ldb);
}
template <int KD, int NC>
__device__ __forceinline__ static void mma_ab(FragC *acc, const __nv_bfloat16 *a, int lda, const __nv_bfloat16 *b, int ldb) {
    mma_acc<KD, NC, false>(acc, a, lda, b, ldb);
}

template <int NC>
__device__ __forceinline__ static void mma_zero(FragC *acc) {
#pragma unroll
    for (int n = 0; n < NC / 16; n++) nvcuda::wmma::fill_fragment(acc[n], 0.0f);
}

// acc [16][NC] into w (pitch ldw), row-major
template <int NC>
__device__ __forceinline__ static void mma_store(float *w, int ldw, const FragC *acc) {
#pragma unroll
    for (int n = 0; n < NC / 16; n++) nvcuda::wmma::store_matrix_sync(w + n * 16, acc[n], ldw, nvcuda::wmma::mem_row_major);
}

// Rows j0 .. j0+rows-1 of one head (column col) of an fp32 [*, stride] buffer into dst [rows][hd+8] in bf16; rows
// at or past n are zeros.
template <int HD>
__device__ __forceinline__ static void mma_load_rows(__nv_bfloat16 *dst, int rows, const float *src, int stride, int col, int j0, int n) {
    for (int e = threadIdx.x; e < rows * HD; e += blockDim.x) {
        int j = e / HD, d = e % HD;
        dst[j * mma_ldh(HD) + d] = __float2bfloat16_rn(j < n ? src[(size_t)(j0 + j) * stride + col + d] : 0.0f);
    }
}

// acc[n] times its rows' factors for n < NC/16, the factor of row rr given by the lanes 2·rr and 2·rr + 1: the factors
// go into a 16×16 tile in W [16][MMA_LDS], loaded as an accumulator fragment, whose elements lie where acc's do
// (one fragment type, one mapping), so that the product is element by element in registers.
template <int NC>
__device__ __forceinline__ static void mma_scale_rows(FragC *acc, float *W, float factor) {
    int lane = threadIdx.x & 31, rr = lane >> 1, half = lane & 1;
    __syncwarp();  // (W read by every lane)
    for (int c = half * 8; c < half * 8 + 8; c++) W[rr * MMA_LDS + c] = factor;
    __syncwarp();
    FragC f;
    nvcuda::wmma::load_matrix_sync(f, W, MMA_LDS, nvcuda::wmma::mem_row_major);
#pragma unroll
    for (int n = 0; n < NC / 16; n++)
#pragma unroll
        for (int i = 0; i < f.num_elements; i++) acc[n].x[i] *= f.x[i];
}

// whether v is set in any lane of the warp
__device__ __forceinline__ static int mma_warp_any(int v) {
    for (int o = 16; o > 0; o >>= 1) v |= __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// A warp's accumulators [16][NC] into rows `rows` of y (row r at first + r·pitch; and of y16 where given), one
// fragment at a time through its staging area W [16][MMA_LDS].
template <int NC>
__device__ __forceinline__ static void mma_write_rows(float *y, uint16_t *y16, size_t first, size_t pitch, int rows, float *W,
                                                      const FragC *acc) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int n = 0; n < NC / 16; n++) {
        __syncwarp();  // (W read by every lane)
        nvcuda::wmma::store_matrix_sync(W, acc[n], MMA_LDS, nvcuda::wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {  // half a warp to a row's 16 columns
            int r = e >> 4, c = e & 15;
            if (r < rows) kc_store(y, y16, first + (size_t)r * pitch + n * 16 + c, W[r * MMA_LDS + c]);
        }
    }
    __syncwarp();
}
