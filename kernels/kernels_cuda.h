// defines: the CUDA versions of the ops in kernels.h, same contracts (shapes, layouts, accumulation), on device
// pointers, launched on the default stream. Ops compute in fp32, gradients and optimizer state are fp32; frozen
// base weights (the linears' W, the embedding table) may be fp32 or bf16 (mixed precision: bf16 GEMM inputs, fp32
// accumulation), and kc_to_bf16 / kc_from_bf16 let a caller keep activations in bf16 between uses. Each returns 0, or -1 with kc_last_error() naming the kernel and CUDA's reason (a failed launch
// is never silent).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "activation.h"
#include "dtype.h"

const char *kc_last_error(void);
// Device memory for C callers (tests, the engine's GPU path).
// kc_alloc/kc_free cache freed blocks for reuse (a step allocates the same buffers every time, and cudaFree
// waits for the device); the cache is given back when cudaMalloc runs out.
void *kc_alloc(size_t bytes);  // NULL with an error
void kc_free(void *p);
// Bytes handed out by kc_alloc (in its size classes) now and at most since the start; the
// cache, cuBLAS's workspace and the bf16 scratch are outside it. For memory reports.
void kc_mem_stats(size_t *now, size_t *peak);
int kc_upload(void *dst, const void *src, size_t bytes);
int kc_download(void *dst, const void *src, size_t bytes);
int kc_fill(float *p, float value, size_t n);  // poisons outputs in tests
int kc_sync(void);

int kc_rmsnorm(float *y, const float *x, const float *w, int T, int D, float eps, int plus_one);
// x[T,D] += d, then y = rmsnorm(x) in one pass per row (y may be d)
int kc_add_rmsnorm(float *y, float *x, const float *d, const float *w, int T, int D, float eps, int plus_one);
// dx written; dw (may be NULL) accumulated, reduced over rows in a fixed order (deterministic)
int kc_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int T, int D, float eps, int plus_one);
int kc_rope(float *x, const int *pos, const float *inv_freq, int T, int n_heads, int head_dim);
int kc_rope_backward(float *dx, const int *pos, const float *inv_freq, int T, int n_heads, int head_dim);
int kc_gated(Activation act, float *h, const float *gate, const float *up, size_t n);
int kc_gated_backward(Activation act, float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t n);
int kc_softcap(float *x, size_t n, float cap);
int kc_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps,
             float weight_decay, int step);
// Attention in the flash manner: each (token, head) streams its key range [kv_lo, kv_hi] (rows of k/v starting
// at row kv_base[t], laid out [rows, Hkv*hd]) through shared memory in tiles with an online softmax; no score
// matrix is stored. GQA (Hq a multiple of Hkv), head_dim up to 256, soft-cap (> 0), any per-token range (causal,
// sliding window, packed records, many sequences of a KV cache).
int kc_attention(float *out, const float *q, const float *k, const float *v, const int *kv_base, const int *kv_lo,
                 const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap);
// The same over one packed batch's k/v buffers (row t of k/v is token t; training, a single sequence's prefill):
// blocks of 32 queries share each tile of 32 keys. lse[T, Hq] (may be NULL) gets each row's log-sum-exp.
int kc_attention_packed(float *out, float *lse, const float *q, const float *k, const float *v, const int *kv_lo, const int *kv_hi, int T,
                        int Hq, int Hkv, int hd, float scale, float softcap);
// Backward of kc_attention_packed given its out and lse: dq written, dk/dv accumulated. kv_lo and kv_hi must not
// decrease along the batch (causal packed records, windows).
int kc_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v, const float *out,
                          const float *lse, const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap);
