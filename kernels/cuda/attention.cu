// Attention forward in the flash manner (kernels/cpu/attention.c is the contract), no score matrix ever in memory.
// Two shapes of work: token by token (kc_attention: decoding, tokens of different sequences of a KV cache, each
// against its own rows), blocks per (token, kv head) and splits of its key range stream the keys through shared
// memory with an online softmax, the splits merged after; in tiles (kc_attention_packed: a packed training batch,
// or a prefill's rows of the cache), one block per (32 consecutive queries, head) shares each tile of 32 keys among
// its queries (see attention_tile.cuh) — in fp32 here, and on tensor cores in attention_mma.cu where the output goes
// to a bf16 GEMM.
#include <math.h>

#include "attention_tile.cuh"
#include "common.cuh"

#define TILE 16
#define THREADS 128
#define MAX_HD 256

// Decoding (flash-decoding): one block per (token, kv head, group of up to MAX_GROUP of its query heads, split);
// the block loads each tile of the token's keys and values once for every query head of its group (GQA's heads
// share them), and a split walks only its share of the key range, so a few long sequences still fill the card.
// With one split a block writes the output; with several each writes its unnormalised sum, max and weight, and
// combine_kernel merges them.
#define MAX_GROUP 8
#define MAX_SPLITS 16
#define DECODE_BLOCKS 512  // enough blocks to fill a card: splits are added until the grid has about this many
#define MIN_SPLIT_KEYS 64  // a token's keys go in no more splits than leave each at least this many (the rest stay empty)

typedef struct {  // split-major, so that the splits a short sequence leaves empty are never touched
    float *acc, *m, *l;  // [splits][T·Hq][hd], [splits][T·Hq], [splits][T·Hq]
} Partials;

__global__ static void attention_kernel(float *out, uint16_t *out16, Partials part, const float *q, KvRows kv, const int *kv_base,
                                        const int *kv_lo, const int *kv_hi, int Hq, int Hkv, int hd, float scale, float softcap) {
    __shared__ float qs[MAX_GROUP][MAX_HD], ks[TILE][MAX_HD], vs[TILE][MAX_HD], p[MAX_GROUP][TILE];
    int group = Hq / Hkv, chunks = (group + MAX_GROUP - 1) / MAX_GROUP, splits = gridDim.y, split = blockIdx.y;
    int t = blockIdx.x / (Hkv * chunks), kvh = blockIdx.x / chunks % Hkv, h0 = kvh * group + blockIdx.x % chunks * MAX_GROUP;
    int G = min(MAX_GROUP, (kvh + 1) * group - h0), stride = Hkv * hd;
    int lo = kv_lo[t], len = kv_hi[t] - lo + 1, used = max(1, min(splits, len / MIN_SPLIT_KEYS));
    int first = 1, last = 0;  // this split's keys: none for a split the token leaves empty
    if (split < used) first = lo + (int)((long long)len * split / used), last = lo + (int)((long long)len * (split + 1) / used) - 1;
    int base = kv_base[t], col = kvh * hd;
    for (int e = threadIdx.x; e < G * hd; e += THREADS) qs[e / hd][e % hd] = q[((size_t)t * Hq + h0 + e / hd) * hd + e % hd];
    float acc[MAX_GROUP][MAX_HD / THREADS] = {{0}}, m[MAX_GROUP], l[MAX_GROUP];  // thread's dims d = threadIdx.x + i·THREADS
    for (int g = 0; g < MAX_GROUP; g++) m[g] = -INFINITY, l[g] = 0.0f;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int j0 = first; j0 <= last; j0 += TILE) {
        int n = last - j0 + 1 < TILE ? last - j0 + 1 : TILE;
        __syncthreads();  // the previous tile is no longer read
        for (int e = threadIdx.x; e < n * hd; e += THREADS) {  // (rows in a range: their pages are mapped)
            int j = e / hd, d = e % hd;
            size_t at = (size_t)kv_page_row(kv.pages, kv.page_shift, base + j0 + j) * stride + col + d;
            ks[j][d] = att_kv_at(kv.k, kv.type, at);
            vs[j][d] = att_kv_at(kv.v, kv.type, at);
        }
        __syncthreads();
        for (int pair = warp; pair < G * n; pair += THREADS / 32) {  // a warp per (head, key): lanes split the dot product
            int g = pair / n, j = pair % n;
            float sc = 0.0f;
            for (int d = lane; d < hd; d += 32) sc += qs[g][d] * ks[j][d];
            for (int o = 16; o > 0; o >>= 1) sc += __shfl_xor_sync(0xffffffffu, sc, o);
            sc *= scale;
            if (softcap > 0.0f) sc = softcap * tanhf(sc / softcap);
            if (lane == 0) p[g][j] = sc;
        }
        __syncthreads();
#pragma unroll  // (a fixed bound, so that acc stays in registers)
        for (int g = 0; g < MAX_GROUP; g++) {
            if (g >= G) continue;
            float tile_max = -INFINITY;
            for (int j = 0; j < n; j++) tile_max = fmaxf(tile_max, p[g][j]);
            float m_new = fmaxf(m[g], tile_max), correction = expf(m[g] - m_new);  // exp(-inf) = 0 on the first tile
            l[g] *= correction;
            for (int i = 0; i < MAX_HD / THREADS; i++) acc[g][i] *= correction;
            for (int j = 0; j < n; j++) {
                float w = expf(p[g][j] - m_new);
                l[g] += w;
                for (int i = 0; i < MAX_HD / THREADS; i++) {
                    int d = threadIdx.x + i * THREADS;
                    if (d < hd) acc[g][i] += w * vs[j][d];
                }
            }
            m[g] = m_new;
        }
    }
