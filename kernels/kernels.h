// defines: the CPU reference of every numeric op. Each op is one file in kernels/cpu/; a CUDA version of an
// op (kernels/cuda/) keeps exactly this contract. Nothing here knows about models: shapes and pointers only.
// All tensors are row-major fp32; shapes are given as [rows, cols].
#pragma once
#include <stddef.h>

#include "dtype.h"

// y[T,N] = x[T,K] · w[N,K]ᵀ (+ bias[N] when bias != NULL). OpenBLAS sgemm.
void k_matmul(float *y, const float *x, const float *w, const float *bias, int T, int K, int N);

// The same product with W's rows stored in format wt (F32, F16, BF16 or a ggml block format, K a whole
// number of blocks): rows are dequantised a tile at a time into a thread's scratch and multiplied there, so
// weights stay compact in memory and are read once per call.
void k_matmul_q(float *y, const float *x, const void *w, LdDtype wt, const float *bias, int T, int K, int N);

// RMSNorm over rows: y[T,D] = x / sqrt(mean(x²) + eps) * g, with g = w (Llama) or 1 + w (Gemma, plus_one).
// In place is allowed (y == x).
void k_rmsnorm(float *y, const float *x, const float *w, int T, int D, float eps, int plus_one);

// Rotary embedding in place on x[T, n_heads, head_dim], half-split pairing (i, i + head_dim/2), the layout
// of HF checkpoints. angle = pos[t] * inv_freq[i] for i < head_dim/2.
void k_rope(float *x, const int *pos, const float *inv_freq, int T, int n_heads, int head_dim);

// Gated activations, elementwise over n: h = act(gate) * up.
void k_swiglu(float *h, const float *gate, const float *up, size_t n);       // act = silu
void k_geglu_tanh(float *h, const float *gate, const float *up, size_t n);   // act = tanh-approximate gelu
void k_geglu_erf(float *h, const float *gate, const float *up, size_t n);    // act = exact (erf) gelu

// x = cap * tanh(x / cap), in place.
void k_softcap(float *x, size_t n, float cap);

// x += y, elementwise.
void k_add(float *x, const float *y, size_t n);

// Attention for T query tokens, each against its own key/value range (KV cache rows kv_lo[t]..kv_hi[t]
// inclusive) so one call serves many sequences of different lengths, causal masks and sliding windows.
//   out[T, Hq*hd], q[T, Hq*hd]; k_rows[t], v_rows[t] point at a cache laid out [positions, Hkv*hd].
//   Grouped-query: query head h reads kv head h / (Hq/Hkv). score = scale·q·k, then softcap (when > 0).
void k_attention(float *out, const float *q, const float *const *k_rows, const float *const *v_rows,
                 const int *kv_lo, const int *kv_hi, int T, int Hq, int Hkv, int hd, float scale,
                 float softcap);

// Numerically stable log-softmax statistics of one row: returns logsumexp(x[0..n)).
float k_logsumexp(const float *x, int n);
