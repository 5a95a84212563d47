// Token choice on the GPU for many rows of logits at once (kernels/cpu/sample.c k_sample_row, in the same order
// and arithmetic, so a row given the same logits and u picks the same token): the repetition penalty on each
// row's distinct recent tokens, the first maximum, and for sampled rows the candidates within the floor sorted in
// shared memory (bitonic, logit desc then id asc), the top-k / min-p / top-p cuts and the pick. The repetition
// penalty comes first, then the frequency and presence penalties on each row's distinct generated tokens. Only
// the picked ids come back, instead of [rows, V] logits per decode step.
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

extern "C" {
#include "kernels.h"
}

#define SAMPLE_THREADS 1024
#define SAMPLE_CAP 4096  // candidates sortable in shared memory; a row with more is left to the host (pick -1)

// Penalty lists are flattened over the rows: row b's repetition tokens rep_tok[rep_off[b] .. rep_off[b+1]) and
// its counted tokens cnt_tok / cnt over [cnt_off[b] .. cnt_off[b+1]).
__global__ static void penalize_kernel(float *logits, int V, const int *rep_off, const int *rep_tok, const float *rep_pen,
                                       const int *cnt_off, const int *cnt_tok, const int *cnt, const float *freq, const float *pres) {
    float *x = logits + (size_t)blockIdx.x * V, rp = rep_pen[blockIdx.x];
    for (int k = rep_off[blockIdx.x] + threadIdx.x; k < rep_off[blockIdx.x + 1]; k += blockDim.x) {
        int t = rep_tok[k];  // distinct within a row: no two threads touch the same logit
        x[t] = x[t] > 0 ? x[t] / rp : x[t] * rp;
    }
    __syncthreads();  // a token in both lists: the repetition penalty first, as on the CPU
    float f = freq[blockIdx.x], p = pres[blockIdx.x];
    for (int k = cnt_off[blockIdx.x] + threadIdx.x; k < cnt_off[blockIdx.x + 1]; k += blockDim.x) {
        int t = cnt_tok[k];  // distinct too
        x[t] = x[t] - (float)((double)cnt[k] * f + p);  // k_penalize_counts: the product is exact in double
    }
}

__device__ static bool before(float ka, int ia, float kb, int ib) { return ka > kb || (ka == kb && ia < ib); }

// (value, index) pairs: the larger value wins, the lower index on ties (the CPU's first maximum)
__device__ static void arg_better(float &v, int &i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
}

__global__ static void __launch_bounds__(SAMPLE_THREADS)
    sample_kernel(int *picked, const float *logits, int V, const float *temperature, const int *top_k, const float *top_p,
                  const float *min_p, const double *u) {
    __shared__ float key[SAMPLE_CAP];
    __shared__ int id[SAMPLE_CAP];
    __shared__ float part_v[32];
    __shared__ int part_i[32];
    __shared__ int count;
    int row = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    const float *x = logits + (size_t)row * V;
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = threadIdx.x; i < V; i += blockDim.x) arg_better(bv, bi, x[i], i);
    for (int o = 16; o > 0; o >>= 1) arg_better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, o), __shfl_xor_sync(0xffffffffu, bi, o));
    if (lane == 0) part_v[warp] = bv, part_i[warp] = bi;
    if (threadIdx.x == 0) count = 0;
    __syncthreads();
    if (warp == 0) {
        bv = lane < nw ? part_v[lane] : -INFINITY, bi = lane < nw ? part_i[lane] : INT_MAX;
        for (int o = 16; o > 0; o >>= 1) arg_better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, o), __shfl_xor_sync(0xffffffffu, bi, o));
        if (lane == 0) part_i[0] = bi;
    }
    __syncthreads();
    int best = part_i[0];
    float T = temperature[row];
    if (T <= 0.0f) {
        if (threadIdx.x == 0) picked[row] = best;
        return;
    }
    // the CPU's float arithmetic, without FMA contraction
    float inv_t = __fdiv_rn(1.0f, T), floor_ = __fsub_rn(x[best], __fmul_rn(K_SAMPLE_FLOOR, T));
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        if (x[i] >= floor_) {
            int k = atomicAdd(&count, 1);
            if (k < SAMPLE_CAP) key[k] = __fmul_rn(x[i], inv_t), id[k] = i;
        }
    __syncthreads();
    int n = count;
    if (n > SAMPLE_CAP || n == 0) {  // n == 0 only with NaN logits: the maximum then stands
        if (threadIdx.x == 0) picked[row] = n ? -1 : best;
        return;
    }
    int size = 1;
    while (size < n) size <<= 1;
    for (int k = n + threadIdx.x; k < size; k += blockDim.x) key[k] = -INFINITY, id[k] = INT_MAX;  // pads sort last
    __syncthreads();
    for (int k = 2; k <= size; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < size; i += blockDim.x) {
                int l = i ^ j;
                if (l <= i) continue;
                bool swap = (i & k) == 0 ? before(key[l], id[l], key[i], id[i]) : before(key[i], id[i], key[l], id[l]);
                if (swap) {
                    float tk = key[i];
                    int ti = id[i];
                    key[i] = key[l], id[i] = id[l], key[l] = tk, id[l] = ti;
                }
            }
            __syncthreads();
        }
    if (threadIdx.x != 0) return;
    // the cuts and the pick, sequentially in sorted order as on the CPU (probabilities recomputed, not stored)
    int m = n;
    if (top_k[row] > 0 && m > top_k[row]) m = top_k[row];
    float mx = key[0];
    double sum = 0;
    for (int i = 0; i < m; i++) sum += exp((double)(key[i] - mx));
    int keep = m;
    float mp = min_p[row], tp = top_p[row];
    if (mp > 0.0f) {
        double p0 = exp((double)(key[0] - mx)) / sum;
        for (int i = 1; i < keep; i++)
            if (exp((double)(key[i] - mx)) / sum < mp * p0) {
                keep = i;
                break;
            }
    }
    if (tp < 1.0f) {
        double cum = 0;
        for (int i = 0; i < keep; i++) {
            cum += exp((double)(key[i] - mx)) / sum;
            if (cum >= tp) {
                keep = i + 1;
                break;
            }
        }
    }
    double total = 0;
    for (int i = 0; i < keep; i++) total += exp((double)(key[i] - mx)) / sum;
    double r = u[row] * total, acc = 0;
    int pick = id[keep - 1];
    for (int i = 0; i < keep; i++) {
        acc += exp((double)(key[i] - mx)) / sum;
        if (r < acc) {
            pick = id[i];
            break;
        }
    }
    picked[row] = pick;
}

