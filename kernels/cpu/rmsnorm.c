#include <math.h>

#include "../kernels.h"

void k_rmsnorm(float *y, uint16_t *y16, const float *x, const float *w, int T, int D, float eps, int plus_one) {
#pragma omp parallel for if (T > 4)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * D;
        float *yr = y + (size_t)t * D;
        float ss = 0.0f;
        for (int i = 0; i < D; i++) ss += xr[i] * xr[i];
        float r = 1.0f / sqrtf(ss / D + eps);
        for (int i = 0; i < D; i++) yr[i] = xr[i] * r * (plus_one ? 1.0f + w[i] : w[i]);
        for (int i = 0; y16 && i < D; i++) y16[(size_t)t * D + i] = ld_f32_to_bf16(yr[i]);
    }
}

void k_add_rmsnorm(float *y, uint16_t *y16, float *x, const float *d, const float *w, int T, int D, float eps, int plus_one) {
    k_add(x, NULL, d, (size_t)T * D);
    k_rmsnorm(y, y16, x, w, T, D, eps, plus_one);
}

void k_rmsnorm_backward(float *dx, uint16_t *dx16, float *dw, const float *dy, const float *x, const float *w, int T, int D, float eps,
                        int plus_one) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * D, *dyr = dy + (size_t)t * D;
        float *dxr = dx + (size_t)t * D;
        double ss = 0, dot = 0;  // y = x·r·g with r = 1/sqrt(mean(x²) + eps)
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / D) + eps);
        for (int i = 0; i < D; i++) {
            float g = plus_one ? 1.0f + w[i] : w[i];
            dot += (double)dyr[i] * g * xr[i];
            if (dw) dw[i] += dyr[i] * xr[i] * r;
        }
        // dx_i = r·g_i·dy_i − r³/D · x_i · Σ_j g_j·dy_j·x_j
        float c = (float)(dot * r * r * r / D);
        for (int i = 0; i < D; i++) dxr[i] = r * (plus_one ? 1.0f + w[i] : w[i]) * dyr[i] - c * xr[i];
        for (int i = 0; dx16 && i < D; i++) dx16[(size_t)t * D + i] = ld_f32_to_bf16(dxr[i]);
    }
}
