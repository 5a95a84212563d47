// The LoRA linear y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ forward and backward (dx accumulated, dA, dB; dW and dbias
// accumulated when asked for: full fine-tuning). The contract of kernels/cpu/lora_linear.c.
// fp32 W: cuBLAS sgemm in true fp32 (no TF32), the path the CPU reference is matched against at 1e-5.
// bf16 W (mixed precision): the base GEMM runs on cuBLASLt (its plan made once per shape) with bf16 inputs (x, or
// dy going back, rounded by the op that made it, or here: a group's dys in one launch), fp32 accumulation and an
// fp32 result. The low-rank path (r columns: a few percent of the work) stays fp32, so the adapter's master
// weights and gradients never leave fp32: for a call of few tokens the fused kernels of lora_lowrank.cu (one
// launch each way for the stack), else cuBLAS.
// Row-major [rows, cols] matrices are column-major [cols, rows] to cuBLAS, so y = x·Wᵀ is the column-major
// product W(ᵀ as stored)·x.
#include <cublasLt.h>
#include <string.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include "common.cuh"
#include "convert.h"
#include "lora_lowrank.h"

static cublasHandle_t g_blas;
static cublasLtHandle_t g_lt;
static void *g_lt_workspace;
static const size_t LT_WORKSPACE = 32u << 20;  // cuBLAS's recommendation for Hopper

static int blas(void) {
    if (g_blas) return 0;
    if (cublasCreate(&g_blas) != CUBLAS_STATUS_SUCCESS) {
        kc_set_error_msg("cublasCreate", "cannot initialise cuBLAS");
        return -1;
    }
    cublasSetMathMode(g_blas, CUBLAS_PEDANTIC_MATH);  // true fp32: no TF32 in the fp32 path
    return 0;
}

static int lt(void) {
    if (g_lt) return 0;
    if (cublasLtCreate(&g_lt) != CUBLAS_STATUS_SUCCESS) {
        kc_set_error_msg("cublasLtCreate", "cannot initialise cuBLASLt");
        return -1;
    }
    cudaError_t e = cudaMalloc(&g_lt_workspace, LT_WORKSPACE);
    if (e != cudaSuccess) {
        kc_set_error("cuBLASLt workspace", e);
        return -1;
    }
    return 0;
}

// C[M,N] (row-major) = alpha · op(A)·op(B) + beta · C, with op chosen per operand; lda etc. are row-major widths.
static int gemm(const char *what, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                int ldb, float beta, float *C, int ldc) {
    // row-major C = op(A)·op(B)  ⇔  column-major Cᵀ = op(B)ᵀ·op(A)ᵀ
    cublasStatus_t st = cublasSgemm(g_blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb,
                                    A, lda, &beta, C, ldc);
    if (st != CUBLAS_STATUS_SUCCESS) {
        kc_set_error_msg(what, cublasGetStatusString(st));
        return -1;
    }
    KC_CHECK_LAUNCH(what);
    return 0;
}

// A cuBLASLt plan for one shape: its descriptors and the algorithm its heuristic chose (asked once per shape, not on
// every call). Decoding repeats a handful of shapes; packed training batches vary in length, so the table keeps
// the KC_LT_PLANS most recently made and replaces the oldest. One thread launches (the engine's).
#define KC_LT_PLANS 128
typedef struct {
    int transA, transB, M, N, K, lda, ldb, ldc, made;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t lb, la, lc;  // Lt's first operand is our B (the row-major swap)
    cublasLtMatmulAlgo_t algo;
    int found;  // 0: no Lt kernel for this shape or alignment (cuBLAS's general bf16 GEMM instead)
} LtPlan;
static LtPlan g_plans[KC_LT_PLANS];
static int g_plans_made;

static void plan_release(LtPlan *p) {
    if (!p->made) return;
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

static cublasStatus_t plan_make(LtPlan *p) {
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t best;
    cublasOperation_t tb = p->transB ? CUBLAS_OP_T : CUBLAS_OP_N, ta = p->transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    int M = p->M, N = p->N, K = p->K;
    cublasStatus_t st = cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &tb, sizeof tb);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &ta, sizeof ta);
    // stored (column-major) shapes: op(B) is [N,K], op(A) is [K,M], C is [N,M]
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, p->transB ? K : N, p->transB ? N : K, p->ldb);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, p->transA ? M : K, p->transA ? K : M, p->lda);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, N, M, p->ldc);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &LT_WORKSPACE, sizeof LT_WORKSPACE);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulAlgoGetHeuristic(g_lt, p->op, p->lb, p->la, p->lc, p->lc, pref, 1, &best, &p->found);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_SUCCESS && p->found > 0) p->algo = best.algo;
    p->found = st == CUBLAS_STATUS_SUCCESS && p->found > 0;
    return st;
}

