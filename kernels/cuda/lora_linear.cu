// The LoRA linear y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ forward and backward (dx, dA, dB; no dW for the frozen base) on cuBLAS
// (fp32 GEMMs in this first set). Row-major [rows, cols] matrices are column-major [cols, rows] to cuBLAS, so
// y = x·Wᵀ is the column-major product W(ᵀ as stored)·x.
#include <cublas_v2.h>

#include "common.cuh"

static cublasHandle_t g_blas;

static int blas(void) {
    if (g_blas) return 0;
    if (cublasCreate(&g_blas) != CUBLAS_STATUS_SUCCESS) {
        kc_set_error("cublasCreate", cudaErrorUnknown);
        return -1;
    }
    cublasSetMathMode(g_blas, CUBLAS_PEDANTIC_MATH);  // true fp32: no TF32 in the fp32 path
    return 0;
}

// C[M,N] (row-major) = alpha · op(A)·op(B) + beta · C, with op chosen per operand; lda etc. are row-major widths.
static int gemm(const char *what, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                int ldb, float beta, float *C, int ldc) {
    // row-major C = op(A)·op(B)  ⇔  column-major Cᵀ = op(B)ᵀ·op(A)ᵀ
    cublasStatus_t st = cublasSgemm(g_blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
                                    ldb, A, lda, &beta, C, ldc);
    if (st != CUBLAS_STATUS_SUCCESS) {
        kc_set_error(what, cudaErrorLaunchFailure);
        return -1;
    }
    KC_CHECK_LAUNCH(what);
    return 0;
}

// y[T,out] = x[T,in]·W[out,in]ᵀ + s·ax·B[out,r]ᵀ with ax[T,r] = x·A[r,in]ᵀ kept for the backward pass
extern "C" int kc_lora_linear(float *y, float *ax, const float *x, const float *W, const float *A, const float *B, float s, int T, int in,
                              int out, int r) {
    if (blas()) return -1;
    if (W && gemm("lora_linear W", 0, 1, T, out, in, 1.0f, x, in, W, in, 0.0f, y, out)) return -1;
    if (!A) return 0;
    if (gemm("lora_linear A", 0, 1, T, r, in, 1.0f, x, in, A, in, 0.0f, ax, r)) return -1;
    return gemm("lora_linear B", 0, 1, T, out, r, s, ax, r, B, r, 1.0f, y, out);
}

// dx[T,in] = dy·W + s·(dy·B)·A;  dB[out,r] += s·dyᵀ·ax;  dA[r,in] += s·(dy·B)ᵀ·x.  dyB is scratch [T,r].
extern "C" int kc_lora_linear_backward(float *dx, float *dA, float *dB, float *dyB, const float *dy, const float *x, const float *ax,
                                       const float *W, const float *A, const float *B, float s, int T, int in, int out, int r) {
    if (blas()) return -1;
    if (W && gemm("lora_linear_backward dx", 0, 0, T, in, out, 1.0f, dy, out, W, in, 0.0f, dx, in)) return -1;
    if (!A) return 0;
    if (gemm("lora_linear_backward dyB", 0, 0, T, r, out, s, dy, out, B, r, 0.0f, dyB, r) ||
        gemm("lora_linear_backward dx(A)", 0, 0, T, in, r, 1.0f, dyB, r, A, in, W ? 1.0f : 0.0f, dx, in) ||
        gemm("lora_linear_backward dB", 1, 0, out, r, T, s, dy, out, ax, r, 1.0f, dB, r) ||
        gemm("lora_linear_backward dA", 1, 0, r, in, T, 1.0f, dyB, r, x, in, 1.0f, dA, in))
        return -1;
    return 0;
}
