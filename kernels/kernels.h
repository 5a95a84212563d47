// defines: the CPU reference of every numeric op. Each op is one file in kernels/cpu/; a CUDA version of an
// op (kernels/cuda/) keeps exactly this contract. Nothing here knows about models: shapes and pointers only.
// All tensors are row-major fp32; shapes are given as [rows, cols].
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "activation.h"
#include "dtype.h"
#include "kv_rows.h"
#include "lora_job.h"

// y[T,N] = x[T,K] · w[N,K]ᵀ (+ bias[N] when bias != NULL). OpenBLAS sgemm.
void k_matmul(float *y, const float *x, const float *w, const float *bias, int T, int K, int N);

// The same product with W's rows stored in format wt (F32, F16, BF16 or a ggml block format, K a whole
// number of blocks): rows are dequantised a tile at a time into a thread's scratch and multiplied there, so
// weights stay compact in memory and are read once per call.
void k_matmul_q(float *y, const float *x, const void *w, LdDtype wt, const float *bias, int T, int K, int N);

// The ops whose output a bf16 GEMM reads next (the norms, the gated activation, attention, and going back the ops
// that make the linears' output gradients) also write it rounded
// to bf16 (dtype.h ld_f32_to_bf16, nearest even) into y16, the bits of a bf16 [same shape], where y16 is set: the
// rounding done by the op that makes the values, not by a pass of its own over them (NULL: none).

// RMSNorm over rows: y[T,D] = x / sqrt(mean(x²) + eps) * g, with g = w (Llama) or 1 + w (Gemma, plus_one).
// In place is allowed (y == x).
void k_rmsnorm(float *y, uint16_t *y16, const float *x, const float *w, int T, int D, float eps, int plus_one);

// The residual add fused with the next norm: x[T,D] += d, then y = rmsnorm(x) as above (one pass over the
// rows instead of two). y may be d (each element of d is read before y's is written).
void k_add_rmsnorm(float *y, uint16_t *y16, float *x, const float *d, const float *w, int T, int D, float eps, int plus_one);

// Rotary embedding in place on q[T, Hq, head_dim] and k[T, Hkv, head_dim] (k may be NULL), half-split pairing
// (i, i + head_dim/2), the layout of HF checkpoints. angle = pos[t] * inv_freq[i] for i < head_dim/2, the same
// for every head of a token: one pass over both.
void k_rope(float *q, float *k, const int *pos, const float *inv_freq, int T, int Hq, int Hkv, int head_dim);

// Gated activation, elementwise over n: h = act(gate) * up (SwiGLU, GeGLU tanh or erf; activation.h).
void k_gated(Activation act, float *h, uint16_t *h16, const float *gate, const float *up, size_t n);

// x = cap * tanh(x / cap), in place.
void k_softcap(float *x, size_t n, float cap);

// x += y, elementwise (x16: the sum rounded).
void k_add(float *x, uint16_t *x16, const float *y, size_t n);

// y[T,N] += alpha · x[T,K] · w[N,K]ᵀ
void k_matmul_add(float *y, const float *x, const float *w, float alpha, int T, int K, int N);

// The LoRA linear: y[T,out] = x[T,in]·W[out,in]ᵀ + bias + s·(x·A[r,in]ᵀ)·B[out,r]ᵀ, W's rows in format wt;
// axT[r,T] keeps (x·Aᵀ)ᵀ for the backward pass. Transposed, so that the adapters of linears sharing an input, whose
// A lie stacked, give their axT end to end from one product (k_lora_linears). A NULL: the plain linear. W NULL:
// only the adapter's term, added to y.
void k_lora_linear(float *y, float *axT, const float *x, const void *W, LdDtype wt, const float *bias, const float *A, const float *B,
                   float s, int T, int in, int out, int r);

// Several linears on one input x[T,in] (q, k and v; gate and up), each job as lora_job.h says, the adapters sharing
// s and r. The m jobs that have an adapter (B set) have their A stacked in job order in A[m·r, in], so their shrink
// axT[m·r, T] = A·xᵀ is one product, rows j·r.. the j-th adapted job's axT (A NULL: no job has an adapter). A
// backend reads x once for all of them where it can: the CUDA one rounds it to bf16 once for the base products.
void k_lora_linears(const LoraLinearJob *jobs, int count, float *axT, const float *x, const float *A, float s, int T, int in, int r);

