// The CPU backend: backend.h's ops on host memory, each the kernels/cpu reference of its CUDA twin.
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kernels.h"
#include "util.h"

static const char *cpu_error(void) { return ld_last_error(); }

static void *cpu_alloc(size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) ld_set_error("out of memory allocating %.1f MiB", bytes / 1048576.0);
    return p;
}
static void cpu_release(void *p) { free(p); }
static int cpu_memcpy(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
    return 0;
}
static int cpu_copy(float *dst, const float *src, size_t n) { return cpu_memcpy(dst, src, sizeof(float) * n); }
static int cpu_fill(float *x, float value, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = value;
    return 0;
}

static int cpu_embedding(float *x, const void *table, LdDtype tt, const int *tokens, int T, int D, float scale) {
    k_embedding(x, table, tt, tokens, T, D, scale);
    return 0;
}
static int cpu_embedding_backward(float *dtable, const float *dx, const int *tokens, int T, int D, float scale) {
    k_embedding_backward(dtable, dx, tokens, T, D, scale);
    return 0;
}
static int cpu_rmsnorm(float *y, uint16_t *y16, const float *x, const float *w, int T, int D, float eps, int plus_one) {
    k_rmsnorm(y, y16, x, w, T, D, eps, plus_one);
    return 0;
}
static int cpu_add_rmsnorm(float *y, uint16_t *y16, float *x, const float *d, const float *w, int T, int D, float eps, int plus_one) {
    k_add_rmsnorm(y, y16, x, d, w, T, D, eps, plus_one);
    return 0;
}
static int cpu_rmsnorm_backward(float *dx, uint16_t *dx16, float *dw, const float *dy, const float *x, const float *w, int T, int D,
                                float eps, int plus_one) {
    k_rmsnorm_backward(dx, dx16, dw, dy, x, w, T, D, eps, plus_one);
    return 0;
}
// (x16 and dy16 unused: the CPU's products read x and dy whatever W's format, and rounds_gemm_inputs is 0)
static int cpu_lora_linear(float *y, float *axT, const float *x, const uint16_t *x16, const void *W, LdDtype wt, const float *bias,
                           const float *A, const float *B, float s, int T, int in, int out, int r) {
    (void)x16;
    k_lora_linear(y, axT, x, W, wt, bias, A, B, s, T, in, out, r);
    return 0;
}
static int cpu_lora_linears(const LoraLinearJob *jobs, int count, float *axT, const float *x, const uint16_t *x16, const float *A, float s,
                            int T, int in, int r) {
    (void)x16;
    k_lora_linears(jobs, count, axT, x, A, s, T, in, r);
    return 0;
}
static int cpu_lora_linear_backward(float *dx, int dx_add, float *dW, float *dbias, float *dA, float *dB, float *dyBT, const float *dy,
                                    const uint16_t *dy16, const float *x, const float *axT, const void *W, LdDtype wt, const float *A,
                                    const float *B, float s, int T, int in, int out, int r) {
    (void)dy16;
    k_lora_linear_backward(dx, dx_add, dW, dbias, dA, dB, dyBT, dy, x, axT, W, wt, A, B, s, T, in, out, r);
    return 0;
}
static int cpu_lora_linears_backward(const LoraLinearGrad *jobs, int count, float *dx, int dx_add, float *dA, float *dyBT, const float *x,
                                     const float *axT, const float *A, float s, int T, int in, int r) {
    k_lora_linears_backward(jobs, count, dx, dx_add, dA, dyBT, x, axT, A, s, T, in, r);
    return 0;
}
static int cpu_dropout(float *y, const float *x, size_t n, float p, uint64_t stream, uint64_t e0) {
    k_dropout(y, x, n, p, stream, e0);
    return 0;
}
static int cpu_rope(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int head_dim) {
    k_rope(q, k, pos, inv_freq, T, Hq, Hkv, head_dim);
    return 0;
}
static int cpu_rope_backward(float *dq, float *dk, uint16_t *dq16, uint16_t *dk16, const int *pos, const float *inv_freq, int T, int Hq,
                             int Hkv, int head_dim) {
    k_rope_backward(dq, dk, dq16, dk16, pos, inv_freq, T, Hq, Hkv, head_dim);
    return 0;
}
// lse is not kept: the CPU backward recomputes the softmax
static int cpu_attention(float *out, uint16_t *out16, float *lse, const float *q, KvRows kv, const int *kv_base, const int *kv_lo,
                         const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap) {
    k_attention(out, out16, q, kv, kv_base, kv_lo, kv_hi, T, Hq, Hkv, hd, scale, softcap);
    return 0;
}
static int cpu_attention_backward(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k,
                                  const float *v, const float *out, const float *lse, const int *kv_lo, const int *kv_hi, int T, int Hq,
                                  int Hkv, int hd, float scale, float softcap) {
    k_attention_backward(dq, dk, dv, dv16, dout, q, k, v, kv_lo, kv_hi, T, Hq, Hkv, hd, scale, softcap);
    return 0;
}
static int cpu_gated(Activation act, float *h, uint16_t *h16, const float *gate, const float *up, size_t n) {
    k_gated(act, h, h16, gate, up, n);
    return 0;
}
static int cpu_gated_backward(Activation act, float *dgate, float *dup, uint16_t *dgate16, uint16_t *dup16, const float *dh,
                              const float *gate, const float *up, size_t n) {
    k_gated_backward(act, dgate, dup, dgate16, dup16, dh, gate, up, n);
    return 0;
}
static int cpu_add(float *x, uint16_t *x16, const float *y, size_t n) {
    k_add(x, x16, y, n);
    return 0;
}
static int cpu_softcap(float *x, size_t n, float cap) {
    k_softcap(x, n, cap);
    return 0;
}
static int cpu_rope_kv_write(KvRows kv, float *q, const float *k, const float *v, const int *rows, const int *pos, const float *inv_freq,
                             int n, int Hq, int Hkv, int head_dim) {
    k_rope_kv_write(kv, q, k, v, rows, pos, inv_freq, n, Hq, Hkv, head_dim);
    return 0;
}
static int cpu_gather_rows(float *dst, uint16_t *dst16, const float *src, const int *src_rows, int n, int width) {
    k_gather_rows(dst, dst16, src, src_rows, n, width);
    return 0;
}
static int cpu_linear_cross_entropy(float *dx, float *dw, const float *x, const void *W, LdDtype wt, const int *targets, int T, int D,
                                    int V, float softcap, int ignore_index, int chunk_rows, int n_norm, float *loss, int *n_counted) {
    *loss = k_linear_cross_entropy(dx, dw, x, W, wt, targets, T, D, V, softcap, ignore_index, chunk_rows, n_norm, n_counted);
    return 0;
}

#define CPU_OP(op) .op = cpu_##op,
const Backend ld_backend_cpu = {
    .name = "cpu",
    .weight_grads = 1,
    .last_error = cpu_error,
    .alloc = cpu_alloc,
    .alloc_scratch = cpu_alloc,  // calloc's zero pages cost nothing to ask for
    .release = cpu_release,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_copy,
    .fill = cpu_fill,
    LD_BACKEND_OPS(CPU_OP).attention = cpu_attention,
    .linear_cross_entropy = cpu_linear_cross_entropy,
};
