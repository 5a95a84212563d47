// defines: the jobs of the LoRA linears that share one input (q, k and v; gate and up), for the CPU reference
// (kernels.h k_lora_linears) and the CUDA kernels (cuda/lora_linear.h) alike.
#pragma once
#include "dtype.h"

// One linear of the forward: y[T,out] = x·W[out,in]ᵀ (W's rows in format wt) + bias[out] (NULL: none), plus
// s·ax·B[out,r]ᵀ where B is set (NULL: this linear has no adapter).
typedef struct {
    float *y;
    const void *W;
    LdDtype wt;
    const float *bias, *B;
    int out;
} LoraLinearJob;

// The same linear going back, given dy[T,out]: dx takes dy·W (W NULL: none); dB[out,r] += s·dyᵀ·ax where B is set
// (dB NULL: not wanted); full fine-tuning's dW[out,in] += dyᵀ·x and dbias[out] += Σ_t dy (NULL: frozen). dy16 (NULL:
// none): dy rounded to bf16 by the op that made it, for a GEMM through a bf16 W (the CPU reads dy whatever W is).
typedef struct {
    const float *dy;
    const uint16_t *dy16;
    const void *W;
    LdDtype wt;
    const float *B;
    float *dB, *dW, *dbias;
    int out;
} LoraLinearGrad;
