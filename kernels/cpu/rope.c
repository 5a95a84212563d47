#include <math.h>

#include "../kernels.h"

// Rotates each (i, i + head_dim/2) pair by angle pos·inv_freq[i], or by its negative (the transpose, which is
// the backward pass of a rotation) when sign is -1.
static void rotate(float *x, const int *pos, const float *inv_freq, int T, int n_heads, int head_dim, float sign) {
    int half = head_dim / 2;
#pragma omp parallel for if (T > 4)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            // HF computes the angle in fp32 (pos * inv_freq) before cos/sin: do the same.
            float ang = (float)pos[t] * inv_freq[i];
            float c = cosf(ang), s = sign * sinf(ang);
            for (int h = 0; h < n_heads; h++) {
                float *v = x + ((size_t)t * n_heads + h) * head_dim;
                float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
}

void k_rope(float *x, const int *pos, const float *inv_freq, int T, int n_heads, int head_dim) {
    rotate(x, pos, inv_freq, T, n_heads, head_dim, 1.0f);
}

void k_rope_backward(float *dx, const int *pos, const float *inv_freq, int T, int n_heads, int head_dim) {
    rotate(dx, pos, inv_freq, T, n_heads, head_dim, -1.0f);
}
