// defines: token embeddings and their backward (kernels.h k_embedding) (kernels/cuda/embedding.cu; each returns 0, or
// -1 with kc_last_error()).
#pragma once
#include <stddef.h>

#include "dtype.h"

// x[T,D] = table[tokens]·scale (table F32 or BF16);  backward (F32 table): dtable[tokens] += dx·scale
int kc_embedding(float *x, const void *table, LdDtype tt, const int *tokens, int T, int D, float scale);
int kc_embedding_backward(float *dtable, const float *dx, const int *tokens, int T, int D, float scale);
