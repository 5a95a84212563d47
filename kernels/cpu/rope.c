#include <math.h>

#include "../kernels.h"

// Rotates each (i, i + head_dim/2) pair of q's and k's heads by angle pos·inv_freq[i], or by its negative (the
// transpose, which is the backward pass of a rotation) when sign is -1. A token's angles are shared by all its
// heads, q's and k's alike: computed once for both.
static void rotate_heads(float *x, int t, int n_heads, int head_dim, int i, float c, float s) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + ((size_t)t * n_heads + h) * head_dim;
        float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
    }
}

static void rotate(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int head_dim, float sign) {
    int half = head_dim / 2;
#pragma omp parallel for if (T > 4)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            // HF computes the angle in fp32 (pos * inv_freq) before cos/sin: do the same.
            float ang = (float)pos[t] * inv_freq[i];
            float c = cosf(ang), s = sign * sinf(ang);
            rotate_heads(q, t, Hq, head_dim, i, c, s);
            if (k) rotate_heads(k, t, Hkv, head_dim, i, c, s);
        }
    }
}

void k_rope(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int head_dim) {
    rotate(q, k, pos, inv_freq, T, Hq, Hkv, head_dim, 1.0f);
}

void k_rope_backward(float *dq, float *dk, uint16_t *dq16, uint16_t *dk16, const int *pos, const float *inv_freq, int T, int Hq, int Hkv,
                     int head_dim) {
    rotate(dq, dk, pos, inv_freq, T, Hq, Hkv, head_dim, -1.0f);
    for (size_t i = 0; dq16 && i < (size_t)T * Hq * head_dim; i++) dq16[i] = ld_f32_to_bf16(dq[i]);
    for (size_t i = 0; dk && dk16 && i < (size_t)T * Hkv * head_dim; i++) dk16[i] = ld_f32_to_bf16(dk[i]);
}