static int repeat_count(const KcSampleRow *s) { return s->repeat_penalty != 1.0f ? s->n_penalized : 0; }
static int counted_count(const KcSampleRow *s) { return s->frequency_penalty != 0.0f || s->presence_penalty != 0.0f ? s->n_counted : 0; }

extern "C" int kc_sample(int *picked, float *logits, int n_rows, int V, const KcSampleRow *rows) {
    if (n_rows <= 0) return 0;
    int n_rep = 0, n_cnt = 0;
    for (int r = 0; r < n_rows; r++) n_rep += repeat_count(&rows[r]), n_cnt += counted_count(&rows[r]);
    // one host block and one device block: u [n] double first (alignment); temperature, top_p, min_p, the
    // three penalties [n] float; top_k, picked [n], rep_off [n+1], cnt_off [n+1], rep_tok [n_rep], cnt_tok,
    // cnt [n_cnt] int
    size_t n = (size_t)n_rows, bytes = 8 * n + 4 * (6 * n + 2 * n + 2 * (n + 1) + (size_t)n_rep + 2 * (size_t)n_cnt);
    char *h = (char *)malloc(bytes), *d = (char *)kc_alloc(bytes);
    int rc = -1;
    if (!h || !d) goto done;
    {
        double *u = (double *)h;
        float *temp = (float *)(u + n), *tp = temp + n, *mp = tp + n, *pen = mp + n, *fp = pen + n, *pp = fp + n;
        int *tk = (int *)(pp + n), *pk = tk + n, *roff = pk + n, *coff = roff + n + 1, *rtok = coff + n + 1, *ctok = rtok + n_rep,
            *cnt = ctok + n_cnt;
        roff[0] = coff[0] = 0;
        for (int r = 0; r < n_rows; r++) {
            const KcSampleRow *s = &rows[r];
            u[r] = s->u, temp[r] = s->temperature, tp[r] = s->top_p, mp[r] = s->min_p, pen[r] = s->repeat_penalty, tk[r] = s->top_k;
            fp[r] = s->frequency_penalty, pp[r] = s->presence_penalty;
            int nr = repeat_count(s), nc = counted_count(s);
            if (nr) memcpy(rtok + roff[r], s->penalized, sizeof(int) * (size_t)nr);
            if (nc)
                memcpy(ctok + coff[r], s->counted, sizeof(int) * (size_t)nc), memcpy(cnt + coff[r], s->counts, sizeof(int) * (size_t)nc);
            roff[r + 1] = roff[r] + nr, coff[r + 1] = coff[r] + nc;
        }
        if (kc_upload(d, h, bytes)) goto done;
        size_t o_temp = 8 * n, o_tp = o_temp + 4 * n, o_mp = o_tp + 4 * n, o_pen = o_mp + 4 * n, o_fp = o_pen + 4 * n, o_pp = o_fp + 4 * n,
               o_tk = o_pp + 4 * n, o_pk = o_tk + 4 * n, o_roff = o_pk + 4 * n, o_coff = o_roff + 4 * (n + 1),
               o_rtok = o_coff + 4 * (n + 1), o_ctok = o_rtok + 4 * (size_t)n_rep, o_cnt = o_ctok + 4 * (size_t)n_cnt;
        if (n_rep || n_cnt) {
            penalize_kernel<<<n_rows, 64>>>(logits, V, (const int *)(d + o_roff), (const int *)(d + o_rtok), (const float *)(d + o_pen),
                                            (const int *)(d + o_coff), (const int *)(d + o_ctok), (const int *)(d + o_cnt),
                                            (const float *)(d + o_fp), (const float *)(d + o_pp));
            KC_CHECK_LAUNCH_GOTO("sample (penalties)", done);
        }
        sample_kernel<<<n_rows, SAMPLE_THREADS>>>((int *)(d + o_pk), logits, V, (const float *)(d + o_temp), (const int *)(d + o_tk),
                                                  (const float *)(d + o_tp), (const float *)(d + o_mp), (const double *)d);
        KC_CHECK_LAUNCH_GOTO("sample", done);
        if (kc_download(picked, d + o_pk, sizeof(int) * n)) goto done;
    }
    rc = 0;
done:
    free(h);
    kc_free(d);
    return rc;
}
