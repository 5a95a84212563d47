// defines: the gated activations of the MLP block (h = act(gate) * up), one scalar definition of each act and
// its derivative that the CPU reference (kernels/cpu/activations.c) and the CUDA kernels
// (kernels/cuda/activations.cu) both compile, so the two cannot drift apart.
#pragma once
#include <math.h>

#include "host_device.h"

typedef enum {
    ACT_SILU,  // x·σ(x) (Llama, Qwen, Mistral: hidden_act "silu")
    ACT_GELU_TANH,  // tanh-approximate GELU (Gemma; hidden_act "gelu_pytorch_tanh", "gelu_new", "gelu_fast")
    ACT_GELU_ERF,  // exact GELU, 0.5·x·(1 + erf(x/√2)) (hidden_act "gelu")
} Activation;

#define LD_SQRT_2_OVER_PI 0.7978845608028654f
#define LD_INV_SQRT_2 0.7071067811865476f
#define LD_INV_SQRT_2PI 0.3989422804014327f

static inline LD_HOST_DEVICE float ld_act(Activation act, float x) {
    if (act == ACT_SILU) return x / (1.0f + expf(-x));
    if (act == ACT_GELU_TANH) return 0.5f * x * (1.0f + tanhf(LD_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
    return 0.5f * x * (1.0f + erff(x * LD_INV_SQRT_2));
}

// d act / dx
static inline LD_HOST_DEVICE float ld_act_grad(Activation act, float x) {
    if (act == ACT_SILU) {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    if (act == ACT_GELU_TANH) {
        float th = tanhf(LD_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x));
        return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * LD_SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
    }
    return 0.5f * (1.0f + erff(x * LD_INV_SQRT_2)) + x * LD_INV_SQRT_2PI * expf(-0.5f * x * x);
}
