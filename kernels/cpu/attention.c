#include <math.h>
#include <stdlib.h>

#include "../kernels.h"

void k_attention(float *out, const float *q, const float *const *k_rows, const float *const *v_rows,
                 const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale,
                 float softcap) {
    int group = Hq / Hkv, kv_stride = Hkv * hd;
    int max_len = 1;
    for (int t = 0; t < T; t++)
        if (kv_hi[t] - kv_lo[t] + 1 > max_len) max_len = kv_hi[t] - kv_lo[t] + 1;
#pragma omp parallel
    {
        float *scores = malloc(sizeof(float) * (size_t)max_len);
#pragma omp for collapse(2) schedule(dynamic, 4)
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < Hq; h++) {
                const float *qh = q + ((size_t)t * Hq + h) * hd;
                float *oh = out + ((size_t)t * Hq + h) * hd;
                int kvh = h / group, lo = kv_lo[t], n = kv_hi[t] - lo + 1;
                const float *kb = k_rows[t] + (size_t)kvh * hd, *vb = v_rows[t] + (size_t)kvh * hd;
                float m = -INFINITY;
                for (int j = 0; j < n; j++) {
                    const float *kr = kb + (size_t)(lo + j) * kv_stride;
                    float s = 0.0f;
                    for (int i = 0; i < hd; i++) s += qh[i] * kr[i];
                    s *= scale;
                    if (softcap > 0.0f) s = softcap * tanhf(s / softcap);
                    scores[j] = s;
                    if (s > m) m = s;
                }
                float sum = 0.0f;
                for (int j = 0; j < n; j++) sum += (scores[j] = expf(scores[j] - m));
                float inv = 1.0f / sum;
                for (int i = 0; i < hd; i++) oh[i] = 0.0f;
                for (int j = 0; j < n; j++) {
                    const float *vr = vb + (size_t)(lo + j) * kv_stride;
                    float p = scores[j] * inv;
                    for (int i = 0; i < hd; i++) oh[i] += p * vr[i];
                }
            }
        }
        free(scores);
    }
}
