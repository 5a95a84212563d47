#include <math.h>

#include "../kernels.h"

void k_rmsnorm(float *y, const float *x, const float *w, int T, int D, float eps, int plus_one) {
#pragma omp parallel for if (T > 4)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * D;
        float *yr = y + (size_t)t * D;
        float ss = 0.0f;
        for (int i = 0; i < D; i++) ss += xr[i] * xr[i];
        float r = 1.0f / sqrtf(ss / D + eps);
        for (int i = 0; i < D; i++) yr[i] = xr[i] * r * (plus_one ? 1.0f + w[i] : w[i]);
    }
}