// x[T,D] = table[tokens]·scale (table F32 or BF16);  backward (F32 table): dtable[tokens] += dx·scale
int kc_embedding(float *x, const void *table, LdDtype tt, const int *tokens, int T, int D, float scale);
int kc_embedding_backward(float *dtable, const float *dx, const int *tokens, int T, int D, float scale);
// kernels.h k_lora_linear: y[T,out] = x[T,in]·W[out,in]ᵀ + bias + s·(x·A[r,in]ᵀ)·B[out,r]ᵀ; ax[T,r] keeps x·Aᵀ (A
// NULL: the plain linear; W NULL: only the adapter's term, added to y). W is F32 (cuBLAS, true fp32) or BF16
// (cuBLASLt: x rounded to bf16, fp32 accumulation and result); A, B and the low-rank products are always fp32.
// Backward (k_lora_linear_backward): dx accumulated (W NULL: the adapter's share alone; through a BF16 W, dy is
// rounded to bf16 for that GEMM), dA/dB accumulated (NULL: not wanted), dyB [T,r] scratch; dW and dbias must be NULL
// (the base is frozen on the GPU).
int kc_lora_linear(float *y, float *ax, const float *x, const void *W, LdDtype wt, const float *bias, const float *A, const float *B,
                   float s, int T, int in, int out, int r);
int kc_lora_linear_backward(float *dx, float *dW, float *dbias, float *dA, float *dB, float *dyB, const float *dy, const float *x,
                            const float *ax, const void *W, LdDtype wt, const float *A, const float *B, float s, int T, int in, int out,
                            int r);
// The head and its loss fused (kernels.h k_linear_cross_entropy): logits = x[T,D]·W[V,D]ᵀ (W F32 or BF16),
// soft-capped when softcap > 0, mean cross-entropy over the rows whose target (targets: on the host) is not
// ignore_index, chunk_rows counted rows at a time — only [chunk_rows, V] logits ever exist on the device, and
// ignored rows are never multiplied. dx[T,D] written (0 on ignored rows; NULL: loss only). *loss and
// *n_counted on the host.
int kc_linear_cross_entropy(float *dx, const float *x, const void *W, LdDtype wt, const int *targets, int T, int D, int V, float softcap,
                            int ignore_index, int chunk_rows, float *loss, int *n_counted);
// x += y;  y[T,N] += b[N] (b NULL: nothing);  x *= s;  *out = Σ x² (double, fixed order);  dst = src
int kc_add(float *x, const float *y, size_t n);
int kc_add_bias(float *y, const float *b, int T, int N);
int kc_scale(float *x, size_t n, float s);
int kc_sumsq(const float *x, size_t n, double *out);
int kc_copy(float *dst, const float *src, size_t n);
// n values between fp32 and bf16 (dst/src: n bf16 values), rounding to nearest even as dtype.h ld_f32_to_bf16
int kc_to_bf16(void *dst, const float *src, size_t n);
int kc_from_bf16(float *dst, const void *src, size_t n);
// dst[dst_rows[i]] = src[i] / dst[i] = src[src_rows[i]] for n rows of width floats (KV-cache writes, picking rows)
int kc_scatter_rows(float *dst, const float *src, const int *dst_rows, int n, int width);
int kc_gather_rows(float *dst, const float *src, const int *src_rows, int n, int width);
// y = x·mask/(1-p) with the mask a hash of (stream, element index): LoRA dropout (y may be x)
int kc_dropout(float *y, const float *x, size_t n, float p, uint64_t stream);

// Token choice for n_rows rows of logits[n_rows, V] (modified in place by the penalties), row r by rows[r]: its
// repetition penalty over the distinct tokens penalized[n_penalized] (the host's sampler_penalized list), then
// the frequency and presence penalties over counted[n_counted] with counts[] (sampler_counted; kernels.h
// k_penalize_counts), then kernels.h k_sample_row with u (same order and arithmetic: the same logits and u give
// the same token). picked[n_rows] on the host; -1 where a sampled row had more than 4,096 candidates (its
// penalised row is left on the device for the host to decide with k_sample_row and the same u).
typedef struct {
    float temperature, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty;
    int top_k, n_penalized, n_counted;
    const int *penalized, *counted, *counts;  // host memory
    double u;
} KcSampleRow;
int kc_sample(int *picked, float *logits, int n_rows, int V, const KcSampleRow *rows);