// The plan for a shape: the one made before, or a new one in the oldest slot. NULL with the status on failure.
static LtPlan *plan_for(int transA, int transB, int M, int N, int K, int lda, int ldb, int ldc, cublasStatus_t *st) {
    for (int i = 0; i < KC_LT_PLANS; i++) {
        LtPlan *p = &g_plans[i];
        if (p->made && p->transA == transA && p->transB == transB && p->M == M && p->N == N && p->K == K && p->lda == lda &&
            p->ldb == ldb && p->ldc == ldc)
            return p;
    }
    LtPlan *p = &g_plans[g_plans_made++ % KC_LT_PLANS];
    plan_release(p);
    *p = (LtPlan){transA, transB, M, N, K, lda, ldb, ldc, 1};
    if ((*st = plan_make(p)) != CUBLAS_STATUS_SUCCESS) {
        plan_release(p);
        return NULL;
    }
    return p;
}

extern "C" int kc_lt_plans_made(void) { return g_plans_made; }

// The same product with bf16 A and B on cuBLASLt (fp32 compute and scale, fp32 C), the algorithm from the shape's plan.
static int gemm_bf16(const char *what, int transA, int transB, int M, int N, int K, float alpha, const __nv_bfloat16 *A, int lda,
                     const __nv_bfloat16 *B, int ldb, float beta, float *C, int ldc) {
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    LtPlan *p = plan_for(transA, transB, M, N, K, lda, ldb, ldc, &st);
    if (p && p->found)
        st = cublasLtMatmul(g_lt, p->op, &alpha, B, p->lb, A, p->la, &beta, C, p->lc, C, p->lc, &p->algo, g_lt_workspace, LT_WORKSPACE, 0);
    else if (p)  // no Lt kernel for this shape or alignment: cuBLAS's general bf16 GEMM
        st = cublasGemmEx(g_blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_16BF,
                          ldb, A, CUDA_R_16BF, lda, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) {
        kc_set_error_msg(what, cublasGetStatusString(st));
        return -1;
    }
    KC_CHECK_LAUNCH(what);
    return 0;
}

// The base product with W[out,in] stored as wt: forward C[T,out] = act[T,in]·Wᵀ, backward C[T,in] += act[T,out]·W
// (beta 0 replaces C, 1 accumulates). A bf16 W multiplies act16, the activation already rounded to bf16.
static int base_gemm_on(const char *what, int backward, float *C, const float *act, const __nv_bfloat16 *act16, const void *W, LdDtype wt,
                        int T, int in, int out, float beta) {
    int N = backward ? in : out, K = backward ? out : in, transW = !backward;
    if (wt == LD_F32) return gemm(what, 0, transW, T, N, K, 1.0f, act, K, (const float *)W, in, beta, C, N);
    return lt() ? -1 : gemm_bf16(what, 0, transW, T, N, K, 1.0f, act16, K, (const __nv_bfloat16 *)W, in, beta, C, N);
}

// act[n] rounded to bf16 in a buffer from the caching allocator (the caller frees it); NULL with an error.
static __nv_bfloat16 *rounded(const float *act, size_t n) {
    __nv_bfloat16 *a16 = (__nv_bfloat16 *)kc_alloc(sizeof(__nv_bfloat16) * (n ? n : 1));
    if (a16 && kc_to_bf16(a16, act, n)) kc_free(a16), a16 = NULL;
    return a16;
}

static int check_type(const char *what, LdDtype wt) {
    if (wt == LD_F32 || wt == LD_BF16) return 0;
    kc_set_error_msg(what, "the base weight must be F32 or BF16 on the GPU");
    return -1;
}

extern "C" int kc_lora_linear(float *y, float *axT, const float *x, const uint16_t *x16, const void *W, LdDtype wt, const float *bias,
                              const float *A, const float *B, float s, int T, int in, int out, int r) {
    LoraLinearJob job = {y, W, wt, bias, A ? B : NULL, out};
    return kc_lora_linears(&job, 1, axT, x, x16, A, s, T, in, r);
}

