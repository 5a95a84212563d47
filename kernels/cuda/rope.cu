// Rotary embedding, half-split pairing (kernels/cpu/rope.c), on q and k in one launch: one thread per (token,
// head of q then of k, pair); the backward pass is the inverse rotation.
#include "common.cuh"

__global__ static void rope_kernel(float *q, float *k, uint16_t *q16, uint16_t *k16, const int *pos, const float *inv_freq, int T, int Hq,
                                   int Hkv, int hd, float sign) {
    int half = hd / 2, H = Hq + Hkv;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x, n = (size_t)T * H * half;
    if (idx >= n) return;
    int i = (int)(idx % half), h = (int)(idx / half % H), t = (int)(idx / half / H);
    float ang = (float)pos[t] * inv_freq[i];  // fp32 angle first, as HF does
    float c = cosf(ang), s = sign * sinf(ang);
    size_t at = h < Hq ? ((size_t)t * Hq + h) * hd : ((size_t)t * Hkv + (h - Hq)) * hd;
    float *v = h < Hq ? q : k;
    uint16_t *v16 = h < Hq ? q16 : k16;
    float a = v[at + i], b = v[at + i + half];
    kc_store(v, v16, at + i, a * c - b * s);
    kc_store(v, v16, at + i + half, b * c + a * s);
}

static int rope(float *q, float *k, uint16_t *q16, uint16_t *k16, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int hd,
                float sign, const char *name) {
    if (!k) Hkv = 0;
    size_t n = (size_t)T * (Hq + Hkv) * (hd / 2);
    if (!n) return 0;
    rope_kernel<<<kc_blocks(n, 256), 256>>>(q, k, q16, k16, pos, inv_freq, T, Hq, Hkv, hd, sign);
    KC_CHECK_LAUNCH(name);
    return 0;
}

__device__ static inline void kv_store(KvRows kv, size_t at, float key, float value) {
    if (kv.type == LD_BF16) {
        ((__nv_bfloat16 *)kv.k)[at] = __float2bfloat16_rn(key);
        ((__nv_bfloat16 *)kv.v)[at] = __float2bfloat16_rn(value);
    } else {
        ((float *)kv.k)[at] = key;
        ((float *)kv.v)[at] = value;
    }
}

// One thread a (token, head of q then of k, pair), as rope_kernel: q's pairs rotated in place; a key pair rotated
// into the cache's row rows[t], its value pair beside it (the pairs of the Hkv heads cover every value element).
__global__ static void rope_kv_write_kernel(KvRows kv, float *q, const float *k, const float *v, const int *rows, const int *pos,
                                            const float *inv_freq, int T, int Hq, int Hkv, int hd) {
    int half = hd / 2, H = Hq + Hkv;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x, n = (size_t)T * H * half;
    if (idx >= n) return;
    int i = (int)(idx % half), h = (int)(idx / half % H), t = (int)(idx / half / H);
    float ang = (float)pos[t] * inv_freq[i];  // fp32 angle first, as HF does
    float c = cosf(ang), s = sinf(ang);
    if (h < Hq) {
        float *x = q + ((size_t)t * Hq + h) * hd, a = x[i], b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
        return;
    }
    size_t width = (size_t)Hkv * hd, src = (size_t)t * width + (size_t)(h - Hq) * hd + i;
    size_t at = (size_t)kv_page_row(kv.pages, kv.page_shift, rows[t]) * width + (size_t)(h - Hq) * hd + i;
    float a = k[src], b = k[src + half];
    kv_store(kv, at, a * c - b * s, v[src]);
    kv_store(kv, at + half, b * c + a * s, v[src + half]);
}

extern "C" int kc_rope_kv_write(KvRows kv, float *q, const float *k, const float *v, const int *rows, const int *pos, const float *inv_freq,
                                int n, int Hq, int Hkv, int head_dim) {
    if (kv.type != LD_F32 && kv.type != LD_BF16) {
        kc_set_error_msg("rope_kv_write", "a KV cache must be F32 or BF16");
        return -1;
    }
    size_t total = (size_t)n * (Hq + Hkv) * (head_dim / 2);
    if (!total) return 0;
    rope_kv_write_kernel<<<kc_blocks(total, 256), 256>>>(kv, q, k, v, rows, pos, inv_freq, n, Hq, Hkv, head_dim);
    KC_CHECK_LAUNCH("rope_kv_write");
    return 0;
}

extern "C" int kc_rope(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int head_dim) {
    return rope(q, k, NULL, NULL, pos, inv_freq, T, Hq, Hkv, head_dim, 1.0f, "rope");
}

extern "C" int kc_rope_backward(float *dq, float *dk, uint16_t *dq16, uint16_t *dk16, const int *pos, const float *inv_freq, int T, int Hq,
                                int Hkv, int head_dim) {
    return rope(dq, dk, dq16, dk16, pos, inv_freq, T, Hq, Hkv, head_dim, -1.0f, "rope_backward");
}
