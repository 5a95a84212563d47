// defines: RMSNorm, the residual add fused with it, and its backward (kernels.h k_rmsnorm) (kernels/cuda/rmsnorm.cu;
// each returns 0, or -1 with kc_last_error()).
#pragma once
#include <stddef.h>
#include <stdint.h>

int kc_rmsnorm(float *y, uint16_t *y16, const float *x, const float *w, int T, int D, float eps, int plus_one);
// x[T,D] += d, then y = rmsnorm(x) in one pass per row (y may be d)
int kc_add_rmsnorm(float *y, uint16_t *y16, float *x, const float *d, const float *w, int T, int D, float eps, int plus_one);
// dx written; dw (may be NULL) accumulated, reduced over rows in a fixed order (deterministic)
int kc_rmsnorm_backward(float *dx, uint16_t *dx16, float *dw, const float *dy, const float *x, const float *w, int T, int D, float eps,
                        int plus_one);
