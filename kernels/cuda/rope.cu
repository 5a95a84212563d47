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

extern "C" int kc_rope(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int head_dim) {
    return rope(q, k, NULL, NULL, pos, inv_freq, T, Hq, Hkv, head_dim, 1.0f, "rope");
}

extern "C" int kc_rope_backward(float *dq, float *dk, uint16_t *dq16, uint16_t *dk16, const int *pos, const float *inv_freq, int T, int Hq,
                                int Hkv, int head_dim) {
    return rope(dq, dk, dq16, dk16, pos, inv_freq, T, Hq, Hkv, head_dim, -1.0f, "rope_backward");
}
