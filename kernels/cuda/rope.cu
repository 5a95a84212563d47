// Rotary embedding, half-split pairing (kernels/cpu/rope.c), on q and k in one launch: one thread per (token,
// head of q then of k, pair); the backward pass is the inverse rotation.
#include "common.cuh"

__global__ static void rope_kernel(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int hd, float sign) {
    int half = hd / 2, H = Hq + Hkv;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x, n = (size_t)T * H * half;
    if (idx >= n) return;
    int i = (int)(idx % half), h = (int)(idx / half % H), t = (int)(idx / half / H);
    float ang = (float)pos[t] * inv_freq[i];  // fp32 angle first, as HF does
    float c = cosf(ang), s = sign * sinf(ang);
    float *v = h < Hq ? q + ((size_t)t * Hq + h) * hd : k + ((size_t)t * Hkv + (h - Hq)) * hd;
    float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
}

static int rope(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int hd, float sign, const char *name) {
    if (!k) Hkv = 0;
    size_t n = (size_t)T * (Hq + Hkv) * (hd / 2);
    if (!n) return 0;
    rope_kernel<<<kc_blocks(n, 256), 256>>>(q, k, pos, inv_freq, T, Hq, Hkv, hd, sign);
    KC_CHECK_LAUNCH(name);
    return 0;
}

extern "C" int kc_rope(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int head_dim) {
    return rope(q, k, pos, inv_freq, T, Hq, Hkv, head_dim, 1.0f, "rope");
}

extern "C" int kc_rope_backward(float *dq, float *dk, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int head_dim) {
    return rope(dq, dk, pos, inv_freq, T, Hq, Hkv, head_dim, -1.0f, "rope_backward");
}
