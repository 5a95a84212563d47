// Attention backward in the flash manner (kernels/cpu/attention.c k_attention_backward is the contract), tiled as
// the packed forward (attention_tile.cuh) and with no probability matrix stored and no atomics. From the
// forward's output and each (query, head)'s log-sum-exp:
//   2. delta = Σ_d dout·out per (query, head);
//   3. dq: a block per (32 queries, head) walks their key tiles, recomputing p = exp(s − lse) and
//      ds = p·(dout·v − delta) (through the soft-cap and the scale), dq += ds·k;
//   4. dk, dv: a block per (32 keys, kv head) walks the query tiles of every head in its group that see those keys:
//      dv = Σ p·dout, dk = Σ ds·q, summed in registers and written to dk/dv once (a block owns its rows).
// Step 4 finds the queries that see a key tile by binary search, so kv_lo and kv_hi must not decrease along the
// batch (true of causal packed records, with or without a window). Steps 3 and 4 run on tensor cores
// (attention_backward_mma.cu) where dv feeds a bf16 GEMM and head_dim allows.
#include <math.h>

#include "attention_tile.cuh"
#include "common.cuh"

__global__ static void attention_delta_kernel(float *delta, const float *dout, const float *out, int n_rows, int hd) {
    int row = blockIdx.x * (ATT_THREADS / 32) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= n_rows) return;  // a whole warp leaves together
    float s = 0.0f;
    for (int d = lane; d < hd; d += 32) s += dout[(size_t)row * hd + d] * out[(size_t)row * hd + d];
    s = att_warp_sum(s);
    if (lane == 0) delta[row] = s;
}