#pragma unroll
    for (int g = 0; g < MAX_GROUP; g++) {
        if (g >= G) continue;
        size_t row = (size_t)t * Hq + h0 + g, at = (size_t)split * (gridDim.x / (Hkv * chunks)) * Hq + row;
        for (int i = 0; i < MAX_HD / THREADS; i++) {
            int d = threadIdx.x + i * THREADS;
            if (d >= hd) continue;
            if (splits == 1)
                kc_store(out, out16, row * hd + d, l[g] != 0.0f ? acc[g][i] / l[g] : 0.0f);  // (!= 0: a NaN key's NaN goes through)
            else if (l[g] != 0.0f)  // (an empty split's sum is never read)
                part.acc[at * hd + d] = acc[g][i];
        }
        if (splits > 1 && threadIdx.x == 0) part.m[at] = m[g], part.l[at] = l[g];
    }
}

// One block per (token, head): the splits' sums rescaled to their common max and added, over their weights'.
__global__ static void combine_kernel(float *out, uint16_t *out16, Partials part, int splits, int hd) {
    size_t row = blockIdx.x, rows = gridDim.x;
    float M = -INFINITY, L = 0.0f;
    for (int s = 0; s < splits; s++)
        if (part.l[s * rows + row] != 0.0f) M = fmaxf(M, part.m[s * rows + row]);
    for (int s = 0; s < splits; s++)
        if (part.l[s * rows + row] != 0.0f) L += part.l[s * rows + row] * expf(part.m[s * rows + row] - M);
    for (int d = threadIdx.x; d < hd; d += THREADS) {
        float sum = 0.0f;
        for (int s = 0; s < splits; s++)
            if (part.l[s * rows + row] != 0.0f) sum += part.acc[(s * rows + row) * hd + d] * expf(part.m[s * rows + row] - M);
        kc_store(out, out16, row * hd + d, L != 0.0f ? sum / L : 0.0f);
    }
}

// kv's type must be fp32 or bf16
static int kv_ok(const KvRows *kv) { return kv->type == LD_F32 || kv->type == LD_BF16; }

