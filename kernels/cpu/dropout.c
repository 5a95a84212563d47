// LoRA dropout: y = x·mask/(1-p) with dropout_mask.h's mask (the CUDA kernel's, bit for bit).
#include "../dropout_mask.h"
#include "../kernels.h"

void k_dropout(float *y, const float *x, size_t n, float p, uint64_t stream, uint64_t e0) {
    float k = 1.0f / (1.0f - p);
    for (size_t e = 0; e < n; e++) y[e] = ld_dropout_keep(stream, e0 + e, p) ? x[e] * k : 0.0f;
}
