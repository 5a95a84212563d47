// AdamW, elementwise (kernels/cpu/adamw.c), formula for formula: decoupled weight decay, bias corrections computed
// on the host as torch does.
#include "common.cuh"

__global__ static void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps,
                                    float weight_decay, float step_size, float bc2_sqrt) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float pi = p[i] * (1.0f - lr * weight_decay), gi = g[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * gi, vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi, v[i] = vi;
    p[i] = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
}

extern "C" int kc_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int step) {
    float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);  // on the host, as torch does
    if (!n) return 0;
    adamw_kernel<<<kc_blocks(n, 256), 256>>>(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, lr / bc1, sqrtf(bc2));
    KC_CHECK_LAUNCH("adamw");
    return 0;
}
