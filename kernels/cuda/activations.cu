// Gated activations (the formulas of activation.h) and soft-cap, elementwise (kernels/cpu/activations.c), formula
// for formula.
#include "common.cuh"

__global__ static void gated_kernel(Activation act, float *h, uint16_t *h16, const float *gate, const float *up, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) kc_store(h, h16, i, ld_act(act, gate[i]) * up[i]);
}

__global__ static void gated_bwd_kernel(Activation act, float *dgate, float *dup, uint16_t *dgate16, uint16_t *dup16, const float *dh,
                                        const float *gate, const float *up, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i], d = dh[i];
    kc_store(dgate, dgate16, i, d * up[i] * ld_act_grad(act, g));
    kc_store(dup, dup16, i, d * ld_act(act, g));
}

__global__ static void softcap_kernel(float *x, size_t n, float cap) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] = cap * tanhf(x[i] / cap);
}

#define LAUNCH(name, kernel, n, ...)                       \
    do {                                                   \
        if (!(n)) return 0;                                \
        kernel<<<kc_blocks((n), 256), 256>>>(__VA_ARGS__); \
        KC_CHECK_LAUNCH(name);                             \
        return 0;                                          \
    } while (0)

extern "C" int kc_gated(Activation act, float *h, uint16_t *h16, const float *gate, const float *up, size_t n) {
    LAUNCH("gated", gated_kernel, n, act, h, h16, gate, up, n);
}
extern "C" int kc_gated_backward(Activation act, float *dgate, float *dup, uint16_t *dgate16, uint16_t *dup16, const float *dh,
                                 const float *gate, const float *up, size_t n) {
    LAUNCH("gated_backward", gated_bwd_kernel, n, act, dgate, dup, dgate16, dup16, dh, gate, up, n);
}
extern "C" int kc_softcap(float *x, size_t n, float cap) { LAUNCH("softcap", softcap_kernel, n, x, n, cap); }
