// The LoRA low-rank path of a stack of linears sharing one input, one launch each way (the contract of
// kernels/cpu/lora_linear.c's low-rank products, as lora_lowrank.h states it). A block owns LR_ROWS tokens: it
// keeps their stacked ax (forward) or dyB (backward) in shared memory and goes on to every job's output (or to
// dx) from there, so the shrink and the m expands (the m dyBs and the dx product) are one launch instead of m + 1
// cuBLAS calls; the weight gradients (each dB, and dA) are one more launch instead of m + 1. All in fp32, each
// sum in a fixed order: results do not depend on the grid.
#include "common.cuh"
#include "lora_lowrank.h"

#define LR_THREADS 256
#define LR_ROWS 16  // tokens a block
#define LR_CHUNK 16  // columns of the reduced dimension staged at a time
#define LR_PER (LR_ROWS * KC_LOWRANK_MAX_STACK / LR_THREADS)  // the stacked rows' outputs a thread sums

typedef struct {
    LowrankJob job[KC_LOWRANK_MAX_JOBS];
    int m;
} LowrankJobs;

extern "C" int kc_lowrank_fits(int T, int m, int r) {
    return T <= KC_LOWRANK_MAX_TOKENS && m >= 1 && m <= KC_LOWRANK_MAX_JOBS && r >= 1 && m * r <= KC_LOWRANK_MAX_STACK;
}

// acc[q] += Σ_c a[row][c]·b(k, c) over a staged chunk, for the outputs o = tid + q·LR_THREADS < LR_ROWS·n, o =
// k·LR_ROWS + row (a warp's lanes on consecutive rows: conflict-free reads of a, broadcast reads of b).
// a is [LR_ROWS][LR_CHUNK + 1]; b(k, c) at b[k·kstride + c·cstride].
__device__ static inline void lr_chunk_sums(float *acc, const float *a, const float *b, int kstride, int cstride, int n) {
#pragma unroll
    for (int q = 0; q < LR_PER; q++) {
        int o = threadIdx.x + q * LR_THREADS, k = o / LR_ROWS, row = o % LR_ROWS;
        if (o >= LR_ROWS * n) break;
        float v = acc[q];
        for (int c = 0; c < LR_CHUNK; c++) v += a[row * (LR_CHUNK + 1) + c] * b[k * kstride + c * cstride];
        acc[q] = v;
    }
}

// rows[LR_ROWS][LR_CHUNK + 1] = src's rows t0.. (width w, row stride ld), columns c0..c0 + LR_CHUNK, zeros past the
// ends.
__device__ static inline void lr_stage_rows(float *rows, const float *src, size_t ld, int t0, int nrows, int c0, int w) {
    for (int i = threadIdx.x; i < LR_ROWS * LR_CHUNK; i += LR_THREADS) {
        int row = i / LR_CHUNK, c = i % LR_CHUNK;
        rows[row * (LR_CHUNK + 1) + c] = row < nrows && c0 + c < w ? src[(size_t)(t0 + row) * ld + c0 + c] : 0.0f;
    }
}

// ax of the block's tokens: x's rows reduced against every row of the stacked A.
__device__ static void lr_shrink(float *acc, float *xs, float *As, const float *x, const float *A, int t0, int nrows, int in, int mr) {
    for (int c0 = 0; c0 < in; c0 += LR_CHUNK) {
        lr_stage_rows(xs, x, in, t0, nrows, c0, in);
        for (int i = threadIdx.x; i < mr * LR_CHUNK; i += LR_THREADS) {
            int k = i / LR_CHUNK, c = i % LR_CHUNK;
            As[k * (LR_CHUNK + 1) + c] = c0 + c < in ? A[(size_t)k * in + c0 + c] : 0.0f;
        }
        __syncthreads();
        lr_chunk_sums(acc, xs, As, LR_CHUNK + 1, 1, mr);
        __syncthreads();
    }
}

// Each thread's sums to stack[row][col0 + k] (shared, row stride mr) and to outT[col0 + k][t] (global, for the
// backward or dA), times scale.
__device__ static void lr_keep(const float *acc, float *stack, float *outT, float scale, int t0, int nrows, int T, int n, int mr, int col0) {
#pragma unroll
    for (int q = 0; q < LR_PER; q++) {
        int o = threadIdx.x + q * LR_THREADS, k = o / LR_ROWS, row = o % LR_ROWS;
        if (o >= LR_ROWS * n) break;
        stack[row * mr + col0 + k] = scale * acc[q];
        if (row < nrows) outT[(size_t)(col0 + k) * T + t0 + row] = scale * acc[q];
    }
}

