// Rotary embedding, half-split pairing (kernels/cpu/rope.c): one thread per (token, head, pair); the backward
// pass is the inverse rotation.
#include "common.cuh"

__global__ static void rope_kernel(float *x, const int *pos, const float *inv_freq, int T, int H, int hd, float sign) {
    int half = hd / 2;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x, n = (size_t)T * H * half;
    if (idx >= n) return;
    int i = (int)(idx % half);
    size_t th = idx / half;  // token * H + head
    int t = (int)(th / H);
    float ang = (float)pos[t] * inv_freq[i];  // fp32 angle first, as HF does
    float c = cosf(ang), s = sign * sinf(ang);
    float *v = x + th * hd;
    float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
}

static int rope(float *x, const int *pos, const float *inv_freq, int T, int H, int hd, float sign, const char *name) {
    size_t n = (size_t)T * H * (hd / 2);
    if (!n) return 0;
    rope_kernel<<<kc_blocks(n, 256), 256>>>(x, pos, inv_freq, T, H, hd, sign);
    KC_CHECK_LAUNCH(name);
    return 0;
}

extern "C" int kc_rope(float *x, const int *pos, const float *inv_freq, int T, int n_heads, int head_dim) {
    return rope(x, pos, inv_freq, T, n_heads, head_dim, 1.0f, "rope");
}

extern "C" int kc_rope_backward(float *dx, const int *pos, const float *inv_freq, int T, int n_heads, int head_dim) {
    return rope(dx, pos, inv_freq, T, n_heads, head_dim, -1.0f, "rope_backward");
}
