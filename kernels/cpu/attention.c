#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels.h"

// Row j of one kv head of k or v (kv.type), as fp32: the row itself, or converted into buf[hd].
static const float *kv_head_row(const void *base, LdDtype type, long long row, int stride, int col, int hd, float *buf) {
    size_t at = (size_t)row * stride + col;
    if (type == LD_F32) return (const float *)base + at;
    const uint16_t *h = (const uint16_t *)base + at;
    for (int i = 0; i < hd; i++) buf[i] = ld_bf16_to_f32(h[i]);
    return buf;
}

void k_attention(float *out, uint16_t *out16, const float *q, KvRows kv, const int *kv_base, const int *kv_lo, const int *kv_hi, int T,
                 int Hq, int Hkv, int hd, float scale, float softcap) {
    int group = Hq / Hkv, kv_stride = Hkv * hd;
    int max_len = 1;
    for (int t = 0; t < T; t++)
        if (kv_hi[t] - kv_lo[t] + 1 > max_len) max_len = kv_hi[t] - kv_lo[t] + 1;
#pragma omp parallel
    {
        float *scores = malloc(sizeof(float) * (size_t)max_len), *row = malloc(sizeof(float) * (size_t)hd);
#pragma omp for collapse(2) schedule(dynamic, 4)
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < Hq; h++) {
                const float *qh = q + ((size_t)t * Hq + h) * hd;
                float *oh = out + ((size_t)t * Hq + h) * hd;
                int col = h / group * hd, lo = kv_lo[t], n = kv_hi[t] - lo + 1, base = kv_base ? kv_base[t] : 0;
                float m = -INFINITY;
                for (int j = 0; j < n; j++) {
                    long long r = kv_page_row(kv.pages, kv.page_shift, base + lo + j);
                    const float *kr = kv_head_row(kv.k, kv.type, r, kv_stride, col, hd, row);
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
                    long long r = kv_page_row(kv.pages, kv.page_shift, base + lo + j);
                    const float *vr = kv_head_row(kv.v, kv.type, r, kv_stride, col, hd, row);
                    float p = scores[j] * inv;
                    for (int i = 0; i < hd; i++) oh[i] += p * vr[i];
                }
                for (int i = 0; out16 && i < hd; i++) out16[((size_t)t * Hq + h) * hd + i] = ld_f32_to_bf16(oh[i]);
            }
        }
        free(scores), free(row);
    }
}

void k_attention_backward(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k,
                          const float *v, const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    int group = Hq / Hkv, kv_stride = Hkv * hd, max_len = 1;
    size_t kv_n = 0;
    for (int t = 0; t < T; t++) {
        if (kv_hi[t] - kv_lo[t] + 1 > max_len) max_len = kv_hi[t] - kv_lo[t] + 1;
        if ((size_t)kv_hi[t] + 1 > kv_n) kv_n = (size_t)kv_hi[t] + 1;
    }
    kv_n *= (size_t)kv_stride;
    memset(dk, 0, sizeof(float) * (size_t)T * kv_stride), memset(dv, 0, sizeof(float) * (size_t)T * kv_stride);
    // Queries are split across threads; each sums its dk/dv privately (rows are shared between queries) and
    // the shares are added in thread order afterwards, so results do not depend on timing.
    int nt = omp_get_max_threads();
    float **share_k = calloc((size_t)nt, sizeof(float *)), **share_v = calloc((size_t)nt, sizeof(float *));
#pragma omp parallel num_threads(nt)
    {
        float *s = malloc(sizeof(float) * (size_t)max_len), *p = malloc(sizeof(float) * (size_t)max_len);
        float *z = malloc(sizeof(float) * (size_t)max_len);  // the capped scores, for the soft-cap's derivative
        float *mdk = calloc(kv_n, sizeof(float)), *mdv = calloc(kv_n, sizeof(float));
        share_k[omp_get_thread_num()] = mdk, share_v[omp_get_thread_num()] = mdv;
#pragma omp for collapse(2) schedule(static)  // a fixed split: same thread count, same sums
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hq; h++) {
                const float *qh = q + ((size_t)t * Hq + h) * hd, *doh = dout + ((size_t)t * Hq + h) * hd;
                float *dqh = dq + ((size_t)t * Hq + h) * hd;
                int kvh = h / group, lo = kv_lo[t], n = kv_hi[t] - lo + 1;
                float m = -INFINITY;  // recompute the probabilities (as the forward did)
                for (int j = 0; j < n; j++) {
                    const float *kr = k + (size_t)(lo + j) * kv_stride + (size_t)kvh * hd;
                    float x = 0;
                    for (int i = 0; i < hd; i++) x += qh[i] * kr[i];
                    x *= scale;
                    if (softcap > 0) x = softcap * tanhf(x / softcap);
                    s[j] = z[j] = x;
                    if (x > m) m = x;
                }
                float sum = 0;
                for (int j = 0; j < n; j++) sum += (p[j] = expf(s[j] - m));
                for (int j = 0; j < n; j++) p[j] /= sum;
                // dp_j = dout·v_j; ds_j = p_j (dp_j − Σ p·dp); through the soft-cap; then into q and k
                float pdp = 0;
                for (int j = 0; j < n; j++) {
                    const float *vr = v + (size_t)(lo + j) * kv_stride + (size_t)kvh * hd;
                    float dp = 0;
                    for (int i = 0; i < hd; i++) dp += doh[i] * vr[i];
                    s[j] = dp;  // s now holds dp
                    pdp += p[j] * dp;
                }
                for (int i = 0; i < hd; i++) dqh[i] = 0;
                for (int j = 0; j < n; j++) {
                    size_t row = (size_t)(lo + j) * kv_stride + (size_t)kvh * hd;
                    float ds = p[j] * (s[j] - pdp);
                    if (softcap > 0) {
                        float tz = z[j] / softcap;
                        ds *= 1.0f - tz * tz;
                    }
                    ds *= scale;
                    const float *kr = k + row;
                    float *dkr = mdk + row, *dvr = mdv + row;
                    for (int i = 0; i < hd; i++) {
                        dqh[i] += ds * kr[i];
                        dkr[i] += ds * qh[i];
                        dvr[i] += p[j] * doh[i];
                    }
                }
            }
        free(s), free(p), free(z);
    }
    for (int th = 0; th < nt; th++) {
        if (!share_k[th]) continue;
        for (size_t i = 0; i < kv_n; i++) dk[i] += share_k[th][i], dv[i] += share_v[th][i];
        free(share_k[th]), free(share_v[th]);
    }
    free(share_k), free(share_v);
    for (size_t i = 0; dv16 && i < (size_t)T * kv_stride; i++) dv16[i] = ld_f32_to_bf16(dv[i]);
}