// y[t0 + row, o] += s·Σ_k ax[row][k]·B[o][k] for the block's tokens, a thread a column o at a time.
__device__ static void lr_expand(const LowrankJob *j, const float *ax, int mr, float s, int t0, int nrows, int r) {
    for (int o = threadIdx.x; o < j->out; o += LR_THREADS) {
        float v[LR_ROWS] = {0};
        for (int k = 0; k < r; k++) {
            float b = j->B[(size_t)o * r + k];
#pragma unroll
            for (int row = 0; row < LR_ROWS; row++) v[row] += ax[row * mr + k] * b;
        }
        for (int row = 0; row < nrows; row++) j->y[(size_t)(t0 + row) * j->out + o] += s * v[row];
    }
}

__global__ static void __launch_bounds__(LR_THREADS)
    lowrank_forward_kernel(LowrankJobs J, float *axT, const float *x, const float *A, float s, int T, int in, int r) {
    extern __shared__ float smem[];
    int mr = J.m * r, t0 = blockIdx.x * LR_ROWS, nrows = T - t0 < LR_ROWS ? T - t0 : LR_ROWS;
    float *ax = smem, *xs = ax + LR_ROWS * mr, *As = xs + LR_ROWS * (LR_CHUNK + 1);  // [ROWS][mr], [ROWS][CHUNK+1], [mr][CHUNK+1]
    float acc[LR_PER] = {0};
    lr_shrink(acc, xs, As, x, A, t0, nrows, in, mr);
    lr_keep(acc, ax, axT, 1.0f, t0, nrows, T, mr, mr, 0);
    __syncthreads();
    for (int j = 0; j < J.m; j++) lr_expand(&J.job[j], ax + j * r, mr, s, t0, nrows, r);
}

// dyB_j of the block's tokens: dy_j's rows reduced against B_j's rows (Bs[c][k] = B_j[c0 + c][k]).
__device__ static void lr_dyb(float *acc, float *ds, float *Bs, const LowrankJob *j, int t0, int nrows, int r) {
    for (int c0 = 0; c0 < j->out; c0 += LR_CHUNK) {
        lr_stage_rows(ds, j->dy, j->out, t0, nrows, c0, j->out);
        for (int i = threadIdx.x; i < LR_CHUNK * r; i += LR_THREADS) {
            int c = i / r, k = i % r;
            Bs[c * (r + 1) + k] = c0 + c < j->out ? j->B[(size_t)(c0 + c) * r + k] : 0.0f;
        }
        __syncthreads();
        lr_chunk_sums(acc, ds, Bs, 1, r + 1, r);
        __syncthreads();
    }
}

// dx[t0 + row, i] (+)= Σ_k dyB[row][k]·A[k][i], a thread a column i at a time.
__device__ static void lr_dx(float *dx, int dx_add, const float *dyB, const float *A, int t0, int nrows, int in, int mr) {
    for (int i = threadIdx.x; i < in; i += LR_THREADS) {
        float v[LR_ROWS] = {0};
        for (int k = 0; k < mr; k++) {
            float a = A[(size_t)k * in + i];
#pragma unroll
            for (int row = 0; row < LR_ROWS; row++) v[row] += dyB[row * mr + k] * a;
        }
        for (int row = 0; row < nrows; row++) {
            float *p = &dx[(size_t)(t0 + row) * in + i];
            *p = dx_add ? *p + v[row] : v[row];
        }
    }
}

__global__ static void __launch_bounds__(LR_THREADS) lowrank_backward_kernel(LowrankJobs J, float *dyBT, float *dx, int dx_add,
                                                                             const float *A, float s, int T, int in, int r) {
    extern __shared__ float smem[];
    int mr = J.m * r, t0 = blockIdx.x * LR_ROWS, nrows = T - t0 < LR_ROWS ? T - t0 : LR_ROWS;
    float *dyB = smem, *ds = dyB + LR_ROWS * mr, *Bs = ds + LR_ROWS * (LR_CHUNK + 1);  // [ROWS][mr], [ROWS][CHUNK+1], [CHUNK][r+1]
    for (int j = 0; j < J.m; j++) {
        float acc[LR_PER] = {0};
        lr_dyb(acc, ds, Bs, &J.job[j], t0, nrows, r);
        lr_keep(acc, dyB, dyBT, s, t0, nrows, T, r, mr, j * r);
    }
    __syncthreads();
    if (dx) lr_dx(dx, dx_add, dyB, A, t0, nrows, in, mr);
}

// One weight gradient of the stack: out[p·ps + k·ks] += scale·Σ_t a[t·P + p]·b[k·T + t] for p < P, k < K.
typedef struct {
    float *out;
    const float *a, *b;
    float scale;
    int P, K, ps, ks;
} LowrankProduct;

typedef struct {
    LowrankProduct prod[KC_LOWRANK_MAX_JOBS + 1];
} LowrankProducts;

#define LR_KGROUP 16  // the k a thread of the weight-gradient kernel sums (a's value read once for all of them)

