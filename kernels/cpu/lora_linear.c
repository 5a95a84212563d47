// The LoRA linear forward and backward on the CPU: the base product through k_matmul_q (any file format), the
// low-rank path in fp32. The contract of kernels/cuda/lora_linear.cu.
#include <cblas.h>

#include "../kernels.h"

// y[T,out] += s·axTᵀ·B[out,r]ᵀ given axT[r,T]
static void expand(float *y, const float *axT, const float *B, float s, int T, int out, int r) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, T, out, r, s, axT, T, B, r, 1.0f, y, out);
}

void k_lora_linear(float *y, float *axT, const float *x, const void *W, LdDtype wt, const float *bias, const float *A, const float *B,
                   float s, int T, int in, int out, int r) {
    LoraLinearJob job = {y, W, wt, bias, A ? B : NULL, out};
    k_lora_linears(&job, 1, axT, x, A, s, T, in, r);
}

void k_lora_linears(const LoraLinearJob *jobs, int count, float *axT, const float *x, const float *A, float s, int T, int in, int r) {
    int m = 0;
    for (int i = 0; i < count; i++) {
        if (jobs[i].W) k_matmul_q(jobs[i].y, x, jobs[i].W, jobs[i].wt, jobs[i].bias, T, in, jobs[i].out);
        m += jobs[i].B != NULL;
    }
    if (!A || !m) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m * r, T, in, 1.0f, A, in, x, in, 0.0f, axT, T);  // axT = A·xᵀ
    for (int i = 0, j = 0; i < count; i++)
        if (jobs[i].B) expand(jobs[i].y, axT + (size_t)j++ * r * T, jobs[i].B, s, T, jobs[i].out, r);
}

void k_lora_linear_backward(float *dx, int dx_add, float *dW, float *dbias, float *dA, float *dB, float *dyBT, const float *dy,
                            const float *x, const float *axT, const void *W, LdDtype wt, const float *A, const float *B, float s, int T,
                            int in, int out, int r) {
    LoraLinearGrad job = {dy, NULL, W, wt, A ? B : NULL, dB, dW, dbias, out};
    k_lora_linears_backward(&job, 1, dx, dx_add, dA, dyBT, x, axT, A, s, T, in, r);
}

void k_lora_linears_backward(const LoraLinearGrad *jobs, int count, float *dx, int dx_add, float *dA, float *dyBT, const float *x,
                             const float *axT, const float *A, float s, int T, int in, int r) {
    int m = 0;
    if (dx && !dx_add) memset(dx, 0, sizeof(float) * (size_t)T * in);
    for (int i = 0; i < count; i++) {
        const LoraLinearGrad *j = &jobs[i];
        if (j->W && dx) k_matmul_q_backward_x(dx, j->dy, j->W, j->wt, T, in, j->out);
        if (j->dW || j->dbias) k_matmul_backward(NULL, j->dW, j->dbias, j->dy, x, NULL, T, in, j->out);
        if (!A || !j->B) continue;
        float *rows = dyBT + (size_t)m * r * T;
        const float *ax = axT + (size_t)m++ * r * T;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, r, T, j->out, s, j->B, r, j->dy, j->out, 0.0f, rows, T);  // (s·dy·B)ᵀ
        if (j->dB) cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, j->out, r, T, s, j->dy, j->out, ax, T, 1.0f, j->dB, r);
    }
    if (!m) return;
    if (dx) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, in, m * r, 1.0f, dyBT, T, A, in, 1.0f, dx, in);
    if (dA) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m * r, in, T, 1.0f, dyBT, T, x, in, 1.0f, dA, in);
}