__global__ static void __launch_bounds__(ATT_THREADS)
    attention_dq_kernel(float *dq, const float *dout, const float *q, const float *k, const float *v, const float *lse, const float *delta,
                        const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    extern __shared__ float smem[];
    float *Qs = smem, *dOs = Qs + ATT_TILE * hd, *Ks = dOs + ATT_TILE * hd, *Vs = Ks + ATT_TILE * (hd + 1);  // Ks, Vs pitch hd+1
    int q0 = blockIdx.x * ATT_TILE, h = blockIdx.y, kvh = h / (Hq / Hkv), stride = Hkv * hd;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nq = T - q0 < ATT_TILE ? T - q0 : ATT_TILE;
    att_load_rows(Qs, hd, q, Hq * hd, h * hd, q0, nq, hd);
    att_load_rows(dOs, hd, dout, Hq * hd, h * hd, q0, nq, hd);
    int klo, khi;
    att_tile_range(kv_lo, kv_hi, q0, nq, &klo, &khi);
    int qlo[ATT_ROWS], qhi[ATT_ROWS];
    float L[ATT_ROWS], Dl[ATT_ROWS], acc[ATT_ROWS][ATT_DIMS];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int i = warp * ATT_ROWS + r;
        qlo[r] = i < nq ? kv_lo[q0 + i] : 1, qhi[r] = i < nq ? kv_hi[q0 + i] : 0;
        L[r] = i < nq ? lse[(size_t)(q0 + i) * Hq + h] : INFINITY, Dl[r] = i < nq ? delta[(size_t)(q0 + i) * Hq + h] : 0.0f;
#pragma unroll
        for (int c = 0; c < ATT_DIMS; c++) acc[r][c] = 0.0f;
    }
    for (int j0 = klo; j0 <= khi; j0 += ATT_TILE) {
        int nk = khi - j0 + 1 < ATT_TILE ? khi - j0 + 1 : ATT_TILE;
        __syncthreads();
        att_load_rows(Ks, hd + 1, k, stride, kvh * hd, j0, nk, hd);
        att_load_rows(Vs, hd + 1, v, stride, kvh * hd, j0, nk, hd);
        __syncthreads();
        int j = j0 + lane;
#pragma unroll
        for (int r = 0; r < ATT_ROWS; r++) {
            int i = warp * ATT_ROWS + r;
            float ds = 0.0f;
            if (lane < nk && j >= qlo[r] && j <= qhi[r]) {
                float s = att_score(Qs + i * hd, Ks + lane * (hd + 1), hd, scale, softcap), p = expf(s - L[r]);
                float dp = 0.0f;
                for (int d = 0; d < hd; d++) dp += dOs[i * hd + d] * Vs[lane * (hd + 1) + d];
                ds = att_dscore(s, p, dp, Dl[r], scale, softcap);
            }
            for (int jj = 0; jj < nk; jj++) {
                float dj = __shfl_sync(0xffffffffu, ds, jj);
                if (dj == 0.0f) continue;  // the same for every lane
#pragma unroll
                for (int c = 0; c < ATT_DIMS; c++) {
                    int d = lane + 32 * c;
                    if (d < hd) acc[r][c] += dj * Ks[jj * (hd + 1) + d];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int i = warp * ATT_ROWS + r;
        if (i >= nq) continue;
#pragma unroll
        for (int c = 0; c < ATT_DIMS; c++) {
            int d = lane + 32 * c;
            if (d < hd) dq[((size_t)(q0 + i) * Hq + h) * hd + d] = acc[r][c];
        }
    }
}

__global__ static void __launch_bounds__(ATT_THREADS)
    attention_dkv_kernel(float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k, const float *v,
                         const float *lse, const float *delta, const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, int hd,
                         float scale, float softcap) {
    extern __shared__ float smem[];
    // Ks, Vs [32][hd] (a warp's row, read by all lanes); Qs, dOs [32][hd+1] (a lane's row each); per-query values
    float *Ks = smem, *Vs = Ks + ATT_TILE * hd, *Qs = Vs + ATT_TILE * hd, *dOs = Qs + ATT_TILE * (hd + 1);
    float *Ls = dOs + ATT_TILE * (hd + 1), *Ds = Ls + ATT_TILE;
    int *qlo_s = (int *)(Ds + ATT_TILE), *qhi_s = qlo_s + ATT_TILE;
    __shared__ int t_first, t_last;
    int j0 = blockIdx.x * ATT_TILE, kvh = blockIdx.y, stride = Hkv * hd, group = Hq / Hkv;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nk = T - j0 < ATT_TILE ? T - j0 : ATT_TILE;
    att_load_rows(Ks, hd, k, stride, kvh * hd, j0, nk, hd);
    att_load_rows(Vs, hd, v, stride, kvh * hd, j0, nk, hd);
    if (threadIdx.x == 0) {
        // queries that see a key of [j0, j0 + nk - 1]: from the first with kv_hi >= j0 to the last with kv_lo <= the last key
        t_first = att_lower_bound(kv_hi, T, j0);
        t_last = att_lower_bound(kv_lo, T, j0 + nk) - 1;
    }
    float accK[ATT_ROWS][ATT_DIMS], accV[ATT_ROWS][ATT_DIMS];
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++)
#pragma unroll
        for (int c = 0; c < ATT_DIMS; c++) accK[r][c] = accV[r][c] = 0.0f;
    __syncthreads();
    for (int g = 0; g < group; g++) {
        int h = kvh * group + g;
        for (int t0 = t_first; t0 <= t_last; t0 += ATT_TILE) {
            int nq = t_last - t0 + 1 < ATT_TILE ? t_last - t0 + 1 : ATT_TILE;
            __syncthreads();  // the previous query tile is no longer read
            att_load_rows(Qs, hd + 1, q, Hq * hd, h * hd, t0, nq, hd);
            att_load_rows(dOs, hd + 1, dout, Hq * hd, h * hd, t0, nq, hd);
            for (int i = threadIdx.x; i < ATT_TILE; i += ATT_THREADS) {
                size_t row = (size_t)(t0 + i) * Hq + h;
                Ls[i] = i < nq ? lse[row] : INFINITY, Ds[i] = i < nq ? delta[row] : 0.0f;
                qlo_s[i] = i < nq ? kv_lo[t0 + i] : 1, qhi_s[i] = i < nq ? kv_hi[t0 + i] : 0;
            }
            __syncthreads();
#pragma unroll
            for (int r = 0; r < ATT_ROWS; r++) {
                int jk = warp * ATT_ROWS + r, j = j0 + jk;  // this row's key; lane = query t0 + lane
                if (jk >= nk) continue;  // the same for the whole warp
                float p = 0.0f, ds = 0.0f;
                if (lane < nq && j >= qlo_s[lane] && j <= qhi_s[lane]) {
                    float s = att_score(Qs + lane * (hd + 1), Ks + jk * hd, hd, scale, softcap);
                    p = expf(s - Ls[lane]);
                    float dp = 0.0f;
                    for (int d = 0; d < hd; d++) dp += dOs[lane * (hd + 1) + d] * Vs[jk * hd + d];
                    ds = att_dscore(s, p, dp, Ds[lane], scale, softcap);
                }
                for (int ii = 0; ii < nq; ii++) {
                    float pi = __shfl_sync(0xffffffffu, p, ii), di = __shfl_sync(0xffffffffu, ds, ii);
                    if (pi == 0.0f && di == 0.0f) continue;  // the same for every lane
#pragma unroll
                    for (int c = 0; c < ATT_DIMS; c++) {
                        int d = lane + 32 * c;
                        if (d < hd) accV[r][c] += pi * dOs[ii * (hd + 1) + d], accK[r][c] += di * Qs[ii * (hd + 1) + d];
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_ROWS; r++) {
        int jk = warp * ATT_ROWS + r;
        if (jk >= nk) continue;
        size_t at = (size_t)(j0 + jk) * stride + (size_t)kvh * hd;
#pragma unroll
        for (int c = 0; c < ATT_DIMS; c++) {
            int d = lane + 32 * c;
            if (d >= hd) continue;
            dk[at + d] = accK[r][c];
            kc_store(dv, dv16, at + d, accV[r][c]);
        }
    }
}

extern "C" int kc_attention_backward(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k,
                                     const float *v, const float *out, const float *lse, const int *kv_lo, const int *kv_hi, int T, int Hq,
                                     int Hkv, int hd, float scale, float softcap) {
    if (hd > MAX_HD || hd <= 0 || Hkv <= 0 || Hq % Hkv) {
        kc_set_error("attention_backward", cudaErrorInvalidValue);
        return -1;
    }
    if (T <= 0) return 0;
    size_t rows = (size_t)T * Hq;
    float *delta = (float *)kc_alloc(sizeof(float) * rows);
    int rc = -1;
    size_t smem = sizeof(float) * ATT_TILE * (4 * (size_t)hd + 2) + 4 * sizeof(float) * ATT_TILE;
    dim3 grid_q((unsigned)(T + ATT_TILE - 1) / ATT_TILE, (unsigned)Hq), grid_k((unsigned)(T + ATT_TILE - 1) / ATT_TILE, (unsigned)Hkv);
    if (!delta) goto done;
    attention_delta_kernel<<<(unsigned)((rows + ATT_THREADS / 32 - 1) / (ATT_THREADS / 32)), ATT_THREADS>>>(delta, dout, out, (int)rows,
                                                                                                            hd);
    KC_CHECK_LAUNCH_GOTO("attention_backward (delta)", done);
    if (dv16 && kc_attention_backward_mma_fits(hd)) {  // (dv is rounded to bf16 anyway)
        rc = kc_attention_backward_mma(dq, dk, dv, dv16, dout, q, k, v, lse, delta, kv_lo, kv_hi, T, Hq, Hkv, hd, scale, softcap);
        goto done;
    }
    if (!kc_smem_fits(smem)) {
        rc = kc_smem_refused("attention_backward", smem, hd);
        goto done;
    }
    cudaFuncSetAttribute(attention_dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    attention_dq_kernel<<<grid_q, ATT_THREADS, smem>>>(dq, dout, q, k, v, lse, delta, kv_lo, kv_hi, T, Hq, Hkv, hd, scale, softcap);
    KC_CHECK_LAUNCH_GOTO("attention_backward (dq)", done);
    cudaFuncSetAttribute(attention_dkv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    attention_dkv_kernel<<<grid_k, ATT_THREADS, smem>>>(dk, dv, dv16, dout, q, k, v, lse, delta, kv_lo, kv_hi, T, Hq, Hkv, hd, scale,
                                                        softcap);
    KC_CHECK_LAUNCH_GOTO("attention_backward (dk, dv)", done);
    rc = 0;
done:
    kc_free(delta);
    return rc;
}
