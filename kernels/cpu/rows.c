// Row scatter and gather: KV-cache writes and picking the rows that want logits.
#include <stdlib.h>
#include <string.h>

#include "../kernels.h"

void k_scatter_rows(float *dst, const float *src, const int *dst_rows, int n, int width) {
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)dst_rows[i] * width, src + (size_t)i * width, sizeof(float) * width);
}

static void kv_write(KvRows kv, const float *k, const float *v, const int *rows, int n, int width) {
    for (int i = 0; i < n; i++) {
        size_t at = (size_t)kv_page_row(kv.pages, kv.page_shift, rows[i]) * width;
        if (kv.type == LD_F32) {
            memcpy((float *)kv.k + at, k + (size_t)i * width, sizeof(float) * width);
            memcpy((float *)kv.v + at, v + (size_t)i * width, sizeof(float) * width);
            continue;
        }
        for (int d = 0; d < width; d++) {
            ((uint16_t *)kv.k)[at + d] = ld_f32_to_bf16(k[(size_t)i * width + d]);
            ((uint16_t *)kv.v)[at + d] = ld_f32_to_bf16(v[(size_t)i * width + d]);
        }
    }
}

void k_rope_kv_write(KvRows kv, float *q, const float *k, const float *v, const int *rows, const int *pos, const float *inv_freq, int n,
                     int Hq, int Hkv, int head_dim) {
    size_t width = (size_t)Hkv * head_dim;
    float *rotated = malloc(sizeof(float) * (n ? n * width : 1));
    memcpy(rotated, k, sizeof(float) * n * width);
    k_rope(q, rotated, pos, inv_freq, n, Hq, Hkv, head_dim);
    kv_write(kv, rotated, v, rows, n, (int)width);
    free(rotated);
}

void k_gather_rows(float *dst, uint16_t *dst16, const float *src, const int *src_rows, int n, int width) {
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * width, src + (size_t)src_rows[i] * width, sizeof(float) * width);
    for (size_t i = 0; dst16 && i < (size_t)n * width; i++) dst16[i] = ld_f32_to_bf16(dst[i]);
}
