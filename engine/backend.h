// defines: Backend, the ops the model (transformer.h) is written against, each with the contract of its kernel in
// kernels.h: the CPU backend runs kernels/cpu, the CUDA backend kernels/cuda. Pointers are in the backend's memory
// (host memory for the CPU, device memory for CUDA) unless an op says otherwise. Every op returns 0, or -1 with the
// backend's error (last_error()); the model stops at the first failure.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "activation.h"
#include "dtype.h"
#include "kv_rows.h"
#include "lora_job.h"

typedef struct Backend {
    const char *name;
    int weight_grads;  // whether the ops can accumulate gradients of the base weights (full fine-tuning)
    int rounds_gemm_inputs;  // its GEMMs with bf16 weights multiply bf16 inputs, which their producers can round
    const char *(*last_error)(void);
    // memory: alloc gives zeroed bytes (NULL on failure); alloc_scratch bytes of no defined value, for a buffer the
    // next op writes whole before anything reads it (a GPU's fill of every activation buffer is a launch and a pass
    // over memory); upload/download copy from/to the host
    void *(*alloc)(size_t bytes);
    void *(*alloc_scratch)(size_t bytes);
    void (*release)(void *p);
    int (*upload)(void *dst, const void *host, size_t bytes);
    int (*download)(void *host, const void *src, size_t bytes);
    int (*copy)(float *dst, const float *src, size_t n);
    int (*fill)(float *x, float value, size_t n);
    // activations kept between the passes in bf16: each run's n values, the runs together in one op; NULL where the
    // backend keeps them as they are
    int (*to_bf16)(const LdConvertRun *runs, int count);
    int (*from_bf16)(const LdConvertRun *runs, int count);
    // ops
    int (*embedding)(float *x, const void *table, LdDtype tt, const int *tokens, int T, int D, float scale);
    int (*embedding_backward)(float *dtable, const float *dx, const int *tokens, int T, int D, float scale);
    // y16 (rmsnorm, add_rmsnorm, gated, attention, and going back rmsnorm_backward, rope_backward, gated_backward,
    // attention_backward's dv and add): also the output rounded to bf16, for a bf16 GEMM to read (NULL: not wanted;
    // asked for only where rounds_gemm_inputs says so)
    int (*rmsnorm)(float *y, uint16_t *y16, const float *x, const float *w, int T, int D, float eps, int plus_one);
    int (*add_rmsnorm)(float *y, uint16_t *y16, float *x, const float *d, const float *w, int T, int D, float eps, int plus_one);
    int (*rmsnorm_backward)(float *dx, uint16_t *dx16, float *dw, const float *dy, const float *x, const float *w, int T, int D, float eps,
                            int plus_one);
    // x16 (NULL: none): x rounded to bf16 by the op that made it, multiplied by a bf16 W instead of rounding x again
    int (*lora_linear)(float *y, float *axT, const float *x, const uint16_t *x16, const void *W, LdDtype wt, const float *bias,
                       const float *A, const float *B, float s, int T, int in, int out, int r);
    int (*lora_linears)(const LoraLinearJob *jobs, int count, float *axT, const float *x, const uint16_t *x16, const float *A, float s,
                        int T, int in, int r);
    // dy16 (NULL: none): dy rounded by the op that made it, as x16 going forward
    int (*lora_linear_backward)(float *dx, int dx_add, float *dW, float *dbias, float *dA, float *dB, float *dyBT, const float *dy,
                                const uint16_t *dy16, const float *x, const float *axT, const void *W, LdDtype wt, const float *A,
                                const float *B, float s, int T, int in, int out, int r);
    int (*lora_linears_backward)(const LoraLinearGrad *jobs, int count, float *dx, int dx_add, float *dA, float *dyBT, const float *x,
                                 const float *axT, const float *A, float s, int T, int in, int r);
    int (*dropout)(float *y, const float *x, size_t n, float p, uint64_t stream, uint64_t e0);
    int (*rope)(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int head_dim);
    // q rotated in place; the rotated keys and the values into rows of a KV cache (k itself left as it is)
    int (*rope_kv_write)(KvRows kv, float *q, const float *k, const float *v, const int *rows, const int *pos, const float *inv_freq, int n,
                         int Hq, int Hkv, int head_dim);
    int (*rope_backward)(float *dq, float *dk, uint16_t *dq16, uint16_t *dk16, const int *pos, const float *inv_freq, int T, int Hq,
                         int Hkv, int head_dim);
    // kv_base NULL: the ranges are rows of kv as they are (a packed batch's own tokens, or a prefill's rows of a KV
    // cache), served in tiles of consecutive queries; else token by token from row kv_base[t]. lse[T,Hq] may be NULL.
    // A paged or bf16 kv (kv_rows.h) only where the backend's KV caches are (rope_kv_write's).
    int (*attention)(float *out, uint16_t *out16, float *lse, const float *q, KvRows kv, const int *kv_base, const int *kv_lo,
                     const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap);
    // over a packed batch, given the forward's out and lse: dq, dk, dv written
    int (*attention_backward)(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k,
                              const float *v, const float *out, const float *lse, const int *kv_lo, const int *kv_hi, int T, int Hq,
                              int Hkv, int hd, float scale, float softcap);
    int (*gated)(Activation act, float *h, uint16_t *h16, const float *gate, const float *up, size_t n);
    int (*gated_backward)(Activation act, float *dgate, float *dup, uint16_t *dgate16, uint16_t *dup16, const float *dh, const float *gate,
                          const float *up, size_t n);
    int (*add)(float *x, uint16_t *x16, const float *y, size_t n);
    int (*softcap)(float *x, size_t n, float cap);
    int (*gather_rows)(float *dst, uint16_t *dst16, const float *src, const int *src_rows, int n, int width);
    // targets on the host; dw (NULL: frozen head) accumulated; *loss and *n_counted on the host
    int (*linear_cross_entropy)(float *dx, float *dw, const float *x, const void *W, LdDtype wt, const int *targets, int T, int D, int V,
                                float softcap, int ignore_index, int chunk_rows, int n_norm, float *loss, int *n_counted);
} Backend;

// The ops whose kernels share the op's name and signature (kernels/cpu's k_<op> behind a cpu_<op> wrapper that
// returns 0, kernels/cuda's kc_<op> as it is): a backend's table lists them as LD_BACKEND_OPS(its naming), then
// attention and linear_cross_entropy by hand.
#define LD_BACKEND_OPS(X)                                                                                                  \
    X(embedding)                                                                                                           \
    X(embedding_backward)                                                                                                  \
    X(rmsnorm)                                                                                                             \
    X(add_rmsnorm)                                                                                                         \
    X(rmsnorm_backward) X(lora_linear) X(lora_linears) X(lora_linear_backward) X(lora_linears_backward) X(dropout) X(rope) \
        X(rope_backward) X(attention_backward) X(gated) X(gated_backward) X(add) X(softcap) X(rope_kv_write) X(gather_rows)

extern const Backend ld_backend_cpu;
#ifdef LLAMADUO_HAVE_CUDA
extern const Backend ld_backend_cuda;
#endif