// x[T,D] = table[tokens]·scale, the table's rows in format tt.
void k_embedding(float *x, const void *table, LdDtype tt, const int *tokens, int T, int D, float scale);

// LoRA dropout: y = x·mask/(1-p), the mask dropout_mask.h's function of (stream, element index); x[0] is element e0
// of the stream (a data-parallel rank's share of a batch starts past element 0). y may be x.
void k_dropout(float *y, const float *x, size_t n, float p, uint64_t stream, uint64_t e0);

// dst[dst_rows[i]] = src[i]  /  dst[i] = src[src_rows[i]], n rows of width floats (KV-cache writes, picking rows;
// the gathered rows also rounded into dst16 where set).
void k_scatter_rows(float *dst, const float *src, const int *dst_rows, int n, int width);
void k_gather_rows(float *dst, uint16_t *dst16, const float *src, const int *src_rows, int n, int width);
// RoPE fused with a KV cache's writes: q[n, Hq, head_dim] rotated in place (k_rope), and token i's key k[i]
// rotated and its value v[i] as it is (Hkv·head_dim floats each) into virtual row rows[i] of kv, in its type (bf16
// rounded to nearest even); k itself is left as it is (attention reads the cache's).
void k_rope_kv_write(KvRows kv, float *q, const float *k, const float *v, const int *rows, const int *pos, const float *inv_freq, int n,
                     int Hq, int Hkv, int head_dim);

// Attention for T query tokens, each against its own key/value range (rows kv_lo[t]..kv_hi[t] inclusive, counted
// from row kv_base[t] of kv's k and v; kv_base NULL: from row 0; virtual rows of a paged cache where kv.pages is
// set) so one call serves many sequences of a KV cache of different lengths, packed training records, causal masks
// and sliding windows.
//   out[T, Hq*hd] (and out16 rounded, where set), q[T, Hq*hd]; kv.k, kv.v laid out [rows, Hkv*hd], fp32 or bf16
//   (kv_rows.h).
//   Grouped-query: query head h reads kv head h / (Hq/Hkv). score = scale·q·k, then softcap (when > 0).
void k_attention(float *out, uint16_t *out16, const float *q, KvRows kv, const int *kv_base, const int *kv_lo, const int *kv_hi, int T,
                 int Hq, int Hkv, int hd, float scale, float softcap);

// Numerically stable log-softmax statistics of one row: returns logsumexp(x[0..n)).
float k_logsumexp(const float *x, int n);

// Token choice from one row of logits[V]: the first maximum when temperature <= 0; else the candidates within
// K_SAMPLE_FLOOR·temperature of the maximum, scaled by 1/temperature and sorted (logit desc, id asc), cut to
// top_k (0: off), then at the first whose probability is under min_p × the top one's (0: off), then to the
// shortest prefix holding top_p of the mass (1: off); u in [0, 1) picks within what is left, in that order.
#define K_SAMPLE_FLOOR 20.7f  // ln(1e9): the candidates' floor below the maximum, in units of temperature
int k_argmax(const float *x, int n);
int k_sample_row(const float *logits, int V, float temperature, int top_k, float top_p, float min_p, double u);
// The frequency and presence penalties on n distinct tokens (counts[i] > 0 occurrences of tokens[i]):
// logits[t] -= (float)(count·frequency + presence), the sum computed in double.
void k_penalize_counts(float *logits, const int *tokens, const int *counts, int n, float frequency, float presence);

// ---- backward passes (training). Each takes the forward's inputs and dy and writes dx, unless it says dx += (then
// the caller zeroes it first); parameter gradients are accumulated (+=) so micro-batches can add up. Shapes as in
// the forward ops.

// dx[T,K] = dy[T,N] · w[N,K];  dw[N,K] += dyᵀ · x  (dw may be NULL: frozen weight);  dbias[N] += Σ_t dy
void k_matmul_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x, const float *w, int T, int K, int N);
// dx[T,K] += dy[T,N] · W[N,K] with W's rows in format wt (the input gradient through a frozen weight)
void k_matmul_q_backward_x(float *dx, const float *dy, const void *w, LdDtype wt, int T, int K, int N);
// The LoRA linear's backward: dx[T,in] (+= when dx_add, else written) dy·W + s·(dy·B)·A (W NULL: the adapter's
// share alone; dx NULL: not wanted);
// dW[out,in] += dyᵀ·x and dbias[out] += Σ_t dy (fp32 W; NULL: frozen); dB[out,r] += s·dyᵀ·ax (ax from the
// forward's axT[r,T]); dA[r,in] += (s·dy·B)ᵀ·x (NULL: not wanted). dyBT[r,T] is scratch: (s·dy·B)ᵀ.
void k_lora_linear_backward(float *dx, int dx_add, float *dW, float *dbias, float *dA, float *dB, float *dyBT, const float *dy,
                            const float *x, const float *axT, const void *W, LdDtype wt, const float *A, const float *B, float s, int T,
                            int in, int out, int r);
