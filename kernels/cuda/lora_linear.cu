// The LoRA linear y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ forward and backward (dx accumulated, dA, dB; dW and dbias
// accumulated when asked for: full fine-tuning). The contract of kernels/cpu/lora_linear.c.
// fp32 W: cuBLAS sgemm in true fp32 (no TF32), the path the CPU reference is matched against at 1e-5.
// bf16 W (mixed precision): the activation (x, or dy going back) is rounded to bf16 into a scratch buffer and
// the base GEMM runs on cuBLASLt with bf16 inputs, fp32 accumulation and an fp32 result; the low-rank path
// (r columns: a few percent of the work) stays fp32 on cuBLAS, so the adapter's master weights and gradients
// never leave fp32.
// Row-major [rows, cols] matrices are column-major [cols, rows] to cuBLAS, so y = x·Wᵀ is the column-major
// product W(ᵀ as stored)·x.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include "common.cuh"

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

// The same product with bf16 A and B on cuBLASLt (fp32 compute and scale, fp32 C), the algorithm from its heuristic.
static int gemm_bf16(const char *what, int transA, int transB, int M, int N, int K, float alpha, const __nv_bfloat16 *A, int lda,
                     const __nv_bfloat16 *B, int ldb, float beta, float *C, int ldc) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t lb = NULL, la = NULL, lc = NULL;  // Lt's first operand is our B (the row-major swap)
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t best;
    int found = 0;
    cublasOperation_t tb = transB ? CUBLAS_OP_T : CUBLAS_OP_N, ta = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t st = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tb, sizeof tb);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &ta, sizeof ta);
    // stored (column-major) shapes: op(B) is [N,K], op(A) is [K,M], C is [N,M]
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, transB ? K : N, transB ? N : K, ldb);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, transA ? M : K, transA ? K : M, lda);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, N, M, ldc);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &LT_WORKSPACE, sizeof LT_WORKSPACE);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulAlgoGetHeuristic(g_lt, op, lb, la, lc, lc, pref, 1, &best, &found);
    if (st == CUBLAS_STATUS_SUCCESS && found > 0)
        st = cublasLtMatmul(g_lt, op, &alpha, B, lb, A, la, &beta, C, lc, C, lc, &best.algo, g_lt_workspace, LT_WORKSPACE, 0);
    else if (st == CUBLAS_STATUS_SUCCESS)  // no Lt kernel for this shape or alignment: cuBLAS's general bf16 GEMM
        st = cublasGemmEx(g_blas, tb, ta, N, M, K, &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, CUDA_R_32F, ldc,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (op) cublasLtMatmulDescDestroy(op);
    if (st != CUBLAS_STATUS_SUCCESS) {
        kc_set_error_msg(what, cublasGetStatusString(st));
        return -1;
    }
    KC_CHECK_LAUNCH(what);
    return 0;
}

// The base product with W[out,in] stored as wt: forward C[T,out] = act[T,in]·Wᵀ, backward C[T,in] += act[T,out]·W
// (beta 0 replaces C, 1 accumulates). For a bf16 W the activation is rounded to bf16 into a buffer from the caching
// allocator first.
static int base_gemm(const char *what, int backward, float *C, const float *act, const void *W, LdDtype wt, int T, int in, int out,
                     float beta) {
    int N = backward ? in : out, K = backward ? out : in, transW = !backward;
    if (wt == LD_F32) return gemm(what, 0, transW, T, N, K, 1.0f, act, K, (const float *)W, in, beta, C, N);
    size_t n = (size_t)T * K;
    __nv_bfloat16 *a16 = (__nv_bfloat16 *)kc_alloc(sizeof(__nv_bfloat16) * n);
    int rc = !a16 || lt() || kc_to_bf16(a16, act, n)
                 ? -1
                 : gemm_bf16(what, 0, transW, T, N, K, 1.0f, a16, K, (const __nv_bfloat16 *)W, in, beta, C, N);
    kc_free(a16);
    return rc;
}

static int check_type(const char *what, LdDtype wt) {
    if (wt == LD_F32 || wt == LD_BF16) return 0;
    kc_set_error_msg(what, "the base weight must be F32 or BF16 on the GPU");
    return -1;
}

// y[T,out] = x[T,in]·W[out,in]ᵀ + bias + s·ax·B[out,r]ᵀ with ax[T,r] = x·A[r,in]ᵀ kept for the backward pass
extern "C" int kc_lora_linear(float *y, float *ax, const float *x, const void *W, LdDtype wt, const float *bias, const float *A,
                              const float *B, float s, int T, int in, int out, int r) {
    if (blas() || check_type("lora_linear", wt)) return -1;
    if (W && (base_gemm("lora_linear W", 0, y, x, W, wt, T, in, out, 0.0f) || kc_add_bias(y, bias, T, out))) return -1;
    if (!A) return 0;
    if (gemm("lora_linear A", 0, 1, T, r, in, 1.0f, x, in, A, in, 0.0f, ax, r)) return -1;
    return gemm("lora_linear B", 0, 1, T, out, r, s, ax, r, B, r, 1.0f, y, out);
}

// dx[T,in] += dy·W + s·(dy·B)·A;  dB[out,r] += s·dyᵀ·ax;  dA[r,in] += s·(dy·B)ᵀ·x.  dyB is scratch [T,r].
// Full fine-tuning: dW[out,in] += dyᵀ·x (fp32 sgemm whatever W's precision: a bf16 W is the copy of an fp32 master
// whose gradient this is) and dbias[out] += Σ_t dy[t,:] (rows in order,
// as the CPU's k_matmul_backward). dx NULL: no dx products (the fused head may want dW alone).
extern "C" int kc_lora_linear_backward(float *dx, float *dW, float *dbias, float *dA, float *dB, float *dyB, const float *dy,
                                       const float *x, const float *ax, const void *W, LdDtype wt, const float *A, const float *B, float s,
                                       int T, int in, int out, int r) {
    if (blas() || check_type("lora_linear_backward", wt)) return -1;
    if (dx && W && base_gemm("lora_linear_backward dx", 1, dx, dy, W, wt, T, in, out, 1.0f)) return -1;
    if (dW && gemm("lora_linear_backward dW", 1, 0, out, in, T, 1.0f, dy, out, x, in, 1.0f, dW, in)) return -1;
    if (dbias && kc_add_col_sums(dbias, dy, T, out)) return -1;
    if (!A) return 0;
    if (gemm("lora_linear_backward dyB", 0, 0, T, r, out, s, dy, out, B, r, 0.0f, dyB, r) ||
        (dx && gemm("lora_linear_backward dx(A)", 0, 0, T, in, r, 1.0f, dyB, r, A, in, 1.0f, dx, in)) ||
        (dB && gemm("lora_linear_backward dB", 1, 0, out, r, T, s, dy, out, ax, r, 1.0f, dB, r)) ||
        (dA && gemm("lora_linear_backward dA", 1, 0, r, in, T, 1.0f, dyB, r, x, in, 1.0f, dA, in)))
        return -1;
    return 0;
}
