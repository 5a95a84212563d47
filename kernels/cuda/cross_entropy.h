// defines: the head and its loss fused, chunked (kernels.h k_linear_cross_entropy) (kernels/cuda/cross_entropy.cu;
// each returns 0, or -1 with kc_last_error()).
#pragma once
#include <stddef.h>

#include "dtype.h"

// The head and its loss fused (kernels.h k_linear_cross_entropy): logits = x[T,D]·W[V,D]ᵀ (W F32 or BF16),
// soft-capped when softcap > 0, mean cross-entropy over the rows whose target (targets: on the host) is not
// ignore_index, chunk_rows counted rows at a time — only [chunk_rows, V] logits ever exist on the device, and
// ignored rows are never multiplied. dx[T,D] written (0 on ignored rows; NULL: not wanted); dw[V,D] += the logits'
// gradient transposed times x, accumulated over the chunks (full fine-tuning of the head: an F32 W only; NULL: the
// head is frozen); both NULL: the loss only. *loss and *n_counted on the host. n_norm > 0: the mean's divisor
// instead of the counted rows (a data-parallel share).
int kc_linear_cross_entropy(float *dx, float *dw, const float *x, const void *W, LdDtype wt, const int *targets, int T, int D, int V,
                            float softcap, int ignore_index, int chunk_rows, int n_norm, float *loss, int *n_counted);