extern "C" int kc_attention(float *out, uint16_t *out16, const float *q, KvRows kv, const int *kv_base, const int *kv_lo, const int *kv_hi,
                            int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    if (hd > MAX_HD || hd <= 0 || Hkv <= 0 || Hq <= 0 || Hq % Hkv || !kv_ok(&kv)) {
        kc_set_error("attention", cudaErrorInvalidValue);
        return -1;
    }
    if (T <= 0) return 0;
    int chunks = (Hq / Hkv + MAX_GROUP - 1) / MAX_GROUP, blocks = T * Hkv * chunks;
    int splits = (DECODE_BLOCKS + blocks - 1) / blocks;
    splits = splits < 1 ? 1 : splits > MAX_SPLITS ? MAX_SPLITS : splits;
    Partials part = {0};
    size_t rows = (size_t)T * Hq * splits;
    if (splits > 1 && (!(part.acc = (float *)kc_alloc(sizeof(float) * rows * (hd + 2))))) return -1;
    if (part.acc) part.m = part.acc + rows * hd, part.l = part.m + rows;
    attention_kernel<<<dim3((unsigned)blocks, (unsigned)splits), THREADS>>>(out, out16, part, q, kv, kv_base, kv_lo, kv_hi, Hq, Hkv, hd,
                                                                            scale, softcap);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && splits > 1) {
        combine_kernel<<<(unsigned)(T * Hq), THREADS>>>(out, out16, part, splits, hd);
        e = cudaGetLastError();
    }
    kc_free(part.acc);  // (the caching allocator hands it out again only to later launches)
    return e == cudaSuccess ? 0 : (kc_set_error("attention", e), -1);
}

// One block: queries q0..q0+31 of head h; warp w owns queries q0 + 8w .. q0 + 8w + 7, lane l owns output dims
// l, l + 32, ... Each tile of 32 keys is loaded once for all 32 queries; lane j scores key j for each of its
// warp's queries, then the tile's probabilities are broadcast lane by lane into the running outputs.
__global__ static void __launch_bounds__(ATT_THREADS)
    attention_packed_kernel(float *out, uint16_t *out16, float *lse, const float *q, KvRows kv, const int *kv_lo, const int *kv_hi, int T,
                            int Hq, int Hkv, int hd, float scale, float softcap) {
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
        att_load_kv_rows(Ks, hd + 1, kv.k, kv, stride, kvh * hd, j0, nk, hd);
        att_load_kv_rows(Vs, hd, kv.v, kv, stride, kvh * hd, j0, nk, hd);
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
        size_t o = ((size_t)(q0 + i) * Hq + h) * hd;
#pragma unroll
        for (int c = 0; c < ATT_DIMS; c++) {
            int d = lane + 32 * c;
            if (d < hd) kc_store(out, out16, o + d, l[r] > 0.0f ? acc[r][c] / l[r] : 0.0f);
        }
        if (lse && lane == 0) lse[(size_t)(q0 + i) * Hq + h] = l[r] > 0.0f ? m[r] + logf(l[r]) : INFINITY;
    }
}

extern "C" int kc_attention_packed(float *out, uint16_t *out16, float *lse, const float *q, KvRows kv, const int *kv_lo, const int *kv_hi,
                                   int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    if (hd > MAX_HD || hd <= 0 || Hkv <= 0 || Hq % Hkv || !kv_ok(&kv)) {
        kc_set_error("attention_packed", cudaErrorInvalidValue);
        return -1;
    }
    if (T <= 0) return 0;
    if (out16 && kc_attention_packed_mma_fits(hd))  // (its output is rounded to bf16 anyway)
        return kc_attention_packed_mma(out, out16, lse, q, kv, kv_lo, kv_hi, T, Hq, Hkv, hd, scale, softcap);
    size_t smem = sizeof(float) * ATT_TILE * (3 * (size_t)hd + 1);
    if (!kc_smem_fits(smem)) return kc_smem_refused("attention_packed", smem, hd);
    cudaFuncSetAttribute(attention_packed_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    attention_packed_kernel<<<dim3((unsigned)(T + ATT_TILE - 1) / ATT_TILE, (unsigned)Hq), ATT_THREADS, smem>>>(
        out, out16, lse, q, kv, kv_lo, kv_hi, T, Hq, Hkv, hd, scale, softcap);
    KC_CHECK_LAUNCH("attention_packed");
    return 0;
}