// grid.y: the product; a thread: one p and LR_KGROUP consecutive k (a warp's lanes on consecutive p: coalesced
// reads of a, broadcast reads of b).
__global__ static void __launch_bounds__(LR_THREADS) lowrank_grads_kernel(LowrankProducts G, int T) {
    const LowrankProduct *g = &G.prod[blockIdx.y];
    size_t task = blockIdx.x * (size_t)LR_THREADS + threadIdx.x, groups = (g->K + LR_KGROUP - 1) / LR_KGROUP;
    if (task >= (size_t)g->P * groups) return;
    int p = (int)(task % g->P), k0 = (int)(task / g->P) * LR_KGROUP;
    float acc[LR_KGROUP] = {0};
    for (int t = 0; t < T; t++) {
        float a = g->a[(size_t)t * g->P + p];
#pragma unroll
        for (int kk = 0; kk < LR_KGROUP; kk++)
            if (k0 + kk < g->K) acc[kk] += a * g->b[(size_t)(k0 + kk) * T + t];
    }
    for (int kk = 0; kk < LR_KGROUP && k0 + kk < g->K; kk++) g->out[(size_t)p * g->ps + (size_t)(k0 + kk) * g->ks] += g->scale * acc[kk];
}

static int lr_check(const char *what, int T, int m, int r) {
    if (kc_lowrank_fits(T, m, r)) return 0;
    kc_set_error_msg(what, "the stack is past the fused kernel's bounds");
    return -1;
}

static int lowrank_launch(const LowrankJob *jobs, int m, int T, int r, int backward, LowrankJobs *J, dim3 *grid, size_t *smem) {
    if (lr_check(backward ? "lowrank_backward" : "lowrank_forward", T, m, r)) return -1;
    J->m = m;
    for (int j = 0; j < m; j++) J->job[j] = jobs[j];
    *grid = dim3((unsigned)((T + LR_ROWS - 1) / LR_ROWS));
    size_t staged = backward ? (size_t)LR_CHUNK * (r + 1) : (size_t)m * r * (LR_CHUNK + 1);
    *smem = sizeof(float) * ((size_t)LR_ROWS * m * r + LR_ROWS * (LR_CHUNK + 1) + staged);
    return 0;
}

extern "C" int kc_lowrank_forward(const LowrankJob *jobs, int m, float *axT, const float *x, const float *A, float s, int T, int in, int r) {
    LowrankJobs J;
    dim3 grid;
    size_t smem;
    if (lowrank_launch(jobs, m, T, r, 0, &J, &grid, &smem)) return -1;
    if (!T) return 0;
    lowrank_forward_kernel<<<grid, LR_THREADS, smem>>>(J, axT, x, A, s, T, in, r);
    KC_CHECK_LAUNCH("lowrank_forward");
    return 0;
}

extern "C" int kc_lowrank_backward(const LowrankJob *jobs, int m, float *dyBT, float *dx, int dx_add, const float *A, float s, int T, int in,
                                   int r) {
    LowrankJobs J;
    dim3 grid;
    size_t smem;
    if (lowrank_launch(jobs, m, T, r, 1, &J, &grid, &smem)) return -1;
    if (!T) return 0;
    lowrank_backward_kernel<<<grid, LR_THREADS, smem>>>(J, dyBT, dx, dx_add, A, s, T, in, r);
    KC_CHECK_LAUNCH("lowrank_backward");
    return 0;
}

extern "C" int kc_lowrank_grads(const LowrankJob *jobs, int m, float *dA, const float *axT, const float *dyBT, const float *x, float s, int T,
                                int in, int r) {
    if (lr_check("lowrank_grads", T, m, r)) return -1;
    LowrankProducts G;
    int n = 0;
    for (int j = 0; j < m; j++)  // dB_j [out, r] += s·dy_jᵀ·ax_j
        if (jobs[j].dB) G.prod[n++] = (LowrankProduct){jobs[j].dB, jobs[j].dy, axT + (size_t)j * r * T, s, jobs[j].out, r, r, 1};
    if (dA) G.prod[n++] = (LowrankProduct){dA, x, dyBT, 1.0f, in, m * r, 1, in};  // dA [m·r, in] += dyBT·x
    size_t widest = 0;
    for (int i = 0; i < n; i++) {
        size_t tasks = (size_t)G.prod[i].P * ((G.prod[i].K + LR_KGROUP - 1) / LR_KGROUP);
        widest = tasks > widest ? tasks : widest;
    }
    if (!T || !widest) return 0;
    lowrank_grads_kernel<<<dim3(kc_blocks(widest, LR_THREADS), (unsigned)n), LR_THREADS>>>(G, T);
    KC_CHECK_LAUNCH("lowrank_grads");
    return 0;
}