// The adapted jobs' shrink axT[m·r, T] = A·xᵀ (one product for the stack), then each one's y += s·axTᵀ·Bᵀ: one
// fused launch for few tokens, else cuBLAS's products.
static int adapters_forward(const LoraLinearJob *jobs, int count, int m, float *axT, const float *x, const float *A, float s, int T,
                            int in, int r) {
    if (kc_lowrank_fits(T, m, r)) {
        LowrankJob lj[KC_LOWRANK_MAX_JOBS];
        for (int i = 0, j = 0; i < count; i++)
            if (jobs[i].B) lj[j++] = (LowrankJob){jobs[i].y, NULL, jobs[i].B, NULL, jobs[i].out};
        return kc_lowrank_forward(lj, m, axT, x, A, s, T, in, r);
    }
    if (gemm("lora_linear A", 0, 1, m * r, T, in, 1.0f, A, in, x, in, 0.0f, axT, T)) return -1;
    for (int i = 0, j = 0; i < count; i++)
        if (jobs[i].B && gemm("lora_linear B", 1, 1, T, jobs[i].out, r, s, axT + (size_t)j++ * r * T, T, jobs[i].B, r, 1.0f, jobs[i].y,
                              jobs[i].out))
            return -1;
    return 0;
}

extern "C" int kc_lora_linears(const LoraLinearJob *jobs, int count, float *axT, const float *x, const uint16_t *x16_given, const float *A,
                               float s, int T, int in, int r) {
    int bf16 = 0, m = 0;
    if (blas()) return -1;
    for (int i = 0; i < count; i++) {
        if (jobs[i].W && check_type("lora_linear", jobs[i].wt)) return -1;
        bf16 |= jobs[i].W && jobs[i].wt == LD_BF16;
        m += jobs[i].B != NULL;
    }
    // x rounded by the op that made it, or here
    __nv_bfloat16 *x16 = x16_given ? (__nv_bfloat16 *)x16_given : bf16 ? rounded(x, (size_t)T * in) : NULL;
    int rc = bf16 && !x16;
    for (int i = 0; i < count && !rc; i++) {
        const LoraLinearJob *j = &jobs[i];
        rc = j->W && (base_gemm_on("lora_linear W", 0, j->y, x, x16, j->W, j->wt, T, in, j->out, 0.0f) || kc_add_bias(j->y, j->bias, T, j->out));
    }
    if (!x16_given) kc_free(x16);
    if (!rc && A && m) rc = adapters_forward(jobs, count, m, axT, x, A, s, T, in, r);
    return rc ? -1 : 0;
}

// One job's base products going back: dx = *beta·dx + dy·W (dx NULL: not wanted; a bf16 W multiplies dy16, dy
// rounded; *beta becomes 1 once dx is written),
// dW += dyᵀ·x (fp32 sgemm whatever W's precision: a bf16 W is the copy of an fp32 master whose gradient this is),
// dbias += Σ_t dy (rows in order, as the CPU's k_matmul_backward).
static int base_backward(const LoraLinearGrad *j, const __nv_bfloat16 *dy16, float *dx, float *beta, const float *x, int T, int in) {
    if (dx && j->W) {
        if (base_gemm_on("lora_linear_backward dx", 1, dx, j->dy, dy16, j->W, j->wt, T, in, j->out, *beta)) return -1;
        *beta = 1.0f;
    }
    if (j->dW && gemm("lora_linear_backward dW", 1, 0, j->out, in, T, 1.0f, j->dy, j->out, x, in, 1.0f, j->dW, in)) return -1;
    return j->dbias ? kc_add_col_sums(j->dbias, j->dy, T, j->out) : 0;
}

// The dy of each job whose bf16 W multiplies it for dx, in dy16[i] (NULL for the others): the job's dy16 where its
// producer rounded it, else rounded here, all such in one launch, into mine[i] (the caller frees those). 0, or -1.
static int rounded_dys(const LoraLinearGrad *jobs, int count, int T, const __nv_bfloat16 **dy16, __nv_bfloat16 **mine) {
    LdConvertRun runs[KC_CONVERT_RUNS];
    int m = 0;
    for (int i = 0; i < count; i++) {
        const LoraLinearGrad *j = &jobs[i];
        if (!j->W || j->wt != LD_BF16) continue;
        size_t n = (size_t)T * j->out;
        if (j->dy16) {
            dy16[i] = (const __nv_bfloat16 *)j->dy16;
            continue;
        }
        if (!(dy16[i] = mine[i] = (__nv_bfloat16 *)kc_alloc(sizeof(__nv_bfloat16) * (n ? n : 1)))) return -1;
        runs[m++] = (LdConvertRun){mine[i], j->dy, n};
    }
    return m ? kc_to_bf16_runs(runs, m) : 0;
}

