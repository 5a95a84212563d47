// The LoRA linear forward and backward on the CPU: the base product through k_matmul_q (any file format), the
// low-rank path in fp32. The contract of kernels/cuda/lora_linear.cu.
#include <cblas.h>

#include "../kernels.h"

void k_lora_linear(float *y, float *ax, const float *x, const void *W, LdDtype wt, const float *bias, const float *A, const float *B,
                   float s, int T, int in, int out, int r) {
    if (W) k_matmul_q(y, x, W, wt, bias, T, in, out);
    if (!A) return;
    k_matmul(ax, x, A, NULL, T, in, r);
    k_matmul_add(y, ax, B, s, T, r, out);
}

void k_lora_linears(const LoraLinearJob *jobs, int count, const float *x, float s, int T, int in, int r) {
    for (int i = 0; i < count; i++) {
        const LoraLinearJob *j = &jobs[i];
        k_lora_linear(j->y, j->ax, x, j->W, j->wt, j->bias, j->A, j->B, s, T, in, j->out, r);
    }
}

void k_lora_linear_backward(float *dx, float *dW, float *dbias, float *dA, float *dB, float *dyB, const float *dy, const float *x,
                            const float *ax, const void *W, LdDtype wt, const float *A, const float *B, float s, int T, int in, int out,
                            int r) {
    if (W) k_matmul_q_backward_x(dx, dy, W, wt, T, in, out);
    if (dW || dbias) k_matmul_backward(NULL, dW, dbias, dy, x, NULL, T, in, out);
    if (!A) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, r, out, s, dy, out, B, r, 0.0f, dyB, r);  // dyB = s·dy·B
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, in, r, 1.0f, dyB, r, A, in, 1.0f, dx, in);
    if (dB) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, T, s, dy, out, ax, r, 1.0f, dB, r);
    if (dA) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, T, 1.0f, dyB, r, x, in, 1.0f, dA, in);
}
