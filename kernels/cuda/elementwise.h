// defines: elementwise ops: adds, bias rows, column sums, scaling, the sum of squares, copies, dropout (kernels.h
// k_dropout), row scatter/gather, KV-cache writes (kernels/cuda/elementwise.cu; each returns 0, or -1 with kc_last_error()).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kv_rows.h"

// x += y;  y[T,N] += b[N] (b NULL: nothing);  x *= s;  *out = Σ x² (double, fixed order);  dst = src
int kc_add(float *x, uint16_t *x16, const float *y, size_t n);
int kc_add_bias(float *y, const float *b, int T, int N);
int kc_add_col_sums(float *b, const float *y, int T, int N);  // b[N] += Σ_t y[t,N] (one thread a column, rows in order)
int kc_scale(float *x, size_t n, float s);
int kc_sumsq(const float *x, size_t n, double *out);
int kc_copy(float *dst, const float *src, size_t n);
// dst[dst_rows[i]] = src[i] / dst[i] = src[src_rows[i]] for n rows of width floats (KV-cache writes, picking rows;
// dst16: the gathered rows rounded, NULL: none)
int kc_scatter_rows(float *dst, const float *src, const int *dst_rows, int n, int width);
int kc_gather_rows(float *dst, uint16_t *dst16, const float *src, const int *src_rows, int n, int width);
// y = x·mask/(1-p) with the mask a hash of (stream, element index): LoRA dropout (y may be x)
int kc_dropout(float *y, const float *x, size_t n, float p, uint64_t stream, uint64_t e0);