// The adapters' products going back: dyBT (each job's rows (s·dy·B)ᵀ), their share of dx (beta 0: dx written),
// each dB and dA; for few tokens two fused launches, else cuBLAS's products.
static int adapters_backward(const LoraLinearGrad *jobs, int count, int m, float *dx, float beta, float *dA, float *dyBT, const float *x,
                             const float *axT, const float *A, float s, int T, int in, int r) {
    if (kc_lowrank_fits(T, m, r)) {
        LowrankJob lj[KC_LOWRANK_MAX_JOBS];
        for (int i = 0, j = 0; i < count; i++)
            if (jobs[i].B) lj[j++] = (LowrankJob){NULL, jobs[i].dy, jobs[i].B, jobs[i].dB, jobs[i].out};
        return kc_lowrank_backward(lj, m, dyBT, dx, beta != 0.0f, A, s, T, in, r) || kc_lowrank_grads(lj, m, dA, axT, dyBT, x, s, T, in, r)
                   ? -1
                   : 0;
    }
    for (int i = 0, j = 0; i < count; i++) {
        const LoraLinearGrad *g = &jobs[i];
        if (!g->B) continue;
        float *rows = dyBT + (size_t)j * r * T;
        const float *ax = axT + (size_t)j++ * r * T;
        if (gemm("lora_linear_backward dyB", 1, 1, r, T, g->out, s, g->B, r, g->dy, g->out, 0.0f, rows, T) ||
            (g->dB && gemm("lora_linear_backward dB", 1, 1, g->out, r, T, s, g->dy, g->out, ax, T, 1.0f, g->dB, r)))
            return -1;
    }
    if (dx && gemm("lora_linear_backward dx(A)", 1, 0, T, in, m * r, 1.0f, dyBT, T, A, in, beta, dx, in)) return -1;
    return dA ? gemm("lora_linear_backward dA", 0, 0, m * r, in, T, 1.0f, dyBT, T, x, in, 1.0f, dA, in) : 0;
}

// base_backward of every job, then the adapters' products; dx written by the first product into it unless dx_add
// (zeros when none is)
static int linears_backward(const LoraLinearGrad *jobs, int count, const __nv_bfloat16 *const *dy16, float *dx, int dx_add, float *dA,
                            float *dyBT, const float *x, const float *axT, const float *A, float s, int T, int in, int r) {
    int m = 0;
    float beta = dx_add ? 1.0f : 0.0f;
    for (int i = 0; i < count; i++) {
        if (base_backward(&jobs[i], dy16[i], dx, &beta, x, T, in)) return -1;
        m += A && jobs[i].B;
    }
    if (m) return adapters_backward(jobs, count, m, dx, beta, dA, dyBT, x, axT, A, s, T, in, r);
    return dx && beta == 0.0f ? kc_fill(dx, 0, (size_t)T * in) : 0;
}

extern "C" int kc_lora_linears_backward(const LoraLinearGrad *jobs, int count, float *dx, int dx_add, float *dA, float *dyBT,
                                        const float *x, const float *axT, const float *A, float s, int T, int in, int r) {
    if (blas()) return -1;
    if (count > KC_CONVERT_RUNS) {
        kc_set_error_msg("lora_linear_backward", "too many linears sharing one input");
        return -1;
    }
    for (int i = 0; i < count; i++)
        if (jobs[i].W && check_type("lora_linear_backward", jobs[i].wt)) return -1;
    const __nv_bfloat16 *dy16[KC_CONVERT_RUNS] = {0};
    __nv_bfloat16 *mine[KC_CONVERT_RUNS] = {0};
    int rc = (dx && rounded_dys(jobs, count, T, dy16, mine)) ||
             linears_backward(jobs, count, dy16, dx, dx_add, dA, dyBT, x, axT, A, s, T, in, r);
    for (int i = 0; i < count; i++) kc_free(mine[i]);
    return rc ? -1 : 0;
}

// dx NULL: no dx products (the fused head may want dW alone).
extern "C" int kc_lora_linear_backward(float *dx, int dx_add, float *dW, float *dbias, float *dA, float *dB, float *dyBT, const float *dy,
                                       const uint16_t *dy16, const float *x, const float *axT, const void *W, LdDtype wt, const float *A,
                                       const float *B, float s, int T, int in, int out, int r) {
    LoraLinearGrad job = {dy, dy16, W, wt, A ? B : NULL, dB, dW, dbias, out};
    return kc_lora_linears_backward(&job, 1, dx, dx_add, dA, dyBT, x, axT, A, s, T, in, r);
}
