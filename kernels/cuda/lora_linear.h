// defines: the LoRA linear and its backward on cuBLAS / cuBLASLt (kernels.h k_lora_linear)
// (kernels/cuda/lora_linear.cu; each returns 0, or -1 with kc_last_error()).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "lora_job.h"

// kernels.h k_lora_linear: y[T,out] = x[T,in]·W[out,in]ᵀ + bias + s·(x·A[r,in]ᵀ)·B[out,r]ᵀ; axT[r,T] keeps (x·Aᵀ)ᵀ (A
// NULL: the plain linear; W NULL: only the adapter's term, added to y). W is F32 (cuBLAS, true fp32) or BF16
// (cuBLASLt: x rounded to bf16, fp32 accumulation and result); A, B and the low-rank products are always fp32.
// Backward (k_lora_linear_backward): dx accumulated when dx_add, else written: the first product into it replaces
// it (W NULL: the adapter's share alone; through a BF16 W, dy rounded to bf16 for that GEMM: dy16 where its producer
// rounded it, NULL: rounded here; dx NULL: not wanted), dA/dB accumulated (NULL: not wanted), dyBT [r,T] scratch.
// Full fine-tuning: dW[out,in] += dyᵀ·x (fp32 cuBLAS whatever W's precision: a BF16 W is the forward's copy of an
// fp32 master) and dbias[out] += Σ_t dy[t,:] (rows in order), each accumulated, NULL when not wanted.
int kc_lora_linear(float *y, float *axT, const float *x, const uint16_t *x16, const void *W, LdDtype wt, const float *bias, const float *A,
                   const float *B, float s, int T, int in, int out, int r);
// kernels.h k_lora_linears: x rounded to bf16 once for every job whose W is BF16, unless x16 (NULL: none) already
// holds it rounded (by the op that made x); the stacked adapters' shrink one cuBLAS call. k_lora_linears_backward: the adapters' dx and dA one call each for the stack.
int kc_lora_linears(const LoraLinearJob *jobs, int count, float *axT, const float *x, const uint16_t *x16, const float *A, float s, int T,
                    int in, int r);
int kc_lora_linears_backward(const LoraLinearGrad *jobs, int count, float *dx, int dx_add, float *dA, float *dyBT, const float *x,
                             const float *axT, const float *A, float s, int T, int in, int r);
int kc_lora_linear_backward(float *dx, int dx_add, float *dW, float *dbias, float *dA, float *dB, float *dyBT, const float *dy,
                            const uint16_t *dy16, const float *x, const float *axT, const void *W, LdDtype wt, const float *A,
                            const float *B, float s, int T, int in, int out, int r);
// cuBLASLt plans made so far (one per bf16 GEMM shape seen, kept in a table of the 128 most recent): tests count them.
int kc_lt_plans_made(void);
