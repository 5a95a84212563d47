#include <math.h>

#include "../kernels.h"

void k_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
             int step) {
    // torch.optim.AdamW, operation for operation: decoupled decay, then the bias-corrected update
    float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
    float step_size = lr / bc1, bc2_sqrt = sqrtf(bc2);
    for (size_t i = 0; i < n; i++) {
        p[i] *= 1.0f - lr * weight_decay;
        m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

double k_sumsq(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

void k_scale(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
}