// The backward of k_lora_linears, each job as lora_job.h says, the m adapted ones stacked as in the forward:
// dyBT[m·r, T] (scratch) gets each adapted job's (s·dy·B)ᵀ in its rows, so the adapters' share of dx[T,in]
// (dyBTᵀ·A) and their dA[m·r, in] (+= dyBT·x, stacked as A; NULL: not wanted) are one product each. dx is the sum
// over the jobs, added to dx when dx_add, else written.
void k_lora_linears_backward(const LoraLinearGrad *jobs, int count, float *dx, int dx_add, float *dA, float *dyBT, const float *x,
                             const float *axT, const float *A, float s, int T, int in, int r);
// dtable[tokens] += dx[T,D]·scale (an fp32 table's gradient)
void k_embedding_backward(float *dtable, const float *dx, const int *tokens, int T, int D, float scale);
// dx (may alias nothing), dw += (dw may be NULL)
void k_rmsnorm_backward(float *dx, uint16_t *dx16, float *dw, const float *dy, const float *x, const float *w, int T, int D, float eps,
                        int plus_one);
// The gradient of a rotation is the inverse rotation: in place on dq[T, Hq, head_dim] and dk[T, Hkv, head_dim].
void k_rope_backward(float *dq, float *dk, uint16_t *dq16, uint16_t *dk16, const int *pos, const float *inv_freq, int T, int Hq, int Hkv,
                     int head_dim);
// dgate = dh · up · act'(gate), dup = dh · act(gate)
void k_gated_backward(Activation act, float *dgate, float *dup, uint16_t *dgate16, uint16_t *dup16, const float *dh, const float *gate,
                      const float *up, size_t n);
// y = cap·tanh(x/cap) given y: dx = dy · (1 − (y/cap)²), in place on dy allowed
void k_softcap_backward(float *dx, const float *dy, const float *y, size_t n, float cap);
// Attention backward over the same per-token key ranges as k_attention (keys/values of a training batch live
// in one [positions, Hkv*hd] buffer). dq, dk and dv [T, Hkv*hd] (k/v's layout) are written whole (a key row no query
// sees gets zeros), so none needs clearing first; dv16 (NULL: none) gets dv rounded.
void k_attention_backward(float *dq, float *dk, float *dv, uint16_t *dv16, const float *dout, const float *q, const float *k,
                          const float *v, const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale, float softcap);
// Mean cross-entropy over rows whose target is not ignore_index; dlogits = (softmax − onehot) / n_counted
// (0 rows for ignored ones). Returns the mean loss; *n_counted gets the number of rows that count.
float k_cross_entropy(float *dlogits, const float *logits, const int *targets, int T, int V, int ignore_index, int *n_counted);

// The head and its loss fused: logits = x[T,D]·w[V,D]ᵀ (w in format wt), soft-capped when softcap > 0, and the
// mean cross-entropy over rows whose target is not ignore_index — computed chunk_rows counted rows at a time,
// so the [T, V] logits are never held and ignored rows are never multiplied. dx[T,D] is written (0 on ignored
// rows; NULL: loss only); dw[V,D] (fp32 w only, NULL: frozen head) is accumulated. Same result as k_matmul_q +
// k_softcap + k_cross_entropy and their backward passes. The mean divides by n_norm when it is > 0 instead of the
// counted rows: a data-parallel rank's share of a batch divides by the whole batch's count, so the ranks' losses
// and gradients add up to the whole batch's.
float k_linear_cross_entropy(float *dx, float *dw, const float *x, const void *w, LdDtype wt, const int *targets, int T, int D, int V,
                             float softcap, int ignore_index, int chunk_rows, int n_norm, int *n_counted);

// AdamW (torch semantics: decoupled weight decay, bias correction) on n parameters; m and v are the fp32
// moment estimates; step counts from 1.
void k_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
             int step);
double k_sumsq(const float *x, size_t n);  // Σ x², for the global gradient norm
void k_scale(float *x, size_t n, float s);
