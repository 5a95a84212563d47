// defines: AdamW on device parameters (kernels.h k_adamw) (kernels/cuda/adamw.cu; each returns 0, or -1 with
// kc_last_error()).
#pragma once
#include <stddef.h>

int kc_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
             int step);
